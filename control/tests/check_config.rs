//! `espresso check -c FILE` on the shipped examples and on a broken file.

use std::path::Path;
use std::process::Command;

fn espresso() -> Command {
    Command::new(env!("CARGO_BIN_EXE_espresso"))
}

#[test]
fn check_config_accepts_the_examples() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/site-a.toml");
    let out = espresso()
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{}: ok\n", file.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 interfaces, 2 routes, 1 neighbour, 1 tunnel"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 manual SA pair (2 SAs), 3 policies"),
        "{stdout}"
    );
}

#[test]
fn check_config_reports_one_error_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("espresso-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/site-b.toml"),
    )
    .unwrap()
    .replace("spi_in = 0x2001", "spi_in = 7");
    std::fs::write(&file, text).unwrap();
    let out = espresso()
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(&format!(
            "{}: tunnel[0].sa[0].spi_in: SPI 7 is reserved",
            file.display()
        )),
        "{stderr}"
    );
}
