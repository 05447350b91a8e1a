//! ESP fixtures: SA pairs, packets, reusable packet buffers, and the burst
//! routines the benches and the report time.
//!
//! The shapes follow the gateway: tunnel mode, IPv4 inside and out, ESP in
//! UDP on port 4500 (RFC 3948) or plain ESP; the inner packet is an IPv4
//! UDP datagram of exactly the requested total length. Inbound SAs have
//! anti-replay disabled (`replay_window = 0`, RFC 4303 §3.4.3 lets the
//! receiver do that) so that one ESP packet can be decapsulated again and
//! again; the window itself is benchmarked on its own (`tables`).

use std::net::{IpAddr, Ipv4Addr};

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::crypto::{
    new_transform, Algorithm, Backend, Encryption, EspTransform, Integrity, SaKeys,
};
use dataplane::esp::{
    Direction, InboundOutcome, InboundSa, InboundSaTable, IpPrefix, Mode, OutboundSa, SaConfig,
    SaEvent, Selector, Spi, TunnelEndpoints, UdpEncap, ESP_HEADER_LEN,
};
use dataplane::wire::esp::pad_len;
use dataplane::wire::{ip::checksum, IpProtocol};

use crate::measure::Timer;
use crate::BURST;

/// Inner host A (sender).
pub const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
/// Inner host B (receiver).
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
/// Gateway A (encapsulates).
pub const GW_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Gateway B (decapsulates).
pub const GW_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The SPI of the benchmark SA.
pub const SPI: u32 = 0x1000_0001;

/// The benchmarked algorithms, with the names the reports print.
pub const ALGORITHMS: [(&str, Algorithm); 4] = [
    ("AES-128-GCM", Algorithm::AES_GCM_128),
    ("AES-256-GCM", Algorithm::AES_GCM_256),
    ("ChaCha20-Poly1305", Algorithm::CHACHA20_POLY1305),
    (
        "AES-128-CBC+HMAC-SHA-256",
        Algorithm {
            encryption: Encryption::AesCbc128,
            integrity: Integrity::HmacSha256_128,
        },
    ),
];

/// Inner IP packet sizes (total length of the inner IPv4 packet).
pub const SIZES: [usize; 3] = [64, 512, 1400];

/// Deterministic keys for `alg`.
pub fn keys_for(alg: Algorithm, seed: u8) -> SaKeys {
    let enc: Vec<u8> = (0..alg.encryption.key_len())
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    let auth: Vec<u8> = (0..alg.integrity.key_len())
        .map(|i| seed.wrapping_mul(17).wrapping_add(3 * i as u8))
        .collect();
    SaKeys::new(&enc, &auth)
}

/// An IPv4 UDP packet from [`HOST_A`] to [`HOST_B`] of exactly `total_len`
/// bytes (at least 28), with valid checksums.
pub fn inner_packet(total_len: usize) -> Vec<u8> {
    assert!((28..=65_535).contains(&total_len), "bad inner length");
    let udp_len = total_len - 20;
    let mut udp = vec![0u8; udp_len];
    udp[0..2].copy_from_slice(&5001u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum::transport_v4(HOST_A, HOST_B, IpProtocol::UDP, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&HOST_A.octets());
    p[16..20].copy_from_slice(&HOST_B.octets());
    let c = checksum::data(&p);
    p[10..12].copy_from_slice(&(!c).to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

/// Length of the ESP payload (inner packet, padding, pad length, next
/// header) that the engine encrypts for an inner packet of `inner_len`
/// bytes in tunnel mode: what the bare transform is given, so that both
/// encrypt the same number of bytes.
pub fn esp_payload_len(alg: Algorithm, inner_len: usize) -> usize {
    let block = alg.block_size().max(4) as u8;
    inner_len + usize::from(pad_len(inner_len, block)) + 2
}

/// An outbound SA at gateway A and the matching inbound SA at gateway B:
/// tunnel mode, IPv4 outer, UDP encapsulation if `udp`, no ESN, anti-replay
/// disabled on the inbound side.
pub fn sa_pair(
    alg: Algorithm,
    out_backend: Backend,
    in_backend: Backend,
    udp: bool,
) -> (OutboundSa, InboundSa) {
    let spi = Spi::new(SPI).expect("SPI is not reserved");
    let (a, b) = (IpAddr::V4(GW_A), IpAddr::V4(GW_B));
    let mut out_cfg = SaConfig::new(
        spi,
        Direction::Outbound,
        Mode::Tunnel,
        TunnelEndpoints {
            local: a,
            remote: b,
        },
    );
    out_cfg.udp_encap = udp.then(UdpEncap::nat_t);
    let mut in_cfg = SaConfig::new(
        spi,
        Direction::Inbound,
        Mode::Tunnel,
        TunnelEndpoints {
            local: b,
            remote: a,
        },
    );
    in_cfg.udp_encap = out_cfg.udp_encap;
    in_cfg.replay_window = 0;
    in_cfg.traffic_selectors = vec![Selector::new(
        IpPrefix::truncating(IpAddr::V4(HOST_A), 24),
        IpPrefix::truncating(IpAddr::V4(HOST_B), 24),
    )];
    let keys = keys_for(alg, 7);
    let out = OutboundSa::new(
        out_cfg,
        new_transform(out_backend, alg, &keys).expect("outbound transform"),
    )
    .expect("outbound SA");
    let inb = InboundSa::new(
        in_cfg,
        new_transform(in_backend, alg, &keys).expect("inbound transform"),
    )
    .expect("inbound SA");
    (out, inb)
}

/// A packet buffer laid out like an mbuf (128 bytes of headroom, 2 KiB in
/// all), allocated once and reloaded with a pristine packet for every use.
#[derive(Debug)]
pub struct Slot {
    buf: HeapBuf,
}

impl Slot {
    /// Total size of a slot, as a 2 KiB mbuf data room.
    pub const ROOM: usize = 2048;

    /// An empty slot.
    pub fn new() -> Slot {
        Slot {
            buf: HeapBuf::new(HeapBuf::HEADROOM, &[], Self::ROOM - HeapBuf::HEADROOM),
        }
    }

    /// Puts `pkt` back at the default headroom: O(1) pointer moves, then
    /// one `copy_from_slice` of the packet.
    #[inline]
    pub fn load(&mut self, pkt: &[u8]) {
        let b = &mut self.buf;
        let h = b.headroom();
        let len = b.len();
        b.trim(len).expect("trim to empty");
        if h > HeapBuf::HEADROOM {
            let d = h - HeapBuf::HEADROOM;
            b.prepend(d).expect("headroom");
            b.trim(d).expect("trim");
        } else if h < HeapBuf::HEADROOM {
            let d = HeapBuf::HEADROOM - h;
            b.append(d).expect("tailroom");
            b.adj(d).expect("adj");
        }
        b.append(pkt.len())
            .expect("packet fits a slot")
            .copy_from_slice(pkt);
    }

    /// The buffer.
    pub fn buf(&mut self) -> &mut HeapBuf {
        &mut self.buf
    }

    /// The packet bytes.
    pub fn data(&self) -> &[u8] {
        self.buf.data()
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}

fn ignore_event(_: SaEvent) {}

/// The full engine for one (algorithm, size, encapsulation) case: an
/// outbound SA and an inbound table holding its peer, the pristine inner
/// and ESP packets, and a burst of reusable slots.
pub struct EngineBench {
    out: OutboundSa,
    table: InboundSaTable,
    inner: Vec<u8>,
    esp: Vec<u8>,
    slots: Vec<Slot>,
}

impl std::fmt::Debug for EngineBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBench")
            .field("out", &self.out)
            .field("inner_len", &self.inner.len())
            .field("esp_len", &self.esp.len())
            .finish()
    }
}

impl EngineBench {
    /// Builds the SAs and the packets; checks one round trip.
    pub fn new(
        alg: Algorithm,
        inner_len: usize,
        udp: bool,
        out_backend: Backend,
        in_backend: Backend,
    ) -> EngineBench {
        let (mut out, inb) = sa_pair(alg, out_backend, in_backend, udp);
        let mut table = InboundSaTable::new();
        table.insert(inb);
        let inner = inner_packet(inner_len);
        let mut slot = Slot::new();
        slot.load(&inner);
        out.encapsulate(slot.buf(), &mut ignore_event)
            .expect("encapsulate");
        let esp = slot.data().to_vec();
        let hdr = 20 + if udp { 8 } else { 0 };
        assert_eq!(
            esp.len(),
            hdr + ESP_HEADER_LEN + alg.iv_len() + esp_payload_len(alg, inner_len) + alg.icv_len(),
            "ESP packet has the expected layout"
        );
        let mut bench = EngineBench {
            out,
            table,
            inner,
            esp,
            slots: (0..BURST).map(|_| Slot::new()).collect(),
        };
        bench.slots[0].load(&bench.esp);
        let r = bench
            .table
            .decapsulate(bench.slots[0].buf(), &mut |_, _| {})
            .expect("decapsulate");
        assert!(matches!(r, InboundOutcome::Decrypted(_)));
        assert_eq!(bench.slots[0].data(), &bench.inner[..], "round trip");
        bench
    }

    /// The inner packet.
    pub fn inner(&self) -> &[u8] {
        &self.inner
    }

    /// The ESP packet (as gateway B receives it).
    pub fn esp(&self) -> &[u8] {
        &self.esp
    }

    /// Loads a burst of inner packets (untimed), then encapsulates it.
    #[inline]
    pub fn encap_burst(&mut self, timer: &mut Timer) {
        for s in &mut self.slots {
            s.load(&self.inner);
        }
        timer.start();
        for s in &mut self.slots {
            let r = self.out.encapsulate(s.buf(), &mut ignore_event);
            assert!(r.is_ok(), "encapsulate failed: {r:?}");
        }
        timer.stop();
    }

    /// Packets per burst.
    pub fn burst_len(&self) -> usize {
        self.slots.len()
    }

    /// Loads a burst of ESP packets (untimed), then decapsulates it.
    #[inline]
    pub fn decap_burst(&mut self, timer: &mut Timer) {
        for s in &mut self.slots {
            s.load(&self.esp);
        }
        timer.start();
        for s in &mut self.slots {
            let r = self.table.decapsulate(s.buf(), &mut |_, _| {});
            assert!(
                matches!(r, Ok(InboundOutcome::Decrypted(_))),
                "decapsulate failed: {r:?}"
            );
        }
        timer.stop();
    }

    /// Times the reload alone (inner packets): what each encapsulation
    /// above is spared.
    #[inline]
    pub fn load_inner_burst(&mut self, timer: &mut Timer) {
        timer.start();
        for s in &mut self.slots {
            s.load(std::hint::black_box(&self.inner));
        }
        timer.stop();
    }

    /// Times the reload alone (ESP packets).
    #[inline]
    pub fn load_esp_burst(&mut self, timer: &mut Timer) {
        timer.start();
        for s in &mut self.slots {
            s.load(std::hint::black_box(&self.esp));
        }
        timer.stop();
    }
}

/// The ESP-shaped pieces one bare `seal`/`open` call takes.
#[derive(Debug, Clone)]
struct TransformBuf {
    payload: Vec<u8>,
    icv: Vec<u8>,
}

/// The bare transform of one backend on ESP-shaped buffers of the same
/// length as the engine's ESP payload.
pub struct BareBench {
    transform: Box<dyn EspTransform>,
    esp_header: [u8; ESP_HEADER_LEN],
    iv: Vec<u8>,
    /// A sealed payload and its ICV, for `open`.
    sealed: TransformBuf,
    bufs: Vec<TransformBuf>,
}

impl std::fmt::Debug for BareBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BareBench")
            .field("transform", &self.transform)
            .field("payload_len", &self.sealed.payload.len())
            .finish()
    }
}

impl BareBench {
    /// A transform of `backend` and a burst of `payload_len`-byte buffers.
    pub fn new(alg: Algorithm, backend: Backend, payload_len: usize) -> BareBench {
        let mut transform = new_transform(backend, alg, &keys_for(alg, 7)).expect("transform");
        let mut esp_header = [0u8; ESP_HEADER_LEN];
        esp_header[..4].copy_from_slice(&SPI.to_be_bytes());
        esp_header[4..].copy_from_slice(&1u32.to_be_bytes());
        let mut iv = vec![0u8; alg.iv_len()];
        transform.fill_iv(1, &mut iv);
        let plain = TransformBuf {
            payload: (0..payload_len).map(|i| i as u8).collect(),
            icv: vec![0u8; alg.icv_len()],
        };
        let mut sealed = plain.clone();
        transform
            .seal(&esp_header, None, &iv, &mut sealed.payload, &mut sealed.icv)
            .expect("seal");
        let mut check = sealed.clone();
        transform
            .open(&esp_header, None, &iv, &mut check.payload, &check.icv)
            .expect("open");
        assert_eq!(check.payload, plain.payload, "round trip");
        BareBench {
            transform,
            esp_header,
            iv,
            sealed,
            bufs: vec![plain; BURST],
        }
    }

    /// Seals a burst in place. Sealing ciphertext again costs the same as
    /// sealing plaintext, so nothing is reloaded.
    #[inline]
    pub fn seal_burst(&mut self, timer: &mut Timer) {
        timer.start();
        for b in &mut self.bufs {
            let r =
                self.transform
                    .seal(&self.esp_header, None, &self.iv, &mut b.payload, &mut b.icv);
            assert!(r.is_ok());
        }
        timer.stop();
    }

    /// Reloads a burst of sealed payloads (untimed), then opens it.
    #[inline]
    pub fn open_burst(&mut self, timer: &mut Timer) {
        for b in &mut self.bufs {
            b.payload.copy_from_slice(&self.sealed.payload);
            b.icv.copy_from_slice(&self.sealed.icv);
        }
        timer.start();
        for b in &mut self.bufs {
            let r = self
                .transform
                .open(&self.esp_header, None, &self.iv, &mut b.payload, &b.icv);
            assert!(r.is_ok());
        }
        timer.stop();
    }
}
