//! Deterministic engines for tests and fuzzing: a seeded RNG and a fixed
//! initiator/responder pair, so that the same inputs always meet the same
//! SPIs, nonces and keys. The fuzz targets in `fuzz/` build their
//! responder here, and the seeds they start from are datagrams of
//! [`initiator_datagrams`], which that responder accepts byte for byte.

use std::net::SocketAddr;

use super::config::{Config, StartAction};
use super::crypto::{RngSource, SecretBytes};
use super::endpoint::Endpoint;
use super::message::Identification;
use super::sa::Timestamp;

/// SplitMix64: a small, seeded, non-cryptographic generator.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl RngSource for SplitMix {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}

/// The initiator's address (port 500).
pub const INITIATOR: &str = "192.0.2.1:500";
/// The responder's address (port 500).
pub const RESPONDER: &str = "192.0.2.2:500";
/// The clock both engines start at.
pub const START: Timestamp = Timestamp(1_000);

/// Curve25519 keeps a fuzz iteration's key exchange cheap.
const IKE: &[&str] = &["aes128gcm16-prfsha256-x25519", "aes128-sha256-ecp256"];
const ESP: &[&str] = &["aes128gcm16", "aes128-sha256"];

/// The configuration of one side: A (`initiator`) 10.1.0.0/24 at
/// [`INITIATOR`], B 10.2.0.0/24 at [`RESPONDER`], one PSK.
pub fn config(initiator: bool, ike: &[&str], esp: &[&str]) -> Config {
    let (l, r, lid, rid, lts, rts) = if initiator {
        (
            INITIATOR,
            RESPONDER,
            "gw-a.example",
            "gw-b.example",
            "10.1.0.0/24",
            "10.2.0.0/24",
        )
    } else {
        (
            RESPONDER,
            INITIATOR,
            "gw-b.example",
            "gw-a.example",
            "10.2.0.0/24",
            "10.1.0.0/24",
        )
    };
    let mut c = Config::new(
        l.parse().expect("literal address"),
        r.parse().expect("literal address"),
        Identification::Fqdn(lid.into()),
        Identification::Fqdn(rid.into()),
        SecretBytes::new(b"correct horse battery staple".to_vec()),
    )
    .with_proposals(ike, esp)
    .expect("valid proposals")
    .with_traffic_selectors(&[lts], &[rts])
    .expect("literal selectors");
    c.start = if initiator {
        StartAction::Initiate
    } else {
        StartAction::Listen
    };
    c
}

/// The responder every fuzz run starts with.
pub fn responder() -> Endpoint {
    Endpoint::new(config(false, IKE, ESP), Box::new(SplitMix(2))).expect("proposals configured")
}

/// The datagrams an initiator sends to [`responder`] to establish an IKE
/// SA and a Child SA, then to delete the Child SA, delivered at [`START`]
/// with the responder's answers fed back. Each is (local, remote, bytes)
/// as the responder receives it.
pub fn initiator_datagrams() -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
    let mut a =
        Endpoint::new(config(true, IKE, ESP), Box::new(SplitMix(1))).expect("proposals configured");
    let mut b = responder();
    let mut out = Vec::new();
    a.initiate(START);
    for step in 0..8 {
        if step == 4 {
            if let Some(c) = a.child_sas().first() {
                let _ = a.delete_child(START, c.id);
            }
        }
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(START, t.remote, t.local, &t.payload);
            out.push((t.remote, t.local, t.payload));
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(START, t.remote, t.local, &t.payload);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canned exchange establishes, so the fuzz seeds reach past
    /// IKE_AUTH.
    #[test]
    fn ike_sim_initiator_datagrams_establish_and_delete() {
        let ds = initiator_datagrams();
        assert!(ds.len() >= 3, "{}", ds.len());
        let mut b = responder();
        for (l, r, d) in &ds[..2] {
            b.handle_datagram(START, *l, *r, d);
        }
        assert_eq!(b.child_sas().len(), 1);
        assert_eq!(b.stats().malformed, 0);
        b.handle_datagram(START, ds[2].0, ds[2].1, &ds[2].2);
        assert_eq!(b.child_sas().len(), 0, "the third one deletes it");
    }

    /// Writes the fuzz seeds for `ike_message` and `ike_responder` into
    /// `$IKE_FUZZ_SEEDS/<target>/` (run with `--ignored`).
    #[test]
    #[ignore = "writes fuzz seeds"]
    fn ike_sim_write_fuzz_seeds() {
        let Ok(dir) = std::env::var("IKE_FUZZ_SEEDS") else {
            return;
        };
        let dir = std::path::Path::new(&dir);
        let ds = initiator_datagrams();
        let names = ["ike-sa-init", "ike-auth", "informational-delete"];
        std::fs::create_dir_all(dir.join("ike_message")).unwrap();
        std::fs::create_dir_all(dir.join("ike_responder")).unwrap();
        for ((_, _, d), name) in ds.iter().zip(names) {
            std::fs::write(dir.join("ike_message").join(name), d).unwrap();
        }
        // An inner chain (first payload type, then the chain) of a
        // CFG_REQUEST and a CFG_REPLY (RFC 7296 §3.15), as SK carries them.
        {
            use crate::message::{encode_chain, CfgAttribute, CfgType, CpPayload, Payload};
            let reply = CpPayload::new(
                CfgType::CFG_REPLY,
                vec![
                    CfgAttribute::Ip4Address(Some([10, 3, 0, 1].into())),
                    CfgAttribute::Ip6Address(Some(([0xfd00, 3, 0, 0, 0, 0, 0, 1].into(), 128))),
                    CfgAttribute::Ip4Dns(Some([10, 1, 0, 53].into())),
                    CfgAttribute::Ip4Subnet(Some((
                        [10, 1, 0, 0].into(),
                        [255, 255, 255, 0].into(),
                    ))),
                ],
            );
            let (first, chain) = encode_chain(&[
                Payload::Cp(CpPayload::request(true, true)),
                Payload::Cp(reply),
            ])
            .unwrap();
            let mut seed = vec![first.0];
            seed.extend_from_slice(&chain);
            std::fs::write(dir.join("ike_message").join("inner-cp"), seed).unwrap();
        }
        // ike_responder: records of flags, length, datagram.
        let record = |d: &[u8]| {
            let mut v = vec![0u8];
            v.extend_from_slice(&(d.len() as u16).to_be_bytes());
            v.extend_from_slice(d);
            v
        };
        for n in 1..=ds.len().min(3) {
            let seed: Vec<u8> = ds[..n].iter().flat_map(|(_, _, d)| record(d)).collect();
            std::fs::write(dir.join("ike_responder").join(names[n - 1]), seed).unwrap();
        }
    }
}
