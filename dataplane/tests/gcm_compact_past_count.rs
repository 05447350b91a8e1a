//! ipsec-mb's AES-GCM SAs switch to the compact key schedule (8 GHASH
//! powers, the AVX2 code) once 8,192 VAES/AVX-512 schedules are alive, and
//! back when they are dropped; a packet sealed under either opens under
//! the other. Its own test binary: the count is per process, and the unit
//! tests build keys in parallel.

use dataplane::crypto::{available_backends, new_transform, Algorithm, Backend, SaKeys};

const AFTER: usize = 8192;

#[test]
fn sas_past_the_count_get_the_compact_schedule_and_interoperate() {
    let alg = Algorithm::AES_GCM_128;
    if !available_backends(alg).contains(&Backend::IpsecMb) {
        eprintln!("skipped: built without ipsec-mb or it does not run here");
        return;
    }
    let keys = SaKeys::new(&[0x42; 20], &[]);
    let first = new_transform(Backend::IpsecMb, alg, &keys).unwrap();
    if first.block_table().is_none() {
        eprintln!("skipped: this CPU does not run ipsec-mb's VAES AES-GCM");
        return;
    }
    let mut held = vec![first];
    while held.len() < AFTER {
        let t = new_transform(Backend::IpsecMb, alg, &keys).unwrap();
        assert!(t.block_table().is_some(), "VAES schedule {}", held.len());
        held.push(t);
    }
    let mut compact = new_transform(Backend::IpsecMb, alg, &keys).unwrap();
    assert!(compact.block_table().is_none());
    assert_eq!(compact.key_lines().count(), 6);

    let header = [0, 0, 0x10, 0, 0, 0, 0, 1];
    let iv = [0, 0, 0, 0, 0, 0, 0, 1];
    for len in [60usize, 572, 1500] {
        let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut p = plain.clone();
        let mut icv = [0u8; 16];
        compact.seal(&header, None, &iv, &mut p, &mut icv).unwrap();
        held[0].open(&header, None, &iv, &mut p, &icv).unwrap();
        assert_eq!(p, plain, "compact to VAES, {len}");
        held[1].seal(&header, None, &iv, &mut p, &mut icv).unwrap();
        compact.open(&header, None, &iv, &mut p, &icv).unwrap();
        assert_eq!(p, plain, "VAES to compact, {len}");
    }

    held.truncate(AFTER - 1);
    let again = new_transform(Backend::IpsecMb, alg, &keys).unwrap();
    assert!(again.block_table().is_some(), "below the count: VAES again");
}
