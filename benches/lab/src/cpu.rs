//! On-CPU time of one thread, read from procfs. The machine is shared, so
//! next to the wall-clock rate the lab reports packets per second the
//! worker thread actually ran.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A thread of some process: `/proc/PID/task/TID`.
#[derive(Debug, Clone)]
pub struct ThreadClock {
    dir: PathBuf,
    tick_hz: u64,
}

impl ThreadClock {
    /// The thread `tid` of process `pid`.
    pub fn new(pid: u32, tid: u32) -> Self {
        Self::at(PathBuf::from(format!("/proc/{pid}/task/{tid}")))
    }

    /// The calling thread's directory, resolved to a stable path (the
    /// `/proc/thread-self` link would follow whoever reads it).
    pub fn current() -> std::io::Result<Self> {
        let link = std::fs::read_link("/proc/thread-self")?;
        Ok(Self::at(Path::new("/proc").join(link)))
    }

    fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            // USER_HZ: 100 on every Linux architecture DPDK runs on.
            tick_hz: 100,
        }
    }

    /// The thread id.
    pub fn tid(&self) -> Option<u32> {
        self.dir.file_name()?.to_str()?.parse().ok()
    }

    /// Time the thread has run: `schedstat`'s first field (nanoseconds on
    /// CPU) where the kernel has it, else `stat`'s utime + stime (clock
    /// ticks, so 10 ms resolution).
    pub fn on_cpu(&self) -> std::io::Result<Duration> {
        if let Ok(s) = std::fs::read_to_string(self.dir.join("schedstat")) {
            if let Some(ns) = s.split_whitespace().next().and_then(|f| f.parse().ok()) {
                return Ok(Duration::from_nanos(ns));
            }
        }
        let stat = std::fs::read_to_string(self.dir.join("stat"))?;
        let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable stat")
        })?;
        Ok(Duration::from_secs_f64(ticks as f64 / self.tick_hz as f64))
    }

    /// How many times the scheduler took the CPU from the thread while it
    /// could run (`nonvoluntary_ctxt_switches` in `status`): each is a
    /// stall of a poll-mode thread, however short.
    pub fn preemptions(&self) -> std::io::Result<u64> {
        let status = std::fs::read_to_string(self.dir.join("status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no nonvoluntary_ctxt_switches",
                )
            })
    }

    /// The thread's name (`comm`).
    pub fn name(&self) -> std::io::Result<String> {
        Ok(std::fs::read_to_string(self.dir.join("comm"))?
            .trim()
            .to_string())
    }
}

/// utime + stime (fields 14 and 15) of a `stat` line. The command name
/// (field 2) is in parentheses and may hold spaces, so fields are counted
/// after its closing parenthesis.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The threads of process `pid` with their names.
pub fn threads(pid: u32) -> std::io::Result<Vec<ThreadClock>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let e = e?;
        if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(ThreadClock::new(pid, tid));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_with_spaces() {
        let line = "1234 (lcore worker 1) R 1 1234 1234 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(267));
    }

    #[test]
    fn own_thread_runs() {
        let c = ThreadClock::current().unwrap();
        let a = c.on_cpu().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(c.on_cpu().unwrap() >= a);
        assert!(c.preemptions().is_ok());
        assert!(c.tid().is_some());
    }
}
