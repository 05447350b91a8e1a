//! The IKEv2 message codec: arbitrary bytes as a whole message (header
//! and clear payload chain) and, after the first byte (the first payload
//! type), as the inner chain of an SK payload.
//!
//! Oracles: no panic; decoding allocates at most a constant times the
//! input at any moment (a count field never sizes memory the bytes do not
//! back); whatever decodes encodes again (no length exceeds its field) to
//! bytes that decode to the same value and encode to the same bytes.

#![no_main]

use espresso_fuzz::alloc::{peak, Counting};
use ike::message::{decode_chain, encode_chain, Message, PayloadType, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes the decoder may hold at once per input byte, plus a little.
const PER_BYTE: usize = 32;
const SLACK: usize = 64;

fuzz_target!(|data: &[u8]| {
    let (m, bytes) = peak(|| Message::decode(data));
    assert!(
        bytes <= PER_BYTE * data.len() + SLACK,
        "{bytes} bytes for {}",
        data.len()
    );
    if let Ok(m) = m {
        match m.encode() {
            Ok(b) => {
                let again = Message::decode(&b).expect("an encoded message decodes");
                assert_eq!(again, m);
                assert_eq!(again.encode().as_deref(), Ok(&b[..]));
            }
            Err(e) => assert!(data.len() > MAX_MESSAGE_LEN, "{e}"),
        }
    }
    let Some((&first, chain)) = data.split_first() else {
        return;
    };
    let (ps, bytes) = peak(|| decode_chain(PayloadType(first), chain, false));
    assert!(
        bytes <= PER_BYTE * chain.len() + SLACK,
        "{bytes} bytes for {}",
        chain.len()
    );
    if let Ok(ps) = ps {
        let (f, b) = encode_chain(&ps).expect("a decoded chain encodes");
        assert_eq!(decode_chain(f, &b, false), Ok(ps));
    }
});
