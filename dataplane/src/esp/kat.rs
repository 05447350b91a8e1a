//! Known answers at the ESP packet level: the AES-GCM ESP packets of
//! draft-mcgrew-gcm-test-01 §4 and the ChaCha20-Poly1305 ESP example of
//! RFC 7634 Appendix A (bytes in `crypto::vectors`, with their sources),
//! run through the whole inbound path and, with the vector's IV, the whole
//! outbound path, byte for byte, on every backend.

use std::net::{IpAddr, Ipv4Addr};

use crate::buf::{HeapBuf, PacketBuf};
use crate::crypto::vectors::{AeadVector, CHACHA_RFC7634_ESP, GCM_ESP};
use crate::crypto::{
    available_backends, new_transform, Algorithm, CryptoError, Encryption, EspTransform, Integrity,
    SaKeys,
};
use crate::wire::ip::checksum;

use super::*;

fn h(s: &str) -> Vec<u8> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\\')
        .collect();
    hex::decode(s).unwrap()
}

/// Wraps a transform so that the explicit IV is the vector's, not the
/// counter: everything else (AAD, nonce, padding, ICV) is the engine's own.
struct FixedIv(Box<dyn EspTransform>, Vec<u8>);

impl EspTransform for FixedIv {
    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
    fn backend(&self) -> crate::crypto::Backend {
        self.0.backend()
    }
    fn fill_iv(&mut self, _seq: u64, iv: &mut [u8]) {
        iv.copy_from_slice(&self.1);
    }
    fn seal(
        &mut self,
        h: &[u8; 8],
        e: Option<u32>,
        iv: &[u8],
        p: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.0.seal(h, e, iv, p, icv)
    }
    fn open(
        &mut self,
        h: &[u8; 8],
        e: Option<u32>,
        iv: &[u8],
        p: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        self.0.open(h, e, iv, p, icv)
    }
}

const GW_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GW_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn ipv4_header(proto: u8, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&GW_A.octets());
    p[16..20].copy_from_slice(&GW_B.octets());
    let c = !checksum::data(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

fn run_vector(v: &AeadVector) {
    let key = h(v.key);
    let nonce = h(v.nonce);
    let aad = h(v.aad);
    let plaintext = h(v.plaintext);
    let mut esp_body = h(v.ciphertext);
    esp_body.extend(h(v.tag));
    let encryption = match (key.len(), v.name.contains("7634")) {
        (_, true) => Encryption::ChaCha20Poly1305,
        (16, _) => Encryption::AesGcm16_128,
        _ => Encryption::AesGcm16_256,
    };
    let alg = Algorithm {
        encryption,
        integrity: Integrity::None,
    };
    let mut enc_key = key.clone();
    enc_key.extend_from_slice(&nonce[..4]);
    let keys = SaKeys::new(&enc_key, &[]);
    let iv = nonce[4..].to_vec();
    let spi = u32::from_be_bytes(aad[..4].try_into().unwrap());
    let esn = aad.len() == 12;
    let seq = if esn {
        u64::from_be_bytes(aad[4..12].try_into().unwrap())
    } else {
        u64::from(u32::from_be_bytes(aad[4..8].try_into().unwrap()))
    };
    let nh = *plaintext.last().unwrap();
    let pad = usize::from(plaintext[plaintext.len() - 2]);
    let inner = &plaintext[..plaintext.len() - 2 - pad];
    // Tunnel mode when the payload is an IP packet (next header 4);
    // transport mode (the IP header rebuilt around the payload) otherwise.
    let mode = if nh == 4 {
        Mode::Tunnel
    } else {
        Mode::Transport
    };

    // The ESP packet on the wire: outer IPv4 header + SPI + seq + IV +
    // ciphertext + ICV.
    let mut wire = Vec::new();
    wire.extend_from_slice(&spi.to_be_bytes());
    wire.extend_from_slice(&(seq as u32).to_be_bytes());
    wire.extend_from_slice(&iv);
    wire.extend_from_slice(&esp_body);
    let mut packet = ipv4_header(50, wire.len());
    packet.extend_from_slice(&wire);
    let expected_inner = match mode {
        Mode::Tunnel => inner.to_vec(),
        Mode::Transport => {
            let mut p = ipv4_header(nh, inner.len());
            p.extend_from_slice(inner);
            p
        }
    };

    let any = Selector::new(IpPrefix::ANY_V4, IpPrefix::ANY_V4);
    let endpoints = |local, remote| TunnelEndpoints {
        local: IpAddr::V4(local),
        remote: IpAddr::V4(remote),
    };
    for backend in available_backends(alg) {
        // Inbound: the vector's packet decrypts to its plaintext.
        let mut cfg = SaConfig::new(
            Spi::new(spi).unwrap(),
            Direction::Inbound,
            mode,
            endpoints(GW_B, GW_A),
        );
        cfg.esn = esn;
        cfg.traffic_selectors = vec![any.clone()];
        let mut sa = InboundSa::new(cfg, new_transform(backend, alg, &keys).unwrap()).unwrap();
        sa.resume_replay_after(seq.saturating_sub(1));
        let mut table = InboundSaTable::new();
        table.insert(sa);
        let mut b = HeapBuf::from_slice(&packet);
        let r = table.decapsulate(&mut b, &mut |_, _| {});
        assert!(
            matches!(r, Ok(InboundOutcome::Decrypted(_))),
            "{} {backend:?}: {r:?}",
            v.name
        );
        assert_eq!(b.data(), &expected_inner[..], "{} {backend:?}", v.name);

        // Outbound: with the vector's IV and sequence number the engine
        // produces the vector's bytes (when its padding is the minimal
        // default, which the engine always uses).
        let minimal_pad = usize::from(crate::wire::esp::pad_len(inner.len(), 4)) == pad;
        if minimal_pad {
            let mut cfg = SaConfig::new(
                Spi::new(spi).unwrap(),
                Direction::Outbound,
                mode,
                endpoints(GW_A, GW_B),
            );
            cfg.esn = esn;
            let t = Box::new(FixedIv(
                new_transform(backend, alg, &keys).unwrap(),
                iv.clone(),
            ));
            let mut out = OutboundSa::new(cfg, t).unwrap();
            out.resume_seq_after(seq - 1);
            let mut b = HeapBuf::from_slice(&expected_inner);
            out.encapsulate(&mut b, &mut |_| {}).unwrap();
            // Compare from the ESP header on (our outer header's ident and
            // TTL are our own).
            assert_eq!(
                &b.data()[20..],
                &packet[20..],
                "{} {backend:?} outbound",
                v.name
            );
        }
    }
}

#[test]
fn draft_mcgrew_gcm_test_01_esp_packets() {
    let mut ran = 0;
    for v in &GCM_ESP {
        // SPIs 0..=255 are reserved (RFC 4303 §2.1) and refused by the
        // engine; those vectors run at the transform level only
        // (`crypto::vectors`).
        if u32::from_str_radix(&v.aad[..8], 16).unwrap() < 256 {
            continue;
        }
        run_vector(v);
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} vectors ran");
}

#[test]
fn rfc7634_appendix_a_esp_example() {
    run_vector(&CHACHA_RFC7634_ESP);
}
