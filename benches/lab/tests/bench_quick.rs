//! `espresso-lab bench --quick` end to end: the lab runs its quick matrix on
//! DPDK's net_pcap and net_null devices with the testpmd baseline, its
//! quick reconfiguration case, then its latency lab over net_memif, and
//! leaves a parsable `latest.json` with nonzero rates, reconfiguration,
//! latency and zero-loss records, and the plots. No
//! figure is asserted: the machine is shared and the numbers are only
//! reported. Needs root and DPDK (dpdk-testpmd), as CI has; the IKE
//! flood's quick cases alone (`--filter ike-flood`) need neither.
//! Skipped without them, failed under `ESPRESSO_TEST_FULL` (`make test`).
#![cfg(have_dpdk)]

use std::process::Command;

use testkit::{require, Need};

#[test]
fn quick_bench_produces_records_with_rates() {
    require!(
        Need::Root,
        Need::Program("dpdk-testpmd"),
        Need::Program("ip")
    );
    let out_dir = std::env::temp_dir().join(format!("espresso-bench-quick-{}", std::process::id()));
    // ipsec-secgw is tests/secgw.rs's; this test is about the rest.
    let out = Command::new(env!("CARGO_BIN_EXE_espresso-lab"))
        .args(["bench", "--quick", "--no-secgw", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run espresso-lab bench --quick");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "espresso-lab bench --quick failed");

    let json = std::fs::read_to_string(out_dir.join("latest.json")).expect("latest.json");
    let report: serde_json::Value = serde_json::from_str(&json).expect("latest.json parses");
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3, "{json}");
    for c in cases {
        for key in [
            "mpps",
            "gbps",
            "cycles_per_packet",
            "oncpu_mpps",
            "baseline_mpps",
            "baseline_oncpu_mpps",
            "ratio",
        ] {
            let v = c[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {c}");
        }
        assert!(c["runs"].as_array().is_some_and(|r| r.len() >= 3), "{c}");
        assert!(
            c["baseline_runs"].as_array().is_some_and(|r| r.len() >= 3),
            "{c}"
        );
        assert!(c["direction"].is_string() && c["algorithm"].is_string());
    }
    let directions: Vec<&str> = cases
        .iter()
        .filter_map(|c| c["direction"].as_str())
        .collect();
    assert!(directions.contains(&"encrypt") && directions.contains(&"decrypt"));
    // The reconfiguration case: SAs installed and deleted while forwarding.
    let reconf = report["reconf"].as_array().expect("reconf records");
    assert_eq!(reconf.len(), 1, "{json}");
    let r = &reconf[0];
    assert_eq!(r["kind"], "reconf");
    for key in ["installs_per_s", "deletes_per_s", "quiet_mpps"] {
        let v = r[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{key} = {v} in {r}");
    }
    assert!(
        r["max_stall_us"].as_f64().is_some_and(f64::is_finite),
        "{r}"
    );
    assert!(
        stdout.contains("installs and deletes"),
        "the reconf table is printed"
    );
    check_ike_flood(&report, &stdout);
    // The latency lab: both latency cases through the gateway and testpmd
    // io at every load point (testpmd twice: at the gateway's rates and at
    // the same shares of its own maximum), and a zero-loss search for each.
    let lat = report["latency"].as_array().expect("latency records");
    assert_eq!(lat.len(), 2 * 3 * 3, "{json}");
    for dut in ["espresso", "testpmd io", "testpmd io, own load"] {
        let samples: u64 = lat
            .iter()
            .filter(|r| r["dut"] == dut)
            .map(|r| r["samples"].as_u64().expect("samples"))
            .sum();
        assert!(samples > 0, "no latency recorded through {dut}");
    }
    for r in lat.iter().filter(|r| r["samples"].as_u64() > Some(0)) {
        let p = |k: &str| r[k].as_f64().expect(k);
        assert!(p("p50_us") > 0.0 && p("p50_us") <= p("p99_us"), "{r}");
        assert!(
            p("p99_us") <= p("p999_us") && p("p999_us") <= p("max_us"),
            "{r}"
        );
    }
    // Two cases, two DUTs, through memif and (as root, as CI is) through
    // af_packet on veth pairs.
    let zl = report["zero_loss"].as_array().expect("zero-loss records");
    assert_eq!(zl.len(), 2 * 2 * 2, "{json}");
    for path in ["memif", "veth"] {
        for dut in ["espresso", "testpmd io"] {
            let n = zl
                .iter()
                .filter(|z| z["topology"] == path && z["dut"] == dut)
                .count();
            assert_eq!(n, 2, "{path} {dut}: {json}");
        }
    }
    for z in zl {
        assert!(z["max_mpps"].as_f64().is_some_and(|v| v > 0.0), "{z}");
        assert!(z["steps"].as_array().is_some_and(|s| !s.is_empty()), "{z}");
    }
    assert!(out_dir.join("latency_by_load.png").exists());
    assert!(
        stdout.contains("Zero-loss"),
        "the latency tables are printed"
    );
    // The quick matrix has the frame-size plot's data (one point a line).
    assert!(out_dir.join("throughput_by_frame_size.png").exists());
    assert!(stdout.contains("ratio"), "the table is printed");
    std::fs::remove_dir_all(&out_dir).expect("clean up");
}

/// The IKE flood records: both cookie settings, rates and shares present
/// and sane, delays ordered; no figure is asserted.
fn check_ike_flood(report: &serde_json::Value, stdout: &str) {
    let flood = report["ike_flood"].as_array().expect("ike_flood records");
    assert_eq!(flood.len(), 2, "{report}");
    let thresholds: Vec<u64> = flood
        .iter()
        .filter_map(|r| r["cookie_threshold"].as_u64())
        .collect();
    assert!(thresholds.contains(&0) && thresholds.iter().any(|&t| t > 0));
    for r in flood {
        assert_eq!(r["kind"], "ike-flood");
        for key in [
            "saturation_dps",
            "offered_dps",
            "handled_dps",
            "rss_mb_before",
            "rss_mb_after",
        ] {
            let v = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {r}");
        }
        let share = r["legit_success_pct"].as_f64().expect("legit_success_pct");
        assert!((0.0..=100.0).contains(&share), "{r}");
        for d in ["setup", "rekey", "dpd"] {
            let d = &r[d];
            if d["n"].as_u64() > Some(0) {
                let p = |k: &str| d[k].as_f64().expect(k);
                assert!(
                    p("p50_ms") <= p("p99_ms") && p("p99_ms") <= p("max_ms"),
                    "{r}"
                );
            }
        }
        assert!(
            r["run"]["responder"]["engine.cookies_sent"].as_u64() > Some(0),
            "{r}"
        );
    }
    assert!(
        stdout.contains("IKE_SA_INIT flood"),
        "the flood table is printed"
    );
    assert!(report["commit"].is_string() && report["date"].is_string());
}

/// `espresso-lab bench --quick --filter ike-flood`: the flood cases alone, no
/// root or DPDK needed.
#[test]
fn quick_ike_flood_produces_records() {
    let out_dir =
        std::env::temp_dir().join(format!("espresso-bench-ike-flood-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_espresso-lab"))
        .args([
            "bench",
            "--quick",
            "--filter",
            "ike-flood",
            "--no-plots",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .expect("run espresso-lab bench --quick --filter ike-flood");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "espresso-lab bench --filter ike-flood failed"
    );
    let json = std::fs::read_to_string(out_dir.join("latest.json")).expect("latest.json");
    let report: serde_json::Value = serde_json::from_str(&json).expect("latest.json parses");
    assert!(report["cases"].as_array().is_some_and(|c| c.is_empty()));
    check_ike_flood(&report, &stdout);
    std::fs::remove_dir_all(&out_dir).expect("clean up");
}
