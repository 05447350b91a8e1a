//! Identity patterns and a directory keyed by IKE identity (RFC 7296
//! §3.5), for responder templates (which peers a tunnel accepts) and
//! secrets by identity (which PSK a peer must prove).
//!
//! Lookup cost, for `n` entries: exact identities are a `HashMap` (O(1));
//! `*@domain` is a `HashMap` by domain (O(1)); `*.domain` is a `HashMap`
//! by suffix, probed once per label of the presented FQDN (O(labels),
//! at most 128 for the 255 octets an FQDN may have, independent of `n`);
//! exact distinguished names are a `HashMap` by their attributes; `%any`
//! is one slot. The one linear scan: DN patterns with wildcard values
//! (`C=DE, O=Example, CN=*`), tried in turn when nothing more specific
//! matched. They are a handful per gateway (one per template or group
//! of secrets, not one per peer), and a wildcard RDN value has no key to
//! hash by.
//!
//! Matching is case-insensitive for FQDNs and the domain of an RFC 822
//! address (DNS names are, RFC 4343); the local part of an address and
//! every other identity type are compared byte for byte.

use std::collections::HashMap;

use crate::message::{IdType, Identification};

/// Which identities a template accepts, or a secret belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdPattern {
    /// Any identity (swanctl's `%any`).
    Any,
    /// This identity exactly.
    Exact(Identification),
    /// `*@domain`: an ID_RFC822_ADDR whose domain is this (lower case).
    EmailDomain(String),
    /// `*.domain`: an ID_FQDN strictly below this domain (lower case),
    /// e.g. `*.branches.example` takes `r1.branches.example` but not
    /// `branches.example`.
    FqdnSuffix(String),
    /// An ID_DER_ASN1_DN with these attributes in this order, `*` values
    /// taking any value.
    Dn(DnPattern),
}

/// Most attributes a DN may have here (RFC 5280 sets no bound; real
/// subjects have a handful).
const MAX_DN_ATTRIBUTES: usize = 32;

/// A distinguished-name pattern: (attribute type OID as DER content
/// octets, value or `None` for `*`), in the order of the DN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnPattern(pub Vec<(Vec<u8>, Option<String>)>);

/// Attribute names understood in DN text (RFC 4514 §3 and strongSwan's).
const DN_ATTRIBUTES: &[(&str, &[u8])] = &[
    ("c", &[0x55, 0x04, 0x06]),
    ("st", &[0x55, 0x04, 0x08]),
    ("l", &[0x55, 0x04, 0x07]),
    ("o", &[0x55, 0x04, 0x0a]),
    ("ou", &[0x55, 0x04, 0x0b]),
    ("cn", &[0x55, 0x04, 0x03]),
    ("sn", &[0x55, 0x04, 0x04]),
    ("serialnumber", &[0x55, 0x04, 0x05]),
    ("e", &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
    (
        "emailaddress",
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
    ),
    (
        "dc",
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
    ),
];

impl DnPattern {
    /// Parses `C=DE, O=Example, CN=*` (attributes separated by commas,
    /// names as in RFC 4514 and strongSwan, `*` for any value).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in text.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("\"{}\" is not attribute=value", part.trim()))?;
            let (name, value) = (name.trim(), value.trim());
            let oid = DN_ATTRIBUTES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, o)| o.to_vec())
                .ok_or_else(|| {
                    format!("unknown DN attribute \"{name}\" (C, ST, L, O, OU, CN, SN, serialNumber, E, DC)")
                })?;
            if value.is_empty() || value.contains(['\\', '"', '+']) {
                return Err(format!(
                    "\"{name}={value}\": the value must be plain text or *"
                ));
            }
            if value.contains('*') && value != "*" {
                return Err(format!(
                    "\"{name}={value}\": * stands for a whole value only"
                ));
            }
            out.push((oid, (value != "*").then(|| value.to_string())));
        }
        if out.is_empty() || out.len() > MAX_DN_ATTRIBUTES {
            return Err("a DN has 1 to 32 attributes".into());
        }
        Ok(Self(out))
    }

    /// Whether the attributes of a DN identity match, in order; values
    /// compare without regard to ASCII case (strongSwan's DN matching).
    fn matches_attributes(&self, dn: &[(Vec<u8>, String)]) -> bool {
        self.0.len() == dn.len()
            && self.0.iter().zip(dn).all(|((po, pv), (o, v))| {
                po == o && pv.as_ref().is_none_or(|pv| pv.eq_ignore_ascii_case(v))
            })
    }

    /// The directory key of a pattern without wildcards.
    fn key(&self) -> Option<Vec<(Vec<u8>, String)>> {
        self.0
            .iter()
            .map(|(o, v)| Some((o.clone(), v.as_ref()?.to_ascii_lowercase())))
            .collect()
    }
}

/// One DER TLV (X.690 §8.1): tag, content, rest. Single-octet tags and
/// lengths up to 2^16; anything else is refused.
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = match l0 {
        0..=0x7f => (usize::from(l0), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The attributes of an ID_DER_ASN1_DN (RFC 5280 §4.1.2.4: a SEQUENCE
/// of SETs of SEQUENCE { type OID, value }), in order, string values
/// only; `None` for anything malformed or over 32 attributes.
pub fn parse_dn(der: &[u8]) -> Option<Vec<(Vec<u8>, String)>> {
    let (tag, mut rdns, rest) = der_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (tag, mut set, next) = der_tlv(rdns)?;
        rdns = next;
        if tag != 0x31 {
            return None;
        }
        while !set.is_empty() {
            let (tag, ava, next) = der_tlv(set)?;
            set = next;
            let (otag, oid, vrest) = der_tlv(ava)?;
            let (vtag, value, end) = der_tlv(vrest)?;
            // UTF8String, PrintableString, T61String, IA5String.
            if tag != 0x30
                || otag != 0x06
                || !end.is_empty()
                || ![0x0c, 0x13, 0x14, 0x16].contains(&vtag)
            {
                return None;
            }
            if out.len() == MAX_DN_ATTRIBUTES {
                return None;
            }
            out.push((oid.to_vec(), std::str::from_utf8(value).ok()?.to_string()));
        }
    }
    Some(out)
}

/// The attributes of an identity that is a DN.
fn dn_of(id: &Identification) -> Option<Vec<(Vec<u8>, String)>> {
    match id {
        Identification::Other { ty, data } if *ty == IdType::DER_ASN1_DN => parse_dn(data),
        _ => None,
    }
}

/// The key an exact identity is stored under: FQDNs and e-mail domains in
/// lower case.
fn normalized(id: &Identification) -> Identification {
    match id {
        Identification::Fqdn(s) => Identification::Fqdn(s.to_ascii_lowercase()),
        Identification::Other { ty, data } if *ty == IdType::RFC822_ADDR => {
            let data = match data.iter().rposition(|&b| b == b'@') {
                Some(at) => {
                    let mut d = data.clone();
                    d[at..].make_ascii_lowercase();
                    d
                }
                None => data.clone(),
            };
            Identification::Other { ty: *ty, data }
        }
        other => other.clone(),
    }
}

/// The domain of an RFC 822 identity, lower case.
fn email_domain(id: &Identification) -> Option<String> {
    match id {
        Identification::Other { ty, data } if *ty == IdType::RFC822_ADDR => {
            let at = data.iter().rposition(|&b| b == b'@')?;
            let d = std::str::from_utf8(&data[at + 1..]).ok()?;
            (!d.is_empty()).then(|| d.to_ascii_lowercase())
        }
        _ => None,
    }
}

impl IdPattern {
    /// Whether `id` is one this pattern accepts.
    pub fn matches(&self, id: &Identification) -> bool {
        match self {
            IdPattern::Any => true,
            IdPattern::Exact(e) => normalized(e) == normalized(id),
            IdPattern::EmailDomain(d) => email_domain(id).as_deref() == Some(d.as_str()),
            IdPattern::FqdnSuffix(d) => match id {
                Identification::Fqdn(f) => {
                    let f = f.to_ascii_lowercase();
                    f.len() > d.len() + 1
                        && f.ends_with(d.as_str())
                        && f.as_bytes()[f.len() - d.len() - 1] == b'.'
                }
                _ => false,
            },
            IdPattern::Dn(p) => dn_of(id).is_some_and(|dn| p.matches_attributes(&dn)),
        }
    }

    /// The pattern with its domain or identity normalized (what the
    /// directory stores).
    fn normalize(self) -> Self {
        match self {
            IdPattern::Exact(id) => IdPattern::Exact(normalized(&id)),
            IdPattern::EmailDomain(d) => IdPattern::EmailDomain(d.to_ascii_lowercase()),
            IdPattern::FqdnSuffix(d) => IdPattern::FqdnSuffix(d.to_ascii_lowercase()),
            IdPattern::Any => IdPattern::Any,
            IdPattern::Dn(p) => IdPattern::Dn(p),
        }
    }
}

/// Two entries for one pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two entries for one identity pattern")]
pub struct DuplicatePattern;

/// Values by identity pattern. [`IdDirectory::lookup`] returns the most
/// specific match: the exact identity, else the longest `*.domain`
/// suffix or the `*@domain`, else `%any`.
#[derive(Clone)]
pub struct IdDirectory<T> {
    exact: HashMap<Identification, T>,
    email_domains: HashMap<String, T>,
    fqdn_suffixes: HashMap<String, T>,
    /// DNs without wildcards, by their attributes (values in lower case).
    exact_dns: HashMap<Vec<(Vec<u8>, String)>, T>,
    /// DN patterns with wildcards, fewest wildcards first (scanned).
    dn_patterns: Vec<(DnPattern, T)>,
    any: Option<T>,
}

impl<T> Default for IdDirectory<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            email_domains: HashMap::new(),
            fqdn_suffixes: HashMap::new(),
            exact_dns: HashMap::new(),
            dn_patterns: Vec::new(),
            any: None,
        }
    }
}

impl<T> core::fmt::Debug for IdDirectory<T> {
    /// Sizes only: values may be secrets.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdDirectory")
            .field("exact", &self.exact.len())
            .field("email_domains", &self.email_domains.len())
            .field("fqdn_suffixes", &self.fqdn_suffixes.len())
            .field("exact_dns", &self.exact_dns.len())
            .field("dn_patterns", &self.dn_patterns.len())
            .field("any", &self.any.is_some())
            .finish()
    }
}

impl<T> IdDirectory<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.exact.len()
            + self.email_domains.len()
            + self.fqdn_suffixes.len()
            + self.exact_dns.len()
            + self.dn_patterns.len()
            + usize::from(self.any.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `value` for `pattern`; a second value for the same pattern is
    /// refused (the configuration must not leave the choice to order).
    pub fn insert(&mut self, pattern: IdPattern, value: T) -> Result<(), DuplicatePattern> {
        use std::collections::hash_map::Entry;
        fn put<K: std::hash::Hash + Eq, T>(
            m: &mut HashMap<K, T>,
            k: K,
            v: T,
        ) -> Result<(), DuplicatePattern> {
            match m.entry(k) {
                Entry::Occupied(_) => Err(DuplicatePattern),
                Entry::Vacant(e) => {
                    e.insert(v);
                    Ok(())
                }
            }
        }
        match pattern.normalize() {
            IdPattern::Any if self.any.is_some() => Err(DuplicatePattern),
            IdPattern::Any => {
                self.any = Some(value);
                Ok(())
            }
            IdPattern::Exact(id) => put(&mut self.exact, id, value),
            IdPattern::EmailDomain(d) => put(&mut self.email_domains, d, value),
            IdPattern::FqdnSuffix(d) => put(&mut self.fqdn_suffixes, d, value),
            IdPattern::Dn(p) => match p.key() {
                Some(k) => put(&mut self.exact_dns, k, value),
                None if self.dn_patterns.iter().any(|(q, _)| *q == p) => Err(DuplicatePattern),
                None => {
                    let wild = |p: &DnPattern| p.0.iter().filter(|(_, v)| v.is_none()).count();
                    let at = self
                        .dn_patterns
                        .partition_point(|(q, _)| wild(q) <= wild(&p));
                    self.dn_patterns.insert(at, (p, value));
                    Ok(())
                }
            },
        }
    }

    /// The value of the most specific pattern `id` matches.
    pub fn lookup(&self, id: &Identification) -> Option<&T> {
        if let Some(v) = self.exact.get(&normalized(id)) {
            return Some(v);
        }
        if let Some(d) = email_domain(id) {
            if let Some(v) = self.email_domains.get(&d) {
                return Some(v);
            }
        }
        if let (Identification::Fqdn(f), false) = (id, self.fqdn_suffixes.is_empty()) {
            let f = f.to_ascii_lowercase();
            // Strictly below: the suffixes after each dot, longest first.
            let mut rest = f.as_str();
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(v) = self.fqdn_suffixes.get(rest) {
                    return Some(v);
                }
            }
        }
        if let Some(dn) = dn_of(id) {
            let key: Vec<(Vec<u8>, String)> = dn
                .iter()
                .map(|(o, v)| (o.clone(), v.to_ascii_lowercase()))
                .collect();
            if let Some(v) = self.exact_dns.get(&key) {
                return Some(v);
            }
            if let Some((_, v)) = self
                .dn_patterns
                .iter()
                .find(|(p, _)| p.matches_attributes(&dn))
            {
                return Some(v);
            }
        }
        self.any.as_ref()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn email(s: &str) -> Identification {
        Identification::Other {
            ty: IdType::RFC822_ADDR,
            data: s.as_bytes().to_vec(),
        }
    }
    fn fqdn(s: &str) -> Identification {
        Identification::Fqdn(s.into())
    }

    #[test]
    fn patterns_match_what_swanctl_would() {
        let p = IdPattern::EmailDomain("branches.example".into());
        assert!(p.matches(&email("alice@branches.example")));
        assert!(p.matches(&email("Alice@Branches.EXAMPLE")));
        assert!(!p.matches(&email("alice@evil-branches.example")));
        assert!(!p.matches(&email("alice@x.branches.example")));
        assert!(!p.matches(&fqdn("branches.example")));
        let p = IdPattern::FqdnSuffix("branches.example".into());
        assert!(p.matches(&fqdn("r1.branches.example")));
        assert!(p.matches(&fqdn("a.R1.branches.example")));
        assert!(!p.matches(&fqdn("branches.example")));
        assert!(!p.matches(&fqdn("evilbranches.example")));
        assert!(!p.matches(&email("r1@branches.example")));
        assert!(IdPattern::Any.matches(&Identification::KeyId(vec![1])));
        let p = IdPattern::Exact(fqdn("GW.example"));
        assert!(p.matches(&fqdn("gw.example")));
        assert!(!p.matches(&Identification::KeyId(b"gw.example".to_vec())));
    }

    #[test]
    fn lookup_prefers_the_most_specific_entry_and_refuses_duplicates() {
        let mut d = IdDirectory::new();
        d.insert(IdPattern::Any, 0).unwrap();
        d.insert(IdPattern::FqdnSuffix("example".into()), 1)
            .unwrap();
        d.insert(IdPattern::FqdnSuffix("branches.example".into()), 2)
            .unwrap();
        d.insert(IdPattern::Exact(fqdn("hq.branches.example")), 3)
            .unwrap();
        d.insert(IdPattern::EmailDomain("branches.example".into()), 4)
            .unwrap();
        d.insert(IdPattern::Exact(email("boss@Branches.example")), 5)
            .unwrap();
        assert_eq!(d.len(), 6);
        assert_eq!(d.lookup(&fqdn("r1.branches.example")), Some(&2));
        assert_eq!(d.lookup(&fqdn("HQ.branches.example")), Some(&3));
        assert_eq!(d.lookup(&fqdn("www.example")), Some(&1));
        assert_eq!(d.lookup(&fqdn("example")), Some(&0));
        assert_eq!(d.lookup(&email("x@branches.example")), Some(&4));
        assert_eq!(d.lookup(&email("boss@branches.example")), Some(&5));
        assert_eq!(d.lookup(&email("x@other.example")), Some(&0));
        assert_eq!(
            d.insert(IdPattern::Exact(fqdn("hq.BRANCHES.example")), 9),
            Err(DuplicatePattern)
        );
        assert_eq!(d.insert(IdPattern::Any, 9), Err(DuplicatePattern));
        let mut e: IdDirectory<u8> = IdDirectory::new();
        assert_eq!(e.lookup(&fqdn("a.b")), None);
        e.insert(IdPattern::Exact(fqdn("a.b")), 1).unwrap();
        assert_eq!(e.lookup(&fqdn("c.a.b")), None);
    }

    /// DER of a DN with these (OID, value) attributes, one per RDN,
    /// values as UTF8String.
    pub(crate) fn dn_der(attrs: &[(&[u8], &str)]) -> Vec<u8> {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if content.len() < 0x80 {
                v.push(content.len() as u8);
            } else {
                v.push(0x82);
                v.extend_from_slice(&(content.len() as u16).to_be_bytes());
            }
            v.extend_from_slice(content);
            v
        }
        let mut rdns = Vec::new();
        for (oid, value) in attrs {
            let mut ava = tlv(0x06, oid);
            ava.extend(tlv(0x0c, value.as_bytes()));
            rdns.extend(tlv(0x31, &tlv(0x30, &ava)));
        }
        tlv(0x30, &rdns)
    }

    pub(crate) fn dn(attrs: &[(&[u8], &str)]) -> Identification {
        Identification::Other {
            ty: IdType::DER_ASN1_DN,
            data: dn_der(attrs),
        }
    }

    pub(crate) const C: &[u8] = &[0x55, 0x04, 0x06];
    pub(crate) const O: &[u8] = &[0x55, 0x04, 0x0a];
    pub(crate) const CN: &[u8] = &[0x55, 0x04, 0x03];

    #[test]
    fn dn_patterns_match_attribute_by_attribute() {
        let p = DnPattern::parse("C=DE, O=Example, CN=*").unwrap();
        assert_eq!(p.0.len(), 3);
        let pat = IdPattern::Dn(p.clone());
        assert!(pat.matches(&dn(&[(C, "DE"), (O, "Example"), (CN, "alice")])));
        assert!(pat.matches(&dn(&[(C, "de"), (O, "EXAMPLE"), (CN, "bob")])));
        assert!(!pat.matches(&dn(&[(C, "DE"), (O, "Other"), (CN, "alice")])));
        assert!(!pat.matches(&dn(&[(C, "DE"), (O, "Example")])));
        assert!(!pat.matches(&dn(&[(O, "Example"), (C, "DE"), (CN, "x")])));
        assert!(!pat.matches(&fqdn("alice.example")));
        for bad in ["C=DE, X=1", "CN", "CN=a*", "CN=", "CN=a\\,b"] {
            assert!(DnPattern::parse(bad).is_err(), "{bad}");
        }
        // Exact DNs are hashed, wildcard ones scanned, fewest wildcards first.
        let mut d = IdDirectory::new();
        d.insert(
            IdPattern::Dn(DnPattern::parse("C=DE, O=Example, CN=*").unwrap()),
            1,
        )
        .unwrap();
        d.insert(
            IdPattern::Dn(DnPattern::parse("C=DE, O=*, CN=*").unwrap()),
            2,
        )
        .unwrap();
        d.insert(
            IdPattern::Dn(DnPattern::parse("C=DE, O=Example, CN=Boss").unwrap()),
            3,
        )
        .unwrap();
        assert_eq!(
            d.insert(
                IdPattern::Dn(DnPattern::parse("C=DE,O=Example,CN=*").unwrap()),
                4
            ),
            Err(DuplicatePattern)
        );
        assert_eq!(
            d.lookup(&dn(&[(C, "DE"), (O, "Example"), (CN, "alice")])),
            Some(&1)
        );
        assert_eq!(
            d.lookup(&dn(&[(C, "DE"), (O, "Other"), (CN, "alice")])),
            Some(&2)
        );
        assert_eq!(
            d.lookup(&dn(&[(C, "DE"), (O, "example"), (CN, "boss")])),
            Some(&3)
        );
        assert_eq!(
            d.lookup(&dn(&[(C, "FR"), (O, "Example"), (CN, "alice")])),
            None
        );
    }

    #[test]
    fn malformed_dns_match_nothing() {
        let good = dn_der(&[(C, "DE"), (CN, "alice")]);
        assert!(parse_dn(&good).is_some());
        for cut in 0..good.len() {
            assert_eq!(parse_dn(&good[..cut]), None, "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(parse_dn(&trailing), None);
        let many: Vec<(&[u8], &str)> = vec![(CN, "x"); MAX_DN_ATTRIBUTES + 1];
        assert_eq!(parse_dn(&dn_der(&many)), None);
    }

    proptest! {
        #[test]
        fn dn_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_dn(&bytes);
        }
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9-]{1,8}"
    }

    proptest! {
        /// The directory answers what a linear scan over its patterns,
        /// most specific first, would.
        #[test]
        fn lookup_agrees_with_a_linear_scan(
            suffixes in proptest::collection::vec(proptest::collection::vec(label(), 1..3), 0..6),
            domains in proptest::collection::vec(proptest::collection::vec(label(), 1..3), 0..4),
            exact in proptest::collection::vec(proptest::collection::vec(label(), 1..4), 0..4),
            any in any::<bool>(),
            probe in proptest::collection::vec(label(), 1..5),
            user in label(),
            as_email in any::<bool>(),
        ) {
            let mut d = IdDirectory::new();
            let mut pats = Vec::new();
            for (i, s) in suffixes.iter().enumerate() {
                let p = IdPattern::FqdnSuffix(s.join("."));
                if d.insert(p.clone(), i).is_ok() { pats.push((p, i)); }
            }
            for (i, s) in domains.iter().enumerate() {
                let p = IdPattern::EmailDomain(s.join("."));
                if d.insert(p.clone(), 100 + i).is_ok() { pats.push((p, 100 + i)); }
            }
            for (i, s) in exact.iter().enumerate() {
                let p = IdPattern::Exact(fqdn(&s.join(".")));
                if d.insert(p.clone(), 200 + i).is_ok() { pats.push((p, 200 + i)); }
            }
            if any {
                d.insert(IdPattern::Any, 300).unwrap();
            }
            let host = probe.join(".");
            let id = if as_email { email(&format!("{user}@{host}")) } else { fqdn(&host) };
            // Linear reference: exact, then e-mail domain, then the
            // longest suffix, then %any.
            let rank = |p: &IdPattern| match p {
                IdPattern::Exact(_) => (0, 0),
                IdPattern::EmailDomain(_) => (1, 0),
                IdPattern::FqdnSuffix(s) => (2, usize::MAX - s.len()),
                IdPattern::Any => (3, 0),
                IdPattern::Dn(_) => (4, 0),
            };
            let want = pats
                .iter()
                .filter(|(p, _)| p.matches(&id))
                .min_by_key(|(p, _)| rank(p))
                .map(|(_, v)| *v)
                .or(any.then_some(300));
            prop_assert_eq!(d.lookup(&id).copied(), want);
        }
    }
}
