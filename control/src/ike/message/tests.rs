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
        (any::<u8>(), 0u8..9, 0usize..4).prop_flat_map(|(p, size, n)| {
            vec(vec(any::<u8>(), size as usize), n).prop_map(move |spis| {
                Payload::Delete(Delete {
                    protocol: ProtocolId(p),
                    spi_size: size,
                    spis,
                })
            })
        }),
        bytes(32).prop_map(Payload::VendorId),
        vec(ts(), 0..4).prop_map(Payload::TsI),
        vec(ts(), 0..4).prop_map(Payload::TsR),
        bytes(32).prop_map(Payload::Cp),
        (prop_oneof![1u8..33, 49u8..=255], bytes(32)).prop_map(|(t, body)| Payload::Unknown {
            ty: PayloadType(t),
            critical: false,
            body
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        vec(payload(), 0..6),
        proptest::option::of((prop_oneof![Just(0u8), 33u8..=48], bytes(64))),
    )
        .prop_map(|(spi_i, spi_r, ex, fl, message_id, mut payloads, sk)| {
            if let Some((first, data)) = sk {
                payloads.push(Payload::Encrypted(Encrypted {
                    first_payload: PayloadType(first),
                    data,
                }));
            }
            Message {
                header: Header {
                    spi_i,
                    spi_r,
                    exchange: ExchangeType(ex),
                    flags: Flags(fl),
                    message_id,
                },
                payloads,
            }
        })
}

proptest! {
    #[test]
    fn ike_message_round_trips(m in message()) {
        let bytes = m.encode();
        prop_assert_eq!(Message::decode(&bytes), Ok(m));
    }

    #[test]
    fn ike_decode_arbitrary_bytes_never_panics(b in bytes(400)) {
        let _ = Message::decode(&b);
        let _ = decode_chain(PayloadType::SA, &b, true);
        let _ = decode_chain(PayloadType::NOTIFY, &b, false);
    }

    #[test]
    fn ike_every_truncation_is_rejected(m in message(), cut in 1usize..64) {
        let bytes = m.encode();
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
    let b = sample().encode();
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
    let mut b = sample().encode();
    b.push(0);
    assert_eq!(Message::decode(&b), Err(DecodeError::BadLength));
    let len = b.len() as u32;
    b[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::decode(&b), Err(DecodeError::TrailingBytes));

    let mut b = sample().encode();
    b[31] = 2; // payload length below the generic header
    assert_eq!(Message::decode(&b), Err(DecodeError::BadLength));
    let mut b = sample().encode();
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
    let mut b = m.encode();
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
    let mut b = sample().encode();
    b[29] = 0x80; // critical bit on the Nonce, which we understand
    assert_eq!(Message::decode(&b).unwrap(), sample());
}

#[test]
fn ike_bad_major_version() {
    let mut b = sample().encode();
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
    assert!(Message::decode(&m.encode()).is_err());
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
