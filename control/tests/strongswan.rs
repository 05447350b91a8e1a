//! Interoperability with strongSwan 5.9 (charon with kernel-libipsec) as
//! the other gateway: scripts/strongswan-interop.sh builds the namespaces,
//! runs charon in a private mount namespace with its own vici socket and
//! removes everything afterwards. Needs root, DPDK, strongSwan, tshark, as
//! `make test` installs.
//!
//! The scenarios share the machine's two cores badly, so they run one at a
//! time.

use std::process::Command;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn scenario(name: &str) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/strongswan-interop.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .arg(name)
        .env("ESPRESSO_BIN", env!("CARGO_BIN_EXE_espresso"))
        .output()
        .expect("run strongswan-interop.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "scenario {name} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{name}: all checks passed")),
        "{text}"
    );
}

/// For aes128gcm16-prfsha256-ecp256 / aes128gcm16,
/// aes256gcm16-prfsha384-x25519 / aes256gcm16,
/// aes256gcm16-prfsha384-modp2048 / aes256gcm16 and
/// aes128-sha256-modp2048 / aes128-sha256, with espresso as initiator and
/// as responder (one charon for all eight runs): the tunnel comes up, ping
/// and a TCP transfer pass, a Child SA rekey started by espresso (it
/// initiated) or by strongSwan (it initiated) loses no ping, and
/// `swanctl --terminate` empties espresso's workers. tshark then decrypts
/// the whole WAN capture with espresso's key logs (every ESP ICV correct,
/// every IKE_AUTH readable), and every exported key is one charon logged.
#[test]
fn strongswan_proposal_matrix_both_roles() {
    scenario("matrix");
}

/// charon killed: espresso's DPD (2 s) declares the peer dead and removes
/// the SAs from its workers.
#[test]
fn strongswan_killed_is_noticed_by_dpd() {
    scenario("dpd");
}
