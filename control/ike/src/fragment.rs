//! IKE fragmentation (RFC 7383): the configuration, how a message is cut
//! into fragments for a datagram size (§2.5.1), and the bounded reassembly
//! of authenticated fragments (§2.6) with its refusal counters.
//!
//! The reassembly never sees an unauthenticated byte: the engine checks a
//! fragment's ICV and decrypts it (endpoint/fragment.rs) before handing
//! its content here, so a forged fragment costs one ICV check and no
//! memory. What is held is bounded per IKE SA: one message per direction
//! (the window is 1, §2.3 of RFC 7296), at most `max_fragments` parts and
//! `max_message_len` octets (less before the peer is authenticated, see
//! [`Fragmentation::UNAUTHENTICATED_MAX_MESSAGE_LEN`]), for at most
//! `reassembly_timeout_ms`.

use crate::message::PayloadType;
use crate::sa::Timestamp;

/// `[tunnel.ike]` fragmentation settings of one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragmentation {
    /// Announce IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (§2.3) and
    /// fragment when the peer announced it too.
    pub enabled: bool,
    /// The largest IP datagram an IKE message (or fragment) may make,
    /// IP and UDP headers included (§2.5.1); strongSwan's
    /// `charon.fragment_size` has the same meaning and default.
    pub size: u16,
    /// Most fragments one received message may announce (Total Fragments).
    pub max_fragments: u16,
    /// Most octets of decrypted content one reassembled message may hold.
    pub max_message_len: usize,
    /// A message whose fragments do not all arrive within this is dropped.
    pub reassembly_timeout_ms: u64,
}

impl Fragmentation {
    /// Default `size`: 1280, what strongSwan uses and the IPv6 minimum MTU.
    pub const DEFAULT_SIZE: u16 = 1280;
    /// Smallest `size` the gateway configuration accepts: the headers of
    /// a fragment with the largest overhead here (IPv6, UDP, non-ESP
    /// marker, IKE header, SKF header and fields, a 16-octet IV, a
    /// 32-octet ICV and a block of padding: 152 octets) leave at least 40
    /// octets of content.
    pub const MIN_SIZE: u16 = 192;
    /// Default `max_fragments` (strongSwan accepts at most 255).
    pub const DEFAULT_MAX_FRAGMENTS: u16 = 255;
    /// Default `max_message_len`: what one unfragmented datagram could
    /// carry (strongSwan's `max_packet` default is 10000).
    pub const DEFAULT_MAX_MESSAGE_LEN: usize = 65_535;
    /// The most content a message may reassemble to while its IKE SA's
    /// peer is not authenticated (IKE_AUTH): whoever completed an
    /// IKE_SA_INIT holds keys and can make authentic fragments, and a
    /// responder holds up to `half_open_max` such SAs. 16 KiB is room for
    /// an IKE_AUTH with a certificate chain (strongSwan accepts at most
    /// 10000 octets per message by default).
    pub const UNAUTHENTICATED_MAX_MESSAGE_LEN: usize = 16 * 1024;
    /// Default `reassembly_timeout_ms`: longer than the first three
    /// retransmissions of a request, which resend every fragment.
    pub const DEFAULT_REASSEMBLY_TIMEOUT_MS: u64 = 15_000;
}

impl Default for Fragmentation {
    fn default() -> Self {
        Self {
            enabled: true,
            size: Self::DEFAULT_SIZE,
            max_fragments: Self::DEFAULT_MAX_FRAGMENTS,
            max_message_len: Self::DEFAULT_MAX_MESSAGE_LEN,
            reassembly_timeout_ms: Self::DEFAULT_REASSEMBLY_TIMEOUT_MS,
        }
    }
}

/// The largest IKE message (header included, non-ESP marker not) that
/// fits a datagram of `size` octets to `ipv6` or IPv4 (§2.5.1: no IP
/// options or extension headers assumed), with `marker` on port 4500.
pub fn message_room(size: u16, ipv6: bool, marker: bool) -> usize {
    let ip = if ipv6 { 40 } else { 20 };
    usize::from(size).saturating_sub(ip + 8 + if marker { 4 } else { 0 })
}

/// Why a received fragment was dropped, each counted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FragmentRefusal {
    /// Fragment Number 0 or above Total Fragments (§2.6).
    BadNumber,
    /// A lower Total Fragments than the message's fragments so far (§2.6:
    /// discarded; a higher one restarts the reassembly, counted in
    /// `restarted`).
    TotalChanged,
    /// A fragment already held.
    Duplicate,
    /// Total Fragments above `max_fragments`.
    TooMany,
    /// The message's content would exceed `max_message_len`: the whole
    /// reassembly is dropped.
    TooLarge,
    /// A message's fragments did not all arrive in time: dropped.
    TimedOut,
    /// A fragment of no message expected: a response to no request of
    /// ours, a request neither next nor just answered.
    UnknownMessageId,
    /// SKF on an IKE SA that did not negotiate fragmentation (§2.3).
    NotNegotiated,
    /// The fragment failed its ICV check (also in `integrity_failures`).
    Forged,
    /// A fragment whose exchange type differs from its message's others.
    ExchangeMismatch,
}

impl FragmentRefusal {
    /// Every variant, in declaration order.
    pub const ALL: [FragmentRefusal; 10] = [
        FragmentRefusal::BadNumber,
        FragmentRefusal::TotalChanged,
        FragmentRefusal::Duplicate,
        FragmentRefusal::TooMany,
        FragmentRefusal::TooLarge,
        FragmentRefusal::TimedOut,
        FragmentRefusal::UnknownMessageId,
        FragmentRefusal::NotNegotiated,
        FragmentRefusal::Forged,
        FragmentRefusal::ExchangeMismatch,
    ];

    /// The counter name.
    pub fn name(self) -> &'static str {
        match self {
            FragmentRefusal::BadNumber => "bad_number",
            FragmentRefusal::TotalChanged => "total_changed",
            FragmentRefusal::Duplicate => "duplicate",
            FragmentRefusal::TooMany => "too_many",
            FragmentRefusal::TooLarge => "too_large",
            FragmentRefusal::TimedOut => "timed_out",
            FragmentRefusal::UnknownMessageId => "unknown_message_id",
            FragmentRefusal::NotNegotiated => "not_negotiated",
            FragmentRefusal::Forged => "forged",
            FragmentRefusal::ExchangeMismatch => "exchange_mismatch",
        }
    }
}

/// Fragments dropped, by [`FragmentRefusal`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentRefusalCounts([u64; FragmentRefusal::ALL.len()]);

impl FragmentRefusalCounts {
    pub fn get(&self, r: FragmentRefusal) -> u64 {
        self.0[r as usize]
    }

    pub(crate) fn count(&mut self, r: FragmentRefusal) {
        self.0[r as usize] += 1;
    }

    /// `(counter name, count)` for every variant.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FragmentRefusal::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
    }
}

/// Fragmentation counters of one engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Messages we sent as fragments, and the fragments they made.
    pub messages_fragmented: u64,
    pub fragments_sent: u64,
    /// Authenticated fragments stored, and messages reassembled from them.
    pub fragments_received: u64,
    pub messages_reassembled: u64,
    /// Reassemblies started over for a higher Total Fragments (§2.6).
    pub restarted: u64,
    /// Fragments (or whole reassemblies) dropped, by reason.
    pub refused: FragmentRefusalCounts,
}

/// What [`Reassembly::add`] made of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Stored; more are needed.
    Stored,
    /// The last missing one: the message's first payload type and content.
    Complete(PayloadType, Vec<u8>),
}

/// One message being reassembled from authenticated, decrypted fragments.
#[derive(Debug, Clone)]
pub struct Reassembly {
    pub message_id: u32,
    /// The exchange type all its fragments must carry.
    pub exchange: u8,
    total: u16,
    /// Next Payload of fragment 1, once it arrived.
    first: Option<PayloadType>,
    parts: Vec<Option<Vec<u8>>>,
    held: u16,
    bytes: usize,
    /// Dropped if not complete by then.
    pub deadline: Timestamp,
}

impl Reassembly {
    /// An empty reassembly of a message of `total` fragments (checked by
    /// [`check_fields`] against `cfg.max_fragments`).
    pub fn new(
        message_id: u32,
        exchange: u8,
        total: u16,
        now: Timestamp,
        cfg: &Fragmentation,
    ) -> Self {
        Self {
            message_id,
            exchange,
            total,
            first: None,
            parts: vec![None; usize::from(total)],
            held: 0,
            bytes: 0,
            deadline: now.plus(cfg.reassembly_timeout_ms),
        }
    }

    pub fn total(&self) -> u16 {
        self.total
    }

    /// Content octets held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Fragments held.
    pub fn held(&self) -> u16 {
        self.held
    }

    /// Whether fragment `number` is held.
    pub fn has(&self, number: u16) -> bool {
        number >= 1
            && self
                .parts
                .get(usize::from(number - 1))
                .is_some_and(Option::is_some)
    }

    /// Stores fragment `number` (1-based, checked by [`check_fields`]) with
    /// its decrypted `content`; `next` is its Next Payload field. Refuses a
    /// duplicate, or content beyond `max_len` in all (the caller then drops
    /// the whole reassembly).
    pub fn add(
        &mut self,
        number: u16,
        next: PayloadType,
        content: Vec<u8>,
        max_len: usize,
    ) -> Result<Added, FragmentRefusal> {
        let slot = self
            .parts
            .get_mut(usize::from(number).wrapping_sub(1))
            .ok_or(FragmentRefusal::BadNumber)?;
        if slot.is_some() {
            return Err(FragmentRefusal::Duplicate);
        }
        let bytes = self.bytes.saturating_add(content.len());
        if bytes > max_len {
            return Err(FragmentRefusal::TooLarge);
        }
        self.bytes = bytes;
        *slot = Some(content);
        self.held += 1;
        if number == 1 {
            self.first = Some(next);
        }
        if self.held < self.total {
            return Ok(Added::Stored);
        }
        let mut out = Vec::with_capacity(self.bytes);
        for p in self.parts.drain(..) {
            out.extend_from_slice(&p.unwrap_or_default());
        }
        self.held = 0;
        self.bytes = 0;
        Ok(Added::Complete(
            self.first.unwrap_or(PayloadType::NONE),
            out,
        ))
    }
}

/// The checks on a fragment's clear fields that need no state (§2.6):
/// Fragment Number from 1 to Total Fragments, Total Fragments within
/// `max_fragments`.
pub fn check_fields(number: u16, total: u16, cfg: &Fragmentation) -> Result<(), FragmentRefusal> {
    if number == 0 || number > total {
        return Err(FragmentRefusal::BadNumber);
    }
    if total > cfg.max_fragments {
        return Err(FragmentRefusal::TooMany);
    }
    Ok(())
}

/// Where a fragment goes given the message in reassembly (if any) in its
/// direction. [`place`] decides it before the fragment's ICV is checked,
/// so the refusals it makes keep nothing (§2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Store it in the current reassembly.
    Current,
    /// Start a new reassembly (none, another message, or a higher total);
    /// `restart` when it replaces one of the same message.
    New { restart: bool },
}

/// Decides where a fragment of `message_id` (exchange type `exchange`)
/// with `number` of `total` goes, or why it is dropped, given the current
/// reassembly of its direction. Checks the fields first
/// ([`check_fields`]).
pub fn place(
    current: Option<&Reassembly>,
    message_id: u32,
    exchange: u8,
    number: u16,
    total: u16,
    cfg: &Fragmentation,
) -> Result<Placement, FragmentRefusal> {
    check_fields(number, total, cfg)?;
    let Some(r) = current.filter(|r| r.message_id == message_id) else {
        return Ok(Placement::New { restart: false });
    };
    if r.exchange != exchange {
        return Err(FragmentRefusal::ExchangeMismatch);
    }
    match total.cmp(&r.total) {
        core::cmp::Ordering::Less => Err(FragmentRefusal::TotalChanged),
        core::cmp::Ordering::Greater => Ok(Placement::New { restart: true }),
        core::cmp::Ordering::Equal if r.has(number) => Err(FragmentRefusal::Duplicate),
        core::cmp::Ordering::Equal => Ok(Placement::Current),
    }
}

/// What [`accept`] did with an authenticated fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// It replaced a reassembly of the same message with a lower total.
    pub restarted: bool,
    /// The message, when this fragment completed it: its first payload
    /// type and content. The reassembly is gone then.
    pub complete: Option<(PayloadType, Vec<u8>)>,
}

/// Stores an authenticated fragment's decrypted `content` in `slot`, the
/// reassembly of its direction (§2.6): starting a new one for another
/// message or a higher Total Fragments, refusing what [`place`] refuses
/// and, when the message would exceed `max_message_len`, dropping the
/// whole reassembly. Holds at most `max_fragments` parts of at most
/// `max_message_len` octets in all, whatever is fed in.
#[allow(clippy::too_many_arguments)]
pub fn accept(
    slot: &mut Option<Reassembly>,
    message_id: u32,
    exchange: u8,
    number: u16,
    total: u16,
    next: PayloadType,
    content: Vec<u8>,
    now: Timestamp,
    cfg: &Fragmentation,
) -> Result<Accepted, FragmentRefusal> {
    let placement = place(slot.as_ref(), message_id, exchange, number, total, cfg)?;
    let restarted = placement == Placement::New { restart: true };
    if let Placement::New { .. } = placement {
        *slot = Some(Reassembly::new(message_id, exchange, total, now, cfg));
    }
    let Some(r) = slot.as_mut() else {
        return Err(FragmentRefusal::UnknownMessageId);
    };
    match r.add(number, next, content, cfg.max_message_len) {
        Ok(Added::Stored) => Ok(Accepted {
            restarted,
            complete: None,
        }),
        Ok(Added::Complete(first, plain)) => {
            *slot = None;
            Ok(Accepted {
                restarted,
                complete: Some((first, plain)),
            })
        }
        Err(FragmentRefusal::Duplicate) => Err(FragmentRefusal::Duplicate),
        Err(e) => {
            // Too large: the whole message goes.
            *slot = None;
            Err(e)
        }
    }
}

/// Cuts an encoded payload chain into pieces of at most `room` octets
/// (at least one piece, so an empty chain still makes a message).
pub fn split(inner: &[u8], room: usize) -> Vec<&[u8]> {
    if inner.is_empty() || room == 0 {
        return vec![inner];
    }
    inner.chunks(room).collect()
}

/// The fragmentation state of one IKE SA.
#[derive(Debug, Default)]
pub(crate) struct SaFragments {
    /// Both sides announced IKEV2_FRAGMENTATION_SUPPORTED (§2.3).
    pub negotiated: bool,
    /// The request of the peer being reassembled.
    pub request: Option<Reassembly>,
    /// The response to our request being reassembled.
    pub response: Option<Reassembly>,
    /// The message ID (request, response) last dropped for exceeding the
    /// size limit: its other fragments are refused at once, rather than
    /// filling a new reassembly up to the limit again.
    pub too_large: [Option<u32>; 2],
}

impl SaFragments {
    pub fn slot(&mut self, response: bool) -> &mut Option<Reassembly> {
        if response {
            &mut self.response
        } else {
            &mut self.request
        }
    }

    /// The earliest reassembly deadline.
    pub fn deadline(&self) -> Option<Timestamp> {
        [&self.request, &self.response]
            .into_iter()
            .flatten()
            .map(|r| r.deadline)
            .min()
    }
}

#[cfg(test)]
mod tests;
