//! Interoperability with an independent ESP implementation: scapy's
//! `scapy.layers.ipsec.SecurityAssociation` (Debian's `python3-scapy` 2.5,
//! run by `/usr/bin/python3`, with `python3-cryptography` underneath).
//!
//! For all twelve suites Espresso offers (AES-GCM-16 128/256 per RFC 4106,
//! ChaCha20-Poly1305 per RFC 7634, AES-CBC-128/256 and NULL each with
//! HMAC-SHA-256-128, -384-192 and -512-256), in tunnel mode with all four
//! inner/outer family mixes and in transport mode over IPv4 and IPv6, with
//! and without UDP encapsulation (RFC 3948) and with and without extended
//! sequence numbers (RFC 4303 §2.2.1), both directions are checked byte for
//! byte, on every crypto backend:
//!
//! 1. Espresso encrypts, scapy decrypts to exactly the original packet;
//! 2. scapy encrypts, Espresso decrypts to exactly the original packet.
//!
//! Each case carries packets of several sizes (a 0- and 1-octet UDP
//! payload, 333 and 1400 octets, and one packet with an IPv4 option or an
//! IPv6 Hop-by-Hop header, which transport mode keeps in front of ESP) at
//! sequence numbers that include 0xffffffff without ESN and, with ESN, a
//! low half of 0 and high halves that are not 0. scapy also checks
//! Espresso's outer headers (lengths, IPv4 header checksum, UDP checksum 0
//! over IPv4 and correct over IPv6, SPI, sequence number).
//!
//! Everything goes to one Python process: this test writes a request file
//! (keys, SPIs, addresses, flags, the originals and Espresso's ESP packets),
//! `tests/support/scapy_esp.py` decrypts Espresso's packets and encrypts its
//! own, and this test decapsulates scapy's and compares.
//!
//! No combination is left out, but scapy 2.5.0 cannot do five things on its
//! own, so the script helps it there (the file format and each workaround
//! are described in the script; [`Case::expected_tags`] says exactly which
//! packets must need which, and the test fails if any other packet does):
//!
//! - `esn-icv`: ESN with an HMAC. scapy leaves the ESN high half out of the
//!   ESP ICV (it only handles it for AH), so the script computes and checks
//!   that HMAC itself; scapy does the rest.
//! - `strip-udp`: decrypting UDP-encapsulated transport-mode IPv6, scapy
//!   leaves the UDP header in the result; the script removes it first.
//! - `udp4-length`: encrypting UDP-encapsulated IPv4, scapy writes a UDP
//!   length of 8; the script writes the real one.
//! - `udp6-ext-nh`: encrypting UDP-encapsulated transport-mode IPv6 with an
//!   extension header, scapy names ESP, not UDP, in that header.
//! - `udp6-checksum`: encrypting UDP-encapsulated IPv6, scapy writes a zero
//!   UDP checksum (RFC 8200 §8.1 forbids it); the script computes it.
//!
//! No comparison is normalised: transport-mode decryption in scapy
//! recomputes the IPv4 total length and header checksum and the IPv6
//! payload length, and the originals carry the correct values, so the
//! bytes must match as they are.
//!
//! Nothing is left out when it runs. Without `/usr/bin/python3`, scapy or
//! `cryptography` the test is skipped with the reason (`cargo test` on any
//! machine); under `ESPRESSO_TEST_FULL` (`make test`) it fails instead.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Command;
use std::time::Instant;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::crypto::{
    available_backends, new_transform, Algorithm, Backend, Encryption, Integrity, SaKeys,
};
use dataplane::esp::{
    Direction, InboundOutcome, InboundSa, InboundSaTable, IpPrefix, Mode, OutboundSa, SaConfig,
    SaEvent, Selector, Spi, TunnelEndpoints, UdpEncap,
};
use dataplane::wire::{ip::checksum, IpProtocol};

use testkit::{require, Need, PYTHON};

/// An algorithm suite and its names in scapy's `CRYPT_ALGOS` and
/// `AUTH_ALGOS` tables (scapy 2.5.0 `scapy/layers/ipsec.py`). scapy takes
/// the AEAD key with the 4-octet salt appended, as Espresso does
/// (RFC 4106 §8.1, RFC 7634 §4).
struct Suite {
    name: &'static str,
    alg: Algorithm,
    scapy_crypt: &'static str,
    /// "NULL" for the AEADs, which have no separate integrity transform.
    scapy_auth: &'static str,
}

const fn suite(
    name: &'static str,
    encryption: Encryption,
    integrity: Integrity,
    scapy_crypt: &'static str,
    scapy_auth: &'static str,
) -> Suite {
    Suite {
        name,
        alg: Algorithm {
            encryption,
            integrity,
        },
        scapy_crypt,
        scapy_auth,
    }
}

const SUITES: [Suite; 12] = {
    use Encryption as E;
    use Integrity as I;
    [
        suite("AES-GCM-128", E::AesGcm16_128, I::None, "AES-GCM", "NULL"),
        suite("AES-GCM-256", E::AesGcm16_256, I::None, "AES-GCM", "NULL"),
        suite(
            "ChaCha20-Poly1305",
            E::ChaCha20Poly1305,
            I::None,
            "CHACHA20-POLY1305",
            "NULL",
        ),
        suite(
            "AES-CBC-128/HMAC-SHA-256-128",
            E::AesCbc128,
            I::HmacSha256_128,
            "AES-CBC",
            "SHA2-256-128",
        ),
        suite(
            "AES-CBC-128/HMAC-SHA-384-192",
            E::AesCbc128,
            I::HmacSha384_192,
            "AES-CBC",
            "SHA2-384-192",
        ),
        suite(
            "AES-CBC-128/HMAC-SHA-512-256",
            E::AesCbc128,
            I::HmacSha512_256,
            "AES-CBC",
            "SHA2-512-256",
        ),
        suite(
            "AES-CBC-256/HMAC-SHA-256-128",
            E::AesCbc256,
            I::HmacSha256_128,
            "AES-CBC",
            "SHA2-256-128",
        ),
        suite(
            "AES-CBC-256/HMAC-SHA-384-192",
            E::AesCbc256,
            I::HmacSha384_192,
            "AES-CBC",
            "SHA2-384-192",
        ),
        suite(
            "AES-CBC-256/HMAC-SHA-512-256",
            E::AesCbc256,
            I::HmacSha512_256,
            "AES-CBC",
            "SHA2-512-256",
        ),
        suite(
            "NULL/HMAC-SHA-256-128",
            E::Null,
            I::HmacSha256_128,
            "NULL",
            "SHA2-256-128",
        ),
        suite(
            "NULL/HMAC-SHA-384-192",
            E::Null,
            I::HmacSha384_192,
            "NULL",
            "SHA2-384-192",
        ),
        suite(
            "NULL/HMAC-SHA-512-256",
            E::Null,
            I::HmacSha512_256,
            "NULL",
            "SHA2-512-256",
        ),
    ]
};

/// Modes and families: tunnel with every inner/outer mix, transport with
/// the packet's own family. Every one with and without UDP encapsulation
/// and ESN.
const LAYOUTS: [(Mode, bool, bool); 6] = [
    (Mode::Tunnel, true, true),
    (Mode::Tunnel, true, false),
    (Mode::Tunnel, false, true),
    (Mode::Tunnel, false, false),
    (Mode::Transport, true, true),
    (Mode::Transport, false, false),
];

/// Sequence numbers of the packets of a case, in order (each SA is
/// resumed just before each one, so they must increase). Without ESN: the
/// first, a middle one and the last two of the 32-bit space. With ESN: one
/// with a zero high half and four without, including a zero low half
/// (which scapy's API would otherwise read as "not given").
const SEQS: [u64; PACKETS] = [1, 2, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];
const ESN_SEQS: [u64; PACKETS] = [
    1,
    1 << 32,
    0x7_ffff_ffff,
    0x8_0000_0001,
    0xfedc_ba98_7654_3210,
];
/// Packets per case and direction.
const PACKETS: usize = 5;
/// The packet with an IPv4 option or IPv6 Hop-by-Hop header.
const OPTIONS_PACKET: usize = 4;

#[derive(Clone, Copy)]
struct Case {
    id: usize,
    suite: &'static Suite,
    mode: Mode,
    inner_v4: bool,
    outer_v4: bool,
    udp: bool,
    esn: bool,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
        write!(f, "case {} {}, ", self.id, self.suite.name)?;
        match self.mode {
            Mode::Tunnel => write!(f, "tunnel {} in {}", fam(self.inner_v4), fam(self.outer_v4))?,
            Mode::Transport => write!(f, "transport {}", fam(self.inner_v4))?,
        }
        write!(
            f,
            "{}{}",
            if self.udp { ", UDP-encapsulated" } else { "" },
            if self.esn { ", ESN" } else { "" }
        )
    }
}

impl Case {
    /// Every backend that runs the suite here: each one encrypts every
    /// packet and decrypts every packet of scapy's.
    fn backends(&self) -> Vec<Backend> {
        available_backends(self.suite.alg)
    }

    fn seqs(&self) -> [u64; PACKETS] {
        if self.esn {
            ESN_SEQS
        } else {
            SEQS
        }
    }

    /// Espresso's inner host, scapy's inner host, Espresso's and scapy's
    /// SA endpoints (the gateways in tunnel mode, the hosts in transport).
    fn addresses(&self) -> (IpAddr, IpAddr, IpAddr, IpAddr) {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (host_e, host_s) = if self.inner_v4 {
            (ip("10.1.0.10"), ip("10.2.0.20"))
        } else {
            (ip("fd01::10"), ip("fd02::20"))
        };
        let (gw_e, gw_s) = if self.outer_v4 {
            (ip("192.0.2.1"), ip("192.0.2.2"))
        } else {
            (ip("2001:db8::1"), ip("2001:db8::2"))
        };
        match self.mode {
            Mode::Tunnel => (host_e, host_s, gw_e, gw_s),
            Mode::Transport => (host_e, host_s, host_e, host_s),
        }
    }

    /// SPI of Espresso's outbound SA (scapy decrypts).
    fn spi_e2s(&self) -> Spi {
        Spi::new(0x1000_0000 + 2 * self.id as u32).unwrap()
    }

    /// SPI of Espresso's inbound SA (scapy encrypts).
    fn spi_s2e(&self) -> Spi {
        Spi::new(0x1000_0001 + 2 * self.id as u32).unwrap()
    }

    fn keys(&self, direction: Direction) -> SaKeys {
        let salt = match direction {
            Direction::Outbound => 0x0e55,
            Direction::Inbound => 0x5ca9,
        };
        let mut rng = SplitMix(((self.id as u64) << 16) | salt);
        let enc = rng.bytes(self.suite.alg.encryption.key_len());
        let auth = rng.bytes(self.suite.alg.integrity.key_len());
        SaKeys::new(&enc, &auth)
    }

    fn sa_config(&self, spi: Spi, direction: Direction) -> SaConfig {
        let (host_e, host_s, local, remote) = self.addresses();
        let mut c = SaConfig::new(spi, direction, self.mode, TunnelEndpoints { local, remote });
        c.esn = self.esn;
        c.udp_encap = self.udp.then(UdpEncap::nat_t);
        if direction == Direction::Inbound {
            c.traffic_selectors = vec![Selector::new(
                IpPrefix::host(host_s),
                IpPrefix::host(host_e),
            )];
        }
        c
    }

    fn outbound(&self, backend: Backend) -> OutboundSa {
        let t = new_transform(backend, self.suite.alg, &self.keys(Direction::Outbound))
            .unwrap_or_else(|e| panic!("{self} on {backend}: {e}"));
        OutboundSa::new(self.sa_config(self.spi_e2s(), Direction::Outbound), t)
            .unwrap_or_else(|e| panic!("{self}: {e}"))
    }

    fn inbound(&self, backend: Backend) -> InboundSa {
        let t = new_transform(backend, self.suite.alg, &self.keys(Direction::Inbound))
            .unwrap_or_else(|e| panic!("{self} on {backend}: {e}"));
        InboundSa::new(self.sa_config(self.spi_s2e(), Direction::Inbound), t)
            .unwrap_or_else(|e| panic!("{self}: {e}"))
    }

    /// The packets of one direction, `src` to `dst`.
    fn packets(&self, src: IpAddr, dst: IpAddr, fill: u8) -> [Vec<u8>; PACKETS] {
        let mut p = [0, 1, 333, 1400, 40].map(|len| ip_udp_packet(src, dst, len, fill, false));
        p[OPTIONS_PACKET] = ip_udp_packet(src, dst, 40, fill, true);
        p
    }

    /// The workarounds the script must apply, and no others (see the
    /// script's documentation): per direction, sorted.
    fn expected_tags(&self, to_scapy: bool, packet: usize) -> Vec<&'static str> {
        let mut tags = Vec::new();
        if !to_scapy
            && self.mode == Mode::Transport
            && self.udp
            && !self.outer_v4
            && packet == OPTIONS_PACKET
        {
            tags.push("udp6-ext-nh");
        }
        if self.esn && !self.suite.alg.is_aead() {
            tags.push("esn-icv");
        }
        if to_scapy && self.mode == Mode::Transport && self.udp && !self.outer_v4 {
            tags.push("strip-udp");
        }
        if !to_scapy && self.udp {
            tags.push(if self.outer_v4 {
                "udp4-length"
            } else {
                "udp6-checksum"
            });
        }
        tags.sort_unstable();
        tags
    }
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for suite in &SUITES {
        // aws-lc and RustCrypto run every suite; ipsec-mb most of them.
        let backends = available_backends(suite.alg);
        assert!(backends.len() >= 2, "{}: {backends:?}", suite.name);
        for (mode, inner_v4, outer_v4) in LAYOUTS {
            for udp in [false, true] {
                for esn in [false, true] {
                    cases.push(Case {
                        id: cases.len(),
                        suite,
                        mode,
                        inner_v4,
                        outer_v4,
                        udp,
                        esn,
                    });
                }
            }
        }
    }
    cases
}

/// A deterministic key generator (SplitMix64), so a failure reproduces.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A UDP packet with `payload_len` octets. With `options`, an IPv4 packet
/// carries a Router Alert option (RFC 2113) and an IPv6 packet a
/// Hop-by-Hop header with Router Alert (RFC 2711) and a PadN. IPv4 has
/// DSCP AF11 with ECT(0) and DF; IPv6 a traffic class with ECT(1) and a
/// flow label, so that every header field is checked too.
fn ip_udp_packet(src: IpAddr, dst: IpAddr, payload_len: usize, fill: u8, options: bool) -> Vec<u8> {
    let udp_len = 8 + payload_len;
    let mut udp = vec![0u8; udp_len];
    udp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&(4000 + payload_len as u16).to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = fill.wrapping_add(i as u8);
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = checksum::transport_v4(s, d, IpProtocol::UDP, &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let hl = if options { 24 } else { 20 };
            let mut p = vec![0u8; hl];
            p[0] = 0x40 | (hl / 4) as u8;
            p[1] = (10 << 2) | 0b10;
            p[2..4].copy_from_slice(&((hl + udp_len) as u16).to_be_bytes());
            p[4..6].copy_from_slice(&(0x4000 + payload_len as u16).to_be_bytes());
            p[6] = 0x40;
            p[8] = 63;
            p[9] = IpProtocol::UDP.0;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            if options {
                p[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
            }
            let c = checksum::data(&p);
            p[10..12].copy_from_slice(&(!c).to_be_bytes());
            p.extend_from_slice(&udp);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let c = checksum::transport_v6(s, d, IpProtocol::UDP, &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let hbh: &[u8] = if options {
                &[IpProtocol::UDP.0, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00]
            } else {
                &[]
            };
            let mut p = vec![0u8; 40];
            // Version 6, traffic class 0x29 (DSCP 10, ECT(1)), flow label.
            p[0..4].copy_from_slice(&0x6290_1234u32.to_be_bytes());
            p[4..6].copy_from_slice(&((hbh.len() + udp_len) as u16).to_be_bytes());
            p[6] = if options {
                IpProtocol::HOP_BY_HOP.0
            } else {
                IpProtocol::UDP.0
            };
            p[7] = 63;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            p.extend_from_slice(hbh);
            p.extend_from_slice(&udp);
            p
        }
        _ => unreachable!("mixed families"),
    }
}

/// One answer of the script.
struct Reply {
    result: Result<Vec<u8>, String>,
    tags: Vec<String>,
}

/// Parses the script's reply file: `kind case=.. n=.. (plain|esp|error)=.. tags=..`.
fn parse_replies(text: &str) -> HashMap<(String, usize, usize), Reply> {
    let mut replies = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split('\t');
        let kind = fields.next().unwrap().to_string();
        let kv: HashMap<&str, &str> = fields
            .map(|f| {
                f.split_once('=')
                    .unwrap_or_else(|| panic!("bad field in {line:?}"))
            })
            .collect();
        let num = |k: &str| -> usize {
            kv.get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {line:?}"))
        };
        let result = match (kv.get("plain").or(kv.get("esp")), kv.get("error")) {
            (Some(hex), None) => Ok(hex::decode(hex).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
            (None, Some(err)) => Err(err.to_string()),
            _ => panic!("neither a result nor an error in {line:?}"),
        };
        let tags = kv["tags"]
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        let key = (kind, num("case"), num("n"));
        assert!(
            replies
                .insert(key.clone(), Reply { result, tags })
                .is_none(),
            "two replies for {key:?}"
        );
    }
    replies
}

fn no_events() -> impl FnMut(SaEvent) {
    |e| panic!("unexpected event {e:?}")
}

/// One ESP packet from Espresso for scapy to decrypt.
struct ToScapy {
    /// Which of the case's packets (index into [`Case::packets`]).
    packet: usize,
    seq: u64,
    inner: Vec<u8>,
    esp: Vec<u8>,
    /// The backends that produced exactly these bytes.
    backends: Vec<Backend>,
}

/// The packets Espresso sent to scapy and the ones it expects from it.
struct Traffic {
    to_scapy: Vec<ToScapy>,
    /// (sequence number, original).
    from_scapy: Vec<(u64, Vec<u8>)>,
}

fn request_line(out: &mut String, case: &Case, traffic: &Traffic) {
    let e2s = case.keys(Direction::Outbound);
    let s2e = case.keys(Direction::Inbound);
    let (_, _, espresso, scapy) = case.addresses();
    writeln!(
        out,
        "case\tid={}\tcrypt={}\tauth={}\tenc_key_e2s={}\tauth_key_e2s={}\tenc_key_s2e={}\tauth_key_s2e={}\tmode={}\touter={}\tudp={}\tesn={}\tespresso={espresso}\tscapy={scapy}\tspi_e2s={}\tspi_s2e={}",
        case.id,
        case.suite.scapy_crypt,
        case.suite.scapy_auth,
        hex::encode(&*e2s.enc_key),
        hex::encode(&*e2s.auth_key),
        hex::encode(&*s2e.enc_key),
        hex::encode(&*s2e.auth_key),
        match case.mode {
            Mode::Tunnel => "tunnel",
            Mode::Transport => "transport",
        },
        if case.outer_v4 { 4 } else { 6 },
        u8::from(case.udp),
        u8::from(case.esn),
        case.spi_e2s().get(),
        case.spi_s2e().get(),
    )
    .unwrap();
    for (n, p) in traffic.to_scapy.iter().enumerate() {
        writeln!(
            out,
            "e2s\tcase={}\tn={n}\tseq={}\tinner={}\tesp={}",
            case.id,
            p.seq,
            hex::encode(&p.inner),
            hex::encode(&p.esp)
        )
        .unwrap();
    }
    for (n, (seq, inner)) in traffic.from_scapy.iter().enumerate() {
        writeln!(
            out,
            "s2e\tcase={}\tn={n}\tseq={seq}\tinner={}",
            case.id,
            hex::encode(inner)
        )
        .unwrap();
    }
}

/// Runs the script on `request`; returns its reply file's text.
fn run_scapy(request: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scapy-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let req = dir.join("request.tsv");
    let rep = dir.join("reply.tsv");
    std::fs::write(&req, request).unwrap();
    let out = Command::new(PYTHON)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/scapy_esp.py"
        ))
        .arg(&req)
        .arg(&rep)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON} (Debian's, with python3-scapy): {e}"));
    assert!(
        out.status.success(),
        "scapy_esp.py failed (is python3-scapy installed for {PYTHON}?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let reply = std::fs::read_to_string(&rep).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    reply
}

fn hex_diff(what: &str, want: &[u8], got: &[u8]) -> String {
    let first = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    format!(
        "{what}: lengths {} / {}, first difference at octet {first}\n    want {}\n    got  {}",
        want.len(),
        got.len(),
        hex::encode(want),
        hex::encode(got)
    )
}

#[test]
fn espresso_and_scapy_decrypt_each_others_esp_byte_for_byte() {
    require!(
        Need::Program(PYTHON),
        Need::PythonModule("scapy.layers.ipsec"),
        Need::PythonModule("cryptography")
    );
    let started = Instant::now();
    let cases = all_cases();
    assert_eq!(cases.len(), SUITES.len() * LAYOUTS.len() * 2 * 2);
    let mut ops = [0usize; 2];

    // Espresso encrypts, on every backend, to the same bytes.
    let mut traffic = Vec::with_capacity(cases.len());
    let mut request = String::new();
    for case in &cases {
        let (host_e, host_s, _, _) = case.addresses();
        let mut to_scapy = Vec::new();
        for (packet, (inner, seq)) in case
            .packets(host_e, host_s, case.id as u8)
            .into_iter()
            .zip(case.seqs())
            .enumerate()
        {
            // AEAD and NULL packets are the same on every backend (the IV
            // is the sequence number, or there is none) and go to scapy
            // once; AES-CBC IVs come from a per-transform random key, so
            // each backend's packet goes.
            let mut sent: Vec<(Vec<Backend>, Vec<u8>)> = Vec::new();
            for backend in case.backends() {
                let mut out = case.outbound(backend);
                out.resume_seq_after(seq - 1);
                let mut pkt = HeapBuf::from_slice(&inner);
                out.encapsulate(&mut pkt, &mut no_events())
                    .unwrap_or_else(|r| {
                        panic!("{case} on {backend}: encapsulate at seq {seq:#x}: {r:?}")
                    });
                assert_eq!(out.last_seq(), seq, "{case} on {backend}");
                ops[0] += 1;
                match sent.iter_mut().find(|(_, esp)| pkt.data() == &esp[..]) {
                    Some((backends, _)) => backends.push(backend),
                    None => sent.push((vec![backend], pkt.data().to_vec())),
                }
            }
            for (backends, esp) in sent {
                to_scapy.push(ToScapy {
                    packet,
                    seq,
                    inner: inner.clone(),
                    esp,
                    backends,
                });
            }
        }
        let from_scapy = case
            .seqs()
            .into_iter()
            .zip(case.packets(host_s, host_e, !(case.id as u8)))
            .collect();
        let t = Traffic {
            to_scapy,
            from_scapy,
        };
        request_line(&mut request, case, &t);
        traffic.push(t);
    }

    let scapy_started = Instant::now();
    let replies = parse_replies(&run_scapy(&request));
    let scapy_time = scapy_started.elapsed();
    let e2s_total: usize = traffic.iter().map(|t| t.to_scapy.len()).sum();
    let s2e_total = cases.len() * PACKETS;
    assert_eq!(
        replies.len(),
        e2s_total + s2e_total,
        "one reply per packet and direction"
    );

    let mut failures = Vec::new();
    let mut tag_counts: HashMap<String, usize> = HashMap::new();
    let mut checked = [0usize; 2];
    for (case, t) in cases.iter().zip(&traffic) {
        // 1. Espresso -> scapy.
        for (n, p) in t.to_scapy.iter().enumerate() {
            let ToScapy {
                packet,
                seq,
                inner,
                esp,
                backends,
            } = p;
            let what = format!(
                "{case} on {backends:?}: Espresso -> scapy, packet {packet} (seq {seq:#x})"
            );
            let r = &replies[&("e2s".to_string(), case.id, n)];
            check_tags(
                &what,
                case.expected_tags(true, *packet),
                &r.tags,
                &mut failures,
            );
            for tag in &r.tags {
                *tag_counts.entry(format!("e2s {tag}")).or_default() += 1;
            }
            match &r.result {
                Ok(plain) if plain == inner => checked[0] += 1,
                Ok(plain) => failures.push(hex_diff(&what, inner, plain)),
                Err(e) => failures.push(format!(
                    "{what}: scapy: {e}\n    ESP  {}\n    inner {}",
                    hex::encode(esp),
                    hex::encode(inner)
                )),
            }
        }

        // 2. scapy -> Espresso, on every backend.
        let spi = case.spi_s2e();
        let mut tables: Vec<(Backend, InboundSaTable)> = case
            .backends()
            .into_iter()
            .map(|b| {
                let mut t = InboundSaTable::new();
                t.insert(case.inbound(b));
                (b, t)
            })
            .collect();
        for (n, (seq, inner)) in t.from_scapy.iter().enumerate() {
            let what = format!("{case}: scapy -> Espresso, packet {n} (seq {seq:#x})");
            let r = &replies[&("s2e".to_string(), case.id, n)];
            check_tags(&what, case.expected_tags(false, n), &r.tags, &mut failures);
            for tag in &r.tags {
                *tag_counts.entry(format!("s2e {tag}")).or_default() += 1;
            }
            let esp = match &r.result {
                Ok(esp) => esp,
                Err(e) => {
                    failures.push(format!("{what}: scapy: {e}"));
                    continue;
                }
            };
            let mut all_ok = true;
            for (backend, table) in &mut tables {
                let what = format!("{what} on {backend}");
                // Espresso infers the ESN high half from its window: put
                // the window just below this packet.
                table.get_mut(spi).unwrap().resume_replay_after(seq - 1);
                let mut pkt = HeapBuf::from_slice(esp);
                ops[1] += 1;
                match table.decapsulate(&mut pkt, &mut |_, e| panic!("{what}: event {e:?}")) {
                    Ok(InboundOutcome::Decrypted(d)) if pkt.data() == &inner[..] => {
                        assert_eq!((d.spi, d.len), (spi, inner.len()), "{what}");
                        assert_eq!(table.get(spi).unwrap().replay_top(), *seq, "{what}");
                    }
                    Ok(InboundOutcome::Decrypted(_)) => {
                        all_ok = false;
                        failures.push(hex_diff(&what, inner, pkt.data()));
                    }
                    other => {
                        all_ok = false;
                        failures.push(format!(
                            "{what}: Espresso: {other:?}\n    ESP  {}",
                            hex::encode(esp)
                        ));
                    }
                }
            }
            if all_ok {
                checked[1] += 1;
            }
        }
    }

    let mut summary: Vec<_> = tag_counts.iter().collect();
    summary.sort();
    println!(
        "scapy interop: {} cases ({} suites x {} layouts x UDP x ESN), {} original packets per \
         direction; scapy decrypted {e2s_total} distinct Espresso packets (from {} \
         encapsulations over all backends) and encrypted {s2e_total}, which Espresso decrypted \
         {} times over all backends; {:.1?} in all, {scapy_time:.1?} of it in scapy; script \
         workarounds: {summary:?}",
        cases.len(),
        SUITES.len(),
        LAYOUTS.len(),
        cases.len() * PACKETS,
        ops[0],
        ops[1],
        started.elapsed(),
    );
    if !failures.is_empty() {
        let shown = failures.len().min(20);
        panic!(
            "{} failures over {} packets (first {shown}):\n{}",
            failures.len(),
            e2s_total + s2e_total,
            failures[..shown].join("\n")
        );
    }
    assert_eq!(checked, [e2s_total, s2e_total]);
    let backend_runs: usize = cases.iter().map(|c| c.backends().len() * PACKETS).sum();
    assert_eq!(ops, [backend_runs; 2]);
}

fn check_tags(what: &str, want: Vec<&str>, got: &[String], failures: &mut Vec<String>) {
    let mut got: Vec<&str> = got.iter().map(String::as_str).collect();
    got.sort_unstable();
    if got != want {
        failures.push(format!(
            "{what}: the script applied workarounds {got:?}, expected {want:?}"
        ));
    }
}
