//! The gateway end to end: two `espresso` instances in network namespaces
//! with hosts behind them (scripts/two-site.sh builds and removes the
//! topology). Needs root, DPDK, iperf3, tshark and scapy, as CI has.
//!
//! Skipped without them, failed under `ESPRESSO_TEST_FULL` (`make test`).
//!
//! The scenarios run one at a time (see `common`).

mod common;

use testkit::Need;

fn scenario(name: &str) {
    common::scenario(
        "two-site.sh",
        name,
        env!("CARGO_BIN_EXE_espresso"),
        &[
            Need::Program("iperf3"),
            Need::Program("ethtool"),
            Need::PythonModule("scapy.all"),
            Need::PythonModule("cryptography"),
        ],
    );
}

/// Tunnel mode, IPv4 and IPv6 inner traffic: ping, iperf3 100 MB, payload
/// SHA-256, tshark decryption of the WAN with the configured keys.
#[test]
fn tunnel_mode() {
    scenario("tunnel");
}

/// Transport mode (bump in the wire for the hosts), IPv4 and IPv6.
#[test]
fn transport_mode() {
    scenario("transport");
}

/// Make-before-break SA change under iperf3 load: no drop on either side.
#[test]
fn sa_change_under_load() {
    scenario("rekey");
}

/// Malformed, replayed, unauthenticated and random packets on the WAN are
/// dropped under the right reason while good traffic flows.
#[test]
fn hostile_packets() {
    scenario("hostile");
}

/// DF packets over the tunnel MTU get fragmentation-needed / packet-too-big
/// with the right MTU.
#[test]
fn path_mtu() {
    scenario("pmtu");
}

/// Two workers on one gateway: traffic on both, one writer per SA, so no
/// ESP sequence number is sent twice (checked on a WAN capture).
#[test]
fn two_workers_never_reuse_a_sequence_number() {
    scenario("workers");
}

/// IKEv2 between two espresso gateways: the tunnel comes up (PSK,
/// aes256gcm16-prfsha384-x25519 / aes256gcm16), ping and TCP pass, Child
/// SA rekeys started by either side lose no ping, and tshark decrypts the
/// WAN capture (every ESP ICV, IKE_AUTH) with Espresso's key log.
#[test]
fn ike_tunnel() {
    scenario("ike");
}

/// Attacks from the edge on an IKE tunnel with a ping running through it:
/// Delete bombs at UDP 500/4500 (memory stays flat), ARP/NA poisoning from
/// the LAN and the WAN plus 5,000 random claims (a new LAN host is still
/// reached), packets that expire or exceed the LAN MTU after decapsulation
/// (no ICMP in clear on the WAN), a spoofed IKE_SA_INIT flood from 2,000
/// addresses during a rekey. The ping loses nothing.
#[test]
fn edge_attacks() {
    scenario("edge");
}

/// Live reloads with two tunnels: one removed and the other's lifetime
/// changed under a continuous ping (no loss, its Child SA untouched), a
/// PSK change re-establishing the IKE SA, a broken file and a refused
/// change applying nothing.
#[test]
fn live_reload() {
    scenario("reload");
}

/// The control API's tunnel commands through the CLI on a running
/// gateway: `terminate` and `initiate` the IKE tunnel (down on both sides,
/// its SAs gone, back with a new IKE SA), `unload` and `load` it (the peer
/// sees the DELETE), while a manually keyed tunnel keeps passing traffic;
/// an unknown tunnel is refused by name.
#[test]
fn tunnel_commands() {
    scenario("api");
}
