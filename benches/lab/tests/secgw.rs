//! DPDK's ipsec-secgw through the lab end to end: `espresso-lab bench` on
//! one AES-128-GCM 64-byte case per direction, with short windows, runs
//! Espresso, testpmd and secgw, checks secgw's output with scapy first
//! and writes its figures next to Espresso's. No figure is asserted (the
//! machine is shared): only that secgw was checked and measured. Needs
//! root, DPDK (dpdk-testpmd), scapy and the cached secgw build (`make
//! secgw`); skipped without them, failed under `ESPRESSO_TEST_FULL`.
#![cfg(have_dpdk)]

use std::path::PathBuf;
use std::process::Command;

use testkit::{require, Need};

#[test]
fn secgw_case_is_checked_then_measured() {
    require!(
        Need::Root,
        Need::Program("dpdk-testpmd"),
        Need::PythonModule("scapy.layers.ipsec")
    );
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_espresso-lab"));
    let secgw = match lab::secgw::default_binary(&exe) {
        Ok(p) if p.is_file() => p,
        Ok(p) => {
            testkit::skip(&format!(
                "needs ipsec-secgw at {} (make secgw)",
                p.display()
            ));
            return;
        }
        Err(e) => {
            testkit::skip(&format!("needs ipsec-secgw: {e}"));
            return;
        }
    };
    let out_dir = std::env::temp_dir().join(format!("espresso-secgw-test-{}", std::process::id()));
    let out = Command::new(&exe)
        .args([
            "bench",
            "--filter",
            "aes128gcm16 64B 1SA",
            "--repetitions",
            "1",
        ])
        .args(["--warmup", "0.2", "--duration", "0.3"])
        .args(["--no-latency", "--no-plots", "--no-strongswan", "--secgw"])
        .arg(&secgw)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run espresso-lab bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "espresso-lab bench failed");
    let json = std::fs::read_to_string(out_dir.join("latest.json")).expect("latest.json");
    let md = std::fs::read_to_string(out_dir.join("latest.md")).expect("latest.md");
    std::fs::remove_dir_all(&out_dir).unwrap();
    let report: serde_json::Value = serde_json::from_str(&json).expect("latest.json parses");
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2, "{json}");
    for c in cases {
        let s = &c["secgw"];
        assert_eq!(s["system"], "ipsec-secgw", "{c}");
        assert!(s.get("unavailable").is_none(), "{s}");
        // Every frame of the 1200-frame pcap came out and the sample was
        // decrypted (encrypt) and compared with the originals.
        let verified = s["verified"].as_str().unwrap_or_default();
        assert!(
            verified.starts_with("scapy check: 1200 of 1200 frames forwarded; 1200 checked"),
            "{verified}"
        );
        if c["direction"] == "encrypt" {
            assert!(verified.contains("decrypted by scapy"), "{verified}");
        }
        let r = &s["rate"];
        for key in ["mpps", "cycles_per_packet", "oncpu_mpps"] {
            let v = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {s}");
        }
        assert_eq!(s["runs"].as_array().map(Vec::len), Some(1), "{s}");
    }
    assert!(stdout.contains("Against the references"), "{stdout}");
    assert!(md.contains("| ipsec-secgw Mpps |"), "{md}");
    assert!(report["method"]
        .as_str()
        .unwrap_or_default()
        .contains("ipsec-secgw"));
}
