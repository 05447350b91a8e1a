//! Admission of new IKE SAs under load: stateless cookies with a rotating
//! secret (RFC 7296 §2.6) and half-open SA limits (RFC 8019).
//!
//! A responder that answers IKE_SA_INIT spends a Diffie-Hellman
//! computation and keeps state until IKE_AUTH. Three bounds keep that in
//! check, all O(1) per request:
//! - above `cookie_threshold` half-open SAs (all tunnels together) every
//!   new IKE_SA_INIT must return a COOKIE first, which a spoofed source
//!   never can: spoofed floods hold at most `cookie_threshold` SAs;
//! - a source that proved its address with a cookie holds at most
//!   `half_open_per_source` half-open SAs (RFC 8019 §4.2 rate limiting;
//!   IPv6 sources count per /64, as RFC 8019 §6 advises, since one host
//!   has that many addresses);
//! - no more than `half_open_max` half-open SAs exist at once.
//!
//! The counts live in a [`HalfOpenBudget`] that the driver shares between
//! every tunnel's engine, so adding tunnels does not multiply the state
//! an attacker can make the gateway hold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::crypto::{ct_eq, Prf, RngSource, SecretBytes};
use super::sa::Timestamp;

/// Length of a cookie we issue: version byte and HMAC-SHA-256.
const COOKIE_LEN: usize = 1 + 32;

/// The key half-open SAs are counted under: the address, or its /64 for
/// IPv6.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => {
            let masked = u128::from(a) & (u128::MAX << 64);
            IpAddr::V6(masked.into())
        }
    }
}

/// Where the responder SPIs of half-open SAs are published while they are
/// half-open, so that the data plane can tell an initiator's IKE_AUTH
/// (which names that SPI, RFC 7296 §3.1) from a spoofed flood (which never
/// saw it). At most `half_open_max` SPIs are in it at once.
pub trait HalfOpenSpis: Send + Sync + std::fmt::Debug {
    /// `spi` became half-open. False if it did not fit (its datagrams are
    /// then treated like any unauthenticated ones).
    fn opened(&self, spi: u64) -> bool;
    /// `spi` is no longer half-open.
    fn closed(&self, spi: u64);
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Half-open SAs whose initiator returned a valid cookie, by source.
    /// Entries go at zero, so it never holds more than `total` keys.
    proven: HashMap<IpAddr, u32>,
    /// Where half-open SPIs are published, if anywhere.
    spis: Option<Arc<dyn HalfOpenSpis>>,
    /// SPIs [`HalfOpenSpis::opened`] refused.
    spis_missed: u64,
}

/// Half-open SA counts shared by the engines of every tunnel (all on the
/// control thread; the lock is never contended).
#[derive(Debug, Clone, Default)]
pub struct HalfOpenBudget(Arc<Mutex<Counts>>);

/// Why a new half-open SA was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source already holds `half_open_per_source` proven SAs.
    PerSource,
    /// `half_open_max` half-open SAs exist.
    Global,
}

/// A half-open SA's place in the budget, given back with
/// [`HalfOpenBudget::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The source, when it was counted against the per-source limit.
    proven: Option<IpAddr>,
    /// The half-open SA's responder SPI, once [`HalfOpenBudget::bind`]
    /// published it.
    spi: Option<u64>,
}

impl HalfOpenBudget {
    pub fn new() -> Self {
        Self::default()
    }

    /// A budget that publishes its half-open SAs' SPIs to `spis`.
    pub fn with_spis(spis: Arc<dyn HalfOpenSpis>) -> Self {
        let b = Self::default();
        b.counts().spis = Some(spis);
        b
    }

    /// Ties `t` to the half-open SA with our SPI `spi` and publishes it
    /// until the ticket is released.
    pub fn bind(&self, t: &mut Ticket, spi: u64) {
        let mut c = self.counts();
        if let Some(s) = &c.spis {
            if s.opened(spi) {
                t.spi = Some(spi);
            } else {
                c.spis_missed += 1;
            }
        }
    }

    /// Half-open SPIs that could not be published.
    pub fn spis_missed(&self) -> u64 {
        self.counts().spis_missed
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Nothing here can panic with the lock held; a poisoned lock still
        // holds consistent counts.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Half-open SAs of every engine sharing this budget.
    pub fn total(&self) -> usize {
        self.counts().total
    }

    /// Proven half-open SAs of `ip`'s source.
    pub fn of_source(&self, ip: IpAddr) -> u32 {
        self.counts()
            .proven
            .get(&source_key(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Takes a place for a new half-open SA from `ip`. `proven`: the
    /// initiator returned a valid cookie, so `ip` is its address and it is
    /// held to `per_source`.
    pub fn acquire(
        &self,
        ip: IpAddr,
        proven: bool,
        per_source: usize,
        max: usize,
    ) -> Result<Ticket, Refusal> {
        let mut c = self.counts();
        if c.total >= max {
            return Err(Refusal::Global);
        }
        let proven = if proven {
            let key = source_key(ip);
            let n = c.proven.entry(key).or_insert(0);
            if *n as usize >= per_source {
                if *n == 0 {
                    c.proven.remove(&key);
                }
                return Err(Refusal::PerSource);
            }
            *n += 1;
            Some(key)
        } else {
            None
        };
        c.total += 1;
        Ok(Ticket { proven, spi: None })
    }

    /// Gives a place back (the SA was established or removed).
    pub fn release(&self, t: Ticket) {
        let mut c = self.counts();
        c.total = c.total.saturating_sub(1);
        if let (Some(spi), Some(s)) = (t.spi, &c.spis) {
            s.closed(spi);
        }
        if let Some(key) = t.proven {
            if let Some(n) = c.proven.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.proven.remove(&key);
                }
            }
        }
    }
}

/// The cookie secret (RFC 7296 §2.6): replaced every `lifetime_ms`; a
/// cookie made with the previous secret is still accepted for one more
/// period, so an initiator that got its cookie just before a change is not
/// sent round again. The version byte names the secret.
pub struct CookieSecret {
    current: SecretBytes,
    previous: Option<SecretBytes>,
    version: u8,
    since: Timestamp,
    lifetime_ms: u64,
}

impl core::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieSecret")
            .field("version", &self.version)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

fn fresh(rng: &mut dyn RngSource) -> SecretBytes {
    let mut s = vec![0u8; 32];
    rng.fill(&mut s);
    SecretBytes::new(s)
}

impl CookieSecret {
    pub fn new(rng: &mut dyn RngSource, now: Timestamp, lifetime_ms: u64) -> Self {
        Self {
            current: fresh(rng),
            previous: None,
            version: 0,
            since: now,
            lifetime_ms: lifetime_ms.max(1),
        }
    }

    /// Replaces the secret if its period is over (once per period passed:
    /// after two or more, the previous one is gone too).
    pub fn rotate(&mut self, rng: &mut dyn RngSource, now: Timestamp) -> bool {
        let periods = now.0.saturating_sub(self.since.0) / self.lifetime_ms;
        if periods == 0 {
            return false;
        }
        let next = fresh(rng);
        self.previous = if periods == 1 {
            Some(std::mem::replace(&mut self.current, next))
        } else {
            self.current = next;
            None
        };
        self.version = self.version.wrapping_add(1);
        self.since = self.since.plus(periods * self.lifetime_ms);
        true
    }

    fn mac(secret: &[u8], version: u8, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        let ip = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let mut v = Vec::with_capacity(COOKIE_LEN);
        v.push(version);
        v.extend_from_slice(&Prf::HmacSha256.compute(secret, &[ni, &ip, &spi_i.to_be_bytes()]));
        v
    }

    /// `<VersionIDofSecret> | HMAC(secret, Ni | IPi | SPIi)` (§2.6).
    pub fn make(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        Self::mac(&self.current, self.version, ni, ip, spi_i)
    }

    /// Whether `cookie` was made by the current or the previous secret for
    /// this initiator.
    pub fn check(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some(&v) = cookie.first() else {
            return false;
        };
        if cookie.len() != COOKIE_LEN {
            return false;
        }
        let secret = if v == self.version {
            &self.current
        } else if v == self.version.wrapping_sub(1) {
            match &self.previous {
                Some(p) => p,
                None => return false,
            }
        } else {
            return false;
        };
        ct_eq(cookie, &Self::mac(secret, v, ni, ip, spi_i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_and_limits() {
        let b = HalfOpenBudget::new();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let t1 = b.acquire(ip, true, 2, 10).unwrap();
        let _t2 = b.acquire(ip, true, 2, 10).unwrap();
        assert_eq!(b.acquire(ip, true, 2, 10), Err(Refusal::PerSource));
        // Unproven SAs only count against the total.
        let u = b.acquire(ip, false, 2, 10).unwrap();
        assert_eq!((b.total(), b.of_source(ip)), (3, 2));
        b.release(t1);
        b.release(u);
        assert_eq!((b.total(), b.of_source(ip)), (1, 1));
        // A /64 is one source.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let _x = b.acquire(a, true, 1, 10).unwrap();
        assert_eq!(b.acquire(c, true, 1, 10), Err(Refusal::PerSource));
        for i in 0..8 {
            let ip = IpAddr::from([203, 0, 113, i]);
            b.acquire(ip, false, 1, 10).unwrap();
        }
        assert_eq!(b.acquire(ip, false, 9, 10), Err(Refusal::Global));
    }
}
