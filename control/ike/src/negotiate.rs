//! SA proposal selection (RFC 7296 §2.7, §3.3) and traffic selector
//! narrowing (§2.9).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::config::{EspProposal, IkeProposal};
use super::crypto::{DhGroup, EspAlgorithm, EspCipher, IkeCipher, IkeSuite, Integ, Prf};
use super::message::{
    DhGroupId, EncrId, EsnId, IntegId, PrfId, Proposal, ProtocolId, SaPayload, TrafficSelector,
    Transform, TransformType,
};

/// Why no proposal could be selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    NoProposalChosen,
    /// A proposal matched but with another D-H group than the KE payload's.
    InvalidKe(DhGroup),
}

fn has(p: &Proposal, ty: TransformType, id: u16, bits: Option<u16>) -> bool {
    p.transforms
        .iter()
        .any(|t| t.ty == ty && t.id == id && t.key_length() == bits)
}

fn ids(p: &Proposal, ty: TransformType) -> impl Iterator<Item = u16> + '_ {
    p.transforms
        .iter()
        .filter(move |t| t.ty == ty)
        .map(|t| t.id)
}

fn encr(c: IkeCipher) -> Transform {
    Transform::with_key_length(TransformType::ENCR, c.id().0, c.key_bits())
}

/// The SA payload an initiator offers for IKE (`spi` empty in IKE_SA_INIT,
/// 8 bytes when rekeying, §3.3.1).
pub fn ike_offer(props: &[IkeProposal], spi: &[u8]) -> SaPayload {
    SaPayload {
        proposals: props
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut t = vec![
                    encr(p.cipher),
                    Transform::new(TransformType::PRF, p.prf.id().0),
                ];
                if let Some(i) = p.integ {
                    t.push(Transform::new(TransformType::INTEG, i.id().0));
                }
                t.extend(
                    p.groups
                        .iter()
                        .map(|g| Transform::new(TransformType::DH, g.id().0)),
                );
                Proposal {
                    number: i as u8 + 1,
                    protocol: ProtocolId::IKE,
                    spi: spi.to_vec(),
                    transforms: t,
                }
            })
            .collect(),
    }
}

fn ike_matches(ours: &IkeProposal, p: &Proposal) -> Option<Vec<DhGroup>> {
    if p.protocol != ProtocolId::IKE
        || !has(
            p,
            TransformType::ENCR,
            ours.cipher.id().0,
            Some(ours.cipher.key_bits()),
        )
        || !has(p, TransformType::PRF, ours.prf.id().0, None)
    {
        return None;
    }
    match ours.integ {
        Some(i) if !has(p, TransformType::INTEG, i.id().0, None) => return None,
        None if ids(p, TransformType::INTEG).any(|i| i != IntegId::NONE.0) => return None,
        _ => {}
    }
    let theirs: Vec<u16> = ids(p, TransformType::DH).collect();
    let common: Vec<DhGroup> = ours
        .groups
        .iter()
        .copied()
        .filter(|g| theirs.contains(&g.id().0))
        .collect();
    (!common.is_empty()).then_some(common)
}

/// Responder selection for IKE: our preference order first. Returns the
/// one-proposal reply (carrying `spi`) and the suite.
pub fn choose_ike(
    ours: &[IkeProposal],
    offer: &SaPayload,
    ke_group: DhGroupId,
    spi: &[u8],
) -> Result<(SaPayload, IkeSuite), Choice> {
    let mut invalid_ke = None;
    for o in ours {
        for p in &offer.proposals {
            let Some(common) = ike_matches(o, p) else {
                continue;
            };
            let Some(dh) = common.iter().copied().find(|g| g.id() == ke_group) else {
                invalid_ke.get_or_insert(common[0]);
                continue;
            };
            let mut t = vec![
                encr(o.cipher),
                Transform::new(TransformType::PRF, o.prf.id().0),
            ];
            if let Some(i) = o.integ {
                t.push(Transform::new(TransformType::INTEG, i.id().0));
            }
            t.push(Transform::new(TransformType::DH, dh.id().0));
            let reply = SaPayload {
                proposals: vec![Proposal {
                    number: p.number,
                    protocol: ProtocolId::IKE,
                    spi: spi.to_vec(),
                    transforms: t,
                }],
            };
            let suite = IkeSuite {
                cipher: o.cipher,
                prf: o.prf,
                integ: o.integ,
                dh,
            };
            return Ok((reply, suite));
        }
    }
    Err(invalid_ke.map_or(Choice::NoProposalChosen, Choice::InvalidKe))
}

/// Initiator check of the responder's reply: exactly one proposal, made
/// of transforms we offered (§2.7). Returns the suite and the SPI.
pub fn accept_ike(ours: &[IkeProposal], reply: &SaPayload) -> Option<(IkeSuite, Vec<u8>)> {
    let [p] = reply.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::IKE {
        return None;
    }
    let one = |ty| {
        let v: Vec<&Transform> = p.transforms.iter().filter(|t| t.ty == ty).collect();
        (v.len() <= 1).then(|| v.first().copied())
    };
    let e = one(TransformType::ENCR)??;
    let prf = Prf::from_id(PrfId(one(TransformType::PRF)??.id))?;
    let integ = match one(TransformType::INTEG)? {
        Some(t) if t.id != 0 => Some(Integ::from_id(IntegId(t.id))?),
        _ => None,
    };
    let dh = DhGroup::from_id(DhGroupId(one(TransformType::DH)??.id))?;
    let cipher = IkeCipher::from_id(EncrId(e.id), e.key_length())?;
    let ok = ours
        .iter()
        .any(|o| o.cipher == cipher && o.prf == prf && o.integ == integ && o.groups.contains(&dh));
    ok.then_some((
        IkeSuite {
            cipher,
            prf,
            integ,
            dh,
        },
        p.spi.clone(),
    ))
}

fn esp_transforms(a: &EspAlgorithm, dh: Option<DhGroup>) -> Vec<Transform> {
    let (id, bits) = a.cipher.wire();
    let mut t = vec![match bits {
        Some(b) => Transform::with_key_length(TransformType::ENCR, id.0, b),
        None => Transform::new(TransformType::ENCR, id.0),
    }];
    if let Some(i) = a.integ {
        t.push(Transform::new(TransformType::INTEG, i.id().0));
    }
    if let Some(g) = dh {
        t.push(Transform::new(TransformType::DH, g.id().0));
    }
    t.push(Transform::new(TransformType::ESN, EsnId::NO_ESN.0));
    t
}

/// The SA payload offered for a Child SA. With `pfs`, each proposal lists
/// its D-H groups (CREATE_CHILD_SA); in IKE_AUTH none are sent.
pub fn esp_offer(props: &[EspProposal], spi: u32, pfs: bool) -> SaPayload {
    SaPayload {
        proposals: props
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut t = esp_transforms(&p.algorithm, None);
                if pfs {
                    let esn = t.pop();
                    t.extend(
                        p.pfs_groups
                            .iter()
                            .map(|g| Transform::new(TransformType::DH, g.id().0)),
                    );
                    t.extend(esn);
                }
                Proposal {
                    number: i as u8 + 1,
                    protocol: ProtocolId::ESP,
                    spi: spi.to_be_bytes().to_vec(),
                    transforms: t,
                }
            })
            .collect(),
    }
}

/// A chosen Child SA proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspChoice {
    pub algorithm: EspAlgorithm,
    pub pfs: Option<DhGroup>,
    pub peer_spi: u32,
    pub reply_number: u8,
}

fn esp_matches(o: &EspProposal, p: &Proposal, pfs: bool) -> Option<Option<Vec<DhGroup>>> {
    let (id, bits) = o.algorithm.cipher.wire();
    if p.protocol != ProtocolId::ESP || p.spi.len() != 4 || !has(p, TransformType::ENCR, id.0, bits)
    {
        return None;
    }
    match o.algorithm.integ {
        Some(i) if !has(p, TransformType::INTEG, i.id().0, None) => return None,
        None if ids(p, TransformType::INTEG).any(|i| i != 0) => return None,
        _ => {}
    }
    let esn: Vec<u16> = ids(p, TransformType::ESN).collect();
    if !esn.is_empty() && !esn.contains(&EsnId::NO_ESN.0) {
        return None;
    }
    let theirs: Vec<u16> = ids(p, TransformType::DH).filter(|g| *g != 0).collect();
    if !pfs || o.pfs_groups.is_empty() {
        // Without PFS the peer must allow "no D-H" (no DH transform, or NONE).
        let none_ok = theirs.is_empty() || ids(p, TransformType::DH).any(|g| g == 0);
        return none_ok.then_some(None);
    }
    let common: Vec<DhGroup> = o
        .pfs_groups
        .iter()
        .copied()
        .filter(|g| theirs.contains(&g.id().0))
        .collect();
    (!common.is_empty()).then_some(Some(common))
}

/// Responder selection for ESP. `ke_group` is the KE payload's group in
/// CREATE_CHILD_SA (None in IKE_AUTH or without KE).
pub fn choose_esp(
    ours: &[EspProposal],
    offer: &SaPayload,
    pfs: bool,
    ke_group: Option<DhGroupId>,
    our_spi: u32,
) -> Result<(SaPayload, EspChoice), Choice> {
    let mut invalid_ke = None;
    for o in ours {
        for p in &offer.proposals {
            let Some(groups) = esp_matches(o, p, pfs) else {
                continue;
            };
            let dh = match groups {
                None => None,
                Some(common) => match common.iter().copied().find(|g| Some(g.id()) == ke_group) {
                    Some(g) => Some(g),
                    None => {
                        invalid_ke.get_or_insert(common[0]);
                        continue;
                    }
                },
            };
            let peer_spi = u32::from_be_bytes(
                p.spi[..4]
                    .try_into()
                    .map_err(|_| Choice::NoProposalChosen)?,
            );
            let reply = SaPayload {
                proposals: vec![Proposal {
                    number: p.number,
                    protocol: ProtocolId::ESP,
                    spi: our_spi.to_be_bytes().to_vec(),
                    transforms: esp_transforms(&o.algorithm, dh),
                }],
            };
            return Ok((
                reply,
                EspChoice {
                    algorithm: o.algorithm,
                    pfs: dh,
                    peer_spi,
                    reply_number: p.number,
                },
            ));
        }
    }
    Err(invalid_ke.map_or(Choice::NoProposalChosen, Choice::InvalidKe))
}

/// Initiator check of a Child SA reply.
pub fn accept_esp(ours: &[EspProposal], reply: &SaPayload, pfs: bool) -> Option<EspChoice> {
    let [p] = reply.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::ESP || p.spi.len() != 4 {
        return None;
    }
    let e = p.transforms.iter().find(|t| t.ty == TransformType::ENCR)?;
    let cipher = EspCipher::from_wire(EncrId(e.id), e.key_length())?;
    let integ = match p.transforms.iter().find(|t| t.ty == TransformType::INTEG) {
        Some(t) if t.id != 0 => Some(Integ::from_id(IntegId(t.id))?),
        _ => None,
    };
    let dh = match p.transforms.iter().find(|t| t.ty == TransformType::DH) {
        Some(t) if t.id != 0 => Some(DhGroup::from_id(DhGroupId(t.id))?),
        _ => None,
    };
    if ids(p, TransformType::ESN).any(|e| e != EsnId::NO_ESN.0) {
        return None;
    }
    let algorithm = EspAlgorithm { cipher, integ };
    let ok = ours.iter().any(|o| {
        o.algorithm == algorithm
            && match dh {
                None => !pfs || o.pfs_groups.is_empty(),
                Some(g) => pfs && o.pfs_groups.contains(&g),
            }
    });
    ok.then(|| EspChoice {
        algorithm,
        pfs: dh,
        peer_spi: u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]),
        reply_number: p.number,
    })
}

fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    if a.start_addr.is_ipv4() != b.start_addr.is_ipv4() {
        return None;
    }
    let ip_protocol = match (a.ip_protocol, b.ip_protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    let start_addr = a.start_addr.max(b.start_addr);
    let end_addr = a.end_addr.min(b.end_addr);
    (start_port <= end_port && start_addr <= end_addr).then_some(TrafficSelector {
        ip_protocol,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

/// Narrowing (§2.9): the parts of `offered` that `allowed` permits.
pub fn narrow(offered: &[TrafficSelector], allowed: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for o in offered {
        for a in allowed {
            if let Some(t) = intersect(o, a) {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// True if every selector of `got` lies within some selector of `offered`.
pub fn is_subset(got: &[TrafficSelector], offered: &[TrafficSelector]) -> bool {
    !got.is_empty()
        && got
            .iter()
            .all(|g| offered.iter().any(|o| intersect(g, o) == Some(*g)))
}

/// The largest address prefixes covering `start..=end`, in order, as
/// (address, prefix length). A range of `b`-bit addresses needs at most
/// 2b - 2 of them; different families or `start > end` give none.
pub fn range_prefixes(start: IpAddr, end: IpAddr) -> RangePrefixes {
    let (bits, cur, end) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (32, u128::from(u32::from(s)), u128::from(u32::from(e))),
        (IpAddr::V6(s), IpAddr::V6(e)) => (128, u128::from(s), u128::from(e)),
        _ => (32, 1, 0),
    };
    RangePrefixes {
        bits,
        cur,
        end,
        done: cur > end,
    }
}

/// Iterator of [`range_prefixes`].
#[derive(Debug, Clone)]
pub struct RangePrefixes {
    bits: u32,
    cur: u128,
    end: u128,
    done: bool,
}

impl Iterator for RangePrefixes {
    type Item = (IpAddr, u8);

    fn next(&mut self) -> Option<(IpAddr, u8)> {
        if self.done {
            return None;
        }
        let cur = self.cur;
        // Largest block aligned at `cur` that stays within `end`.
        let mut size = if cur == 0 {
            self.bits
        } else {
            cur.trailing_zeros().min(self.bits)
        };
        while size > 0 {
            // `cur` is aligned to `size` bits: no overflow.
            let last = if size >= 128 {
                u128::MAX
            } else {
                cur + ((1u128 << size) - 1)
            };
            if last <= self.end {
                break;
            }
            size -= 1;
        }
        let addr = if self.bits == 32 {
            IpAddr::V4(Ipv4Addr::from(cur as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(cur))
        };
        match (size < 128)
            .then(|| cur.checked_add(1u128 << size))
            .flatten()
        {
            Some(n) if n <= self.end => self.cur = n,
            _ => self.done = true,
        }
        Some((addr, (self.bits - size) as u8))
    }
}

/// How many data-plane selectors (a source and a destination prefix of
/// one family) traffic selectors `src` × `dst` expand to, saturating.
pub fn selector_count(src: &[TrafficSelector], dst: &[TrafficSelector]) -> usize {
    let count = |t: &TrafficSelector| range_prefixes(t.start_addr, t.end_addr).count();
    let mut total = 0usize;
    for s in src {
        let n = count(s);
        for d in dst {
            if s.start_addr.is_ipv4() == d.start_addr.is_ipv4() {
                total = total.saturating_add(n.saturating_mul(count(d)));
            }
        }
    }
    total
}

/// A short description of an SA payload for a log line, e.g.
/// `#1 ESP ENCR=20/128 ESN=0; #2 ESP ENCR=12/256 INTEG=12 ESN=0`
/// (IANA transform IDs), cut at `MAX_DESCRIBE` characters.
pub fn describe_offer(offer: &SaPayload) -> String {
    use std::fmt::Write as _;
    const MAX_DESCRIBE: usize = 300;
    let mut s = String::new();
    'out: for (i, p) in offer.proposals.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        let proto = match p.protocol {
            ProtocolId::IKE => "IKE".to_string(),
            ProtocolId::ESP => "ESP".to_string(),
            ProtocolId::AH => "AH".to_string(),
            other => format!("proto{}", other.0),
        };
        let _ = write!(s, "#{} {proto}", p.number);
        for t in &p.transforms {
            let ty = match t.ty {
                TransformType::ENCR => "ENCR".to_string(),
                TransformType::PRF => "PRF".to_string(),
                TransformType::INTEG => "INTEG".to_string(),
                TransformType::DH => "DH".to_string(),
                TransformType::ESN => "ESN".to_string(),
                other => format!("T{}", other.0),
            };
            let _ = write!(s, " {ty}={}", t.id);
            if let Some(b) = t.key_length() {
                let _ = write!(s, "/{b}");
            }
            if s.len() > MAX_DESCRIBE {
                break 'out;
            }
        }
    }
    if s.len() > MAX_DESCRIBE {
        let mut cut = MAX_DESCRIBE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_traffic_selector as ts;

    #[test]
    fn ike_narrowing_intersects_ranges() {
        let offered = [ts("10.0.0.0/8").unwrap()];
        let allowed = [ts("10.1.0.0/24").unwrap(), ts("192.168.0.0/16").unwrap()];
        assert_eq!(narrow(&offered, &allowed), vec![ts("10.1.0.0/24").unwrap()]);
        assert!(narrow(&[ts("172.16.0.0/12").unwrap()], &allowed).is_empty());
        assert!(narrow(&[ts("2001:db8::/32").unwrap()], &allowed).is_empty());
        assert!(is_subset(&[ts("10.1.0.0/24").unwrap()], &offered));
        assert!(!is_subset(&[ts("11.0.0.0/24").unwrap()], &offered));
    }

    #[test]
    fn ike_range_prefixes_and_selector_count() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let v: Vec<_> = range_prefixes(ip("10.0.0.1"), ip("10.0.0.6")).collect();
        assert_eq!(
            v,
            [
                (ip("10.0.0.1"), 32),
                (ip("10.0.0.2"), 31),
                (ip("10.0.0.4"), 31),
                (ip("10.0.0.6"), 32)
            ]
        );
        assert_eq!(
            range_prefixes(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).count(),
            1
        );
        // The worst case: 2 × 128 − 2 prefixes.
        let worst = range_prefixes(ip("::1"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"));
        assert_eq!(worst.count(), 254);
        assert_eq!(range_prefixes(ip("10.0.0.2"), ip("10.0.0.1")).count(), 0);
        assert_eq!(range_prefixes(ip("10.0.0.1"), ip("::1")).count(), 0);
        let a = [ts("10.1.0.0/24").unwrap(), ts("2001:db8::/32").unwrap()];
        let b = [ts("10.2.0.0/24").unwrap(), ts("10.3.0.0/24").unwrap()];
        assert_eq!(
            selector_count(&a, &b),
            2,
            "families pair up only with their own"
        );
    }

    #[test]
    fn ike_describe_offer_is_compact_and_bounded() {
        let ours = [EspProposal::parse("aes128gcm16").unwrap()];
        let d = describe_offer(&esp_offer(&ours, 1, false));
        assert_eq!(d, "#1 ESP ENCR=20/128 ESN=0");
        let many: Vec<_> = (0..100).map(|_| ours[0].clone()).collect();
        let d = describe_offer(&esp_offer(&many, 1, false));
        assert!(d.len() <= 303 && d.ends_with("..."), "{d}");
    }

    #[test]
    fn ike_choose_prefers_ours_and_asks_for_the_right_group() {
        let ours = [IkeProposal::parse("aes256gcm16-prfsha384-ecp384-ecp256").unwrap()];
        let theirs = [
            IkeProposal::parse("aes128-sha256-modp2048").unwrap(),
            IkeProposal::parse("aes256gcm16-prfsha384-ecp256-ecp384").unwrap(),
        ];
        let offer = ike_offer(&theirs, &[]);
        let (reply, suite) = choose_ike(&ours, &offer, DhGroupId::ECP_256, &[]).unwrap();
        assert_eq!(suite.dh, DhGroup::Ecp256);
        assert_eq!(reply.proposals[0].number, 2);
        assert_eq!(accept_ike(&theirs, &reply).unwrap().0, suite);
        assert_eq!(
            choose_ike(&ours, &offer, DhGroupId::MODP_2048, &[]).unwrap_err(),
            Choice::InvalidKe(DhGroup::Ecp384)
        );
        let other = [IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap()];
        assert_eq!(
            choose_ike(&other, &offer, DhGroupId::ECP_256, &[]).unwrap_err(),
            Choice::NoProposalChosen
        );
    }

    #[test]
    fn ike_choose_esp_with_and_without_pfs() {
        let ours = [EspProposal::parse("aes128-sha256-ecp256").unwrap()];
        let offer = esp_offer(&ours, 0x1234, false);
        let (reply, c) = choose_esp(&ours, &offer, false, None, 0x5678).unwrap();
        assert_eq!(c.peer_spi, 0x1234);
        assert_eq!(c.pfs, None);
        assert_eq!(accept_esp(&ours, &reply, false).unwrap().peer_spi, 0x5678);
        let offer = esp_offer(&ours, 0x1234, true);
        let (reply, c) = choose_esp(&ours, &offer, true, Some(DhGroupId::ECP_256), 9).unwrap();
        assert_eq!(c.pfs, Some(DhGroup::Ecp256));
        assert_eq!(
            accept_esp(&ours, &reply, true).unwrap().pfs,
            Some(DhGroup::Ecp256)
        );
        assert_eq!(
            choose_esp(&ours, &offer, true, Some(DhGroupId::MODP_2048), 9).unwrap_err(),
            Choice::InvalidKe(DhGroup::Ecp256)
        );
        let gcm = [EspProposal::parse("aes256gcm16").unwrap()];
        assert_eq!(
            choose_esp(&gcm, &offer, true, None, 9).unwrap_err(),
            Choice::NoProposalChosen
        );
    }
}
