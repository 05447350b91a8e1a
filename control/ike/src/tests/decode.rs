//! The engine's entry and decode path under hostile datagrams: what is
//! refused before any work, what is answered, what is counted.

use super::*;
use crate::crypto::SkCipher;

/// `n` Delete bombs: Delete of IKE with SPI Size 0 and 65,535 SPIs, 8
/// bytes on the wire each.
fn delete_bombs(n: usize) -> Vec<Payload> {
    let bomb = Payload::Unknown {
        ty: PayloadType::DELETE,
        critical: false,
        body: vec![1, 0, 0xff, 0xff],
    };
    vec![bomb; n]
}

fn encode(header: Header, payloads: Vec<Payload>) -> Vec<u8> {
    Message { header, payloads }.encode().unwrap()
}

fn init_header(spi_i: u64) -> Header {
    Header {
        spi_i,
        spi_r: 0,
        exchange: ExchangeType::IKE_SA_INIT,
        flags: Flags::new(true, false),
        message_id: 0,
    }
}

fn responder() -> (Endpoint, Transmit) {
    let mut a = Endpoint::new(config(true, &[IKE[0]], &[ESP[0]]), rng(7)).unwrap();
    a.initiate(Timestamp(1_000));
    let init = a.poll_transmit().unwrap();
    let b = Endpoint::new(config(false, &[IKE[0]], &[ESP[0]]), rng(8)).unwrap();
    (b, init)
}

/// A 1,500-byte IKE_SA_INIT packed with 184 Delete payloads (SPI Size 0,
/// 65,535 SPIs each) is refused on its first payload header: no IKE SA,
/// no answer, counted as a payload not allowed in the clear.
#[test]
fn ike_delete_bomb_in_ike_sa_init_is_refused_and_counted() {
    let (mut b, init) = responder();
    let bomb = encode(init_header(0x1234), delete_bombs((1500 - HEADER_LEN) / 8));
    assert_eq!(bomb.len(), 1500);
    b.handle_datagram(Timestamp(1_000), init.remote, init.local, &bomb);
    let s = b.stats();
    assert_eq!((s.payload_not_allowed, s.malformed), (1, 1), "{s:?}");
    assert!(b.poll_transmit().is_none());
    // Behind the real request's payloads, too.
    let mut m = Message::decode(&init.payload).unwrap();
    m.payloads.extend(delete_bombs(100));
    b.handle_datagram(
        Timestamp(1_000),
        init.remote,
        init.local,
        &encode(m.header, m.payloads),
    );
    assert_eq!(b.stats().payload_not_allowed, 2);
    assert!(b.poll_transmit().is_none());
    // The genuine request still works.
    b.handle_datagram(Timestamp(1_000), init.remote, init.local, &init.payload);
    assert!(b.poll_transmit().is_some());
    assert_eq!(b.stats().malformed, 2);
}

/// For an established IKE SA, payloads in the clear before SK are refused
/// without the integrity check running; inside a genuine SK, a Delete bomb
/// is refused by §3.11's count rule and answered INVALID_SYNTAX.
#[test]
fn ike_delete_bombs_for_a_known_sa_are_refused_and_counted() {
    let (mut p, auth) = established_with_auth();
    let s0 = p.b.stats().clone();
    let hdr = Message::decode(&auth.payload).unwrap().header;
    let info = Header {
        exchange: ExchangeType::INFORMATIONAL,
        message_id: 2,
        ..hdr
    };
    // In the clear, before an SK payload with a bogus ICV.
    let mut ps = delete_bombs(150);
    ps.push(Payload::Encrypted(Encrypted {
        first_payload: PayloadType::NONE,
        data: vec![0; 40],
    }));
    let bomb = encode(info, ps);
    feed_b(&mut p, &auth, &bomb);
    let s = p.b.stats();
    assert_eq!(s.payload_not_allowed, s0.payload_not_allowed + 1);
    assert_eq!(
        s.integrity_failures, s0.integrity_failures,
        "refused before the ICV"
    );
    assert!(p.b.poll_transmit().is_none());

    // Inside SK, sealed with A's keys: authentic, but §3.11 refuses it.
    let id = p.a.established_ike_sas()[0];
    let sec = p.a.ike_sa_secrets(id).unwrap();
    let mut tx = SkCipher::new(&sec.suite, &sec.sk_ei, &sec.sk_ai);
    let (first, inner) = encode_chain(&delete_bombs(150)).unwrap();
    let sealed = tx.seal(&info, first, &inner, &mut *rng(5)).unwrap();
    feed_b(&mut p, &auth, &sealed);
    let s = p.b.stats();
    assert_eq!(s.count_mismatch, s0.count_mismatch + 1, "{s:?}");
    assert_eq!(s.integrity_failures, s0.integrity_failures);
    assert!(p.b.poll_transmit().is_some(), "answered INVALID_SYNTAX");
    p.run_for(1_000);
    assert_children_match(&p);
}

/// §2.5, §1.5: a request of major version 3 is answered, outside any IKE
/// SA, with INVALID_MAJOR_VERSION: SPIs, exchange and Message ID copied,
/// Response set, version 2.0, no data. Responses and IKEv1 are not.
#[test]
fn ike_higher_major_version_is_answered() {
    let (mut b, init) = responder();
    let mut v3 = init.payload.clone();
    v3[17] = 0x30;
    v3[20..24].copy_from_slice(&7u32.to_be_bytes());
    b.handle_datagram(Timestamp(1_000), init.remote, init.local, &v3);
    assert_eq!(b.stats().invalid_major_version, 1);
    let t = b.poll_transmit().expect("an answer");
    assert_eq!((t.local, t.remote), (init.remote, init.local));
    let m = Message::decode(&t.payload).unwrap();
    let (req, _, _) = Header::peek(&v3).unwrap();
    assert_eq!(t.payload[17], 0x20);
    assert_eq!(
        m.header,
        Header {
            flags: Flags::new(false, true),
            ..req
        }
    );
    assert_eq!(m.header.message_id, 7);
    assert_eq!(
        m.payloads,
        vec![Payload::Notify(Notify::new(
            NotifyType::INVALID_MAJOR_VERSION,
            vec![]
        ))]
    );
    assert_eq!(b.ike_sa_count(), 0);
    // A response of version 3, and an IKEv1 message: counted, not answered.
    let mut r3 = v3.clone();
    r3[19] |= Flags::RESPONSE;
    b.handle_datagram(Timestamp(1_000), init.remote, init.local, &r3);
    let mut v1 = init.payload.clone();
    v1[17] = 0x10;
    b.handle_datagram(Timestamp(1_000), init.remote, init.local, &v1);
    assert_eq!(b.stats().invalid_major_version, 3);
    assert!(b.poll_transmit().is_none());
}

/// §3.1: the initiator's SPI is never zero.
#[test]
fn ike_zero_initiator_spi_is_refused() {
    let (mut b, init) = responder();
    let mut z = init.payload.clone();
    z[..8].fill(0);
    b.handle_datagram(Timestamp(1_000), init.remote, init.local, &z);
    let s = b.stats();
    assert_eq!((s.zero_spi_i, s.malformed), (1, 1));
    assert!(b.poll_transmit().is_none());
    assert_eq!(b.ike_sa_count(), 0);
}

/// 300 traffic selectors do not fit TSi's one-byte count: IKE_AUTH is not
/// sent (rather than sent with a count of 44 and the rest misframed) and
/// the failure is counted.
#[test]
fn ike_too_many_traffic_selectors_is_an_encode_error_not_a_corrupt_message() {
    let nets: Vec<String> = (0..300)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 256, i % 256))
        .collect();
    let nets: Vec<&str> = nets.iter().map(String::as_str).collect();
    let a = config(true, &[IKE[0]], &[ESP[0]])
        .with_traffic_selectors(&nets, &["10.2.0.0/24"])
        .unwrap();
    let mut p = Pair::new(95, a, config(false, &[IKE[0]], &[ESP[0]]));
    p.a.initiate(p.now);
    p.run_for(2_000);
    assert!(p.a.stats().encode_errors >= 1, "{:?}", p.a.stats());
    assert!(p.sent.iter().all(|(from_a, t)| !*from_a
        || Message::decode(&t.payload).unwrap().header.exchange == ExchangeType::IKE_SA_INIT));
    assert_eq!(p.b.stats().malformed, 0);
}

/// An IKE_AUTH request on an established IKE SA (genuine, inside SK) is
/// refused INVALID_SYNTAX and counted: the state holds nothing to
/// authenticate against any more.
#[test]
fn ike_auth_requests_on_an_established_sa_are_refused_and_counted() {
    let (mut p, auth) = established_with_auth();
    let hdr = Message::decode(&auth.payload).unwrap().header;
    let again = Header {
        message_id: 2,
        ..hdr
    };
    let id = p.a.established_ike_sas()[0];
    let sec = p.a.ike_sa_secrets(id).unwrap();
    let mut tx = SkCipher::new(&sec.suite, &sec.sk_ei, &sec.sk_ai);
    let ps = [Payload::IdI(p.a.config().local_id.clone())];
    let (first, inner) = encode_chain(&ps).unwrap();
    let sealed = tx.seal(&again, first, &inner, &mut *rng(6)).unwrap();
    let children = p.b.child_sas();
    feed_b(&mut p, &auth, &sealed);
    assert!(p.b.poll_transmit().is_some(), "answered INVALID_SYNTAX");
    let s = p.b.stats();
    assert_eq!(s.protocol_errors.get(ProtocolError::UnexpectedExchange), 1);
    assert_eq!(s.auth_failures, 0);
    assert_eq!(p.b.child_sas(), children);
    p.run_for(1_000);
    assert_children_match(&p);
}
