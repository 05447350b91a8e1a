//! Allocation bounds of the IKE decoder and the engine's entry path,
//! measured by a counting global allocator: what a hostile datagram makes
//! the control plane allocate, including what is freed again on error.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use ike::crypto::SecretBytes;
use ike::message::*;
use ike::{Config, Endpoint, RngSource, Timestamp};
use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Counts the bytes live and their peak, per thread (the test harness runs
/// tests on several threads at once).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counting
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note(-(l.size() as isize));
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new as isize - l.size() as isize);
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the most bytes it had allocated at
/// once on this thread (over what was live before).
fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, (PEAK.with(Cell::get) - base) as usize)
}

const HEADER: usize = 28;

/// Bytes a datagram may make the decoder allocate at once, per byte.
const PER_BYTE: usize = 32;

fn init_header() -> Header {
    Header {
        spi_i: 0x0102_0304_0506_0708,
        spi_r: 0,
        exchange: ExchangeType::IKE_SA_INIT,
        flags: Flags::new(true, false),
        message_id: 0,
    }
}

/// A 1,500-byte IKE_SA_INIT of Delete payloads, SPI Size 0 and 65,535
/// SPIs each (`chain` alone when `!init`).
fn delete_bomb(init: bool) -> Vec<u8> {
    let n = (1500 - HEADER) / 8;
    let mut chain = Vec::new();
    for i in 0..n {
        chain.extend_from_slice(&[if i + 1 == n { 0 } else { 42 }, 0, 0, 8, 1, 0, 0xff, 0xff]);
    }
    if !init {
        return chain;
    }
    let mut w = Writer::new();
    init_header().encode(PayloadType::DELETE, (HEADER + chain.len()) as u32, &mut w);
    w.bytes(&chain);
    w.buf
}

#[test]
fn ike_delete_bomb_decode_fails_fast_without_allocating() {
    let bomb = delete_bomb(true);
    assert_eq!(bomb.len(), 1500);
    // The counter sees what the decoder keeps: a genuine Delete of two SPIs.
    let ok = [3, 4, 0, 2, 0, 0, 1, 0, 0, 0, 1, 1];
    let mut chain = vec![0, 0, 0, 16];
    chain.extend_from_slice(&ok);
    let (r, bytes) = peak(|| decode_chain(PayloadType::DELETE, &chain, false));
    assert!(r.is_ok() && bytes >= 2 * 4, "{bytes}");
    let t = Instant::now();
    let (r, bytes) = peak(|| Message::decode(&bomb));
    assert_eq!(r, Err(DecodeError::PayloadNotAllowed(42)));
    assert_eq!(bytes, 0, "refused on the first payload header");
    assert!(t.elapsed() < Duration::from_millis(100));

    // The same payloads as an SK's inner chain: refused by the count rule.
    let chain = delete_bomb(false);
    let (r, bytes) = peak(|| decode_chain(PayloadType::DELETE, &chain, false));
    assert_eq!(r, Err(DecodeError::CountMismatch("Delete of IKE SPIs")));
    assert!(
        bytes <= PER_BYTE * chain.len(),
        "{bytes} bytes for {}",
        chain.len()
    );
}

/// Count fields that promise more than the bytes carry, one per decoder:
/// each refused with at most a constant times the input allocated.
#[test]
fn ike_count_bombs_allocate_in_proportion_to_their_bytes() {
    let bombs: [(PayloadType, &[u8]); 4] = [
        // 255 traffic selectors announced, none carried.
        (PayloadType::TSI, &[255, 0, 0, 0]),
        // A proposal announcing 255 transforms, none carried.
        (PayloadType::SA, &[0, 0, 0, 8, 1, 3, 0, 255]),
        // 65,535 ESP SPIs announced, one carried.
        (PayloadType::DELETE, &[3, 4, 0xff, 0xff, 1, 2, 3, 4]),
        // ESP SPIs of size 0.
        (PayloadType::DELETE, &[3, 0, 0xff, 0xff]),
    ];
    for (ty, body) in bombs {
        let n = 1400 / (4 + body.len());
        let mut chain = Vec::new();
        for i in 0..n {
            chain.extend_from_slice(&[if i + 1 == n { 0 } else { ty.0 }, 0]);
            chain.extend_from_slice(&(4 + body.len() as u16).to_be_bytes());
            chain.extend_from_slice(body);
        }
        let (r, bytes) = peak(|| decode_chain(ty, &chain, false));
        assert!(r.is_err(), "{ty:?}");
        assert!(
            bytes <= PER_BYTE * chain.len(),
            "{ty:?}: {bytes} for {}",
            chain.len()
        );
    }
}

struct Seeded(ChaCha20Rng);

impl RngSource for Seeded {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }
}

fn responder() -> Endpoint {
    let c = Config::new(
        "192.0.2.2:500".parse().unwrap(),
        "192.0.2.1:500".parse().unwrap(),
        Identification::Fqdn("gw-b.example".into()),
        Identification::Fqdn("gw-a.example".into()),
        SecretBytes::new(b"correct horse battery staple".to_vec()),
    )
    .with_proposals(&["aes128gcm16-prfsha256-ecp256"], &["aes128gcm16"])
    .unwrap()
    .with_traffic_selectors(&["10.2.0.0/24"], &["10.1.0.0/24"])
    .unwrap();
    Endpoint::new(c, Box::new(Seeded(ChaCha20Rng::seed_from_u64(1)))).unwrap()
}

#[test]
fn ike_delete_bomb_costs_the_responder_nothing() {
    let mut b = responder();
    let bomb = delete_bomb(true);
    let local = "192.0.2.2:500".parse().unwrap();
    let remote = "192.0.2.1:500".parse().unwrap();
    let ((), bytes) = peak(|| {
        for _ in 0..100 {
            b.handle_datagram(Timestamp(1_000), local, remote, &bomb);
        }
    });
    assert_eq!(bytes, 0);
    assert_eq!(b.stats().payload_not_allowed, 100);
    assert_eq!(b.ike_sa_count(), 0);
    assert!(b.poll_transmit().is_none());
}

proptest! {
    /// Arbitrary bytes behind a valid header, and as an inner chain: the
    /// decoder never holds more than a constant times the input at once.
    #[test]
    fn ike_decode_allocation_is_bounded_by_the_input(
        first in any::<u8>(),
        exchange in prop_oneof![Just(34u8), Just(37u8)],
        body in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let mut w = Writer::new();
        let h = Header { exchange: ExchangeType(exchange), ..init_header() };
        h.encode(PayloadType(first), (HEADER + body.len()) as u32, &mut w);
        w.bytes(&body);
        let d = w.buf;
        let (_, bytes) = peak(|| Message::decode(&d));
        prop_assert!(bytes <= PER_BYTE * d.len(), "{} for {}", bytes, d.len());
        let (_, bytes) = peak(|| decode_chain(PayloadType(first), &body, false));
        prop_assert!(bytes <= PER_BYTE * body.len().max(1), "{} for {}", bytes, body.len());
    }
}
