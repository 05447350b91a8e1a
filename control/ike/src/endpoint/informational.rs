//! INFORMATIONAL (RFC 7296 §1.4): Delete payloads from the peer.

use super::*;

impl Endpoint {
    pub(super) fn on_informational(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
    ) -> Vec<Payload> {
        if let Some(n) = find_notify(ps, NotifyType::REDIRECT) {
            // RFC 5685 §5, in redirect.rs.
            let data = n.data.clone();
            self.on_informational_redirect(sa, now, &data);
        }
        let mut ours = Vec::new();
        for p in ps {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                ProtocolId::IKE => {
                    // Deleting an IKE SA that has been rekeyed with a
                    // collision: the children belong to the surviving SA.
                    if let Some(col) = sa.ike_collision.take() {
                        if let Some(mut held) = self.sas.remove(&col.new) {
                            self.move_children(sa, &mut held);
                            self.emit(IkeEvent::IkeSaRekeyed {
                                old: sa.id,
                                new: held.id,
                            });
                            self.sas.insert(col.new, held);
                        }
                    }
                    let quiet = sa.goes_quietly();
                    let reason = (!quiet).then_some(DownReason::DeletedByPeer);
                    self.remove_sa(sa, reason);
                    return Vec::new();
                }
                ProtocolId::ESP | ProtocolId::AH => {
                    for spi in &d.spis {
                        let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                            continue;
                        };
                        let out_spi = u32::from_be_bytes(b);
                        if let Some(pos) = sa
                            .children
                            .iter()
                            .position(|c| c.keys.outbound_spi == out_spi)
                        {
                            let c = sa.children.remove(pos);
                            // The peer deleted the Child SA that replaced
                            // one of ours in its rekey (refusing our reply):
                            // the old one carries on and is rekeyed again.
                            let gone = c.keys.inbound_spi;
                            if let Some(o) = sa.children.iter_mut().find(|o| {
                                o.state == ChildState::Rekeyed && o.replaced_by == Some(gone)
                            }) {
                                o.state = ChildState::Installed;
                                o.replaced_by = None;
                                o.rekey_at = Some(now.plus(2 * REKEY_RETRY_MS));
                            }
                            // §1.4.1: answer with our half unless we are
                            // already deleting it ourselves.
                            let ours_pending = sa.tasks.iter().any(|t| matches!(t, Task::DeleteChildren(v) if v.contains(&c.keys.inbound_spi)));
                            if !ours_pending {
                                ours.push(c.keys.inbound_spi);
                            }
                            sa.tasks
                                .retain(|t| *t != Task::RekeyChild(c.keys.inbound_spi));
                            self.emit(IkeEvent::ChildSaDeleted {
                                ike: sa.id,
                                id: c.keys.id,
                                outbound_spi: c.keys.outbound_spi,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete::esp(&ours))]
        }
    }
}
