//! IKE fragmentation in the engine (RFC 7383): the IKE_SA_INIT notify
//! (§2.3), sealing a message as fragments when it would not fit the
//! configured datagram size (§2.5, §2.5.1), and receiving fragments (§2.6):
//! each authenticated before it is kept, reassembled within the bounds of
//! [`crate::fragment`], the whole message then processed as if it had come
//! in one SK payload.

use super::*;
use crate::fragment::{
    accept, check_fields, message_room, place, split, FragmentRefusal, Fragmentation,
};
use crate::message::fragment::{Skf, SKF_FIELDS_LEN};

impl Endpoint {
    /// IKEV2_FRAGMENTATION_SUPPORTED for our IKE_SA_INIT message, when
    /// fragmentation is enabled.
    pub(super) fn fragmentation_offer(&self) -> Option<Payload> {
        self.config.fragmentation.enabled.then(|| {
            Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                vec![],
            ))
        })
    }

    /// Whether fragmentation is enabled here and the peer's IKE_SA_INIT
    /// message `ps` announced it (§2.3: then both sides may fragment).
    pub(super) fn fragmentation_agreed(&self, ps: &[Payload]) -> bool {
        self.config.fragmentation.enabled
            && find_notify(ps, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some()
    }

    fn count_fragment(&mut self, r: FragmentRefusal) {
        self.stats.fragments.refused.count(r);
    }

    /// Seals `payloads` under `hdr`: one datagram, or, when fragmentation
    /// was negotiated and the message would make a datagram larger than
    /// the configured size, its fragments (§2.5; never IKE_SA_INIT, which
    /// is not sealed). Each fragment carries at most the content that
    /// keeps its datagram within the size (§2.5.1: IP and UDP headers, the
    /// non-ESP marker on port 4500, IKE header, SKF header and fields, IV,
    /// ICV, padding).
    pub(super) fn seal(
        &mut self,
        sa: &mut IkeSa,
        hdr: &Header,
        payloads: &[Payload],
    ) -> Option<Vec<Vec<u8>>> {
        let Ok((first, inner)) = encode_chain(payloads) else {
            self.stats.encode_errors += 1;
            return None;
        };
        let cfg = &self.config.fragmentation;
        let marker = sa.local.port() == self.config.nat_t_port;
        let room = message_room(cfg.size, sa.remote.is_ipv6(), marker);
        let fragment = cfg.enabled && sa.frag.negotiated;
        let tx = &mut sa.sk_mut()?.tx;
        let whole_len = HEADER_LEN + 4 + tx.sealed_len(inner.len());
        let content = tx.content_room(room.saturating_sub(HEADER_LEN + 4 + SKF_FIELDS_LEN));
        // A size too small to carry any content (the configuration keeps
        // it above `Fragmentation::MIN_SIZE`) sends the message whole.
        let sealed: Result<Vec<Vec<u8>>, CryptoError> =
            if !fragment || whole_len <= room || content == 0 {
                tx.seal(hdr, first, &inner, &mut *self.rng).map(|b| vec![b])
            } else {
                let pieces = split(&inner, content);
                match u16::try_from(pieces.len()) {
                    Ok(total) => pieces
                        .iter()
                        .zip(1..=total)
                        .map(|(piece, number)| {
                            let next = if number == 1 {
                                first
                            } else {
                                PayloadType::NONE
                            };
                            tx.seal_fragment(hdr, next, number, total, piece, &mut *self.rng)
                        })
                        .collect(),
                    Err(_) => Err(CryptoError::TooLong(EncodeError {
                        field: "Total Fragments",
                        len: pieces.len(),
                        max: u16::MAX.into(),
                    })),
                }
            };
        match sealed {
            Ok(datagrams) => {
                if datagrams.len() > 1 {
                    self.stats.fragments.messages_fragmented += 1;
                    self.stats.fragments.fragments_sent += datagrams.len() as u64;
                }
                Some(datagrams)
            }
            Err(e) => {
                if matches!(e, CryptoError::TooLong(_)) {
                    self.stats.encode_errors += 1;
                }
                None
            }
        }
    }

    /// Sends every datagram of a message.
    pub(super) fn send_all(&mut self, sa: &IkeSa, datagrams: &[Vec<u8>]) {
        for d in datagrams {
            self.send(sa, d.clone());
        }
    }

    /// A received SKF message (§2.6). The cheap refusals come first and
    /// keep nothing; then the fragment's ICV is checked and its content
    /// decrypted, and only then is it stored. A completed message goes on
    /// as any SK message would.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_fragment(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        hdr: &Header,
        f: Skf,
    ) {
        if !sa.frag.negotiated || !self.config.fragmentation.enabled {
            self.count_fragment(FragmentRefusal::NotNegotiated);
            return;
        }
        let response = hdr.flags.response();
        let id = hdr.message_id;
        // Which message it can belong to (window size 1, RFC 7296 §2.3).
        let retransmitted = if response {
            let ours = sa
                .outstanding
                .as_ref()
                .is_some_and(|o| o.msg_id == id && o.request.exchange() == hdr.exchange);
            if !ours {
                self.count_fragment(FragmentRefusal::UnknownMessageId);
                return;
            }
            false
        } else if id == sa.peer_msg_id {
            false
        } else if sa
            .last_response
            .as_ref()
            .is_some_and(|(last, ..)| *last == id)
        {
            true
        } else {
            self.count_fragment(FragmentRefusal::UnknownMessageId);
            return;
        };
        // The refusals that need no authentication, before the ICV check.
        let mut cfg = self.config.fragmentation.clone();
        if !sa.authenticated() {
            cfg.max_message_len = cfg
                .max_message_len
                .min(Fragmentation::UNAUTHENTICATED_MAX_MESSAGE_LEN);
        }
        let too_large = sa.frag.too_large[usize::from(response)] == Some(id);
        let checked = if retransmitted {
            check_fields(f.number, f.total, &cfg)
        } else if too_large {
            Err(FragmentRefusal::TooLarge)
        } else {
            let current = sa.frag.slot(response).as_ref();
            place(current, id, hdr.exchange.0, f.number, f.total, &cfg).map(|_| ())
        };
        if let Err(r) = checked {
            self.count_fragment(r);
            return;
        }
        // The ICV covers the header, the SKF header and its two fields
        // (§2.5); nothing unauthenticated is kept.
        let Some(Sk { rx, .. }) = sa.sk() else {
            self.stats.malformed += 1;
            return;
        };
        let content = match rx.open(data, f.sealed_len) {
            Ok(c) => c,
            Err(_) => {
                // RFC 7296 §2.21.2: dropped silently, only counted.
                self.stats.integrity_failures += 1;
                self.count_fragment(FragmentRefusal::Forged);
                return;
            }
        };
        sa.last_heard = now;
        if retransmitted {
            // RFC 7383 §2.6.1: a retransmitted request is answered with the
            // whole cached response, once per retransmission: on its first
            // fragment (every fragment is resent each time).
            if f.number == 1 {
                if let Some((_, _, datagrams)) = sa.last_response.clone() {
                    self.stats.replayed_responses += 1;
                    self.send_all(sa, &datagrams);
                }
            }
            return;
        }
        let slot = sa.frag.slot(response);
        let accepted = accept(
            slot,
            id,
            hdr.exchange.0,
            f.number,
            f.total,
            f.first_payload,
            content,
            now,
            &cfg,
        );
        match accepted {
            Ok(a) => {
                let s = &mut self.stats.fragments;
                s.fragments_received += 1;
                s.restarted += u64::from(a.restarted);
                if let Some((first, plain)) = a.complete {
                    s.messages_reassembled += 1;
                    self.on_plain(sa, now, local, remote, hdr, first, plain);
                }
            }
            Err(r) => {
                if r == FragmentRefusal::TooLarge {
                    sa.frag.too_large[usize::from(response)] = Some(id);
                }
                self.count_fragment(r)
            }
        }
    }

    /// Octets of decrypted fragment content held for reassembly, in all
    /// IKE SAs: at most `max_message_len` per IKE SA and direction.
    pub fn reassembly_bytes(&self) -> usize {
        self.sas
            .values()
            .flat_map(|sa| [&sa.frag.request, &sa.frag.response])
            .flatten()
            .map(|r| r.bytes())
            .sum()
    }

    /// Drops reassemblies past their deadline.
    pub(super) fn fragment_timeouts(&mut self, sa: &mut IkeSa, now: Timestamp) {
        for response in [false, true] {
            let slot = sa.frag.slot(response);
            if slot.as_ref().is_some_and(|r| now >= r.deadline) {
                *slot = None;
                self.count_fragment(FragmentRefusal::TimedOut);
            }
        }
    }
}
