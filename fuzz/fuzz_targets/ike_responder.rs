//! An IKE responder `Endpoint` (ike::sim: seeded RNG, fixed
//! configuration) fed arbitrary datagrams at a fixed clock.
//!
//! Format: records of one control byte, a two-byte big-endian length and
//! that many bytes (the last record takes what is left). Control byte:
//! bit 0, the datagram arrived on port 4500 (whole UDP payload, classified
//! as the driver does: non-ESP marker, keepalive or ESP); bits 1-2, which
//! of four source addresses it came from (0: the configured peer); bit 3,
//! first advance the clock by (bits 4-7) seconds and run the timers. The
//! seeds (fuzz/seeds/ike_responder) are the initiator's real IKE_SA_INIT,
//! IKE_AUTH and INFORMATIONAL of `ike::sim::initiator_datagrams`,
//! which this responder accepts byte for byte.
//!
//! Oracles: no panic; per datagram at most two datagrams queued in answer,
//! a bounded peak allocation and a bounded lasting growth; the IKE SAs
//! held stay under the cookie threshold plus the few a valid peer makes.

#![no_main]

use std::net::SocketAddr;

use espresso_fuzz::alloc::{live, peak, Counting};
use espresso_fuzz::Input;
use ike::message::{classify_port_4500, Port4500};
use ike::sim::{responder, INITIATOR, RESPONDER, START};
use ike::Timestamp;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

/// What one datagram may make the engine allocate at once: a constant for
/// the key exchange and key derivation, plus a multiple of its length.
const PEAK_FIXED: usize = 256 * 1024;
/// What one datagram may leave allocated: an IKE SA's state (keys, both
/// IKE_SA_INIT messages, the cached response) plus a multiple of its length.
const KEPT_FIXED: usize = 16 * 1024;
const PER_BYTE: usize = 32;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let mut b = responder();
    let threshold = b.config().cookie_threshold;
    let mut now = START;
    let peer: SocketAddr = INITIATOR.parse().unwrap();
    let others: [SocketAddr; 3] = [
        "198.51.100.7:500".parse().unwrap(),
        "198.51.100.8:4500".parse().unwrap(),
        "[2001:db8::1]:500".parse().unwrap(),
    ];
    let mut records = 0usize;
    while !inp.is_empty() {
        let ctl = inp.u8();
        let len = usize::from(inp.u16());
        let bytes = inp.bytes(len);
        records += 1;
        if ctl & 8 != 0 {
            now = Timestamp(now.0 + u64::from(ctl >> 4) * 1_000);
            b.handle_timeout(now);
            while b.poll_transmit().is_some() {}
        }
        let remote = match (ctl >> 1) & 3 {
            0 => peer,
            i => others[usize::from(i) - 1],
        };
        let mut local: SocketAddr = RESPONDER.parse().unwrap();
        let before = live();
        let ((), bytes_peak) = peak(|| {
            if ctl & 1 != 0 {
                local.set_port(4500);
                if let Port4500::Ike(m) = classify_port_4500(bytes) {
                    b.handle_datagram(now, local, remote, m);
                }
            } else {
                b.handle_datagram(now, local, remote, bytes);
            }
        });
        assert!(
            bytes_peak <= PEAK_FIXED + PER_BYTE * bytes.len(),
            "{bytes_peak} bytes at once for a {}-byte datagram",
            bytes.len()
        );
        let mut answers = 0;
        while b.poll_transmit().is_some() {
            answers += 1;
        }
        assert!(answers <= 2, "{answers} datagrams for one");
        while b.poll_event().is_some() {}
        let kept = live().saturating_sub(before);
        assert!(
            kept <= KEPT_FIXED + PER_BYTE * bytes.len(),
            "{kept} bytes kept for a {}-byte datagram",
            bytes.len()
        );
        assert!(
            b.ike_sa_count() <= threshold + 4 && b.ike_sa_count() <= records,
            "{} IKE SAs after {records} datagrams",
            b.ike_sa_count()
        );
    }
});
