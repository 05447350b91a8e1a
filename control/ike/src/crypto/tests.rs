use super::*;
use crate::message::{ExchangeType, Flags};

/// A deterministic RNG for tests (not for production).
struct CountingRng(u8);
impl RngSource for CountingRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_mul(31).wrapping_add(7);
            *b = self.0;
        }
    }
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// RFC 4231 §4.2 (test case 1) and §4.3 (test case 2).
#[test]
fn ike_prf_hmac_sha2_rfc4231() {
    let k1 = [0x0bu8; 20];
    let d1 = b"Hi There";
    assert_eq!(
        &*Prf::HmacSha256.compute(&k1, &[d1]),
        h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    );
    assert_eq!(
        &*Prf::HmacSha384.compute(&k1, &[d1]),
        h("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6")
    );
    assert_eq!(
        &*Prf::HmacSha512.compute(&k1, &[d1]),
        h("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")
    );
    // Data split in pieces must equal the concatenation.
    assert_eq!(
        &*Prf::HmacSha256.compute(b"Jefe", &[b"what do ya ", b"want for nothing?"]),
        h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    assert_eq!(
        &*Prf::HmacSha384.compute(b"Jefe", &[b"what do ya want for nothing?"]),
        h("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649")
    );
    assert_eq!(
        &*Prf::HmacSha512.compute(b"Jefe", &[b"what do ya want for nothing?"]),
        h("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737")
    );
    // RFC 4868 §2.6: HMAC-SHA-256-128 is the first 128 bits.
    assert_eq!(
        Integ::HmacSha256_128.compute(&k1, d1),
        h("b0344c61d8db38535ca8afceaf0bf12b")
    );
}

// NIST CAVP SP 800-135 IKEv2 KDF sample values for HMAC-SHA-256 (as
// carried in NSS gtests/common/testvectors/ike-sha256-vectors.h, cases 6-9).
const NI: &str = "3f302be1abcb28e1";
const NR: &str = "8c332ee006064c9b";
const GIR: &str = "0f4d257d7a58fc4545c7d7a88119eee5d5c9690c5b4c989171d3abbfd99d1d29";
const SKEYSEED: &str = "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe";
const DKM_132: &str = concat!(
    "0b137d669b0947d7d026d593f0305ad401ff0c471357d695778a9c7f4b4869ece98aca531",
    "188d16041b3bb936d2dbb3b4993a6e768a809160de45d0283f273a6cdf6854379e31be72b",
    "8d3d1fa990cf9c5b015ca9f918a7df6253c958114a09d4e1c19bdcd4db14b29d98db1a74a",
    "d405c588662c14a04d0d36aa4ab55e90f8986d12d4aad"
);

#[test]
fn ike_skeyseed_nist_cavp() {
    let s = skeyseed(Prf::HmacSha256, &h(NI), &h(NR), &h(GIR));
    assert_eq!(&*s, h(SKEYSEED));
}

#[test]
fn ike_prf_plus_nist_cavp() {
    let seed = h(&format!("{NI}{NR}40dac39e1e1a86408619a1cf9a6e4c07"));
    let dkm = Prf::HmacSha256.plus(&h(SKEYSEED), &seed, 132);
    assert_eq!(&*dkm, h(DKM_132));
    // Shorter outputs are prefixes (cases 9 and 10).
    assert_eq!(
        &*Prf::HmacSha256.plus(&h(SKEYSEED), &seed, 15),
        &h(DKM_132)[..15]
    );
    // derive_ike_keys splits the same stream in §2.14 order.
    let suite = IkeSuite {
        cipher: IkeCipher::AesCbc { key_bits: 128 },
        prf: Prf::HmacSha256,
        integ: Some(Integ::HmacSha256_128),
        dh: DhGroup::Ecp256,
    };
    let k = derive_ike_keys(
        &suite,
        &h(SKEYSEED),
        &h(NI),
        &h(NR),
        0x40dac39e1e1a8640,
        0x8619a1cf9a6e4c07,
    );
    let all = Prf::HmacSha256.plus(&h(SKEYSEED), &seed, 32 * 3 + 32 * 2 + 16 * 2);
    assert_eq!(&*k.sk_d, &all[..32]);
    assert_eq!(&*k.sk_ai, &all[32..64]);
    assert_eq!(&*k.sk_ar, &all[64..96]);
    assert_eq!(&*k.sk_ei, &all[96..112]);
    assert_eq!(&*k.sk_er, &all[112..128]);
    assert_eq!(&*k.sk_pi, &all[128..160]);
    assert_eq!(&*k.sk_pr, &all[160..192]);
}

#[test]
fn ike_skeyseed_rekey_nist_cavp() {
    // SK_d is the first 32 bytes of the DKM above (case 7).
    let sk_d = &h(DKM_132)[..32];
    let gir_new = h("25f3b12d6f282739256e39bf54eda53b60ffcf379bb7bcc90c27b4c4c578616c");
    let s = skeyseed_rekey(Prf::HmacSha256, sk_d, &gir_new, &h(NI), &h(NR));
    assert_eq!(
        &*s,
        h("2d63f6debc92048b4fef3889c4c99ca67d6496e0fac14a2bca9a2d6566ff2398")
    );
}

#[test]
fn ike_child_keymat_split_per_2_17() {
    let alg = EspAlgorithm {
        cipher: EspCipher::AesCbc128,
        integ: Some(Integ::HmacSha256_128),
    };
    let (i2r, r2i) = child_keymat(Prf::HmacSha256, &[1; 32], None, b"ni", b"nr", &alg);
    let km = Prf::HmacSha256.plus(&[1; 32], b"ninr", 2 * (16 + 32));
    assert_eq!(&*i2r.encryption, &km[..16]);
    assert_eq!(&*i2r.integrity, &km[16..48]);
    assert_eq!(&*r2i.encryption, &km[48..64]);
    assert_eq!(&*r2i.integrity, &km[64..96]);
    // With PFS g^ir is prepended to the nonces.
    let gcm = EspAlgorithm {
        cipher: EspCipher::AesGcm16_256,
        integ: None,
    };
    let (i2r, r2i) = child_keymat(Prf::HmacSha256, &[1; 32], Some(b"g"), b"ni", b"nr", &gcm);
    let km = Prf::HmacSha256.plus(&[1; 32], b"gninr", 72);
    assert_eq!(i2r.encryption.len(), 36);
    assert_eq!(&*i2r.encryption, &km[..36]);
    assert_eq!(&*r2i.encryption, &km[36..]);
    assert!(r2i.integrity.is_empty());
}

#[test]
fn ike_secrets_are_redacted() {
    let s = SecretBytes::new(vec![0xaa; 4]);
    let d = format!("{s:?}");
    assert!(!d.contains("aa") && !d.contains("170"), "{d}");
}

fn header() -> Header {
    Header {
        spi_i: 1,
        spi_r: 2,
        exchange: ExchangeType::INFORMATIONAL,
        flags: Flags::new(true, false),
        message_id: 5,
    }
}

fn suites() -> Vec<IkeSuite> {
    let mut v = Vec::new();
    for key_bits in [128, 256] {
        v.push(IkeSuite {
            cipher: IkeCipher::AesGcm16 { key_bits },
            prf: Prf::HmacSha384,
            integ: None,
            dh: DhGroup::Ecp256,
        });
        for integ in [
            Integ::HmacSha256_128,
            Integ::HmacSha384_192,
            Integ::HmacSha512_256,
        ] {
            v.push(IkeSuite {
                cipher: IkeCipher::AesCbc { key_bits },
                prf: Prf::HmacSha256,
                integ: Some(integ),
                dh: DhGroup::Modp2048,
            });
        }
    }
    v
}

#[test]
fn ike_sk_seal_open_and_tamper() {
    let mut rng = CountingRng(3);
    for suite in suites() {
        let ke = SecretBytes::new(vec![7; suite.cipher.key_len()]);
        let ka = SecretBytes::new(vec![9; suite.integ.map_or(0, |i| i.key_len())]);
        let mut tx = SkCipher::new(&suite, &ke, &ka);
        let rx = SkCipher::new(&suite, &ke, &ka);
        for inner_len in [0usize, 1, 15, 16, 17, 100] {
            let inner: Vec<u8> = (0..inner_len as u8).collect();
            let msg = tx
                .seal(&header(), PayloadType::NOTIFY, &inner, &mut rng)
                .unwrap();
            let (hdr, next) = Header::decode(&msg).unwrap();
            assert_eq!(hdr, header());
            assert_eq!(next, PayloadType::SK);
            assert_eq!(msg[HEADER_LEN], PayloadType::NOTIFY.0);
            let sk_len = msg.len() - HEADER_LEN - 4;
            assert_eq!(rx.open(&msg, sk_len).unwrap(), inner, "{suite:?}");
            // Any flipped bit (header, IV, ciphertext, ICV) fails.
            for pos in [0, 20, HEADER_LEN + 5, msg.len() / 2, msg.len() - 1] {
                let mut bad = msg.clone();
                bad[pos] ^= 1;
                assert_eq!(
                    rx.open(&bad, sk_len),
                    Err(CryptoError::IntegrityCheck),
                    "{suite:?} {pos}"
                );
            }
            assert!(rx.open(&msg, 3).is_err());
            assert!(rx.open(&msg, msg.len() + 1).is_err());
        }
    }
}

#[test]
fn ike_gcm_explicit_iv_is_unique() {
    let suite = suites()[0];
    let ke = SecretBytes::new(vec![7; 20]);
    let mut tx = SkCipher::new(&suite, &ke, &SecretBytes::new(vec![]));
    let mut rng = CountingRng(1);
    let a = tx
        .seal(&header(), PayloadType::NONE, b"x", &mut rng)
        .unwrap();
    let b = tx
        .seal(&header(), PayloadType::NONE, b"x", &mut rng)
        .unwrap();
    assert_ne!(a[32..40], b[32..40]);
}

#[test]
fn ike_dh_all_groups_agree() {
    let mut rng = CountingRng(11);
    for g in [
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Curve25519,
        DhGroup::Modp2048,
    ] {
        let (a, pa) = DhSecret::generate(g, &mut rng).unwrap();
        let (b, pb) = DhSecret::generate(g, &mut rng).unwrap();
        assert_eq!(pa.len(), g.public_len());
        let sa = a.agree(&pb).unwrap();
        let sb = b.agree(&pa).unwrap();
        assert_eq!(sa, sb, "{g:?}");
        let expect = match g {
            DhGroup::Ecp256 | DhGroup::Curve25519 => 32,
            DhGroup::Ecp384 => 48,
            DhGroup::Modp2048 => 256,
        };
        assert_eq!(sa.len(), expect, "ECP shares only x (RFC 5903 §7)");
        assert!(a.agree(&pb[1..]).is_err(), "wrong length");
        assert!(!format!("{a:?}").contains(&format!("{:?}", &*sa)));
    }
}

#[test]
fn ike_dh_rejects_bad_public_values() {
    let mut rng = CountingRng(5);
    // RFC 6989 §2.1: 0, 1 and p-1 for MODP.
    let (a, _) = DhSecret::generate(DhGroup::Modp2048, &mut rng).unwrap();
    let mut zero = vec![0u8; 256];
    assert_eq!(a.agree(&zero), Err(CryptoError::InvalidPublicValue));
    zero[255] = 1;
    assert_eq!(a.agree(&zero), Err(CryptoError::InvalidPublicValue));
    let mut pm1 = h(MODP2048_P);
    pm1[255] -= 1;
    assert_eq!(a.agree(&pm1), Err(CryptoError::InvalidPublicValue));
    assert_eq!(
        a.agree(&h(MODP2048_P)),
        Err(CryptoError::InvalidPublicValue)
    );
    zero[255] = 2;
    assert!(a.agree(&zero).is_ok());
    // ECP: a point not on the curve is rejected (RFC 6989 §2.3).
    let (e, pe) = DhSecret::generate(DhGroup::Ecp256, &mut rng).unwrap();
    let mut off = pe.clone();
    off[63] ^= 1;
    assert_eq!(e.agree(&off), Err(CryptoError::InvalidPublicValue));
    assert_eq!(e.agree(&[0u8; 64]), Err(CryptoError::InvalidPublicValue));
    // X25519: the all-zero (small-order) point gives an all-zero secret.
    let (x, _) = DhSecret::generate(DhGroup::Curve25519, &mut rng).unwrap();
    assert_eq!(x.agree(&[0u8; 32]), Err(CryptoError::InvalidPublicValue));
}

#[test]
fn ike_psk_auth_follows_2_15() {
    let prf = Prf::HmacSha256;
    let got = psk_auth(prf, b"secret", b"msg1", b"nonce-r", b"skpi", b"id");
    let pad = prf.compute(b"secret", &[b"Key Pad for IKEv2"]);
    let maced = prf.compute(b"skpi", &[b"id"]);
    let want = prf.compute(&pad, &[b"msg1nonce-r", &maced]);
    assert_eq!(got, want);
    assert_ne!(
        got,
        psk_auth(prf, b"secret2", b"msg1", b"nonce-r", b"skpi", b"id")
    );
}

#[test]
fn ike_nat_detection_hash_is_sha1_of_spis_ip_port() {
    let a: std::net::SocketAddr = "192.0.2.1:500".parse().unwrap();
    let hsh = nat_detection_hash(1, 0, a);
    assert_eq!(hsh.len(), 20);
    assert_ne!(
        hsh,
        nat_detection_hash(1, 0, "192.0.2.1:4500".parse().unwrap())
    );
    assert_ne!(hsh, nat_detection_hash(1, 1, a));
}
