//! Cross-backend properties and API behaviour. Known answers are in
//! `vectors.rs`.

use proptest::prelude::*;

use super::*;

fn transforms(alg: Algorithm, keys: &SaKeys) -> Vec<Box<dyn EspTransform>> {
    let backends = available_backends(alg);
    assert_eq!(backends, built_backends(), "every backend offers {alg:?}");
    backends
        .into_iter()
        .map(|b| new_transform(b, alg, keys).unwrap())
        .collect()
}

/// One random ESP packet for `alg`.
#[derive(Debug, Clone)]
struct Case {
    alg: Algorithm,
    enc_key: Vec<u8>,
    auth_key: Vec<u8>,
    header: [u8; 8],
    esn_high: Option<u32>,
    iv: Vec<u8>,
    plaintext: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (0..Algorithm::ALL.len()).prop_flat_map(|i| {
        let alg = Algorithm::ALL[i];
        let block = alg.block_size();
        let max_blocks = 600 / block;
        (
            proptest::collection::vec(any::<u8>(), alg.encryption.key_len()),
            proptest::collection::vec(any::<u8>(), alg.integrity.key_len()),
            any::<[u8; 8]>(),
            any::<Option<u32>>(),
            proptest::collection::vec(any::<u8>(), alg.iv_len()),
            (0..=max_blocks)
                .prop_flat_map(move |n| proptest::collection::vec(any::<u8>(), n * block)),
        )
            .prop_map(
                move |(enc_key, auth_key, header, esn_high, iv, plaintext)| Case {
                    alg,
                    enc_key,
                    auth_key,
                    header,
                    esn_high,
                    iv,
                    plaintext,
                },
            )
    })
}

/// Which field a flipped bit lands in.
#[derive(Debug, Clone, Copy)]
enum Field {
    Header,
    EsnHigh,
    Iv,
    Payload,
    Icv,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn backends_agree_and_interoperate(c in case()) {
        let keys = SaKeys::new(&c.enc_key, &c.auth_key);
        let mut ts = transforms(c.alg, &keys);
        let mut sealed: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for t in &mut ts {
            let mut payload = c.plaintext.clone();
            let mut icv = vec![0u8; t.icv_len()];
            t.seal(&c.header, c.esn_high, &c.iv, &mut payload, &mut icv).unwrap();
            sealed.push((payload, icv));
        }
        for (i, s) in sealed.iter().enumerate() {
            prop_assert_eq!(s, &sealed[0], "{} differs from {}", ts[i].backend(), ts[0].backend());
        }
        if c.alg.encryption != Encryption::Null && !c.plaintext.is_empty() {
            prop_assert_ne!(&sealed[0].0, &c.plaintext);
        }
        let (ct, icv) = &sealed[0];
        for t in &mut ts {
            let mut payload = ct.clone();
            t.open(&c.header, c.esn_high, &c.iv, &mut payload, icv).unwrap();
            prop_assert_eq!(&payload, &c.plaintext, "open on {}", t.backend());
        }
    }

    #[test]
    fn any_flipped_bit_fails_authentication(
        c in case(),
        field in prop_oneof![
            Just(Field::Header), Just(Field::EsnHigh), Just(Field::Iv),
            Just(Field::Payload), Just(Field::Icv),
        ],
        pick in any::<usize>(),
    ) {
        let keys = SaKeys::new(&c.enc_key, &c.auth_key);
        let mut ts = transforms(c.alg, &keys);
        let mut ct = c.plaintext.clone();
        let mut icv = vec![0u8; ts[0].icv_len()];
        ts[0].seal(&c.header, c.esn_high, &c.iv, &mut ct, &mut icv).unwrap();

        let (mut header, mut esn_high, mut iv) = (c.header, c.esn_high, c.iv.clone());
        let flip = |bytes: &mut [u8]| {
            if bytes.is_empty() {
                return false;
            }
            let bit = pick % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            true
        };
        let flipped = match field {
            Field::Header => flip(&mut header),
            Field::EsnHigh => match &mut esn_high {
                Some(h) => {
                    *h ^= 1 << (pick % 32);
                    true
                }
                None => false,
            },
            Field::Iv => flip(&mut iv),
            Field::Payload => flip(&mut ct),
            Field::Icv => flip(&mut icv),
        };
        prop_assume!(flipped);
        for t in &mut ts {
            let mut payload = ct.clone();
            prop_assert_eq!(
                t.open(&header, esn_high, &iv, &mut payload, &icv),
                Err(CryptoError::AuthenticationFailed),
                "{} accepted a flipped bit in {:?}", t.backend(), field
            );
        }
    }
}

fn keys_for(alg: Algorithm) -> SaKeys {
    SaKeys::new(
        &vec![0x11; alg.encryption.key_len()],
        &vec![0x22; alg.integrity.key_len()],
    )
}

#[test]
fn validate_rejects_bad_combinations() {
    for alg in Algorithm::ALL {
        assert_eq!(alg.validate(), Ok(()));
    }
    let bad = [
        Algorithm {
            encryption: Encryption::AesGcm16_128,
            integrity: Integrity::HmacSha256_128,
        },
        Algorithm {
            encryption: Encryption::AesCbc128,
            integrity: Integrity::None,
        },
        Algorithm {
            encryption: Encryption::Null,
            integrity: Integrity::None,
        },
    ];
    for alg in bad {
        assert_eq!(alg.validate(), Err(CryptoError::InvalidAlgorithm(alg)));
        assert!(available_backends(alg).is_empty());
        for b in Backend::ALL {
            assert!(new_transform(b, alg, &SaKeys::default()).is_err());
        }
    }
}

#[test]
fn sizes_match_the_rfcs() {
    for alg in Algorithm::ALL {
        for b in available_backends(alg) {
            let t = new_transform(b, alg, &keys_for(alg)).unwrap();
            let (iv, block, icv) = match (alg.encryption, alg.integrity) {
                (e, _) if e.is_aead() => (8, 4, 16),
                (Encryption::Null, i) => (0, 4, i.icv_len()),
                (_, i) => (16, 16, i.icv_len()),
            };
            assert_eq!(
                (t.iv_len(), t.block_size(), t.icv_len()),
                (iv, block, icv),
                "{alg:?}"
            );
            assert_eq!((t.algorithm(), t.backend()), (alg, b));
        }
    }
}

#[test]
fn backend_names_round_trip() {
    for b in Backend::ALL {
        assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
    }
    assert_eq!("ipsec-mb".parse(), Ok(Backend::IpsecMb));
    assert_eq!("aws-lc".parse(), Ok(Backend::AwsLc));
    assert_eq!("rust".parse(), Ok(Backend::RustCrypto));
    assert_eq!("openssl".parse::<Backend>(), Err(UnknownBackend));
}

#[test]
fn default_backend_is_the_fastest_available() {
    // ipsec-mb for every suite where it is built (the HMAC suites run in
    // batches there), else aws-lc.
    for alg in Algorithm::ALL {
        let want = available_backends(alg)[0];
        assert_eq!(default_backend(alg), want, "{alg:?}");
        assert!(available_backends(alg).contains(&default_backend(alg)));
    }
}

#[test]
fn key_debug_is_redacted() {
    let keys = SaKeys::new(&[0xab; 20], &[0xcd; 32]);
    let s = format!("{keys:?}");
    assert!(
        !s.contains("ab") && !s.contains("171") && !s.contains("cd"),
        "{s}"
    );
    assert!(s.contains("20 bytes") && s.contains("32 bytes"), "{s}");
    let gcm_keys = SaKeys::new(&[0xab; 20], &[]);
    let t = new_transform(Backend::AwsLc, Algorithm::AES_GCM_128, &gcm_keys).unwrap();
    let s = format!("{t:?}");
    assert!(s.contains("AesGcm16_128") && !s.contains("171"), "{s}");
}

#[test]
fn wrong_key_lengths_are_rejected() {
    for alg in Algorithm::ALL {
        for b in built_backends() {
            let short = SaKeys::new(
                &vec![0; alg.encryption.key_len().saturating_sub(1)],
                &vec![0; alg.integrity.key_len()],
            );
            if alg.encryption.key_len() > 0 {
                assert_eq!(
                    new_transform(b, alg, &short).err(),
                    Some(CryptoError::BadKeyLength {
                        expected: alg.encryption.key_len(),
                        got: alg.encryption.key_len() - 1
                    })
                );
            }
            let long_auth = SaKeys::new(
                &vec![0; alg.encryption.key_len()],
                &vec![0; alg.integrity.key_len() + 1],
            );
            assert!(matches!(
                new_transform(b, alg, &long_auth).err(),
                Some(CryptoError::BadKeyLength { .. })
            ));
        }
    }
}

#[test]
fn bad_lengths_are_rejected() {
    for alg in Algorithm::ALL {
        for b in built_backends() {
            let mut t = new_transform(b, alg, &keys_for(alg)).unwrap();
            let iv = vec![0u8; t.iv_len()];
            let mut icv = vec![0u8; t.icv_len()];
            let hdr = [0u8; 8];
            // Wrong IV length.
            assert_eq!(
                t.seal(&hdr, None, &[0; 3], &mut [0; 16], &mut icv),
                Err(CryptoError::BadLength),
                "{alg:?} {b}"
            );
            // Wrong ICV length.
            assert_eq!(
                t.seal(&hdr, None, &iv, &mut [0; 16], &mut [0; 7]),
                Err(CryptoError::BadLength),
                "{alg:?} {b}"
            );
            assert_eq!(
                t.open(&hdr, None, &iv, &mut [0; 16], &[0; 7]),
                Err(CryptoError::BadLength),
                "{alg:?} {b}"
            );
            // CBC needs whole blocks.
            if t.block_size() == 16 {
                assert_eq!(
                    t.seal(&hdr, None, &iv, &mut [0; 20], &mut icv),
                    Err(CryptoError::BadLength)
                );
                assert_eq!(
                    t.open(&hdr, None, &iv, &mut [0; 20], &icv),
                    Err(CryptoError::BadLength)
                );
            }
        }
    }
}

#[test]
fn aead_iv_is_the_big_endian_counter() {
    for alg in [
        Algorithm::AES_GCM_128,
        Algorithm::AES_GCM_256,
        Algorithm::CHACHA20_POLY1305,
    ] {
        for b in built_backends() {
            let mut t = new_transform(b, alg, &keys_for(alg)).unwrap();
            let mut iv = [0u8; 8];
            t.fill_iv(0x0102_0304_0506_0708, &mut iv);
            assert_eq!(iv, [1, 2, 3, 4, 5, 6, 7, 8]);
        }
    }
}

#[test]
fn cbc_ivs_are_unique_and_differ_per_sa() {
    let alg = Algorithm {
        encryption: Encryption::AesCbc256,
        integrity: Integrity::HmacSha512_256,
    };
    for b in built_backends() {
        let mut t1 = new_transform(b, alg, &keys_for(alg)).unwrap();
        let mut t2 = new_transform(b, alg, &keys_for(alg)).unwrap();
        let mut seen = std::collections::HashSet::new();
        for seq in 0..1000u64 {
            let (mut a, mut c) = ([0u8; 16], [0u8; 16]);
            t1.fill_iv(seq, &mut a);
            t2.fill_iv(seq, &mut c);
            // Same key, same counter, independent random IV keys.
            assert_ne!(a, c);
            // Not the counter in clear.
            assert_ne!(a[8..], seq.to_be_bytes());
            assert!(seen.insert(a), "repeated IV at {seq}");
        }
        let mut again = [0u8; 16];
        t1.fill_iv(7, &mut again);
        let mut first = [0u8; 16];
        t1.fill_iv(7, &mut first);
        assert_eq!(again, first, "deterministic per SA");
    }
}

#[test]
fn transforms_move_between_threads() {
    // A transform built on one thread seals on another (each thread has
    // its own ipsec-mb manager); the result opens back on the first.
    for alg in Algorithm::ALL {
        for b in built_backends() {
            let keys = keys_for(alg);
            let mut t = new_transform(b, alg, &keys).unwrap();
            let iv = vec![9u8; t.iv_len()];
            let pt = vec![0x42u8; 64];
            let (t, ct, icv) = std::thread::spawn({
                let iv = iv.clone();
                let pt = pt.clone();
                move || {
                    let mut ct = pt;
                    let mut icv = vec![0u8; t.icv_len()];
                    t.seal(&[1; 8], Some(3), &iv, &mut ct, &mut icv).unwrap();
                    (t, ct, icv)
                }
            })
            .join()
            .unwrap();
            let mut t = t;
            let mut out = ct;
            t.open(&[1; 8], Some(3), &iv, &mut out, &icv).unwrap();
            assert_eq!(out, pt, "{alg:?} on {b}");
        }
    }
}

#[test]
fn esn_changes_the_icv() {
    for alg in Algorithm::ALL {
        for b in built_backends() {
            let mut t = new_transform(b, alg, &keys_for(alg)).unwrap();
            let iv = vec![0u8; t.iv_len()];
            let mut icvs = Vec::new();
            for esn in [None, Some(0), Some(1)] {
                let mut p = [0u8; 32];
                let mut icv = vec![0u8; t.icv_len()];
                t.seal(&[0; 8], esn, &iv, &mut p, &mut icv).unwrap();
                icvs.push(icv);
            }
            // RFC 4303 App. A: with ESN the high bits are authenticated
            // even when zero, so None and Some(0) differ.
            assert_ne!(icvs[0], icvs[1], "{alg:?} on {b}");
            assert_ne!(icvs[1], icvs[2], "{alg:?} on {b}");
        }
    }
}

/// The key lines the burst pipeline prefetches: for ipsec-mb's AES-GCM
/// with the VAES/AVX-512 layout, the round keys and, as a per-block table
/// from the same base, the 48 GHASH powers: together the whole 16-line key
/// schedule. With another layout, all 16 lines as fixed lines. A backend
/// that names no lines names no table either.
#[cfg(have_ipsec_mb)]
#[test]
fn gcm_key_lines_and_ghash_table_cover_the_key_schedule() {
    for (alg, rounds) in [(Algorithm::AES_GCM_128, 3), (Algorithm::AES_GCM_256, 4)] {
        let t = new_transform(Backend::IpsecMb, alg, &keys_for(alg)).unwrap();
        let keys = t.key_lines();
        match t.block_table() {
            Some(table) => {
                assert_eq!(keys.count(), rounds, "{alg:?}");
                assert_eq!(table.cap, 48, "{alg:?}");
                let (base, mask) = keys.parts();
                assert_eq!(table.end as usize - base, 1008, "{alg:?}");
                let (tbase, tmask) = table.all_lines().parts();
                assert_eq!(tbase, base + 192, "{alg:?}");
                assert_eq!(mask | tmask << 3, u16::MAX, "{alg:?}");
            }
            None => assert_eq!(keys.count(), 16, "{alg:?}"),
        }
    }
    let t = new_transform(
        Backend::RustCrypto,
        Algorithm::AES_GCM_128,
        &keys_for(Algorithm::AES_GCM_128),
    )
    .unwrap();
    assert_eq!((t.key_lines().count(), t.block_table()), (0, None));
}
