//! The I/O side of the virtual IP pools (`[[pool]]`): one shared
//! [`ike::pool::Pool`] per pool name for every tunnel's engine, its leases
//! written to `[control] state_dir` whenever they change and read back at
//! start, so that a restart never hands one address to two clients.
//!
//! The file, `pool-NAME.json`, is written to a temporary file of mode
//! 0600 and renamed over the old one (a crash leaves the old or the new
//! file, never half of one).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ike::pool::{LeaseRecord, Pool, PoolAttributes, SharedPool};
use ike::Timestamp;

use crate::config::PoolConfig;

/// How long a lease read back at start stays reserved for its identity
/// before another client may be given the address: long enough for a
/// client connected before the restart to notice (DPD, retransmissions)
/// and come back.
pub const LEASE_GRACE_MS: u64 = 10 * 60 * 1000;

/// Most leases read from one state file (a pool never holds more than
/// its offline limit plus its clients; a bigger file is not ours).
const MAX_LEASES_READ: usize = 1 << 20;

fn lock(p: &SharedPool) -> std::sync::MutexGuard<'_, Pool> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
pub(super) struct Pools {
    by_name: BTreeMap<String, (PoolConfig, SharedPool)>,
    state_dir: Option<PathBuf>,
    /// The generation of each pool last written.
    written: BTreeMap<String, u64>,
    pub write_errors: u64,
}

impl Pools {
    pub fn new(state_dir: Option<PathBuf>) -> Self {
        Self {
            state_dir,
            ..Self::default()
        }
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.state_dir
            .as_ref()
            .map(|d| d.join(format!("pool-{safe}.json")))
    }

    /// The shared pools of `names` (validated to exist in `config`),
    /// made on first use: restored from the state file, or, when the
    /// pool's definition changed on a reload, from the leases of the one
    /// it replaces (either way held for [`LEASE_GRACE_MS`]).
    pub fn shared(
        &mut self,
        pools: &[PoolConfig],
        names: &[String],
        now: Timestamp,
    ) -> Result<Vec<SharedPool>, String> {
        let mut out = Vec::new();
        for name in names {
            let pc = pools
                .iter()
                .find(|p| p.name == *name)
                .ok_or_else(|| format!("no [[pool]] named {name:?}"))?;
            if let Some((old, shared)) = self.by_name.get(name) {
                if old == pc {
                    out.push(shared.clone());
                    continue;
                }
            }
            let attrs = PoolAttributes {
                dns: pc.dns.clone(),
                subnets: pc.subnets.clone(),
            };
            let mut pool = Pool::new(name, pc.ranges.clone(), attrs)
                .map_err(|e| format!("pool {name}: {e}"))?;
            let leases = match self.by_name.get(name) {
                Some((_, old)) => lock(old).snapshot(),
                None => self.read(name),
            };
            pool.restore(&leases, now, LEASE_GRACE_MS);
            if pool.stats().restore_dropped > 0 {
                tracing::warn!(pool = %name, dropped = pool.stats().restore_dropped, "virtual IP leases outside the pool's addresses now were dropped");
            }
            let shared = pool.shared();
            self.by_name
                .insert(name.clone(), (pc.clone(), shared.clone()));
            self.written.remove(name);
            out.push(shared);
        }
        Ok(out)
    }

    /// The leases of the state file, none if there is none or it cannot
    /// be read (said in the log).
    fn read(&self, name: &str) -> Vec<LeaseRecord> {
        let Some(path) = self.file(name) else {
            return Vec::new();
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the virtual IP leases");
                return Vec::new();
            }
        };
        match parse_leases(&text) {
            Some(v) => {
                tracing::info!(pool = %name, leases = v.len(), "virtual IP leases restored, held for their clients");
                v
            }
            None => {
                tracing::error!(path = %path.display(), "virtual IP lease file is not valid; ignored");
                Vec::new()
            }
        }
    }

    /// Writes every pool whose leases changed since last written.
    pub fn persist(&mut self) {
        let due: Vec<(String, u64, Vec<LeaseRecord>)> = self
            .by_name
            .iter()
            .filter_map(|(name, (_, p))| {
                let p = lock(p);
                let g = p.generation();
                (self.written.get(name) != Some(&g)).then(|| (name.clone(), g, p.snapshot()))
            })
            .collect();
        for (name, generation, leases) in due {
            let Some(path) = self.file(&name) else {
                self.written.insert(name, generation);
                continue;
            };
            match write_atomic(&path, leases_json(&leases).as_bytes()) {
                Ok(()) => {
                    self.written.insert(name, generation);
                }
                Err(e) => {
                    self.write_errors += 1;
                    tracing::error!(path = %path.display(), error = %e, "cannot write the virtual IP leases (retried at the next change)");
                }
            }
        }
    }

    /// The counters of every pool added up, for the metrics: among them
    /// the refusals (`exhausted`) and the requests for an address the
    /// client may not have (`requested_replaced`: outside the pool or
    /// held by another identity).
    pub fn stats_total(&self) -> ike::pool::PoolStats {
        let mut t = ike::pool::PoolStats::default();
        for (_, p) in self.by_name.values() {
            let p = lock(p);
            let s = p.stats();
            t.allocated += s.allocated;
            t.reused += s.reused;
            t.requested_honoured += s.requested_honoured;
            t.requested_replaced += s.requested_replaced;
            t.reclaimed += s.reclaimed;
            t.exhausted += s.exhausted;
            t.released += s.released;
            t.restore_dropped += s.restore_dropped;
        }
        t
    }

    /// `(pool, online, offline)` for the metrics.
    pub fn usage(&self) -> Vec<(String, usize, usize)> {
        self.by_name
            .iter()
            .map(|(n, (_, p))| {
                let p = lock(p);
                (n.clone(), p.online(), p.offline())
            })
            .collect()
    }
}

fn leases_json(leases: &[LeaseRecord]) -> String {
    let v: Vec<serde_json::Value> = leases
        .iter()
        .map(|l| serde_json::json!({ "identity": l.identity, "addr": l.addr.to_string() }))
        .collect();
    serde_json::json!({ "version": 1, "leases": v }).to_string()
}

fn parse_leases(text: &str) -> Option<Vec<LeaseRecord>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("version")?.as_u64()? != 1 {
        return None;
    }
    let list = v.get("leases")?.as_array()?;
    if list.len() > MAX_LEASES_READ {
        return None;
    }
    list.iter()
        .map(|l| {
            Some(LeaseRecord {
                identity: l.get("identity")?.as_str()?.to_owned(),
                addr: l.get("addr")?.as_str()?.parse::<IpAddr>().ok()?,
            })
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file of mode 0600 in the
/// same directory, synced, then renamed over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the metrics export: one client asking for every address and
    /// for one outside the pool gets one address; a second identity
    /// finds the pool empty. Each is counted.
    #[test]
    fn pool_refusals_are_added_up_for_the_metrics() {
        use ike::pool::Family::V4;
        let pools = vec![PoolConfig {
            name: "ra".into(),
            ranges: vec![ike::pool::AddrRange::parse("10.3.0.1-10.3.0.1").unwrap()],
            dns: vec![],
            subnets: vec![],
        }];
        let names = vec!["ra".to_string()];
        let mut p = Pools::new(None);
        let pool = p.shared(&pools, &names, Timestamp(0)).unwrap().remove(0);
        let outside = Some("192.0.2.1".parse().unwrap());
        let mut l = lock(&pool);
        let a = l.allocate("fqdn:mallory", V4, outside, Timestamp(0));
        // Reconnecting (another IKE SA of the same identity): the same one.
        assert_eq!(l.allocate("fqdn:mallory", V4, None, Timestamp(0)), a);
        assert_eq!(l.allocate("fqdn:bob", V4, a, Timestamp(0)), None);
        drop(l);
        let t = p.stats_total();
        assert_eq!(
            (t.allocated, t.reused, t.requested_replaced, t.exhausted),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn leases_survive_a_restart_through_the_state_file() {
        let dir = std::env::temp_dir().join(format!("espresso-pools-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pools = vec![PoolConfig {
            name: "ra".into(),
            ranges: vec![ike::pool::AddrRange::parse("10.3.0.1-10.3.0.2").unwrap()],
            dns: vec![],
            subnets: vec![],
        }];
        let names = vec!["ra".to_string()];
        let mut p = Pools::new(Some(dir.clone()));
        let pool = p.shared(&pools, &names, Timestamp(0)).unwrap().remove(0);
        let a = lock(&pool).allocate("fqdn:alice", ike::pool::Family::V4, None, Timestamp(0));
        p.persist();
        let path = dir.join("pool-ra.json");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A new process: alice's address waits for her; bob gets the other.
        let mut q = Pools::new(Some(dir.clone()));
        let pool = q.shared(&pools, &names, Timestamp(0)).unwrap().remove(0);
        let mut pool = lock(&pool);
        assert_eq!(pool.offline(), 1);
        let b = pool.allocate("fqdn:bob", ike::pool::Family::V4, None, Timestamp(1));
        assert!(b.is_some() && b != a);
        assert_eq!(
            pool.allocate("fqdn:carol", ike::pool::Family::V4, None, Timestamp(2)),
            None
        );
        assert_eq!(
            pool.allocate("fqdn:alice", ike::pool::Family::V4, None, Timestamp(3)),
            a
        );
        drop(pool);
        assert!(parse_leases("{\"version\":2,\"leases\":[]}").is_none());
        assert!(parse_leases("garbage").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
