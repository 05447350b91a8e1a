//! The gateway as an installed service: the man pages and completions
//! generated from the command line's definition, the systemd unit
//! (`systemd-analyze verify`), `make install` into a staging directory,
//! and the sd_notify conversation of a real `espresso run` (READY=1 only
//! once it forwards with its SAs, RELOADING=1/READY=1, STOPPING=1).
//!
//! The tests that need an outside program, root or DPDK skip without
//! them (and fail under `ESPRESSO_TEST_FULL`, see `testkit`).

// The generator itself, so the test checks what `make build` runs.
#[allow(dead_code)]
#[path = "../examples/gen-docs.rs"]
mod gen_docs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::CommandFactory;
use testkit::{require, Need};

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("espresso-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every subcommand of `espresso`, from its definition (help excluded:
/// clap adds it).
fn subcommands() -> Vec<String> {
    let names: Vec<String> = control::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != "help")
        .collect();
    assert!(names.len() >= 7, "{names:?}");
    names
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {}\n{stderr}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// A page per subcommand besides `espresso.1`, and completions for the
/// three shells that name every subcommand.
#[test]
fn generated_docs_have_every_subcommand() {
    let dir = TempDir::new("docs");
    let files = gen_docs::generate(&dir.0).unwrap();
    let man = dir.0.join("man1");
    assert!(files.contains(&man.join("espresso.1")), "{files:?}");
    for s in subcommands() {
        let page = man.join(format!("espresso-{s}.1"));
        assert!(files.contains(&page), "no {}", page.display());
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{text}");
        for shell in ["espresso.bash", "_espresso", "espresso.fish"] {
            let c = std::fs::read_to_string(dir.0.join("completions").join(shell)).unwrap();
            assert!(c.contains(&s), "{shell} lacks {s}");
        }
    }
}

/// Each page renders without a groff warning; the main page lists every
/// subcommand's page and each subcommand's page shows all its long
/// options.
#[test]
fn man_pages_render() {
    require!(Need::Program("groff"));
    let dir = TempDir::new("man");
    gen_docs::generate(&dir.0).unwrap();
    let render = |page: &str| {
        let out = Command::new("groff")
            // Lines long enough never to wrap or hyphenate an option; plain
            // ASCII, no overstriking.
            .args(["-man", "-Tascii", "-ww", "-rLL=1000n"])
            .args(["-P-c", "-P-b", "-P-u", "-P-o"])
            .arg(dir.0.join("man1").join(page))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{page}: {stderr}"
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let main = render("espresso.1");
    assert!(
        main.contains("NAME") && main.contains("SUBCOMMANDS"),
        "{main}"
    );
    let cli = control::cli::Cli::command();
    for sub in cli.get_subcommands().filter(|c| c.get_name() != "help") {
        let name = sub.get_name();
        assert!(main.contains(&format!("espresso-{name}(1)")), "{main}");
        let page = render(&format!("espresso-{name}.1"));
        assert!(page.contains(&format!("espresso {name}")), "{page}");
        // Hidden arguments (the `-c` kept after the command for old
        // scripts) are left out of the pages on purpose.
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(
                    page.contains(&format!("--{long}")),
                    "{name}: --{long}\n{page}"
                );
            }
        }
    }
}

/// The bash completion parses, and completing `espresso ` offers every
/// subcommand.
#[test]
fn bash_completion_offers_the_subcommands() {
    require!(Need::Program("bash"));
    let dir = TempDir::new("bash");
    gen_docs::generate(&dir.0).unwrap();
    let file = dir.0.join("completions/espresso.bash");
    run_ok(Command::new("bash").arg("-n").arg(&file));
    let script = format!(
        "source '{}'; COMP_WORDS=(espresso ''); COMP_CWORD=1; COMP_LINE='espresso '; COMP_POINT=9; \
         _espresso espresso '' espresso; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let offered = run_ok(Command::new("bash").args(["--norc", "-c", &script]));
    let offered: Vec<&str> = offered.lines().collect();
    for s in subcommands() {
        assert!(offered.contains(&s.as_str()), "{s} not in {offered:?}");
    }
}

/// `systemd-analyze verify` accepts the unit with no warning at all
/// (unknown keys are only warned about), against the built binary; with
/// `man` present, its `Documentation=` pages must exist too (in the
/// generated ones).
#[test]
fn systemd_unit_verifies() {
    require!(Need::Program("systemd-analyze"));
    let dir = TempDir::new("unit");
    gen_docs::generate(&dir.0).unwrap();
    let unit = std::fs::read_to_string(repo().join("control/systemd/espresso.service")).unwrap();
    assert!(
        unit.contains("/usr/local/bin/espresso run"),
        "make install rewrites this path"
    );
    let unit = unit.replace("/usr/local/bin/espresso", env!("CARGO_BIN_EXE_espresso"));
    let path = dir.0.join("espresso.service");
    std::fs::write(&path, unit).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify");
    if Need::Program("man").missing().is_some() {
        cmd.arg("--man=no");
    }
    let out = cmd
        .arg(&path)
        .env("MANPATH", &dir.0)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}

/// `make install DESTDIR=…` (its `build` step taken as done: the test
/// binary stands for the release one) puts each file in its place, the
/// unit pointing at the installed binary; `make uninstall` takes them
/// all back.
#[test]
fn make_install_into_destdir() {
    require!(
        Need::Program("make"),
        Need::Program("install"),
        Need::Program("sed")
    );
    let dir = TempDir::new("install");
    let docs = dir.0.join("docs");
    gen_docs::generate(&docs).unwrap();
    let root = dir.0.join("root");
    let make = |target: &str| {
        let mut cmd = Command::new("make");
        cmd.current_dir(repo())
            .args(["-s", "-o", "build", target])
            .arg(format!("DESTDIR={}", root.display()))
            .arg(format!("ESPRESSO_BIN={}", env!("CARGO_BIN_EXE_espresso")))
            .arg(format!("DOCS_DIR={}", docs.display()));
        run_ok(&mut cmd)
    };
    make("install");
    let mut installed = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                installed.push(p.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    installed.sort();
    let mut want: Vec<String> = [
        "etc/espresso/espresso.toml.example",
        "usr/local/bin/espresso",
        "usr/local/lib/systemd/system/espresso.service",
        "usr/local/share/bash-completion/completions/espresso",
        "usr/local/share/fish/vendor_completions.d/espresso.fish",
        "usr/local/share/man/man1/espresso.1",
        "usr/local/share/zsh/site-functions/_espresso",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        subcommands()
            .iter()
            .map(|s| format!("usr/local/share/man/man1/espresso-{s}.1")),
    )
    .collect();
    want.sort();
    assert_eq!(installed, want);
    let unit = std::fs::read_to_string(root.join("usr/local/lib/systemd/system/espresso.service"))
        .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/espresso run -c /etc/espresso/espresso.toml"));
    // The example never becomes the live configuration.
    assert!(!root.join("etc/espresso/espresso.toml").exists());
    make("uninstall");
    assert!(!root.join("usr/local/bin/espresso").exists());
    assert!(!root
        .join("usr/local/share/man/man1/espresso-run.1")
        .exists());
    assert!(!root.join("etc/espresso").exists());
}

#[cfg(have_dpdk)]
mod notify {
    use std::io::Read;
    use std::os::unix::net::UnixDatagram;
    use std::process::Child;
    use std::time::{Duration, Instant};

    use super::*;

    const K36_A: &str =
        "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223";
    const K36_B: &str =
        "0xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f10111213";

    /// Two null ports (no namespaces needed), one manual SA pair, and
    /// `log_format` (none: the default).
    fn config(socket: &Path, log_format: Option<&str>) -> String {
        let log_format = log_format.map_or(String::new(), |f| format!("log_format = \"{f}\""));
        format!(
            r#"
[dataplane]
workers = 1
memory_mb = 256
mbufs = 4095

[control]
socket = "{}"
log = "debug"
{log_format}

[[interface]]
name = "lan"
device = "net_null0"
role = "lan"
addresses = ["10.1.0.1/24"]

[[interface]]
name = "wan"
device = "net_null1"
role = "wan"
addresses = ["192.0.2.1/24"]

[[route]]
prefix = "10.2.0.0/24"
via = "192.0.2.2"
interface = "wan"

[[tunnel]]
name = "b"
local = "192.0.2.1"
remote = "192.0.2.2"

  [[tunnel.policy]]
  local = "10.1.0.0/24"
  remote = "10.2.0.0/24"

  [[tunnel.sa]]
  spi_in = 0x1001
  spi_out = 0x2001
  algorithm = "aes256gcm16"
  key_in = "{K36_A}"
  key_out = "{K36_B}"
"#,
            socket.display()
        )
    }

    /// Kills the gateway if the test fails before it stopped it.
    struct Gateway(Child);

    impl Drop for Gateway {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    /// The next notification, within `timeout`.
    fn next(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
        sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The fields of a datagram of the journal's native protocol: `KEY=value\n`,
    /// or `KEY\n`, a 64-bit little-endian length, the value and `\n` (for
    /// values that may hold newlines).
    fn journal_fields(mut d: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while !d.is_empty() {
            let end = d
                .iter()
                .position(|&b| b == b'\n' || b == b'=')
                .expect("key");
            let key = String::from_utf8_lossy(&d[..end]).into_owned();
            if d[end] == b'=' {
                let rest = &d[end + 1..];
                let nl = rest.iter().position(|&b| b == b'\n').expect("newline");
                out.push((key, String::from_utf8_lossy(&rest[..nl]).into_owned()));
                d = &rest[nl + 1..];
            } else {
                let len = u64::from_le_bytes(d[end + 1..end + 9].try_into().unwrap()) as usize;
                let value = &d[end + 9..end + 9 + len];
                assert_eq!(d[end + 9 + len], b'\n');
                out.push((key, String::from_utf8_lossy(value).into_owned()));
                d = &d[end + 10 + len..];
            }
        }
        out
    }

    /// Notifications until one has `line`; all of them, in order.
    fn until(sock: &UnixDatagram, line: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match next(sock, left) {
                Some(m) => {
                    let done = m.lines().any(|l| l == line);
                    seen.push(m);
                    if done {
                        return seen;
                    }
                }
                None => break,
            }
        }
        panic!("no {line} within {within:?}; got {seen:?}");
    }

    #[test]
    fn ready_after_ports_and_sas_then_reloading_and_stopping() {
        require!(Need::Root);
        let dir = TempDir::new("notify");
        let control_sock = dir.0.join("espresso.sock");
        let cfg = dir.0.join("espresso.toml");
        std::fs::write(&cfg, config(&control_sock, Some("json"))).unwrap();
        let notify_path = dir.0.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let stderr_path = dir.0.join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_espresso"))
            .args(["run", "--idle-sleep-us", "200", "-c"])
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut gw = Gateway(child);
        let stats = || {
            Command::new(env!("CARGO_BIN_EXE_espresso"))
                .arg("stats")
                .arg("-c")
                .arg(&cfg)
                .output()
                .unwrap()
        };

        let first = until(&notify, "READY=1", Duration::from_secs(60));
        // Nothing said before READY=1 claims the gateway is up.
        assert!(
            first.iter().rev().skip(1).all(|m| !m.contains("READY")),
            "{first:?}"
        );
        assert!(
            first
                .last()
                .unwrap()
                .contains("STATUS=running: 1 workers, 1 inbound SAs, 1 outbound SAs"),
            "{first:?}"
        );
        // At READY=1 the worker already holds both SAs and the ports are
        // counted: the control socket answers with them right away.
        let out = stats();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        for key in ["port.lan.rx_packets ", "port.wan.tx_packets "] {
            assert!(text.contains(key), "{key} not in {text}");
        }
        for sa in ["sa.in.0x00001001.worker 0", "sa.out.0x00002001.worker 0"] {
            assert!(text.lines().any(|l| l == sa), "{sa} not in {text}");
        }

        let out = Command::new(env!("CARGO_BIN_EXE_espresso"))
            .arg("reload")
            .arg("-c")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let reload = until(&notify, "READY=1", Duration::from_secs(10));
        let all = reload.join("");
        let reloading = all.find("RELOADING=1").expect("RELOADING=1");
        assert!(all[reloading..].contains("READY=1"), "{reload:?}");
        assert!(all.contains("MONOTONIC_USEC="), "{reload:?}");

        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(gw.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        until(&notify, "STOPPING=1", Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = gw.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "espresso did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        std::fs::File::open(&stderr_path)
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        assert!(status.success(), "{status}\n{log}");
        // `[control] log_format = "json"` took over from the text of the
        // start: the gateway's own events are JSON objects.
        let events: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let message = |m: &str| {
            events
                .iter()
                .any(|e| e["fields"]["message"].as_str() == Some(m))
        };
        assert!(message("espresso running"), "{log}");
        assert!(message("stopping"), "{log}");
        assert!(log.contains("log output changes"), "{log}");
    }

    /// Under systemd (`JOURNAL_STREAM` naming stderr, as systemd sets it)
    /// the default `log_format` sends events to the journal's socket in
    /// its native protocol, with their priority; stderr keeps only what
    /// came before. The journal socket is the test's, mounted at
    /// `/run/systemd/journal` in a mount namespace of the gateway's own.
    #[test]
    fn auto_logs_to_the_journal_when_stderr_is_it() {
        require!(Need::Root, Need::Program("unshare"), Need::Program("mount"));
        use std::os::unix::fs::MetadataExt;
        let dir = TempDir::new("journal");
        let journal_dir = dir.0.join("journal");
        std::fs::create_dir(&journal_dir).unwrap();
        let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap();
        let cfg = dir.0.join("espresso.toml");
        std::fs::write(&cfg, config(&dir.0.join("espresso.sock"), None)).unwrap();
        let stderr_path = dir.0.join("stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let meta = stderr.metadata().unwrap();
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
             mount --bind '{}' /run/systemd/journal && exec '{}' run --idle-sleep-us 200 -c '{}'",
            journal_dir.display(),
            env!("CARGO_BIN_EXE_espresso"),
            cfg.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut gw = Gateway(child);
        // One datagram per event.
        let mut running = None;
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = vec![0u8; 65536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            journal.set_read_timeout(Some(left)).unwrap();
            let Ok(n) = journal.recv(&mut buf) else {
                break;
            };
            let fields = journal_fields(&buf[..n]);
            let message = fields.iter().find(|(k, _)| k == "MESSAGE");
            if message.is_some_and(|(_, v)| v == "espresso running") {
                running = Some(fields);
                break;
            }
            seen.push(fields);
        }
        let mut log = String::new();
        let read_log = |log: &mut String| {
            log.clear();
            std::fs::File::open(&stderr_path)
                .unwrap()
                .read_to_string(log)
                .unwrap();
        };
        read_log(&mut log);
        let running =
            running.unwrap_or_else(|| panic!("no event at the journal ({seen:?}); stderr:\n{log}"));
        let field = |k: &str| {
            running
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        // INFO is syslog's informational, not the crate's default notice.
        assert_eq!(field("PRIORITY"), Some("6"), "{running:?}");
        assert_eq!(field("SYSLOG_IDENTIFIER"), Some("espresso"), "{running:?}");
        assert_eq!(field("F_WORKERS"), Some("1"), "{running:?}");
        assert_eq!(field("TARGET"), Some("control::gateway"), "{running:?}");
        assert!(log.contains("log output changes to=\"journald\""), "{log}");
        assert!(!log.contains("espresso running"), "{log}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(gw.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = gw.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "espresso did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        read_log(&mut log);
        assert!(status.success(), "{status}\n{log}");
    }
}

#[cfg(not(have_dpdk))]
#[test]
fn ready_after_ports_and_sas_then_reloading_and_stopping() {
    require!(Need::Dpdk(false));
}

#[cfg(not(have_dpdk))]
#[test]
fn auto_logs_to_the_journal_when_stderr_is_it() {
    require!(Need::Dpdk(false));
}
