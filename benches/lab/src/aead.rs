//! The bare AEAD cost of a case, measured in the case's own process on the
//! worker core right after its run, so that the gateway's cycles per packet
//! can be split into crypto and everything else.
//!
//! The figure is the AEAD share of the gateway's own cycles at 1420 bytes
//! (the worker's cycles per packet minus the testpmd-io baseline's);
//! ipsec-secgw's is about 245 of 339 cycles (0.72). The share here is
//! [`measure`]'s figure over (gateway cycles − baseline cycles), both in TSC
//! cycles: the same transform, backend and keys the gateway's SA used, on a
//! buffer of the ESP payload length the case's frames produce, in bursts of
//! 32 like the data path (reloading ciphertext between `open` bursts is
//! outside the timed region).

use dataplane::crypto::{default_backend, new_transform};
use dpdk::rdtsc;

use super::report::median;
use super::spec::{CaseSpec, Direction, FrameSize};
use super::traffic;

const BURST: usize = 32;
const BURSTS: usize = 400;

/// ESP payload bytes (inner IP packet, padding, pad length, next header)
/// of one frame of `size` bytes (FCS included, as RFC 2544 counts).
fn esp_payload_len(size: u16, block: usize) -> usize {
    let ip = usize::from(size) - 18;
    let align = block.max(4);
    (ip + 2).div_ceil(align) * align
}

/// Median TSC cycles of one `seal` (encrypt cases) or `open` (decrypt
/// cases) of the case's ESP payload; `None` for IMIX (no single size) or
/// when the transform cannot be built. Call it on the worker core.
pub fn measure(spec: &CaseSpec) -> Option<f64> {
    let FrameSize::Fixed(size) = spec.frame else {
        return None;
    };
    let alg = spec.algorithm.algorithm();
    let mut t = new_transform(default_backend(alg), alg, &traffic::keys(spec, 0)).ok()?;
    let len = esp_payload_len(size, alg.block_size());
    let header = [0x10, 0, 0, 1, 0, 0, 0, 1];
    let mut iv = vec![0u8; t.iv_len()];
    t.fill_iv(1, &mut iv);
    let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let mut sealed = plain.clone();
    let mut sealed_icv = vec![0u8; t.icv_len()];
    t.seal(&header, None, &iv, &mut sealed, &mut sealed_icv)
        .ok()?;
    let mut bufs: Vec<(Vec<u8>, Vec<u8>)> = (0..BURST)
        .map(|_| (sealed.clone(), sealed_icv.clone()))
        .collect();
    let mut per_op = Vec::with_capacity(BURSTS);
    for _ in 0..BURSTS {
        let elapsed = match spec.direction {
            // Sealing ciphertext again costs what sealing plaintext does.
            Direction::Encrypt => {
                let t0 = rdtsc();
                for (p, icv) in &mut bufs {
                    t.seal(&header, None, &iv, p, icv).ok()?;
                }
                rdtsc() - t0
            }
            Direction::Decrypt => {
                for (p, icv) in &mut bufs {
                    p.copy_from_slice(&sealed);
                    icv.copy_from_slice(&sealed_icv);
                }
                let t0 = rdtsc();
                for (p, icv) in &mut bufs {
                    t.open(&header, None, &iv, p, icv).ok()?;
                }
                rdtsc() - t0
            }
        };
        per_op.push(elapsed as f64 / BURST as f64);
    }
    Some(median(&per_op))
}

/// The AEAD share of the gateway's own cycles: `aead` over `gateway −
/// baseline` (None when that difference is not positive).
pub fn share(aead: Option<f64>, gateway: f64, baseline: f64) -> Option<f64> {
    let own = gateway - baseline;
    aead.filter(|_| own > 0.0).map(|a| a / own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::BenchAlgorithm;

    #[test]
    fn payload_lengths_follow_the_frame() {
        // 1420-byte frame: 1402-byte IP packet, + 2, aligned to 4.
        assert_eq!(esp_payload_len(1420, 4), 1404);
        // 64-byte frame: 46-byte IP packet -> 48; CBC aligns to 16.
        assert_eq!(esp_payload_len(64, 4), 48);
        assert_eq!(esp_payload_len(64, 16), 48);
        assert_eq!(esp_payload_len(512, 16), 496);
    }

    #[test]
    fn measures_both_directions_and_not_imix() {
        let mut spec = CaseSpec {
            direction: Direction::Encrypt,
            algorithm: BenchAlgorithm::AesGcm128,
            frame: FrameSize::Fixed(1420),
            udp_encap: false,
            sa_count: 1,
            scale_frames: 0,
        };
        let enc = measure(&spec).expect("encrypt figure");
        spec.direction = Direction::Decrypt;
        let dec = measure(&spec).expect("decrypt figure");
        assert!(enc > 0.0 && dec > 0.0);
        spec.frame = FrameSize::Imix;
        assert!(measure(&spec).is_none());
        assert_eq!(share(Some(80.0), 200.0, 100.0), Some(0.8));
        assert_eq!(share(Some(80.0), 90.0, 100.0), None);
    }
}
