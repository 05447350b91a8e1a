//! Runs DPDK's own `dpdk-test-crypto-perf` (Debian package `dpdk-dev`) as
//! an outside baseline for the AES-GCM backends, and parses its result.
//!
//! It runs without hugepages or PCI on the `crypto_aesni_gcm` virtual
//! device (DPDK's ipsec-mb GCM PMD). It needs two lcores: the main one and
//! one worker that runs the test. Its "Cycles/Buf" are TSC cycles per
//! operation through the cryptodev API (enqueue, dequeue, the op and mbuf
//! handling included), as in [`crate::clock`].

use std::process::Command;

/// The binary.
pub const BINARY: &str = "dpdk-test-crypto-perf";

/// One line of the throughput test's result table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CperfRow {
    /// Bytes encrypted per operation.
    pub buf_size: usize,
    /// Millions of operations per second.
    pub mops: f64,
    /// TSC cycles per operation.
    pub cycles_per_buf: f64,
}

impl CperfRow {
    /// Nanoseconds per operation.
    pub fn ns(&self) -> f64 {
        1000.0 / self.mops
    }
}

/// A completed run: the command line and its rows.
#[derive(Clone, Debug)]
pub struct CperfRun {
    /// The command as it was run (shell-quoted enough to paste).
    pub command: String,
    /// One row per buffer size.
    pub rows: Vec<CperfRow>,
}

/// The arguments for an AES-GCM throughput test: `key_len` 16 or 32,
/// `op` "encrypt" or "decrypt", AAD of 8 bytes (SPI and sequence number),
/// 12-byte nonce, 16-byte tag, bursts of 32 as the engine's.
pub fn gcm_args(key_len: usize, op: &str, sizes: &[usize], total_ops: u64) -> Vec<String> {
    let prefix = format!("espresso-cperf-{}", std::process::id());
    let sizes = sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    [
        "--no-huge",
        "--no-pci",
        "-m",
        "256",
        "--file-prefix",
        &prefix,
        "--vdev",
        "crypto_aesni_gcm",
        "-l",
        "0,1",
        "--",
        "--devtype",
        "crypto_aesni_gcm",
        "--optype",
        "aead",
        "--aead-algo",
        "aes-gcm",
        "--aead-op",
        op,
        "--aead-key-sz",
        &key_len.to_string(),
        "--aead-iv-sz",
        "12",
        "--aead-aad-sz",
        "8",
        "--digest-sz",
        "16",
        "--burst-sz",
        "32",
        "--buffer-sz",
        &sizes,
        "--total-ops",
        &total_ops.to_string(),
        "--ptest",
        "throughput",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs the binary with `args` and parses its table. Removes the runtime
/// directory DPDK leaves under `/var/run/dpdk/<file-prefix>` (or
/// `$XDG_RUNTIME_DIR/dpdk/...` when not root).
pub fn run(args: &[String]) -> Result<CperfRun, String> {
    let command = format!("{BINARY} {}", args.join(" "));
    let out = Command::new(BINARY)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {BINARY}: {e}"));
    if let Some(i) = args.iter().position(|a| a == "--file-prefix") {
        if let Some(prefix) = args.get(i + 1) {
            let mut dirs = vec![std::path::PathBuf::from("/var/run/dpdk").join(prefix)];
            if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
                dirs.push(std::path::PathBuf::from(x).join("dpdk").join(prefix));
            }
            for d in dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().chain(err.lines()).rev().take(5).collect();
        return Err(format!(
            "{BINARY} exited with {}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let rows = parse(&text);
    if rows.is_empty() {
        return Err(format!("{BINARY}: no result rows in its output"));
    }
    Ok(CperfRun { command, rows })
}

/// Parses the throughput table:
///
/// ```text
///     lcore id    Buf Size  Burst Size    Enqueued    Dequeued  Failed Enq  Failed Deq        MOps        Gbps  Cycles/Buf
///            1          64          32     1000000     1000000           0           0     16.5117      8.4540      157.46
/// ```
pub fn parse(output: &str) -> Vec<CperfRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in output.lines() {
        if line.contains("Cycles/Buf") && line.contains("MOps") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 10 {
            continue;
        }
        let (Ok(buf_size), Ok(mops), Ok(cycles_per_buf)) =
            (f[1].parse(), f[7].parse(), f[9].parse())
        else {
            continue;
        };
        rows.push(CperfRow {
            buf_size,
            mops,
            cycles_per_buf,
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_throughput_table() {
        let out = "\
# cperf test: throughput
    lcore id    Buf Size  Burst Size    Enqueued    Dequeued  Failed Enq  Failed Deq        MOps        Gbps  Cycles/Buf

           1          64          32     1000000     1000000           0           0     16.5117      8.4540      157.46
           1        1400          32     1000000     1000000           0           0      6.6329     74.2890      391.98
";
        let rows = parse(out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].buf_size, 64);
        assert!((rows[0].mops - 16.5117).abs() < 1e-9);
        assert!((rows[1].cycles_per_buf - 391.98).abs() < 1e-9);
        assert!((rows[1].ns() - 1000.0 / 6.6329).abs() < 1e-9);
    }
}
