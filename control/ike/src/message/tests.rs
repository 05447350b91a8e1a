use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        (0u16..0x8000, any::<u16>()).prop_map(|(t, v)| Attribute::Tv(AttributeType(t), v)),
        (0u16..0x8000, bytes(8)).prop_map(|(t, v)| Attribute::Tlv(AttributeType(t), v)),
    ]
}

fn transform() -> impl Strategy<Value = Transform> {
    (any::<u8>(), any::<u16>(), vec(attribute(), 0..3)).prop_map(|(t, id, attributes)| Transform {
        ty: TransformType(t),
        id,
        attributes,
    })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u8>(), any::<u8>(), bytes(9), vec(transform(), 0..6)).prop_map(
        |(number, p, spi, transforms)| Proposal {
            number,
            protocol: ProtocolId(p),
            spi,
            transforms,
        },
    )
}

fn ident() -> impl Strategy<Value = Identification> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Identification::Ipv4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| Identification::Ipv6(Ipv6Addr::from(a))),
        "[a-z0-9.-]{0,30}".prop_map(Identification::Fqdn),
        bytes(20).prop_map(Identification::KeyId),
        (
            prop_oneof![Just(3u8), Just(9), Just(10), 12u8..=255],
            bytes(20)
        )
            .prop_map(|(t, data)| Identification::Other {
                ty: IdType(t),
                data
            }),
    ]
}

fn ts() -> impl Strategy<Value = TrafficSelector> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>()
        )
            .prop_map(|(p, sp, ep, a, b)| TrafficSelector {
                ip_protocol: p,
                start_port: sp,
                end_port: ep,
                start_addr: IpAddr::from(a),
                end_addr: IpAddr::from(b),
            }),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>()
        )
            .prop_map(|(p, sp, ep, a, b)| TrafficSelector {
                ip_protocol: p,
                start_port: sp,
                end_port: ep,
                start_addr: IpAddr::from(a),
                end_addr: IpAddr::from(b),
            }),
    ]
}

fn cfg_attribute() -> impl Strategy<Value = CfgAttribute> {
    let v4 = || proptest::option::of(any::<[u8; 4]>().prop_map(Ipv4Addr::from));
    let v6 = || any::<[u8; 16]>().prop_map(Ipv6Addr::from);
    let pfx = move || proptest::option::of((v6(), 0u8..=128));
    prop_oneof![
        v4().prop_map(CfgAttribute::Ip4Address),
        v4().prop_map(CfgAttribute::Ip4Netmask),
        v4().prop_map(CfgAttribute::Ip4Dns),
        proptest::option::of((any::<[u8; 4]>(), any::<[u8; 4]>()))
            .prop_map(|s| CfgAttribute::Ip4Subnet(s.map(|(a, m)| (a.into(), m.into())))),
        pfx().prop_map(CfgAttribute::Ip6Address),
        proptest::option::of(v6()).prop_map(CfgAttribute::Ip6Dns),
        pfx().prop_map(CfgAttribute::Ip6Subnet),
        (
            prop_oneof![Just(4u16), Just(6), Just(7), Just(14), 16u16..0x8000],
            bytes(16)
        )
            .prop_map(|(t, value)| CfgAttribute::Unknown {
                ty: CfgAttributeType(t),
                value
            }),
    ]
}

fn cp() -> impl Strategy<Value = CpPayload> {
    (any::<u8>(), vec(cfg_attribute(), 0..6)).prop_map(|(t, attributes)| CpPayload {
        cfg_type: CfgType(t),
        attributes,
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(proposal(), 1..4).prop_map(|proposals| Payload::Sa(SaPayload { proposals })),
        (any::<u16>(), bytes(64)).prop_map(|(g, data)| Payload::Ke(KePayload {
            group: DhGroupId(g),
            data
        })),
        ident().prop_map(Payload::IdI),
        ident().prop_map(Payload::IdR),
        (any::<u8>(), bytes(64)).prop_map(|(m, data)| Payload::Auth(AuthPayload {
            method: AuthMethod(m),
            data
        })),
        bytes(64).prop_map(Payload::Nonce),
        (any::<u8>(), bytes(8), any::<u16>(), bytes(32)).prop_map(|(p, spi, t, data)| {
            Payload::Notify(Notify {
                protocol: ProtocolId(p),
                spi,
                ty: NotifyType(t),
                data,
            })
        }),
        Just(Payload::Delete(Delete::ike())),
        (
            prop_oneof![Just(ProtocolId::ESP), Just(ProtocolId::AH)],
            vec(any::<[u8; 4]>(), 0..4)
        )
            .prop_map(|(protocol, spis)| {
                Payload::Delete(Delete {
                    protocol,
                    spi_size: 4,
                    spis: spis.into_iter().map(Vec::from).collect(),
                })
            }),
        bytes(32).prop_map(Payload::VendorId),
        vec(ts(), 0..4).prop_map(Payload::TsI),
        vec(ts(), 0..4).prop_map(Payload::TsR),
        cp().prop_map(Payload::Cp),
        (any::<u8>(), bytes(64)).prop_map(|(e, data)| Payload::Cert(CertPayload {
            encoding: CertEncoding(e),
            data
        })),
        (any::<u8>(), bytes(60)).prop_map(|(e, data)| Payload::CertReq(CertPayload {
            encoding: CertEncoding(e),
            data
        })),
        (prop_oneof![1u8..33, 49u8..53, 54u8..=255], bytes(32)).prop_map(|(t, body)| {
            Payload::Unknown {
                ty: PayloadType(t),
                critical: false,
                body,
            }
        }),
    ]
}

/// Payloads IKE_SA_INIT carries in the clear (§1.2).
fn clear_payload() -> impl Strategy<Value = Payload> {
    payload().prop_filter("allowed in IKE_SA_INIT", |p| {
        allowed_in_clear(ExchangeType::IKE_SA_INIT, p.payload_type())
    })
}

/// Types this implementation does not process: not 33..=48 (RFC 7296)
/// nor 53 (SKF, RFC 7383), which like SK must be last.
fn unknown_payload() -> impl Strategy<Value = Payload> {
    (prop_oneof![1u8..33, 49u8..53, 54u8..=255], bytes(32)).prop_map(|(t, body)| Payload::Unknown {
        ty: PayloadType(t),
        critical: false,
        body,
    })
}

/// Valid messages: IKE_SA_INIT with its clear payloads, or another
/// exchange with at most unknown payloads before SK.
fn message() -> impl Strategy<Value = Message> {
    let init = vec(clear_payload(), 0..6).prop_map(|ps| (ExchangeType::IKE_SA_INIT, ps));
    let protected = (
        any::<u8>().prop_filter("not IKE_SA_INIT", |e| *e != 34),
        vec(unknown_payload(), 0..2),
        proptest::option::of((prop_oneof![Just(0u8), 33u8..=48], bytes(64))),
    )
        .prop_map(|(ex, mut ps, sk)| {
            if let Some((first, data)) = sk {
                ps.push(Payload::Encrypted(Encrypted {
                    first_payload: PayloadType(first),
                    data,
                }));
            }
            (ExchangeType(ex), ps)
        });
    (
        1u64..,
        any::<u64>(),
        any::<u8>(),
        any::<u32>(),
        prop_oneof![init, protected],
    )
        .prop_map(
            |(spi_i, spi_r, fl, message_id, (exchange, payloads))| Message {
                header: Header {
                    spi_i,
                    spi_r,
                    exchange,
                    flags: Flags(fl),
                    message_id,
                },
                payloads,
            },
        )
}

/// Heap bytes a decoded message holds, counted from the capacities of
/// every vector and string in it.
#[allow(clippy::ptr_arg)] // the capacities are the point
fn heap(ps: &Vec<Payload>) -> usize {
    use std::mem::size_of;
    fn bytes(v: &Vec<u8>) -> usize {
        v.capacity()
    }
    let mut n = ps.capacity() * size_of::<Payload>();
    for p in ps {
        n += match p {
            Payload::Sa(sa) => {
                sa.proposals.capacity() * size_of::<Proposal>()
                    + sa.proposals
                        .iter()
                        .map(|p| {
                            bytes(&p.spi)
                                + p.transforms.capacity() * size_of::<Transform>()
                                + p.transforms
                                    .iter()
                                    .map(|t| {
                                        t.attributes.capacity() * size_of::<Attribute>()
                                            + t.attributes
                                                .iter()
                                                .map(|a| match a {
                                                    Attribute::Tlv(_, v) => bytes(v),
                                                    Attribute::Tv(..) => 0,
                                                })
                                                .sum::<usize>()
                                    })
                                    .sum::<usize>()
                        })
                        .sum::<usize>()
            }
            Payload::Ke(k) => bytes(&k.data),
            Payload::IdI(i) | Payload::IdR(i) => match i {
                Identification::Fqdn(s) => s.capacity(),
                Identification::KeyId(d) | Identification::Other { data: d, .. } => bytes(d),
                _ => 0,
            },
            Payload::Auth(a) => bytes(&a.data),
            Payload::Nonce(b) | Payload::VendorId(b) => bytes(b),
            Payload::Cp(c) => {
                c.attributes.capacity() * size_of::<CfgAttribute>()
                    + c.attributes
                        .iter()
                        .map(|a| match a {
                            CfgAttribute::Unknown { value, .. } => bytes(value),
                            _ => 0,
                        })
                        .sum::<usize>()
            }
            Payload::Cert(c) | Payload::CertReq(c) => bytes(&c.data),
            Payload::Notify(n) => bytes(&n.spi) + bytes(&n.data),
            Payload::Delete(d) => {
                d.spis.capacity() * size_of::<Vec<u8>>() + d.spis.iter().map(bytes).sum::<usize>()
            }
            Payload::TsI(t) | Payload::TsR(t) => t.capacity() * size_of::<TrafficSelector>(),
            Payload::Encrypted(e) => bytes(&e.data),
            Payload::Unknown { body, .. } => bytes(body),
        };
    }
    n
}

/// What a decoded message may hold per byte of input: the largest
/// in-memory payload (a Notify) for the smallest one on the wire (an empty
/// 4-byte payload). Doubling growth of the inner vectors stays under this.
const HEAP_PER_BYTE: usize = 32;

proptest! {
    #[test]
    fn ike_message_round_trips(m in message()) {
        let bytes = m.encode().unwrap();
        let back = Message::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode().unwrap(), bytes);
    }

    /// Every payload type, as the inner chain of SK carries them.
    #[test]
    fn ike_inner_chain_round_trips(ps in vec(payload(), 0..8)) {
        let (first, bytes) = encode_chain(&ps).unwrap();
        prop_assert_eq!(decode_chain(first, &bytes, false), Ok(ps));
    }

    #[test]
    fn ike_decode_arbitrary_bytes_never_panics(b in bytes(400)) {
        let _ = Message::decode(&b);
        let _ = decode_chain(PayloadType::SA, &b, true);
        let _ = decode_chain(PayloadType::NOTIFY, &b, false);
    }

    /// Arbitrary bytes behind a valid header, decoded as an IKE_SA_INIT or
    /// as any inner payload chain, never hold more than a constant times
    /// their length.
    #[test]
    fn ike_decoded_heap_is_bounded_by_input(
        first in any::<u8>(),
        init in any::<bool>(),
        b in bytes(1500),
    ) {
        let mut d = Message {
            header: Header {
                spi_i: 1,
                spi_r: 0,
                exchange: if init { ExchangeType::IKE_SA_INIT } else { ExchangeType::INFORMATIONAL },
                flags: Flags::new(true, false),
                message_id: 0,
            },
            payloads: vec![],
        }
        .encode()
        .unwrap();
        d[16] = first;
        d.extend_from_slice(&b);
        let len = d.len() as u32;
        d[24..28].copy_from_slice(&len.to_be_bytes());
        if let Ok(m) = Message::decode(&d) {
            prop_assert!(heap(&m.payloads) <= HEAP_PER_BYTE * d.len());
        }
        if let Ok(ps) = decode_chain(PayloadType(first), &b, false) {
            prop_assert!(heap(&ps) <= HEAP_PER_BYTE * b.len(), "{} for {}", heap(&ps), b.len());
        }
    }

    /// Valid messages with their bytes mutated: still bounded, never a panic.
    #[test]
    fn ike_mutated_messages_stay_bounded(
        ps in vec(payload(), 1..8),
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let (first, mut b) = encode_chain(&ps).unwrap();
        for (at, x) in flips {
            let n = b.len();
            b[at % n] ^= x;
        }
        if let Ok(ps) = decode_chain(first, &b, false) {
            prop_assert!(heap(&ps) <= HEAP_PER_BYTE * b.len(), "{} for {}", heap(&ps), b.len());
        }
    }

    #[test]
    fn ike_every_truncation_is_rejected(m in message(), cut in 1usize..64) {
        let bytes = m.encode().unwrap();
        let cut = cut.min(bytes.len());
        prop_assert!(Message::decode(&bytes[..bytes.len() - cut]).is_err());
    }
}

fn sample() -> Message {
    Message {
        header: Header {
            spi_i: 0x0102030405060708,
            spi_r: 0,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags::new(true, false),
            message_id: 0,
        },
        payloads: vec![
            Payload::Nonce(vec![7; 32]),
            Payload::Notify(Notify::new(NotifyType::COOKIE, vec![1, 2, 3])),
        ],
    }
}

#[test]
fn ike_header_layout_matches_rfc7296_3_1() {
    let b = sample().encode().unwrap();
    assert_eq!(&b[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(b[16], 40, "next payload = Nonce");
    assert_eq!(b[17], 0x20, "version 2.0");
    assert_eq!(b[18], 34, "IKE_SA_INIT");
    assert_eq!(b[19], 0x08, "initiator flag");
    assert_eq!(
        u32::from_be_bytes(b[24..28].try_into().unwrap()) as usize,
        b.len()
    );
    // Nonce generic header: next = Notify, length 36.
    assert_eq!(&b[28..32], &[41, 0, 0, 36]);
}

#[test]
fn ike_trailing_bytes_and_bad_lengths_are_rejected() {
    let mut b = sample().encode().unwrap();
    b.push(0);
    assert_eq!(Message::decode(&b), Err(DecodeError::BadLength));
    let len = b.len() as u32;
    b[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::decode(&b), Err(DecodeError::TrailingBytes));

    let mut b = sample().encode().unwrap();
    b[31] = 2; // payload length below the generic header
    assert_eq!(Message::decode(&b), Err(DecodeError::BadLength));
    let mut b = sample().encode().unwrap();
    b[31] = 200; // payload length beyond the message
    assert_eq!(Message::decode(&b), Err(DecodeError::Truncated));
}

#[test]
fn ike_unknown_payloads_skip_unless_critical() {
    let mut m = sample();
    m.payloads.push(Payload::Unknown {
        ty: PayloadType(200),
        critical: false,
        body: vec![1, 2],
    });
    let mut b = m.encode().unwrap();
    assert_eq!(Message::decode(&b).unwrap(), m);
    // set the critical bit on the unknown payload (the third one)
    let off = 28 + 36 + (4 + 4 + 3);
    assert_eq!(b[off + 1], 0);
    b[off + 1] = 0x80;
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::UnsupportedCriticalPayload(200))
    );
    assert_eq!(
        DecodeError::UnsupportedCriticalPayload(200).notify(),
        NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD
    );
}

#[test]
fn ike_known_critical_bit_is_ignored() {
    let mut b = sample().encode().unwrap();
    b[29] = 0x80; // critical bit on the Nonce, which we understand
    assert_eq!(Message::decode(&b).unwrap(), sample());
}

#[test]
fn ike_bad_major_version() {
    let mut b = sample().encode().unwrap();
    b[17] = 0x10;
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::InvalidMajorVersion(1))
    );
}

#[test]
fn ike_sk_must_be_last() {
    let mut m = sample();
    m.payloads.insert(
        0,
        Payload::Encrypted(Encrypted {
            first_payload: PayloadType::NONE,
            data: vec![0; 20],
        }),
    );
    // encode puts the inner first type in the SK's next field, so the chain
    // ends there and the remaining bytes are trailing.
    assert!(Message::decode(&m.encode().unwrap()).is_err());
}

#[test]
fn ike_unknown_notify_types_round_trip() {
    let n = NotifyType(40000);
    assert_eq!(format!("{n:?}"), "NotifyType(40000)");
    assert_eq!(format!("{:?}", NotifyType::COOKIE), "COOKIE");
    assert!(NotifyType::NO_PROPOSAL_CHOSEN.is_error());
    assert!(!NotifyType::REKEY_SA.is_error());
}

#[test]
fn ike_port_4500_classification() {
    assert_eq!(classify_port_4500(&[0xff]), Port4500::Keepalive);
    let ike = add_non_esp_marker(&[9; 28]);
    assert_eq!(classify_port_4500(&ike), Port4500::Ike(&[9; 28]));
    assert_eq!(classify_port_4500(&[1; 20]), Port4500::Esp(&[1; 20]));
    assert_eq!(classify_port_4500(&[1, 2]), Port4500::Invalid);
}

/// An IKE_SA_INIT request header followed by `chain` (whose first payload
/// is of type `first`), with Length set.
fn init_with_chain(first: PayloadType, chain: &[u8]) -> Vec<u8> {
    let mut d = sample().encode().unwrap();
    d.truncate(HEADER_LEN);
    d[16] = first.0;
    d.extend_from_slice(chain);
    let len = d.len() as u32;
    d[24..28].copy_from_slice(&len.to_be_bytes());
    d
}

/// `n` payloads of type `ty` chained, each with `body`.
fn repeated(ty: PayloadType, body: &[u8], n: usize) -> Vec<u8> {
    let mut c = Vec::new();
    for i in 0..n {
        c.push(if i + 1 == n { 0 } else { ty.0 });
        c.push(0);
        c.extend_from_slice(&(4 + body.len() as u16).to_be_bytes());
        c.extend_from_slice(body);
    }
    c
}

/// Delete of IKE with SPI Size 0 and 65,535 SPIs: eight bytes on the wire
/// each, 65,535 empty vectors in memory each before the fix.
const DELETE_BOMB: [u8; 4] = [1, 0, 0xff, 0xff];

/// The Delete bomb as an attacker sends it: a 1,500-byte IKE_SA_INIT
/// packed with Delete payloads. Delete is never in the clear (§1.2,
/// §3.14), so the message is refused on the first payload header, before
/// any body is decoded.
#[test]
fn ike_delete_bomb_in_ike_sa_init_is_refused() {
    let n = (1500 - HEADER_LEN) / 8;
    let d = init_with_chain(
        PayloadType::DELETE,
        &repeated(PayloadType::DELETE, &DELETE_BOMB, n),
    );
    assert_eq!(d.len(), HEADER_LEN + n * 8);
    assert_eq!(Message::decode(&d), Err(DecodeError::PayloadNotAllowed(42)));
    // Behind an allowed payload, too.
    let mut chain = repeated(PayloadType::NONCE, &[7; 16], 1);
    chain[0] = PayloadType::DELETE.0;
    chain.extend(repeated(PayloadType::DELETE, &DELETE_BOMB, n - 3));
    let d = init_with_chain(PayloadType::NONCE, &chain);
    assert_eq!(Message::decode(&d), Err(DecodeError::PayloadNotAllowed(42)));
}

/// Inside SK the same bomb meets §3.11's rules: Count × SPI Size must be
/// the bytes left, and IKE deletes carry no SPIs.
#[test]
fn ike_delete_counts_must_match_the_bytes() {
    let chain = repeated(PayloadType::DELETE, &DELETE_BOMB, 180);
    assert_eq!(
        decode_chain(PayloadType::DELETE, &chain, false),
        Err(DecodeError::CountMismatch("Delete of IKE SPIs"))
    );
    let refused = [
        // ESP with SPI Size 0 and 65,535 SPIs.
        (&[3, 0, 0xff, 0xff][..], DecodeError::BadSpiSize("Delete")),
        // ESP with 8-byte SPIs, IKE with 8-byte SPIs, AH with 255-byte SPIs.
        (
            &[3, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1][..],
            DecodeError::BadSpiSize("Delete"),
        ),
        (
            &[1, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1][..],
            DecodeError::BadSpiSize("Delete"),
        ),
        (&[2, 255, 0, 1][..], DecodeError::BadSpiSize("Delete")),
        // 65,535 ESP SPIs announced, two carried.
        (
            &[3, 4, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 1, 1][..],
            DecodeError::CountMismatch("Delete SPIs"),
        ),
        // One announced, two carried.
        (
            &[3, 4, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1][..],
            DecodeError::CountMismatch("Delete SPIs"),
        ),
        // Part of an SPI.
        (
            &[3, 4, 0, 1, 0, 0, 1][..],
            DecodeError::CountMismatch("Delete SPIs"),
        ),
        // Protocol 0 and an unassigned one.
        (&[0, 0, 0, 0][..], DecodeError::Invalid("Delete protocol")),
        (&[9, 4, 0, 0][..], DecodeError::Invalid("Delete protocol")),
    ];
    for (body, e) in refused {
        let chain = repeated(PayloadType::DELETE, body, 1);
        assert_eq!(
            decode_chain(PayloadType::DELETE, &chain, false),
            Err(e),
            "{body:?}"
        );
    }
    let ok = repeated(
        PayloadType::DELETE,
        &[3, 4, 0, 2, 0, 0, 1, 0, 0, 0, 1, 1],
        1,
    );
    assert_eq!(
        decode_chain(PayloadType::DELETE, &ok, false),
        Ok(vec![Payload::Delete(Delete::esp(&[0x100, 0x101]))])
    );
    let ike = repeated(PayloadType::DELETE, &[1, 0, 0, 0], 1);
    assert_eq!(
        decode_chain(PayloadType::DELETE, &ike, false),
        Ok(vec![Payload::Delete(Delete::ike())])
    );
}

/// A TS payload announcing 255 selectors and carrying one: refused before
/// room for 255 is reserved.
#[test]
fn ike_traffic_selector_count_must_fit_the_bytes() {
    let one = [7, 0, 0, 16, 0, 0, 0xff, 0xff, 10, 0, 0, 0, 10, 0, 0, 255];
    let mut body = vec![255, 0, 0, 0];
    body.extend_from_slice(&one);
    let chain = repeated(PayloadType::TSI, &body, 1);
    assert_eq!(
        decode_chain(PayloadType::TSI, &chain, false),
        Err(DecodeError::CountMismatch("traffic selectors"))
    );
    body[0] = 1;
    let chain = repeated(PayloadType::TSR, &body, 1);
    assert!(
        matches!(&decode_chain(PayloadType::TSR, &chain, false).unwrap()[..], [Payload::TsR(t)] if t.len() == 1)
    );
    // Fewer announced than carried: trailing bytes.
    body.extend_from_slice(&one);
    let chain = repeated(PayloadType::TSR, &body, 1);
    assert_eq!(
        decode_chain(PayloadType::TSR, &chain, false),
        Err(DecodeError::TrailingBytes)
    );
}

/// A proposal announcing 255 transforms in an 8-byte body.
#[test]
fn ike_transform_count_must_fit_the_bytes() {
    let body = [0, 0, 0, 8, 1, 1, 0, 255];
    let chain = repeated(PayloadType::SA, &body, 1);
    let d = init_with_chain(PayloadType::SA, &chain);
    assert_eq!(
        Message::decode(&d),
        Err(DecodeError::CountMismatch("transforms"))
    );
    // As many as fit: the count still has to match the transforms found.
    let body = [0, 0, 0, 16, 1, 1, 0, 1, 0, 0, 0, 8, 1, 0, 0, 12];
    let chain = repeated(PayloadType::SA, &body, 1);
    assert!(Message::decode(&init_with_chain(PayloadType::SA, &chain)).is_ok());
    let body = [0, 0, 0, 16, 1, 1, 0, 0, 0, 0, 0, 8, 1, 0, 0, 12];
    let chain = repeated(PayloadType::SA, &body, 1);
    assert_eq!(
        Message::decode(&init_with_chain(PayloadType::SA, &chain)),
        Err(DecodeError::TrailingBytes)
    );
}

/// Everything that only travels inside SK is refused in IKE_SA_INIT, and
/// only SK (and unknown types) travel in the clear in later exchanges.
#[test]
fn ike_payloads_only_allowed_inside_sk_are_refused_in_the_clear() {
    for ty in [35u8, 36, 37, 39, 42, 44, 45, 46, 47, 48] {
        let d = init_with_chain(PayloadType(ty), &repeated(PayloadType(ty), &[0; 8], 1));
        assert_eq!(
            Message::decode(&d),
            Err(DecodeError::PayloadNotAllowed(ty)),
            "{ty}"
        );
    }
    for ty in [33u8, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 47, 48] {
        let mut d = init_with_chain(PayloadType(ty), &repeated(PayloadType(ty), &[0; 8], 1));
        d[18] = ExchangeType::INFORMATIONAL.0;
        assert_eq!(
            Message::decode(&d),
            Err(DecodeError::PayloadNotAllowed(ty)),
            "{ty}"
        );
    }
    // Unknown types pass (§2.5) and SK does in a protected exchange.
    let mut d = init_with_chain(PayloadType(200), &repeated(PayloadType(200), &[0; 8], 1));
    assert!(Message::decode(&d).is_ok());
    d[18] = ExchangeType::CREATE_CHILD_SA.0;
    assert!(Message::decode(&d).is_ok());
}

#[test]
fn ike_zero_initiator_spi_is_refused() {
    let mut b = sample().encode().unwrap();
    b[..8].fill(0);
    assert_eq!(Message::decode(&b), Err(DecodeError::ZeroInitiatorSpi));
    // A higher major version is reported as such, and the header can still
    // be read to answer it.
    b[17] = 0x30;
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::InvalidMajorVersion(3))
    );
    let (h, next, v) = Header::peek(&b).unwrap();
    assert_eq!(
        (h.exchange, next, v),
        (ExchangeType::IKE_SA_INIT, PayloadType::NONCE, 0x30)
    );
}

/// Lengths and counts that do not fit their fields fail to encode instead
/// of wrapping into a different message.
#[test]
fn ike_oversized_fields_are_encode_errors() {
    let ts = TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: 0xffff,
        start_addr: IpAddr::from([10, 0, 0, 0]),
        end_addr: IpAddr::from([10, 0, 0, 255]),
    };
    let m = |p: Payload| Message {
        header: sample().header,
        payloads: vec![p],
    };
    assert!(m(Payload::TsI(vec![ts; 255])).encode().is_ok());
    assert_eq!(
        m(Payload::TsI(vec![ts; 256])).encode().unwrap_err().field,
        "number of TSs"
    );
    assert_eq!(
        encode_chain(&[Payload::TsR(vec![ts; 300])])
            .unwrap_err()
            .field,
        "number of TSs"
    );
    let big = m(Payload::Nonce(vec![0; 65_536])).encode().unwrap_err();
    assert_eq!((big.field, big.len), ("payload length", 65_540));
    assert_eq!(
        encode_chain(&[Payload::VendorId(vec![0; 65_531])]).map(|(_, b)| b.len()),
        Ok(65_535)
    );
    let fits = MAX_MESSAGE_LEN - HEADER_LEN - 4;
    assert_eq!(
        m(Payload::VendorId(vec![0; fits]))
            .encode()
            .map(|b| b.len()),
        Ok(MAX_MESSAGE_LEN)
    );
    assert!(m(Payload::VendorId(vec![0; fits + 1])).encode().is_err());
    let many = vec![
        Payload::Nonce(vec![0; 60_000]),
        Payload::Nonce(vec![0; 60_000]),
    ];
    let e = Message {
        header: sample().header,
        payloads: many,
    }
    .encode()
    .unwrap_err();
    assert_eq!(e.field, "message length");
    let notify = Notify {
        protocol: ProtocolId::ESP,
        spi: vec![0; 256],
        ty: NotifyType::REKEY_SA,
        data: vec![],
    };
    assert!(m(Payload::Notify(notify)).encode().is_err());
    let del = Delete {
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![vec![0; 4]; 65_536],
    };
    assert_eq!(
        m(Payload::Delete(del)).encode().unwrap_err().field,
        "number of SPIs"
    );
    let del = Delete {
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![vec![0; 3]],
    };
    assert!(m(Payload::Delete(del)).encode().is_err());
    let attr = Transform {
        ty: TransformType::ENCR,
        id: 12,
        attributes: vec![Attribute::Tlv(AttributeType(1), vec![0; 65_536])],
    };
    let sa = |transforms: Vec<Transform>, spi: Vec<u8>| {
        Payload::Sa(SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::ESP,
                spi,
                transforms,
            }],
        })
    };
    assert_eq!(
        m(sa(vec![attr], vec![])).encode().unwrap_err().field,
        "attribute length"
    );
    let t = Transform::new(TransformType::ENCR, 12);
    assert_eq!(
        m(sa(vec![t.clone(); 256], vec![]))
            .encode()
            .unwrap_err()
            .field,
        "number of transforms"
    );
    assert_eq!(
        m(sa(vec![t], vec![0; 256])).encode().unwrap_err().field,
        "proposal SPI size"
    );
}
