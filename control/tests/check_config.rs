//! `espresso check -c FILE` on the shipped examples and on broken files:
//! every problem on its own line as `FILE:LINE:COL: error|warning: FIELD:
//! MESSAGE` (stderr), then `FILE: ok` and a summary (stdout) or exit 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn espresso() -> Command {
    Command::new(env!("CARGO_BIN_EXE_espresso"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn check(file: &Path) -> (Output, String, String) {
    let out = espresso()
        .arg("check")
        .arg("-c")
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    (out, stdout, stderr)
}

/// A private scratch file, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("espresso-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        Self(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir(self.0.parent().unwrap());
    }
}

fn example_text(name: &str) -> String {
    std::fs::read_to_string(examples().join(name)).unwrap()
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn check_config_accepts_every_example_without_a_warning() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (out, stdout, stderr) = check(&file);
        assert!(out.status.success(), "{}: {stdout}{stderr}", file.display());
        assert!(stderr.is_empty(), "{stderr}");
        assert!(
            stdout.starts_with(&format!("{}: ok\n", file.display())),
            "{stdout}"
        );
        n += 1;
    }
    assert!(n >= 4, "{n} examples");
    let (_, stdout, _) = check(&examples().join("site-a.toml"));
    assert!(
        stdout.contains("2 interfaces, 2 routes, 1 neighbour, 1 tunnel"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 manual SA pair (2 SAs), 3 policies"),
        "{stdout}"
    );
    let (_, stdout, _) = check(&examples().join("ike-site-b.toml"));
    assert!(stdout.contains("1 tunnel (1 with IKE)"), "{stdout}");
}

#[test]
fn check_config_reports_every_error_with_its_place_and_exits_1() {
    let text = example_text("site-b.toml")
        .replace("spi_in = 0x2001", "spi_in = 7")
        .replacen("role = \"wan\"", "role = \"wann\"", 1)
        .replacen("local_addrs = ", "local = ", 1);
    let bad = Scratch::new("bad.toml", &text);
    let (out, stdout, stderr) = check(&bad.0);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let f = bad.0.display().to_string();
    let lines: Vec<_> = stderr.lines().collect();
    let role = line_of(&text, "role = \"wann\"");
    let local = line_of(&text, "local = \"");
    // The unknown role stops the semantic pass (the SPI error comes only
    // once the file reads), the deprecated key is a warning, then the
    // count.
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{f}:{role}:8: error: interface[1].role: unknown value \"wann\"; did you mean \"wan\"?"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{f}:{local}:1: warning: tunnel[0].local: `local` is deprecated here; rename it to `local_addrs`"
        )),
        "{stderr}"
    );
    assert_eq!(lines[2], format!("espresso: {f}: 1 error, 1 warning"));

    // Fixed role: now the semantic error shows, placed at its value.
    let text = text.replace("role = \"wann\"", "role = \"wan\"");
    let bad = Scratch::new("bad2.toml", &text);
    let (out, _, stderr) = check(&bad.0);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let spi = line_of(&text, "spi_in = 7");
    assert!(
        stderr.contains(&format!(
            "{}:{spi}:12: error: tunnel[0].sa[0].spi_in: SPI 7 is reserved",
            bad.0.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_config_passes_with_warnings_and_says_so() {
    let text = example_text("site-a.toml").replacen("remote_addrs = ", "remote = ", 1);
    let file = Scratch::new("old.toml", &text);
    let (out, stdout, stderr) = check(&file.0);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("{}: ok, 1 warning\n", file.0.display())),
        "{stdout}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("rename it to `remote_addrs`"), "{stderr}");
}

#[test]
fn check_config_names_the_unknown_field_and_the_closest_valid_one() {
    let text = example_text("ike-site-b.toml").replacen("remote_addrs = ", "remote_addr = ", 1);
    let file = Scratch::new("typo.toml", &text);
    let (out, _, stderr) = check(&file.0);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "tunnel[0].remote_addr: unknown field \"remote_addr\" in [[tunnel]]; did you mean \"remote_addrs\"? valid fields: name, local_addrs, remote_addrs,"
        ),
        "{stderr}"
    );
}
