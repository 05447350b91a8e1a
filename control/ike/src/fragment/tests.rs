//! Reassembly rules (RFC 7383 §2.6) and bounds, without crypto.

use proptest::prelude::*;

use super::*;

const NOW: Timestamp = Timestamp(1_000);
const EX: u8 = 35;

fn cfg() -> Fragmentation {
    Fragmentation::default()
}

/// Feeds fragment `number` of `total` carrying `content`.
fn feed(
    slot: &mut Option<Reassembly>,
    id: u32,
    number: u16,
    total: u16,
    content: &[u8],
    cfg: &Fragmentation,
) -> Result<Accepted, FragmentRefusal> {
    let next = if number == 1 {
        PayloadType::IDI
    } else {
        PayloadType::NONE
    };
    accept(
        slot,
        id,
        EX,
        number,
        total,
        next,
        content.to_vec(),
        NOW,
        cfg,
    )
}

#[test]
fn ike_fragments_reassemble_in_any_order() {
    let c = cfg();
    let mut slot = None;
    assert_eq!(feed(&mut slot, 1, 3, 3, b"ghi", &c).unwrap().complete, None);
    assert_eq!(feed(&mut slot, 1, 1, 3, b"abc", &c).unwrap().complete, None);
    assert_eq!(slot.as_ref().unwrap().held(), 2);
    assert_eq!(slot.as_ref().unwrap().bytes(), 6);
    let a = feed(&mut slot, 1, 2, 3, b"def", &c).unwrap();
    assert_eq!(a.complete, Some((PayloadType::IDI, b"abcdefghi".to_vec())));
    assert!(slot.is_none(), "a completed message leaves nothing behind");
}

#[test]
fn ike_fragment_fields_are_checked() {
    let c = Fragmentation {
        max_fragments: 4,
        ..cfg()
    };
    let mut slot = None;
    assert_eq!(
        feed(&mut slot, 1, 0, 3, b"x", &c),
        Err(FragmentRefusal::BadNumber)
    );
    assert_eq!(
        feed(&mut slot, 1, 4, 3, b"x", &c),
        Err(FragmentRefusal::BadNumber)
    );
    assert_eq!(
        feed(&mut slot, 1, 0, 0, b"x", &c),
        Err(FragmentRefusal::BadNumber)
    );
    assert_eq!(
        feed(&mut slot, 1, 1, 5, b"x", &c),
        Err(FragmentRefusal::TooMany)
    );
    assert!(slot.is_none(), "refused fields allocate nothing");
}

#[test]
fn ike_fragment_duplicate_and_lower_total_are_dropped_higher_total_restarts() {
    let c = cfg();
    let mut slot = None;
    feed(&mut slot, 7, 1, 3, b"a", &c).unwrap();
    assert_eq!(
        feed(&mut slot, 7, 1, 3, b"a", &c),
        Err(FragmentRefusal::Duplicate)
    );
    assert_eq!(
        feed(&mut slot, 7, 2, 2, b"b", &c),
        Err(FragmentRefusal::TotalChanged)
    );
    assert_eq!(slot.as_ref().unwrap().total(), 3, "kept");
    let a = feed(&mut slot, 7, 2, 4, b"b", &c).unwrap();
    assert!(a.restarted);
    let r = slot.as_ref().unwrap();
    assert_eq!((r.total(), r.held(), r.bytes()), (4, 1, 1), "started over");
    // Another message ID replaces it too (the window is 1).
    let a = feed(&mut slot, 8, 1, 2, b"z", &c).unwrap();
    assert!(!a.restarted);
    assert_eq!(slot.as_ref().unwrap().message_id, 8);
}

#[test]
fn ike_fragment_exchange_mismatch_is_refused() {
    let c = cfg();
    let mut slot = None;
    feed(&mut slot, 1, 1, 2, b"a", &c).unwrap();
    let other = accept(
        &mut slot,
        1,
        EX + 1,
        2,
        2,
        PayloadType::NONE,
        vec![1],
        NOW,
        &c,
    );
    assert_eq!(other, Err(FragmentRefusal::ExchangeMismatch));
    assert_eq!(slot.as_ref().unwrap().held(), 1);
}

#[test]
fn ike_fragment_too_large_drops_the_whole_message() {
    let c = Fragmentation {
        max_message_len: 10,
        ..cfg()
    };
    let mut slot = None;
    feed(&mut slot, 1, 1, 3, &[0; 6], &c).unwrap();
    assert_eq!(
        feed(&mut slot, 1, 2, 3, &[0; 5], &c),
        Err(FragmentRefusal::TooLarge)
    );
    assert!(slot.is_none());
}

#[test]
fn ike_fragment_room_follows_rfc7383_2_5_1() {
    // IPv4 on port 500: 1280 - 20 - 8; IPv6 on 4500: 1280 - 40 - 8 - 4.
    assert_eq!(message_room(1280, false, false), 1252);
    assert_eq!(message_room(1280, true, true), 1228);
    assert_eq!(message_room(20, true, true), 0);
    assert_eq!(split(b"abcdefg", 3), vec![&b"abc"[..], b"def", b"g"]);
    assert_eq!(split(b"", 3), vec![&b""[..]]);
}

proptest! {
    /// Any sequence of a message's fragments, permuted and duplicated,
    /// reassembles to that message or (while some are missing) to nothing,
    /// and what is held never exceeds the message.
    #[test]
    fn ike_fragments_any_permutation_and_duplication_reassembles_the_same(
        msg in proptest::collection::vec(any::<u8>(), 1..600),
        room in 3usize..200,
        order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..80),
    ) {
        let c = cfg();
        let pieces = split(&msg, room);
        let total = pieces.len() as u16;
        let mut slot = None;
        let mut done = None;
        for idx in &order {
            let i = idx.index(pieces.len());
            match feed(&mut slot, 5, i as u16 + 1, total, pieces[i], &c) {
                Ok(a) => {
                    if let Some((_, m)) = a.complete {
                        // The engine moves on from this message ID: its
                        // later copies never reach the reassembly.
                        done = Some(m);
                        prop_assert!(slot.is_none());
                        break;
                    }
                }
                Err(e) => prop_assert_eq!(e, FragmentRefusal::Duplicate),
            }
            if let Some(r) = &slot {
                prop_assert!(r.bytes() <= msg.len());
                prop_assert!(r.held() <= total);
            }
        }
        match done {
            Some(m) => prop_assert_eq!(m, msg),
            None => {
                let seen: std::collections::HashSet<usize> =
                    order.iter().map(|i| i.index(pieces.len())).collect();
                // Incomplete: some piece never came.
                prop_assert!(seen.len() < pieces.len());
            }
        }
    }
}
