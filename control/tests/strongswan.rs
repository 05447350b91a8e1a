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
            Need::Program("mergecap"),
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

/// IKE fragmentation (RFC 7383) forced: a WAN MTU of 576, espresso's
/// `fragment_size` 192 and charon's 192, so that both PSK IKE_AUTH
/// messages travel in fragments, with espresso as initiator and as
/// responder: the tunnel comes up and passes a ping, the capture holds
/// IKE_AUTH fragments from both gateways, each within 192 bytes, and both
/// sides count messages fragmented and reassembled; tshark reassembles and
/// decrypts every IKE_AUTH and checks every ESP ICV with espresso's key
/// logs.
#[test]
fn strongswan_fragmented_ike_auth_both_roles() {
    scenario("fragments");
}

/// RFC 5685: espresso A (`redirect = "always"`, `redirect_to` a second
/// espresso C in namespaces of its own) redirects a strongSwan client in
/// IKE_SA_INIT; then, with no redirect policy, serves it and sends it to C
/// on `espresso redirect` (an INFORMATIONAL REDIRECT). Each time the
/// client ends up with its IKE SA and Child SA on C and pings a host
/// behind C; A counted the redirect and holds no SA. tshark decrypts
/// charon's WAN capture (IKE_AUTH, every ESP ICV) with A's and C's key logs.
#[test]
fn strongswan_client_redirected_to_a_second_espresso() {
    scenario("redirect");
}

/// Remote access: charon as a client with `vips = 0.0.0.0, ::` against an
/// espresso tunnel listening with a `[[pool]]` (IPv4 and IPv6): charon
/// gets an address of each family from the pool, pings a host behind
/// espresso from both and sends it a TCP
/// transfer (SHA-256 compared); charon's Child SA and IKE SA rekeys keep
/// the address; the lease is persisted (mode 0600), goes back to the pool
/// when charon terminates, charon gets the same address when it
/// reconnects, and a restarted espresso reads the lease back. tshark
/// decrypts the IKE_AUTH messages (CP payload readable) and checks every
/// ESP ICV with espresso's key log.
#[test]
fn strongswan_client_gets_a_virtual_ip_from_a_pool() {
    scenario("vip");
}

/// scripts/strongswan-roadwarrior.sh: three strongSwan road warriors
/// behind one NAT namespace (nftables masquerade), each with its own
/// charon, identity, PSK and inner address, connect at once to one
/// espresso responder template (`remote_addrs = "%any"`, `remote_id =
/// "*@branches.example"`, secrets by identity): espresso lists three peers
/// with their identities and NAT-mapped ports, decrypts each client's pings
/// on its own Child SA, and every client gets its replies on its own
/// return route (and a concurrent TCP transfer per client, SHA-256
/// checked); a fourth identity without a secret is refused
/// with AUTHENTICATION_FAILED and counted in `espresso stats`; a fifth
/// client presenting a DN is handed at IKE_AUTH to a second template on
/// the same address (`remote_id = "C=DE, O=Example, CN=*"`) and pings
/// through it.
#[test]
fn strongswan_road_warriors_behind_nat_on_one_template() {
    common::scenario(
        "strongswan-roadwarrior.sh",
        "roadwarrior",
        env!("CARGO_BIN_EXE_espresso"),
        &[
            Need::Program("/usr/lib/ipsec/charon"),
            Need::Program("swanctl"),
            Need::Program("ethtool"),
            Need::Program("nft"),
        ],
    );
}

/// scripts/strongswan-roadwarrior.sh concentrator: three strongSwan road
/// warriors behind one NAT, authenticated by ECDSA P-256, RSA-2048 (PSS)
/// and Ed25519 certificates from a test CA made at run time (openssl),
/// ask for virtual IPs (`vips = 0.0.0.0`) from one espresso template
/// (`remote_auth = "pubkey"`, CRL, `pools`) and get distinct ones; each
/// pings hostA and fetches a file over TCP from its virtual IP (SHA-256
/// checked); a revoked certificate (cert_revoked) and an identity no
/// template takes (auth_refused_identity) are refused and counted; tshark
/// decrypts IKE_AUTH (CERTs) and ESP with espresso's key log.
#[test]
fn strongswan_concentrator_certificates_virtual_ips_behind_nat() {
    common::scenario(
        "strongswan-roadwarrior.sh",
        "concentrator",
        env!("CARGO_BIN_EXE_espresso"),
        &[
            Need::Program("/usr/lib/ipsec/charon"),
            Need::Program("swanctl"),
            Need::Program("ethtool"),
            Need::Program("nft"),
            Need::Program("openssl"),
            Need::Program("tshark"),
        ],
    );
}

/// Certificate authentication with a test CA made at run time (openssl):
/// ECDSA P-256, Ed25519 and RSA-2048 (RSASSA-PSS) certificates on both
/// sides, espresso initiating and then responding; ping passes, tshark
/// decrypts every IKE_AUTH with espresso's key log and finds X.509 CERTs
/// and AUTH method 14 (RFC 7427) in each, and every ESP ICV correct;
/// strongSwan with a certificate revoked by the CRL espresso loads is
/// refused and counted.
#[test]
fn strongswan_certificates_both_roles() {
    if let Some(reason) = testkit::missing(&[Need::Program("openssl")]) {
        testkit::skip(&reason);
        return;
    }
    scenario("certs");
}

/// IKE fragmentation (RFC 7383) that comes from the certificates' size:
/// a WAN MTU of 576, espresso's `fragment_size = 576` and charon's IPv4
/// default (`fragment_size = 0`), RSA-4096 certificates (RSASSA-PSS; charon
/// signs with SHA-384) from an RSA-4096 test CA on both sides, espresso
/// initiating, then strongSwan: the tunnel comes up and passes a ping,
/// both IKE_AUTH messages travel in fragments from each side, every WAN
/// datagram is within 576 bytes with no IP fragment, and tshark reassembles
/// the fragments and decrypts them (CERTs, AUTH, identities) and every ESP
/// frame with espresso's key logs.
#[test]
fn strongswan_fragmented_rsa4096_certificates_both_roles() {
    if let Some(reason) = testkit::missing(&[Need::Program("openssl"), Need::Program("mergecap")]) {
        testkit::skip(&reason);
        return;
    }
    scenario("fragcerts");
}
