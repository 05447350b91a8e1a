//! Interoperability with strongSwan 5.9 (charon with kernel-libipsec) as
//! the other gateway: scripts/strongswan-interop.sh builds the namespaces,
//! runs charon in a private mount namespace with its own vici socket and
//! removes everything afterwards. Needs root, DPDK, strongSwan, tshark, as
//! `make test` installs.
//!
//! Skipped without them, failed under `ESPRESSO_TEST_FULL` (`make test`).
//!
//! The scenarios run one at a time (see `common`).

mod common;

use testkit::Need;

fn scenario(name: &str) {
    common::scenario(
        "strongswan-interop.sh",
        name,
        env!("CARGO_BIN_EXE_espresso"),
        &[
            Need::Program("/usr/lib/ipsec/charon"),
            Need::Program("swanctl"),
            Need::Program("ethtool"),
            Need::PythonModule("cryptography"),
        ],
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

/// Certificate authentication with a test CA made at run time (openssl):
/// ECDSA P-256, Ed25519 and RSA-2048 (RSASSA-PSS) certificates on both
/// sides, espresso initiating and then responding; ping passes, tshark
/// decrypts every IKE_AUTH with espresso's key log and finds X.509 CERTs
/// and AUTH method 14 (RFC 7427) in each; strongSwan with a certificate
/// revoked by the CRL espresso loads is refused and counted.
#[test]
fn strongswan_certificates_both_roles() {
    if let Some(reason) = testkit::missing(&[Need::Program("openssl")]) {
        testkit::skip(&reason);
        return;
    }
    scenario("certs");
}
