//! `espresso-lab bench --strongswan-only` end to end, with short runs: the
//! two-site topology is built with strongSwan (kernel-libipsec) on both
//! gateways, then with Espresso, then with plain kernel forwarding
//! (scripts/vs-strongswan.sh); TCP and UDP cross each, through the tunnel
//! (the script checks gwA's own counters), and `latest.json` carries the
//! comparison with its ratios. No figure is asserted beyond "traffic went
//! through": the machine is shared. Needs root, DPDK, strongSwan and
//! iperf3, as CI has; about 20 s.
//! Skipped without them, failed under `ESPRESSO_TEST_FULL` (`make test`).
#![cfg(have_dpdk)]

use std::process::Command;

use testkit::{require, Need};

#[test]
fn espresso_and_strongswan_both_carry_traffic_and_the_ratio_is_recorded() {
    require!(
        Need::Root,
        Need::Program("ip"),
        Need::Program("/usr/lib/ipsec/charon"),
        Need::Program("swanctl"),
        Need::Program("iperf3")
    );
    let out_dir =
        std::env::temp_dir().join(format!("espresso-vs-strongswan-{}", std::process::id()));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/vs-strongswan.sh"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_espresso-lab"))
        .args(["bench", "--strongswan-only", "--strongswan-seconds", "2"])
        .arg("--strongswan-script")
        .arg(script)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run espresso-lab bench --strongswan-only");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "espresso-lab bench --strongswan-only failed"
    );
    assert!(stderr.contains("all systems carried the traffic through gwA"));

    let json = std::fs::read_to_string(out_dir.join("latest.json")).expect("latest.json");
    let report: serde_json::Value = serde_json::from_str(&json).expect("latest.json parses");
    assert_eq!(report["cases"].as_array().map(Vec::len), Some(0));
    let c = &report["strongswan"];
    let systems = c["systems"].as_array().expect("systems");
    let names: Vec<&str> = systems
        .iter()
        .filter_map(|s| s["system"].as_str())
        .collect();
    assert_eq!(names, ["strongswan", "espresso", "plain"], "{c}");
    for s in systems {
        for key in ["tcp_gbps", "udp_received_pps", "udp_sent_pps"] {
            let v = s[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {s}");
        }
        assert!(
            s["tcp_wan_packets"].as_u64().is_some_and(|n| n > 1000),
            "{s}"
        );
    }
    assert!(systems[0]["version"]
        .as_str()
        .is_some_and(|v| v.contains("strongSwan 5.9")));
    assert_eq!(systems[0]["esp"], "aes128gcm16");
    assert_eq!(systems[1]["esp"], "aes128gcm16");
    assert_eq!(systems[1]["udp_encap"], true);
    let tcp = |i: usize| systems[i]["tcp_gbps"].as_f64().unwrap();
    let ratio = c["tcp_ratio"].as_f64().expect("tcp_ratio");
    assert!(
        (ratio - tcp(1) / tcp(0)).abs() < 1e-9 * ratio.max(1.0),
        "{c}"
    );
    assert!(c["udp_ratio"].as_f64().is_some_and(|r| r > 0.0), "{c}");
    assert!(
        stdout.contains("Espresso / strongSwan: TCP"),
        "the table is printed"
    );
    let md = std::fs::read_to_string(out_dir.join("latest.md")).expect("latest.md");
    assert!(md.contains("| strongswan | Linux strongSwan 5.9"), "{md}");
    // Nothing left behind: the script's namespaces (vs-*-SYSTEM-PID) are gone.
    let id = stderr
        .split("namespaces vs-*-strongswan-")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("the script names its namespaces");
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    let left: Vec<String> = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("vs-")
                && l.split_whitespace()
                    .next()
                    .is_some_and(|n| n.ends_with(&format!("-{id}")))
        })
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    std::fs::remove_dir_all(&out_dir).expect("clean up");
}
