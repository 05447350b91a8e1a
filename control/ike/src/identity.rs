//! Identity patterns and a directory keyed by IKE identity (RFC 7296
//! §3.5), for responder templates (which peers a tunnel accepts) and
//! secrets by identity (which PSK a peer must prove).
//!
//! Lookup cost, for `n` entries: exact identities are a `HashMap` (O(1));
//! `*@domain` is a `HashMap` by domain (O(1)); `*.domain` is a `HashMap`
//! by suffix, probed once per label of the presented FQDN (O(labels),
//! at most 128 for the 255 octets an FQDN may have, independent of `n`);
//! `%any` is one slot. Nothing is scanned linearly.
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
    any: Option<T>,
}

impl<T> Default for IdDirectory<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            email_domains: HashMap::new(),
            fqdn_suffixes: HashMap::new(),
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
        self.any.as_ref()
    }
}

#[cfg(test)]
mod tests {
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
