//! The container packaging end to end: docker/lab.sh builds the runtime
//! image of docker/Dockerfile around this build's `espresso`, brings up the
//! two-site lab of docker/compose.yaml (hostA - gwA - wan - gwB - hostB,
//! the gateways keyed by IKEv2) and checks it: the IKE SA comes up, hostA
//! pings hostB, gwA encapsulates, the WAN carries only ESP, both gateways
//! stop cleanly. It removes the lab and its image afterwards, also on
//! failure.
//!
//! The image here packages the binary `cargo test` built instead of
//! compiling one in the image (`make compose-demo` does that): the base
//! layers stay cached, so a run takes about a minute once they exist.
//!
//! Needs a Docker engine that answers, Compose and DPDK in this build;
//! skipped without them, failed under `ESPRESSO_TEST_FULL` (`make test`).

use std::process::{Command, Stdio};

use testkit::Need;

/// Whether `program args...` runs and exits 0 (output discarded).
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every reason the lab cannot run here, or `None`.
fn missing() -> Option<String> {
    let mut reasons: Vec<String> = testkit::missing(&[
        Need::Dpdk(cfg!(have_dpdk)),
        Need::Program("docker"),
        Need::Program("flock"),
    ])
    .into_iter()
    .collect();
    if Need::Program("docker").missing().is_none() && !succeeds("docker", &["info"]) {
        reasons.push("needs a Docker engine (`docker info` failed)".to_string());
    }
    if Need::Program("docker-compose").missing().is_some()
        && !succeeds("docker", &["compose", "version"])
    {
        reasons.push("needs `docker-compose` or the `docker compose` plugin".to_string());
    }
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

#[test]
fn compose_lab_tunnel() {
    if let Some(reason) = missing() {
        testkit::skip(&reason);
        return;
    }
    let script = format!("{}/../docker/lab.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(&script)
        .env("ESPRESSO_BIN", env!("CARGO_BIN_EXE_espresso"))
        .env_remove("KEEP")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "the compose lab failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("compose lab: all checks passed"), "{text}");
}
