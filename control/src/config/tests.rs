//! Validation tests: each rule with a file that breaks it, checking that the
//! message names the file and the field; the shipped examples; secrets never
//! showing up in messages or `Debug`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use dataplane::crypto::{Algorithm, Backend, Encryption, Integrity};
use dataplane::esp::{self, Action, Direction, IpPrefix, SaRef, Selector, Spi};

use super::*;

const K36_A: &str = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223";
const K36_B: &str = "0xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f10111213";

/// A valid configuration that the tests break one line at a time.
pub(super) fn base() -> String {
    format!(
        r#"
[dataplane]
workers = 1
memory_mb = 512
mbufs = 8191

[[interface]]
name = "lan"
device = "net_null0"
role = "lan"
addresses = ["10.1.0.1/24", "fd01::1/64"]

[[interface]]
name = "wan"
device = "net_null1"
role = "wan"
addresses = ["192.0.2.1/24"]

[[route]]
prefix = "10.2.0.0/24"
via = "192.0.2.2"
interface = "wan"

[[neighbour]]
address = "192.0.2.2"
mac = "02:00:00:00:00:02"
interface = "wan"

[[tunnel]]
name = "b"
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.2"
udp_encap = true

  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.2.0.0/24"

  [[tunnel.sa]]
  spi_in = 0x1001
  spi_out = 0x2001
  algorithm = "aes256gcm16"
  key_in = "{K36_A}"
  key_out = "{K36_B}"
"#
    )
}

const FILE: &str = "test.toml";

pub(super) fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::from_str(text, FILE)
}

/// `base()` with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    let b = base();
    assert!(b.contains(from), "base has no {from:?}");
    b.replacen(from, to, 1)
}

/// The text must fail with a message naming the file and `field` and
/// containing `words`.
#[track_caller]
pub(super) fn assert_invalid(text: &str, field: &str, words: &str) -> ConfigError {
    let e = match parse(text) {
        Ok(_) => panic!("accepted; expected an error at {field}"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert_eq!(e.field(), Some(field), "{msg}");
    assert!(msg.starts_with(FILE), "{msg}");
    assert!(msg.contains(&format!(": {field}: ")), "{msg}");
    assert!(msg.contains(words), "{msg:?} lacks {words:?}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
    e
}

#[test]
fn base_is_valid() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.interfaces.len(), 2);
    assert_eq!(c.tunnels[0].interface, 1);
    assert_eq!(c.tunnels[0].udp_encap, Some(esp::UdpEncap::nat_t()));
    assert_eq!(c.dataplane.lcores, "0-1");
    assert_eq!(c.dataplane.crypto_backend, CryptoBackendChoice::Auto);
    let pair = &c.tunnels[0].sas[0];
    assert_eq!(pair.algorithm, Algorithm::AES_GCM_256);
    assert_eq!(pair.inbound.config.spi, Spi::new(0x1001).unwrap());
    assert_eq!(pair.inbound.config.direction, Direction::Inbound);
    assert_eq!(pair.outbound.config.spi, Spi::new(0x2001).unwrap());
    assert_eq!(pair.inbound.keys.enc_key.len(), 36);
    assert!(pair.inbound.keys.auth_key.is_empty());
    let s = c.summary();
    assert_eq!(
        (
            s.interfaces,
            s.routes,
            s.neighbours,
            s.tunnels,
            s.sa_pairs,
            s.policies
        ),
        (2, 1, 1, 1, 1, 1)
    );
}

#[test]
fn inbound_selectors_are_the_protect_policies_reversed() {
    let text = base().replace(
        "  [[tunnel.sa]]",
        "  [[tunnel.policy]]\n  local_ts = \"10.1.0.0/24\"\n  remote_ts = \"10.2.0.0/24\"\n  protocol = \"tcp\"\n  local_ports = \"80\"\n  remote_ports = \"1000-2000\"\n  action = \"bypass\"\n  priority = 5\n\n  [[tunnel.sa]]",
    );
    let c = parse(&text).unwrap();
    let t = &c.tunnels[0];
    assert_eq!(t.policies.len(), 2);
    assert_eq!(t.policies[0].action, Action::Protect(SaRef(0)));
    assert_eq!(t.policies[1].action, Action::Bypass);
    assert_eq!(t.policies[1].selector.protocol, Some(6));
    assert_eq!(t.policies[1].selector.src_ports, 80..=80);
    assert_eq!(t.policies[1].selector.dst_ports, 1000..=2000);
    let p = |s: &str| s.parse::<IpPrefix>().unwrap();
    assert_eq!(
        t.sas[0].inbound.config.traffic_selectors,
        [Selector::new(p("10.2.0.0/24"), p("10.1.0.0/24"))],
        "only PROTECT policies, remote -> local"
    );
    assert_eq!(
        t.sas[0].outbound.config.traffic_selectors,
        [Selector::new(p("10.1.0.0/24"), p("10.2.0.0/24"))]
    );
}

#[test]
fn route_table_has_connected_and_static_routes() {
    let c = parse(&base()).unwrap();
    let table = c.route_table();
    let (_, hop) = table.lookup("10.2.0.9".parse().unwrap()).unwrap();
    assert_eq!(hop.interface, 1);
    assert_eq!(hop.via, Some("192.0.2.2".parse().unwrap()));
    let (net, hop) = table.lookup("fd01::7".parse().unwrap()).unwrap();
    assert_eq!(
        (net.to_string().as_str(), hop.interface, hop.via),
        ("fd01::/64", 0, None)
    );
}

// ------------------------------------------------------------- syntax errors

#[test]
fn toml_syntax_error_keeps_line_and_column() {
    let text = base().replace("workers = 1", "workers = = 1");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    let (line, col) = e.line_col().expect("line and column");
    assert_eq!(line, 3, "{e}");
    assert!(col > 1, "{e}");
    assert!(e.to_string().starts_with(&format!("{FILE}:3:")), "{e}");
}

#[test]
fn unknown_key_names_the_path_and_line() {
    let text = base().replace("  spi_out = 0x2001", "  spi_out = 0x2001\n  spi_typo = 1");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    let msg = e.to_string();
    assert!(msg.contains("tunnel[0].sa[0]"), "{msg}");
    assert!(msg.contains("spi_typo"), "{msg}");
    assert!(e.line_col().is_some(), "{msg}");
}

#[test]
fn wrong_type_names_the_field() {
    let text = base().replace("workers = 1", "workers = \"one\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field(), Some("dataplane.workers"), "{e}");
    assert!(e.line_col().is_some_and(|(l, _)| l == 3), "{e}");
}

#[test]
fn secret_of_the_wrong_type_is_not_echoed() {
    let text = base().replace(&format!("key_in = \"{K36_A}\""), "key_in = 0x7a7b7c7d");
    let e = parse(&text).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.field(), Some("tunnel[0].sa[0].key_in"), "{msg}");
    assert!(msg.contains("not shown"), "{msg}");
    // 0x7a7b7c7d = 2054913149
    assert!(
        !msg.contains("2054913149") && !msg.contains("7a7b7c7d"),
        "{msg}"
    );
}

#[test]
fn unreadable_file_is_named() {
    let e = GatewayConfig::load("/nonexistent/espresso.toml").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Read);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/espresso.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn oversized_file_is_refused_before_parsing() {
    let dir = temp_dir("big");
    let path = dir.join("big.toml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(GatewayConfig::MAX_FILE_BYTES + 1).unwrap();
    let e = GatewayConfig::load(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Read);
    assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_keys_and_misplaced_tables_are_placed() {
    let text = base().replacen("device = \"net_null1\"\n", "", 1);
    let e = assert_invalid(
        &text,
        "interface[1].device",
        "missing: [[interface]] needs `device`",
    );
    // At the table's header.
    assert_eq!(
        e.line_col().map(|l| l.0),
        Some(line_of(&text, "name = \"wan\"") - 1)
    );
    let text = format!("{}\n[tunel]\nname = \"x\"\n", base());
    let e = assert_invalid(&text, "tunel", "did you mean \"tunnel\"?");
    assert!(
        e.reason().ends_with(
            "valid fields: dataplane, control, metrics, interface, route, neighbour, tunnel, pool, secret"
        ),
        "{e}"
    );
    let text = base().replacen("[[route]]", "[route]", 1);
    assert_invalid(
        &text,
        "route",
        "expected an array of tables [[route]], found a table",
    );
}

// ---------------------------------------------------------------- [dataplane]

#[test]
fn workers_range() {
    assert_invalid(
        &edit("workers = 1", "workers = 0"),
        "dataplane.workers",
        "1..=64",
    );
    assert_invalid(
        &edit("workers = 1", "workers = 65"),
        "dataplane.workers",
        "1..=64",
    );
}

#[test]
fn memory_must_cover_eal_but_not_the_pool() {
    assert_invalid(
        &edit("memory_mb = 512", "memory_mb = 31"),
        "dataplane.memory_mb",
        "31 MiB is below the 32 MiB EAL needs besides the mbuf pool",
    );
    // The pool lives outside EAL memory (no hugepages): 8191 mbufs and
    // 32 MiB of EAL memory are fine.
    assert!(parse(&edit("memory_mb = 512", "memory_mb = 32")).is_ok());
}

#[test]
fn icmp_error_rate_limit() {
    let c = parse(&base()).unwrap();
    assert_eq!(
        (
            c.dataplane.icmp_errors_per_second,
            c.dataplane.icmp_error_burst
        ),
        (
            DataplaneConfig::DEFAULT_ICMP_ERRORS_PER_SECOND,
            DataplaneConfig::DEFAULT_ICMP_ERROR_BURST
        )
    );
    let c = parse(&edit(
        "workers = 1",
        "workers = 1\nicmp_errors_per_second = 0\nicmp_error_burst = 0",
    ))
    .unwrap();
    assert_eq!(c.dataplane.icmp_errors_per_second, 0);
    assert_invalid(
        &edit("workers = 1", "workers = 1\nicmp_error_burst = 0"),
        "dataplane.icmp_error_burst",
        "icmp_errors_per_second = 0",
    );
    assert_invalid(
        &edit(
            "workers = 1",
            "workers = 1\nicmp_errors_per_second = 2000000",
        ),
        "dataplane.icmp_errors_per_second",
        "out of range",
    );
}

#[test]
fn lcores_must_cover_workers_and_control() {
    assert_invalid(
        &edit("workers = 1", "workers = 2\nlcores = \"0-1\""),
        "dataplane.lcores",
        "need 3",
    );
    assert_invalid(
        &edit("workers = 1", "workers = 1\nlcores = \"a\""),
        "dataplane.lcores",
        "not an lcore list",
    );
}

#[test]
fn eal_args_must_not_repeat_owned_options() {
    assert_invalid(
        &edit(
            "workers = 1",
            "workers = 1\neal_args = [\"--vdev\", \"net_null0\", \"-m\", \"64\"]",
        ),
        "dataplane.eal_args[2]",
        "dataplane.memory_mb",
    );
}

#[test]
fn crypto_backend_names() {
    let c = parse(&edit(
        "workers = 1",
        "workers = 1\ncrypto_backend = \"aws-lc\"",
    ))
    .unwrap();
    assert_eq!(
        c.dataplane.crypto_backend,
        CryptoBackendChoice::Fixed(Backend::AwsLc)
    );
    assert_invalid(
        &edit("workers = 1", "workers = 1\ncrypto_backend = \"openssl\""),
        "dataplane.crypto_backend",
        "openssl",
    );
}

#[test]
fn control_log_format() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.control.log_format, LogFormat::Auto);
    for (name, want) in [
        ("text", LogFormat::Text),
        ("json", LogFormat::Json),
        ("journald", LogFormat::Journald),
        ("auto", LogFormat::Auto),
    ] {
        let text = format!("{}\n[control]\nlog_format = \"{name}\"\n", base());
        let c = parse(&text).unwrap();
        assert_eq!(c.control.log_format, want, "{name}");
    }
    let text = format!("{}\n[control]\nlog_format = \"xml\"\n", base());
    assert_invalid(
        &text,
        "control.log_format",
        "expected \"auto\", \"text\", \"json\" or \"journald\"",
    );
}

#[test]
fn control_log_filter() {
    let text = format!("{}\n[control]\nlog = \"info,=[\"\n", base());
    assert_invalid(&text, "control.log", "not a log filter");
}

// -------------------------------------------------------------- [[interface]]

#[test]
fn interface_names_are_unique() {
    assert_invalid(
        &edit("name = \"wan\"", "name = \"lan\""),
        "interface[1].name",
        "interface[0]",
    );
}

#[test]
fn device_must_not_be_empty() {
    assert_invalid(
        &edit("device = \"net_null0\"", "device = \" \""),
        "interface[0].device",
        "empty",
    );
}

#[test]
fn interface_addresses_parse() {
    assert_invalid(
        &edit(
            "addresses = [\"192.0.2.1/24\"]",
            "addresses = [\"192.0.2.1\"]",
        ),
        "interface[1].addresses[0]",
        "prefix length",
    );
    assert_invalid(
        &edit(
            "addresses = [\"192.0.2.1/24\"]",
            "addresses = [\"192.0.2.1/24\", \"10.1.0.1/16\"]",
        ),
        "interface[1].addresses[1]",
        "interface[0].addresses[0]",
    );
}

#[test]
fn tunnels_need_a_wan_and_a_lan() {
    assert_invalid(
        &edit("role = \"wan\"", "role = \"lan\""),
        "interface",
        "role = \"wan\"",
    );
    assert_invalid(
        &edit("role = \"lan\"", "role = \"wan\""),
        "interface",
        "role = \"lan\"",
    );
}

#[test]
fn mtu_and_mss() {
    assert_invalid(
        &edit(
            "addresses = [\"10.1.0.1/24\", \"fd01::1/64\"]",
            "addresses = [\"10.1.0.1/24\", \"fd01::1/64\"]\nmtu = 1000",
        ),
        "interface[0].mtu",
        "1280..=9600",
    );
    assert_invalid(
        &edit(
            "addresses = [\"192.0.2.1/24\"]",
            "addresses = [\"192.0.2.1/24\"]\nmss_clamp = 1480",
        ),
        "interface[1].mss_clamp",
        "536..=1460",
    );
}

// ------------------------------------------------------ routes and neighbours

#[test]
fn route_prefix_parses() {
    assert_invalid(
        &edit("prefix = \"10.2.0.0/24\"", "prefix = \"10.2.0.0/33\""),
        "route[0].prefix",
        "not a prefix",
    );
    assert_invalid(
        &edit("prefix = \"10.2.0.0/24\"", "prefix = \"10.2.0.1/24\""),
        "route[0].prefix",
        "10.2.0.0/24",
    );
}

#[test]
fn route_interface_exists() {
    let text = base().replacen("interface = \"wan\"", "interface = \"dmz\"", 1);
    assert_invalid(&text, "route[0].interface", "\"dmz\"");
}

#[test]
fn route_via_is_on_link() {
    assert_invalid(
        &edit("via = \"192.0.2.2\"", "via = \"198.51.100.1\""),
        "route[0].via",
        "not on a network of interface \"wan\"",
    );
    assert_invalid(
        &edit("via = \"192.0.2.2\"", "via = \"fd01::2\""),
        "route[0].via",
        "family",
    );
}

#[test]
fn neighbour_mac_parses() {
    assert_invalid(
        &edit("mac = \"02:00:00:00:00:02\"", "mac = \"02:00:00:00:02\""),
        "neighbour[0].mac",
        "not a MAC address",
    );
    assert_invalid(
        &edit("mac = \"02:00:00:00:00:02\"", "mac = \"01:00:5e:00:00:01\""),
        "neighbour[0].mac",
        "unicast",
    );
}

// ----------------------------------------------------------------- [[tunnel]]

#[test]
fn tunnel_local_is_ours() {
    assert_invalid(
        &edit("local_addrs = \"192.0.2.1\"", "local_addrs = \"192.0.2.9\""),
        "tunnel[0].local_addrs",
        "not one of this gateway's",
    );
}

#[test]
fn tunnel_remote_same_family() {
    assert_invalid(
        &edit(
            "remote_addrs = \"192.0.2.2\"",
            "remote_addrs = \"2001:db8::2\"",
        ),
        "tunnel[0].remote_addrs",
        "family",
    );
}

#[test]
fn tunnel_needs_sa_or_ike() {
    let b = base();
    let text = &b[..b.find("  [[tunnel.sa]]").unwrap()];
    assert_invalid(text, "tunnel[0]", "neither");
}

#[test]
fn tunnel_needs_a_protect_policy() {
    assert_invalid(
        &edit(
            "  remote_ts = \"10.2.0.0/24\"",
            "  remote_ts = \"10.2.0.0/24\"\n  action = \"bypass\"",
        ),
        "tunnel[0].policy",
        "protect",
    );
}

#[test]
fn replay_window_range() {
    let w = |v: &str| {
        edit(
            "udp_encap = true",
            &format!("udp_encap = true\nreplay_window = {v}"),
        )
    };
    assert_invalid(&w("32"), "tunnel[0].replay_window", "64..=65536");
    assert_invalid(&w("65537"), "tunnel[0].replay_window", "64..=65536");
    assert_eq!(
        parse(&w("0")).unwrap().tunnels[0].sas[0]
            .inbound
            .config
            .replay_window,
        0
    );
    assert_eq!(parse(&w("64")).unwrap().tunnels[0].replay_window, 64);
}

#[test]
fn dscp_df_udp_encap_forms() {
    let c = parse(&edit(
        "udp_encap = true",
        "udp_encap = { src_port = 4501 }\ndscp = 46\ndf = \"set\"\nouter_ttl = 9",
    ))
    .unwrap();
    let out = &c.tunnels[0].sas[0].outbound.config;
    assert_eq!(
        out.udp_encap,
        Some(esp::UdpEncap {
            src_port: 4501,
            dst_port: 4500
        })
    );
    assert_eq!(out.dscp, esp::DscpPolicy::Set(46));
    assert_eq!(out.df, esp::DfPolicy::Set);
    assert_eq!(out.outer_ttl, 9);
    assert_invalid(
        &edit("udp_encap = true", "dscp = 64"),
        "tunnel[0].dscp",
        "0..=63",
    );
    assert_invalid(
        &edit("udp_encap = true", "dscp = \"keep\""),
        "tunnel[0].dscp",
        "copy",
    );
    assert_invalid(
        &edit("udp_encap = true", "udp_encap = { dst_port = 0 }"),
        "tunnel[0].udp_encap.dst_port",
        "0",
    );
}

#[test]
fn lifetime_soft_not_above_hard() {
    assert_invalid(
        &edit(
            "udp_encap = true",
            "lifetime = { soft_packets = 10, hard_packets = 5 }",
        ),
        "tunnel[0].lifetime.soft_packets",
        "exceeds",
    );
}

// ---------------------------------------------------------- [[tunnel.policy]]

#[test]
fn policy_families_match() {
    assert_invalid(
        &edit(
            "  remote_ts = \"10.2.0.0/24\"",
            "  remote_ts = \"fd02::/64\"",
        ),
        "tunnel[0].policy[0].remote_ts",
        "family",
    );
    assert_invalid(
        &edit(
            "  local_ts = \"10.1.0.0/24\"",
            "  local_ts = \"10.1.0.1/24\"",
        ),
        "tunnel[0].policy[0].local_ts",
        "did you mean 10.1.0.0/24",
    );
}

#[test]
fn ports_only_with_tcp_or_udp() {
    let with = |lines: &str| {
        edit(
            "  remote_ts = \"10.2.0.0/24\"",
            &format!("  remote_ts = \"10.2.0.0/24\"\n{lines}"),
        )
    };
    assert_invalid(
        &with("  local_ports = \"80\""),
        "tunnel[0].policy[0].local_ports",
        "tcp",
    );
    assert_invalid(
        &with("  protocol = \"icmp\"\n  remote_ports = 443"),
        "tunnel[0].policy[0].remote_ports",
        "tcp",
    );
    assert_invalid(
        &with("  protocol = \"udp\"\n  remote_ports = \"2000-1000\""),
        "tunnel[0].policy[0].remote_ports",
        "past its end",
    );
    assert_invalid(
        &with("  protocol = \"udp\"\n  remote_ports = \"http\""),
        "tunnel[0].policy[0].remote_ports",
        "not a port range",
    );
    assert_invalid(
        &with("  protocol = \"gre\""),
        "tunnel[0].policy[0].protocol",
        "not a protocol",
    );
    assert_invalid(
        &with("  protocol = \"icmpv6\""),
        "tunnel[0].policy[0].protocol",
        "use \"icmp\"",
    );
    let c = parse(&with("  protocol = 17\n  remote_ports = 53")).unwrap();
    assert_eq!(c.tunnels[0].policies[0].selector.dst_ports, 53..=53);
}

// ---------------------------------------------------------------- [[tunnel.sa]]

#[test]
fn reserved_spis_are_refused() {
    for v in ["0", "1", "255"] {
        assert_invalid(
            &edit("spi_in = 0x1001", &format!("spi_in = {v}")),
            "tunnel[0].sa[0].spi_in",
            "reserved",
        );
    }
    assert_invalid(
        &edit("spi_out = 0x2001", "spi_out = 0"),
        "tunnel[0].sa[0].spi_out",
        "reserved",
    );
    assert!(parse(&edit("spi_in = 0x1001", "spi_in = 256")).is_ok());
}

/// A second tunnel to another peer, with the given SPIs.
fn second_tunnel(spi_in: u32, spi_out: u32) -> String {
    format!(
        r#"{}
[[tunnel]]
name = "c"
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.3"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.3.0.0/24"
  [[tunnel.sa]]
  spi_in = {spi_in}
  spi_out = {spi_out}
  algorithm = "aes128gcm16"
  key_in = "0x{}"
  key_out = "0x{}"
"#,
        base(),
        "11".repeat(20),
        "22".repeat(20)
    )
}

#[test]
fn spis_unique_per_direction_across_tunnels() {
    assert_invalid(
        &second_tunnel(0x1001, 0x3001),
        "tunnel[1].sa[0].spi_in",
        "tunnel[0].sa[0].spi_in",
    );
    assert_invalid(
        &second_tunnel(0x3001, 0x2001),
        "tunnel[1].sa[0].spi_out",
        "tunnel[0].sa[0].spi_out",
    );
    // The same value in the other direction is another SA.
    let c = parse(&second_tunnel(0x2001, 0x1001)).unwrap();
    assert_eq!(c.tunnels[1].sas[0].algorithm, Algorithm::AES_GCM_128);
}

#[test]
fn tunnel_names_are_unique() {
    let text = second_tunnel(0x3001, 0x3002).replace("name = \"c\"", "name = \"b\"");
    assert_invalid(&text, "tunnel[1].name", "tunnel[0]");
}

#[test]
fn key_length_matches_the_algorithm_without_echoing_the_key() {
    let short = format!("0x{}", "ab".repeat(32));
    let e = assert_invalid(
        &edit(
            &format!("key_in = \"{K36_A}\""),
            &format!("key_in = \"{short}\""),
        ),
        "tunnel[0].sa[0].key_in",
        "aes256gcm16 needs a 36-byte key (32-byte AES key + 4-byte salt), got 32 bytes",
    );
    assert!(!e.to_string().contains("abab"), "{e}");
    let e = assert_invalid(
        &edit("algorithm = \"aes256gcm16\"", "algorithm = \"aes128gcm16\""),
        "tunnel[0].sa[0].key_in",
        "needs a 20-byte key",
    );
    assert!(!e.to_string().contains(&K36_A[2..12]), "{e}");
    assert_invalid(
        &edit(&format!("key_in = \"{K36_A}\""), "key_in = \"0x12zz\""),
        "tunnel[0].sa[0].key_in",
        "not hex",
    );
}

#[test]
fn auth_keys_present_iff_needed() {
    assert_invalid(
        &edit(
            "  key_out",
            &format!("  auth_key_in = \"0x{}\"\n  key_out", "aa".repeat(32)),
        ),
        "tunnel[0].sa[0].auth_key_in",
        "AEAD",
    );
    let cbc = base()
        .replace("\"aes256gcm16\"", "\"aes128-sha256\"")
        .replace(K36_A, &format!("0x{}", "01".repeat(16)))
        .replace(K36_B, &format!("0x{}", "02".repeat(16)));
    assert_invalid(
        &cbc,
        "tunnel[0].sa[0].auth_key_in",
        "32-byte HMAC-SHA-256 key",
    );
    let with_in = cbc.replace(
        "  key_out",
        &format!("  auth_key_in = \"0x{}\"\n  key_out", "03".repeat(32)),
    );
    assert_invalid(&with_in, "tunnel[0].sa[0].auth_key_out", "missing");
    let both = with_in.replace(
        "  key_out",
        &format!("  auth_key_out = \"0x{}\"\n  key_out", "04".repeat(31)),
    );
    assert_invalid(&both, "tunnel[0].sa[0].auth_key_out", "got 31 bytes");
    let ok = with_in.replace(
        "  key_out",
        &format!("  auth_key_out = \"0x{}\"\n  key_out", "04".repeat(32)),
    );
    let c = parse(&ok).unwrap();
    let pair = &c.tunnels[0].sas[0];
    assert_eq!(pair.algorithm.encryption, Encryption::AesCbc128);
    assert_eq!(pair.algorithm.integrity, Integrity::HmacSha256_128);
    assert_eq!(&pair.outbound.keys.auth_key[..], &[4u8; 32][..]);
}

#[test]
fn null_encryption_takes_no_key() {
    let null = base().replace("\"aes256gcm16\"", "\"null-sha256\"");
    assert_invalid(&null, "tunnel[0].sa[0].key_in", "null encryption");
}

#[test]
fn unknown_algorithm() {
    assert_invalid(
        &edit("algorithm = \"aes256gcm16\"", "algorithm = \"aes256-md5\""),
        "tunnel[0].sa[0].algorithm",
        "legacy",
    );
}

#[test]
fn aead_key_must_differ_between_directions() {
    assert_invalid(
        &base().replace(K36_B, K36_A),
        "tunnel[0].sa[0].key_out",
        "nonce reuse",
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("espresso-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A key file as it should be: mode 0600.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn key_files_relative_to_the_config() {
    let dir = temp_dir("keyfile");
    write_private(&dir.join("in.key"), &format!("{K36_A}\n"));
    let text = edit(&format!("key_in = \"{K36_A}\""), "key_in_file = \"in.key\"");
    let cfg_path = dir.join("gw.toml");
    let c = GatewayConfig::from_str(&text, &cfg_path).unwrap();
    assert_eq!(c.tunnels[0].sas[0].inbound.keys.enc_key[0..2], [0x00, 0x01]);

    let e = GatewayConfig::from_str(&text.replace("in.key", "missing.key"), &cfg_path).unwrap_err();
    assert_eq!(e.field(), Some("tunnel[0].sa[0].key_in_file"), "{e}");
    assert!(e.to_string().contains("missing.key"), "{e}");

    let both = edit("  key_out", "  key_in_file = \"in.key\"\n  key_out");
    let e = GatewayConfig::from_str(&both, &cfg_path).unwrap_err();
    assert!(e.reason().contains("not both"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn debug_never_shows_keys() {
    let c = parse(&base()).unwrap();
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains(&K36_A[2..]) && !dbg.contains("0, 1, 2, 3"),
        "key leaked"
    );
    assert!(dbg.contains("redacted"));
}

// ------------------------------------------------------------- [tunnel.ike]

const PSK: &str = "correct-horse-battery-staple";

fn with_ike(lines: &str) -> String {
    format!("{}\n  [tunnel.ike]\n  psk = \"{PSK}\"\n{lines}\n", base())
}

#[test]
fn ike_defaults_and_values() {
    let c = parse(&with_ike(
        "  remote_id = \"keyid:peer\"\n  dpd_interval = \"0s\"\n  ike_lifetime = \"8h\"",
    ))
    .unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(ike.local_id, IkeId::Ipv4("192.0.2.1".parse().unwrap()));
    assert_eq!(ike.remote_id, IkeId::KeyId(b"peer".to_vec()));
    assert_eq!(ike.psk.expose(), PSK.as_bytes());
    assert_eq!(ike.dpd_interval, None);
    assert_eq!(ike.ike_lifetime, std::time::Duration::from_secs(8 * 3600));
    assert_eq!(ike.child_lifetime, IkeConfig::DEFAULT_CHILD_LIFETIME);
    assert_eq!(ike.start_action, StartAction::Initiate);
    assert_eq!(ike.proposals[0].dh, [DhGroup::Ecp256]);
    assert_eq!(ike.esp_proposals[0].encryption, [Encryption::AesGcm16_256]);
    assert!(!format!("{c:?}").contains(PSK));
}

#[test]
fn ike_fragmentation_defaults_and_fragment_size_is_bounded() {
    let c = parse(&with_ike("")).unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert!(ike.fragmentation);
    assert_eq!(ike.fragment_size, 1280);
    let c = parse(&with_ike("  fragmentation = false\n  fragment_size = 576")).unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!((ike.fragmentation, ike.fragment_size), (false, 576));
    assert_invalid(
        &with_ike("  fragment_size = 191"),
        "tunnel[0].ike.fragment_size",
        "out of range (192 to 65535)",
    );
    assert_invalid(
        &with_ike("  fragment_size = 65536"),
        "tunnel[0].ike.fragment_size",
        "out of range",
    );
}

#[test]
fn ike_limits_default_and_are_bounded() {
    let c = parse(&with_ike("")).unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(
        ike.max_traffic_selectors,
        IkeConfig::DEFAULT_MAX_TRAFFIC_SELECTORS
    );
    assert_eq!(ike.max_selectors, IkeConfig::DEFAULT_MAX_SELECTORS);
    assert_eq!(ike.max_child_sas, IkeConfig::DEFAULT_MAX_CHILD_SAS);
    let c = parse(&with_ike(
        "  max_traffic_selectors = 4\n  max_selectors = 64\n  max_child_sas = 3",
    ))
    .unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(
        (
            ike.max_traffic_selectors,
            ike.max_selectors,
            ike.max_child_sas
        ),
        (4, 64, 3)
    );
    assert_invalid(
        &with_ike("  max_child_sas = 1"),
        "tunnel[0].ike.max_child_sas",
        "out of range",
    );
    assert_invalid(
        &with_ike("  max_selectors = 1000000"),
        "tunnel[0].ike.max_selectors",
        "out of range",
    );
    assert_invalid(
        &with_ike("  max_traffic_selectors = 0"),
        "tunnel[0].ike.max_traffic_selectors",
        "out of range",
    );
    // Our own offer must fit the limits the peer's reply is held to.
    let two = "  [[tunnel.policy]]\n  local_ts = \"10.1.1.0/24\"\n  remote_ts = \"10.2.1.0/24\"";
    assert!(parse(&with_ike(two)).is_ok());
    assert_invalid(
        &with_ike(&format!("  max_traffic_selectors = 1\n{two}")),
        "tunnel[0].ike.max_traffic_selectors",
        "2 protect policies",
    );
    assert_invalid(
        &with_ike(&format!("  max_selectors = 3\n{two}")),
        "tunnel[0].ike.max_selectors",
        "4 selectors",
    );
}

#[test]
fn ike_errors_name_the_field() {
    assert_invalid(
        &with_ike("  proposals = [\"aes128gcm16-prfsha256-ecp256\", \"aes128gcm16\"]"),
        "tunnel[0].ike.proposals[1]",
        "PRF",
    );
    assert_invalid(
        &with_ike("  esp_proposals = []"),
        "tunnel[0].ike.esp_proposals",
        "empty",
    );
    assert_invalid(
        &with_ike("  child_lifetime = \"1 hour\""),
        "tunnel[0].ike.child_lifetime",
        "not a duration",
    );
    assert_invalid(
        &with_ike("  local_id = \"bad id\""),
        "tunnel[0].ike.local_id",
        "FQDN",
    );
    assert_invalid(
        &with_ike("  psk_file = \"/x\""),
        "tunnel[0].ike.psk",
        "not both",
    );
}

/// A PSK file that its group (or anyone) may read is refused, naming the
/// file and the fix; the same file at mode 0600 is accepted.
#[test]
fn group_readable_psk_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("pskmode");
    let psk = dir.join("site-b.psk");
    std::fs::write(&psk, format!("{PSK}\n")).unwrap();
    let text = format!("{}\n  [tunnel.ike]\n  psk_file = \"site-b.psk\"\n", base());
    let cfg_path = dir.join("gw.toml");
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = GatewayConfig::from_str(&text, &cfg_path).unwrap_err();
        assert_eq!(e.field(), Some("tunnel[0].ike.psk_file"), "{e}");
        let shown = psk.display().to_string();
        assert!(e.reason().contains(&shown), "{e}");
        assert!(e.reason().contains(&format!("chmod 600 {shown}")), "{e}");
        assert!(!e.to_string().contains(PSK), "{e}");
    }
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = GatewayConfig::from_str(&text, &cfg_path).unwrap();
    assert_eq!(
        c.tunnels[0].ike.as_ref().unwrap().psk.expose(),
        PSK.as_bytes()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A key log directory that is a symbolic link is refused (whoever owns
/// the link would choose where the keys go).
#[test]
fn symlinked_keylog_dir_is_refused() {
    let dir = temp_dir("keylogsym");
    std::fs::create_dir_all(dir.join("real")).unwrap();
    let _ = std::fs::remove_file(dir.join("link"));
    std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
    let cfg_path = dir.join("gw.toml");
    let e = GatewayConfig::from_str(&with_ike("  keylog_dir = \"link\""), &cfg_path).unwrap_err();
    assert_eq!(e.field(), Some("tunnel[0].ike.keylog_dir"), "{e}");
    assert!(e.reason().contains("symbolic link"), "{e}");
    let c = GatewayConfig::from_str(&with_ike("  keylog_dir = \"real\""), &cfg_path).unwrap();
    assert_eq!(
        c.tunnels[0].ike.as_ref().unwrap().keylog_dir,
        Some(dir.join("real"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn control_socket_group_and_ike_limits() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.control.socket_group, None);
    assert_eq!(c.control.ike_half_open_per_source, 5);
    let control = |lines: &str| format!("[control]\n{lines}\n{}", base());
    let text = control(
        "socket_group = \"root\"\nike_cookie_threshold = 0\nike_half_open_max = 64\nike_cookie_secret_lifetime = \"5m\"",
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.control.socket_group.as_ref().map(|g| g.gid), Some(0));
    assert_eq!(
        (c.control.ike_cookie_threshold, c.control.ike_half_open_max),
        (0, 64)
    );
    assert_eq!(
        c.control.ike_cookie_secret_lifetime,
        std::time::Duration::from_secs(300)
    );
    assert_invalid(
        &control("socket_group = \"no-such-group-here\""),
        "control.socket_group",
        "no group",
    );
    assert_invalid(
        &control("ike_half_open_max = 0"),
        "control.ike_half_open_max",
        "at least 1",
    );
    assert_invalid(
        &control("ike_half_open_max = 100000000"),
        "control.ike_half_open_max",
        "is over 65536",
    );
}

#[test]
fn short_psk_is_refused_and_not_echoed() {
    let text = format!("{}\n  [tunnel.ike]\n  psk = \"hunter2\"\n", base());
    let e = assert_invalid(&text, "tunnel[0].ike.psk", "at least 16");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn ike_only_tunnel_is_valid() {
    let b = base();
    let text = format!(
        "{}  [tunnel.ike]\n  psk = \"0x{}\"\n",
        &b[..b.find("  [[tunnel.sa]]").unwrap()],
        "5a".repeat(32)
    );
    let c = parse(&text).unwrap();
    assert!(c.tunnels[0].sas.is_empty());
    assert_eq!(c.tunnels[0].ike.as_ref().unwrap().psk.len(), 32);
}

// ----------------------------------------------------------------- examples

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every example loads without an error or a warning (on a 2-CPU host,
/// the smallest a gateway runs on).
#[test]
fn every_example_validates() {
    let host = validate::Host {
        online_cpus: Some(vec![0, 1]),
    };
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let (c, problems) = validate::check(&text, &path, &host);
            assert!(problems.is_empty(), "{problems:#?}");
            assert!(!c.unwrap().tunnels.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 4, "found {n} example configs");
}

#[test]
fn ike_site_a_and_b_are_initiator_and_responder() {
    let a = GatewayConfig::load(examples_dir().join("ike-site-a.toml")).unwrap();
    let b = GatewayConfig::load(examples_dir().join("ike-site-b.toml")).unwrap();
    let (ta, tb) = (&a.tunnels[0], &b.tunnels[0]);
    assert_eq!(ta.endpoints.local, tb.endpoints.remote);
    assert_eq!(ta.endpoints.remote, tb.endpoints.local);
    assert_eq!(ta.udp_encap, tb.udp_encap);
    let (ia, ib) = (ta.ike.as_ref().unwrap(), tb.ike.as_ref().unwrap());
    assert_eq!(ia.start_action, StartAction::Initiate);
    assert_eq!(ib.start_action, StartAction::Listen);
    assert_eq!(ia.local_id, ib.remote_id);
    assert_eq!(ia.remote_id, ib.local_id);
    assert_eq!(ia.psk, ib.psk);
    assert_eq!(ia.proposals, ib.proposals);
    assert_eq!(ia.esp_proposals, ib.esp_proposals);
    // Each side's policies are the other's, seen from the other end.
    assert_eq!(ta.policies.len(), tb.policies.len());
    for pa in &ta.policies {
        let mirrored = tb.policies.iter().any(|pb| {
            pb.selector.src == pa.selector.dst
                && pb.selector.dst == pa.selector.src
                && pb.selector.protocol == pa.selector.protocol
                && pb.selector.src_ports == pa.selector.dst_ports
                && pb.selector.dst_ports == pa.selector.src_ports
                && std::mem::discriminant(&pb.action) == std::mem::discriminant(&pa.action)
        });
        assert!(mirrored, "no mirror of {pa:?} in ike-site-b.toml");
    }
}

// ------------------------------------------ collecting, placing, explaining

/// Every problem of `text` checked on a 2-CPU host.
fn problems(text: &str) -> Vec<ConfigError> {
    let host = validate::Host {
        online_cpus: Some(vec![0, 1]),
    };
    validate::check(text, Path::new(FILE), &host).1
}

/// The line (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line has {needle:?}"))
        + 1
}

#[test]
fn every_error_is_reported_with_its_line_and_column() {
    let text = edit("workers = 1", "workers = \"one\"")
        .replacen("role = \"wan\"", "role = \"wan\"\nmtu = 70000", 1)
        .replacen(
            "  spi_out = 0x2001",
            "  spi_out = 0x2001\n  spi_typo = 1",
            1,
        );
    let p = problems(&text);
    let fields: Vec<_> = p.iter().map(|e| e.field().unwrap_or("")).collect();
    assert_eq!(
        fields,
        [
            "dataplane.workers",
            "interface[1].mtu",
            "tunnel[0].sa[0].spi_typo"
        ],
        "{p:#?}"
    );
    for (e, needle) in p.iter().zip(["workers =", "mtu = 70000", "spi_typo"]) {
        assert_eq!(e.severity(), Severity::Error);
        let (line, col) = e.line_col().expect("placed");
        assert_eq!(line, line_of(&text, needle), "{e}");
        assert!(col > 1, "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!(
                "{FILE}:{line}:{col}: error: {}: ",
                e.field().unwrap()
            )),
            "{shown}"
        );
    }
    assert!(
        p[1].reason().contains("70000 is out of range 0..=65535"),
        "{}",
        p[1]
    );
}

#[test]
fn semantic_errors_of_independent_items_are_all_reported() {
    let text = base()
        .replacen("prefix = \"10.2.0.0/24\"", "prefix = \"10.2.0.0/33\"", 1)
        .replacen(
            "mac = \"02:00:00:00:00:02\"",
            "mac = \"01:00:00:00:00:02\"",
            1,
        )
        .replacen("spi_in = 0x1001", "spi_in = 7", 1)
        .replacen("memory_mb = 512", "memory_mb = 8", 1);
    let p = problems(&text);
    let fields: Vec<_> = p.iter().map(|e| e.field().unwrap_or("")).collect();
    assert_eq!(
        fields,
        [
            "dataplane.memory_mb",
            "route[0].prefix",
            "neighbour[0].mac",
            "tunnel[0].sa[0].spi_in"
        ],
        "{p:#?}"
    );
    for e in &p {
        let needle = e.field().unwrap().rsplit('.').next().unwrap();
        assert_eq!(
            e.line_col().map(|l| l.0),
            Some(line_of(&text, &format!("{needle} ="))),
            "{e}"
        );
    }
}

#[test]
fn unknown_field_suggests_the_closest_and_lists_the_valid_ones() {
    let text = edit(
        "remote_addrs = \"192.0.2.2\"",
        "remote_addr = \"192.0.2.2\"",
    );
    let p = problems(&text);
    let e = p
        .iter()
        .find(|e| e.field() == Some("tunnel[0].remote_addr"))
        .unwrap_or_else(|| panic!("{p:#?}"));
    assert_eq!(e.kind(), ErrorKind::Syntax);
    assert!(
        e.reason().starts_with(
            "unknown field \"remote_addr\" in [[tunnel]]; did you mean \"remote_addrs\"? valid fields: name, local_addrs, remote_addrs, mode, udp_encap,"
        ),
        "{e}"
    );
    assert_eq!(
        e.line_col().map(|l| l.0),
        Some(line_of(&text, "remote_addr ="))
    );
    // And the key it should have been is missing.
    assert!(
        p.iter()
            .any(|e| e.field() == Some("tunnel[0].remote_addrs") && e.reason().contains("missing")),
        "{p:#?}"
    );
}

#[test]
fn old_key_names_still_work_with_a_warning_naming_the_new_one() {
    let text = edit("local_addrs = \"192.0.2.1\"", "local = \"192.0.2.1\"").replacen(
        "  remote_ts = \"10.2.0.0/24\"",
        "  remote = \"10.2.0.0/24\"",
        1,
    );
    let host = validate::Host::default();
    let (c, p) = validate::check(&text, Path::new(FILE), &host);
    let c = c.unwrap_or_else(|| panic!("{p:#?}"));
    assert_eq!(
        c.tunnels[0].endpoints.local,
        "192.0.2.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    for (e, field, new, needle) in [
        (&p[0], "tunnel[0].local", "local_addrs", "local = "),
        (
            &p[1],
            "tunnel[0].policy[0].remote",
            "remote_ts",
            "  remote = ",
        ),
    ] {
        assert_eq!(e.severity(), Severity::Warning, "{e}");
        assert_eq!(e.field(), Some(field), "{e}");
        assert!(e.reason().contains(&format!("rename it to `{new}`")), "{e}");
        assert_eq!(
            e.line_col().map(|l| l.0),
            Some(line_of(&text, needle)),
            "{e}"
        );
        assert!(e.to_string().contains(": warning: "), "{e}");
    }
    // Semantic errors use the new name even when the old one was written.
    let bad = text.replace("local = \"192.0.2.1\"", "local = \"192.0.2.9\"");
    assert_invalid(&bad, "tunnel[0].local_addrs", "not one of this gateway's");
    // Both names at once is an error.
    let both = edit(
        "local_addrs = \"192.0.2.1\"",
        "local_addrs = \"192.0.2.1\"\nlocal = \"192.0.2.1\"",
    );
    assert_invalid(&both, "tunnel[0].local", "give `local_addrs` only");
}

#[test]
fn local_addrs_takes_one_address_also_as_a_list() {
    let c = parse(&edit(
        "remote_addrs = \"192.0.2.2\"",
        "remote_addrs = [\"192.0.2.2\"]",
    ))
    .unwrap();
    assert_eq!(
        c.tunnels[0].endpoints.remote,
        "192.0.2.2".parse::<IpAddr>().unwrap()
    );
    assert_invalid(
        &edit(
            "remote_addrs = \"192.0.2.2\"",
            "remote_addrs = [\"192.0.2.2\", \"192.0.2.3\"]",
        ),
        // Several remote addresses make a responder template, keyed by IKE.
        "tunnel[0]",
        "responder template",
    );
}

#[test]
fn range_errors_name_the_field_and_the_range() {
    let text = edit("udp_encap = true", "udp_encap.dst_port = 65536");
    let e = assert_invalid(
        &text,
        "tunnel[0].udp_encap.dst_port",
        "65536 is out of range 1..=65535",
    );
    assert_eq!(e.line_col().map(|l| l.0), Some(line_of(&text, "dst_port")));
    assert_invalid(
        &edit("udp_encap = true", "udp_encap = { src_port = 0 }"),
        "tunnel[0].udp_encap.src_port",
        "0 is out of range 1..=65535",
    );
    assert_invalid(
        &edit("udp_encap = true", "udp_encap = { dst_port = \"x\" }"),
        "tunnel[0].udp_encap.dst_port",
        "expected an integer in 1..=65535, found a string",
    );
    assert_invalid(
        &edit("udp_encap = true", "outer_ttl = 256"),
        "tunnel[0].outer_ttl",
        "256 is out of range 1..=255",
    );
}

#[test]
fn unknown_words_list_the_supported_ones() {
    assert_invalid(
        &edit("role = \"wan\"", "role = \"wann\""),
        "interface[1].role",
        "unknown value \"wann\"; did you mean \"wan\"? expected \"lan\" or \"wan\"",
    );
    assert_invalid(
        &edit("udp_encap = true", "mode = \"tunel\""),
        "tunnel[0].mode",
        "expected \"tunnel\" or \"transport\"",
    );
    assert_invalid(
        &edit("udp_encap = true", "df = \"keep\""),
        "tunnel[0].df",
        "expected \"copy\", \"set\" or \"clear\"",
    );
    assert_invalid(
        &edit("udp_encap = true", "dscp = \"ef\""),
        "tunnel[0].dscp",
        "neither \"copy\" nor a number 0..=63",
    );
    assert_invalid(
        &edit(
            "  remote_ts = \"10.2.0.0/24\"",
            "  remote_ts = \"10.2.0.0/24\"\n  action = \"drop\"",
        ),
        "tunnel[0].policy[0].action",
        "expected \"protect\", \"bypass\" or \"discard\"",
    );
    assert_invalid(
        &edit(
            "  remote_ts = \"10.2.0.0/24\"",
            "  remote_ts = \"10.2.0.0/24\"\n  protocol = \"gre\"",
        ),
        "tunnel[0].policy[0].protocol",
        "any, tcp, udp, icmp, icmpv6, sctp or a number",
    );
    assert_invalid(
        &edit("mbufs = 8191", "mbufs = 8191\ncrypto_backend = \"openssl\""),
        "dataplane.crypto_backend",
        "\"auto\", \"ipsec-mb\", \"aws-lc\" or \"rust\"",
    );
    assert_invalid(
        &with_ike("  start_action = \"respond\""),
        "tunnel[0].ike.start_action",
        "expected \"initiate\" or \"listen\"",
    );
}

#[test]
fn unknown_algorithms_list_the_supported_ones() {
    let e = assert_invalid(
        &with_ike("  proposals = [\"aes256gcm16-prfsha256-ecp257\"]"),
        "tunnel[0].ike.proposals[0]",
        "unknown algorithm `ecp257` (did you mean `ecp256`?)",
    );
    for word in [
        "curve25519",
        "modp2048",
        "prfsha384",
        "chacha20poly1305",
        "sha512",
    ] {
        assert!(e.reason().contains(word), "{e}");
    }
    let e = assert_invalid(
        &with_ike("  proposals = [\"aes256gcm16-prfsha256\"]"),
        "tunnel[0].ike.proposals[0]",
        "needs a Diffie-Hellman group",
    );
    assert!(
        e.reason().contains("ecp384") && e.reason().contains("modp4096"),
        "{e}"
    );
    let e = assert_invalid(
        &with_ike("  esp_proposals = [\"aes256gcm17\"]"),
        "tunnel[0].ike.esp_proposals[0]",
        "unknown algorithm `aes256gcm17` (did you mean `aes256gcm16`?)",
    );
    assert!(e.reason().contains("supported:"), "{e}");
    let e = assert_invalid(
        &edit("algorithm = \"aes256gcm16\"", "algorithm = \"aes256-md4\""),
        "tunnel[0].sa[0].algorithm",
        "unknown algorithm `md4`",
    );
    assert!(
        e.reason()
            .contains("aes128gcm16, aes256gcm16, chacha20poly1305"),
        "{e}"
    );
}

#[test]
fn lcores_must_be_online_cpus_of_this_host_and_more_workers_share_them() {
    let host = validate::Host {
        online_cpus: Some(vec![0, 1]),
    };
    let check = |text: &str| validate::check(text, Path::new(FILE), &host);
    let text = edit("workers = 1", "workers = 1\nlcores = \"0-3\"");
    let (c, p) = check(&text);
    assert!(c.is_none());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].field(), Some("dataplane.lcores"));
    assert!(
        p[0].reason().contains("CPU(s) 2, 3") && p[0].reason().contains("online: 0-1"),
        "{}",
        p[0]
    );
    // Without `lcores`, more workers than CPUs share them: a warning.
    let (c, p) = check(&edit("workers = 1", "workers = 2"));
    assert!(c.is_some());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].severity(), Severity::Warning);
    assert_eq!(p[0].field(), Some("dataplane.workers"));
    assert!(p[0].reason().contains("will share CPUs"), "{}", p[0]);
    // Unknown host: not checked.
    let (c, _) = validate::check(&text, Path::new(FILE), &validate::Host::default());
    assert!(c.is_some());
    assert_eq!(validate::cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
}

#[test]
fn tunnel_peer_needs_a_route() {
    let text = edit(
        "remote_addrs = \"192.0.2.2\"",
        "remote_addrs = \"198.51.100.7\"",
    );
    assert_invalid(
        &text,
        "tunnel[0].remote_addrs",
        "no route to peer 198.51.100.7 of tunnel \"b\"",
    );
    let routed = text.replacen(
        "[[neighbour]]",
        "[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"192.0.2.2\"\ninterface = \"wan\"\n\n[[neighbour]]",
        1,
    );
    parse(&routed).unwrap();
}

/// `base()` with one more policy after the first.
fn with_policy(lines: &str) -> String {
    edit(
        "  remote_ts = \"10.2.0.0/24\"\n",
        &format!("  remote_ts = \"10.2.0.0/24\"\n\n  [[tunnel.policy]]\n{lines}\n"),
    )
}

#[test]
fn a_shadowed_policy_with_another_action_is_an_error() {
    let e = assert_invalid(
        &with_policy("  local_ts = \"10.1.0.0/25\"\n  remote_ts = \"10.2.0.0/24\"\n  action = \"discard\""),
        "tunnel[0].policy[1]",
        "can never match: tunnel[0].policy[0] (priority 100) comes first and covers all of its traffic",
    );
    assert!(
        e.reason()
            .contains("gets \"protect through tunnel \"b\"\" instead of \"discard\""),
        "{e}"
    );
    // A lower priority number puts it first: the usual exception.
    let text = with_policy(
        "  local_ts = \"10.1.0.0/25\"\n  remote_ts = \"10.2.0.0/24\"\n  action = \"discard\"\n  priority = 10",
    );
    assert!(problems(&text).is_empty(), "{:#?}", problems(&text));
}

#[test]
fn a_shadowed_policy_with_the_same_action_is_a_warning() {
    let text = with_policy("  local_ts = \"10.1.0.0/25\"\n  remote_ts = \"10.2.0.0/24\"");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].severity(), Severity::Warning);
    assert_eq!(p[0].field(), Some("tunnel[0].policy[1]"));
    assert!(p[0].reason().contains("redundant"), "{}", p[0]);
    parse(&text).unwrap();
}

#[test]
fn a_partial_overlap_with_another_action_is_a_warning() {
    let text = with_policy(
        "  local_ts = \"10.1.0.0/16\"\n  remote_ts = \"10.2.0.0/25\"\n  action = \"bypass\"\n  priority = 50",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].severity(), Severity::Warning);
    assert_eq!(p[0].field(), Some("tunnel[0].policy[0]"));
    assert!(
        p[0].reason().contains("overlaps tunnel[0].policy[1] (priority 50), which comes first: their common traffic gets \"bypass\""),
        "{}",
        p[0]
    );
    parse(&text).unwrap();
}

#[test]
fn overlaps_across_tunnels_are_found() {
    let text = second_tunnel(0x1002, 0x2002).replace("10.3.0.0/24", "10.2.0.0/24");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|e| e.field() == Some("tunnel[1].policy[0]")
                && e.reason().contains("can never match")),
        "{p:#?}"
    );
}

#[test]
fn site_a_and_site_b_are_a_matching_pair() {
    let a = GatewayConfig::load(examples_dir().join("site-a.toml")).unwrap();
    let b = GatewayConfig::load(examples_dir().join("site-b.toml")).unwrap();
    let (ta, tb) = (&a.tunnels[0], &b.tunnels[0]);
    assert_eq!(ta.endpoints.local, tb.endpoints.remote);
    assert_eq!(ta.endpoints.remote, tb.endpoints.local);
    assert_eq!(ta.udp_encap, tb.udp_encap);
    assert_eq!(ta.sas.len(), 1);
    assert_eq!(tb.sas.len(), 1);
    let (pa, pb) = (&ta.sas[0], &tb.sas[0]);
    assert_eq!(pa.algorithm, Algorithm::AES_GCM_256);
    assert_eq!(pa.algorithm, pb.algorithm);
    for (out, inb) in [(&pa.outbound, &pb.inbound), (&pb.outbound, &pa.inbound)] {
        assert_eq!(out.config.spi, inb.config.spi);
        assert_eq!(out.keys.enc_key[..], inb.keys.enc_key[..]);
        assert_eq!(out.keys.auth_key[..], inb.keys.auth_key[..]);
        assert_eq!(out.config.esn, inb.config.esn);
        // What one side protects, the other accepts.
        assert_eq!(out.config.traffic_selectors, inb.config.traffic_selectors);
    }
}

#[test]
fn metrics_listen_is_an_address_and_off_by_default() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.metrics.listen, None);
    let metrics = |lines: &str| format!("[metrics]\n{lines}\n{}", base());
    let c = parse(&metrics("listen = \"127.0.0.1:9469\"")).unwrap();
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9469".parse().unwrap()));
    let c = parse(&metrics("listen = \"[::1]:9469\"")).unwrap();
    assert_eq!(c.metrics.listen, Some("[::1]:9469".parse().unwrap()));
    assert_invalid(
        &metrics("listen = \"localhost:9469\""),
        "metrics.listen",
        "not an address and port",
    );
    assert_invalid(
        &metrics("listen = \"127.0.0.1\""),
        "metrics.listen",
        "not an address and port",
    );
    assert_invalid(
        &metrics("listen = \"127.0.0.1:0\""),
        "metrics.listen",
        "needs a port",
    );
    assert_invalid(
        &metrics("listen = \"224.0.0.1:9469\""),
        "metrics.listen",
        "multicast",
    );
    assert_invalid(&metrics("port = 9469"), "metrics.port", "unknown field");
}

#[test]
fn ike_redirect_defaults_and_values() {
    use crate::ike::message::GatewayIdentity;
    use crate::ike::{RedirectExchange, RedirectPolicy};
    let c = parse(&with_ike("")).unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(ike.redirect.policy, RedirectPolicy::Never);
    assert!(ike.redirect.targets.is_empty());
    assert!(ike.follow_redirects);
    let c = parse(&with_ike(
        "  redirect = \"load\"\n  redirect_above = 500\n  redirect_to = [\"192.0.2.9\", \"2001:db8::9\", \"GW3.example.\"]\n  redirect_in = \"ike_auth\"\n  follow_redirects = false",
    ))
    .unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(ike.redirect.policy, RedirectPolicy::Load { above: 500 });
    assert_eq!(ike.redirect.exchange, RedirectExchange::IkeAuth);
    assert_eq!(
        ike.redirect.targets,
        vec![
            GatewayIdentity::Ip("192.0.2.9".parse().unwrap()),
            GatewayIdentity::Ip("2001:db8::9".parse().unwrap()),
            GatewayIdentity::Fqdn("gw3.example".into()),
        ]
    );
    assert!(!ike.follow_redirects);
    let c = parse(&with_ike(
        "  redirect = \"always\"\n  redirect_to = [\"192.0.2.9\"]",
    ))
    .unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    assert_eq!(ike.redirect.policy, RedirectPolicy::Always);
    assert_eq!(ike.redirect.exchange, RedirectExchange::IkeSaInit);
}

#[test]
fn ike_redirect_mistakes_are_refused() {
    let f = "tunnel[0].ike.";
    for (lines, field, words) in [
        ("  redirect = \"always\"", "redirect_to", "missing"),
        (
            "  redirect = \"load\"\n  redirect_to = [\"192.0.2.9\"]",
            "redirect_above",
            "missing",
        ),
        (
            "  redirect = \"load\"\n  redirect_above = 0\n  redirect_to = [\"192.0.2.9\"]",
            "redirect_above",
            "at least 1",
        ),
        (
            "  redirect = \"always\"\n  redirect_above = 5\n  redirect_to = [\"192.0.2.9\"]",
            "redirect_above",
            "only",
        ),
        (
            "  redirect = \"always\"\n  redirect_to = [\"not a host!\"]",
            "redirect_to",
            "neither",
        ),
        (
            "  redirect = \"always\"\n  redirect_to = [\"192.0.2.1\"]",
            "redirect_to",
            "own local address",
        ),
        (
            "  redirect = \"always\"\n  redirect_to = [\"192.0.2.9\", \"192.0.2.9\"]",
            "redirect_to",
            "twice",
        ),
        ("  redirect = \"sometimes\"", "redirect", "always"),
        ("  redirect_in = \"later\"", "redirect_in", "ike_auth"),
    ] {
        assert_invalid(&with_ike(lines), &format!("{f}{field}"), words);
    }
    let many: Vec<String> = (0..=IkeConfig::MAX_REDIRECT_TARGETS)
        .map(|i| format!("\"198.51.100.{i}\""))
        .collect();
    assert_invalid(
        &with_ike(&format!(
            "  redirect = \"always\"\n  redirect_to = [{}]",
            many.join(", ")
        )),
        "tunnel[0].ike.redirect_to",
        "at most",
    );
}

// ------------------------------------------------------------------ [[pool]]

/// A listening IKE tunnel using pool "ra" (whose definition is `pool`).
fn with_pool(pool: &str, names: &str) -> String {
    format!(
        "{}  start_action = \"listen\"\n  pools = [{names}]\n\n[[pool]]\n{pool}\n",
        with_ike("")
    )
}

#[test]
fn pools_parse_and_are_referenced() {
    let c = parse(&with_pool(
        "name = \"ra\"\naddrs = [\"10.2.0.128/25\", \"10.2.0.10-10.2.0.20\"]\ndns = [\"10.1.0.53\"]\nsubnets = [\"10.1.0.0/24\"]",
        "\"ra\"",
    ))
    .unwrap();
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.pools[0].ranges.len(), 2);
    assert_eq!(
        c.pools[0].ranges[0].start,
        "10.2.0.129".parse::<IpAddr>().unwrap()
    );
    assert_eq!(c.pools[0].dns, vec!["10.1.0.53".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        c.tunnels[0].ike.as_ref().unwrap().pools,
        vec!["ra".to_string()]
    );
}

#[test]
fn pools_are_checked() {
    let ok = "name = \"ra\"\naddrs = [\"10.2.0.128/25\"]";
    assert_invalid(
        &with_pool(ok, "\"nope\""),
        "tunnel[0].ike.pools",
        "no [[pool]] named \"nope\"",
    );
    assert_invalid(
        &with_pool("name = \"ra\"\naddrs = [\"10.2.0.300/25\"]", "\"ra\""),
        "pool[0].addrs[0]",
        "neither a prefix",
    );
    assert_invalid(
        &with_pool(
            "name = \"ra\"\naddrs = [\"10.2.0.0/25\", \"10.2.0.100-10.2.0.200\"]",
            "\"ra\"",
        ),
        "pool[0].addrs",
        "overlap",
    );
    // Two pools sharing addresses.
    assert_invalid(
        &with_pool(
            &format!("{ok}\n[[pool]]\nname = \"rb\"\naddrs = [\"10.2.0.200-10.2.0.210\"]"),
            "\"ra\"",
        ),
        "pool[0].addrs",
        "overlaps 10.2.0.200-10.2.0.210 of pool \"rb\"",
    );
    // A pool holding an interface's address.
    assert_invalid(
        &with_pool("name = \"ra\"\naddrs = [\"10.1.0.0/24\"]", "\"ra\"")
            .replace("remote_ts = \"10.2.0.0/24\"", "remote_ts = \"10.0.0.0/8\""),
        "pool[0].addrs",
        "an address of interface \"lan\"",
    );
    // Return traffic would not enter the tunnel.
    assert_invalid(
        &with_pool("name = \"ra\"\naddrs = [\"10.9.0.0/24\"]", "\"ra\""),
        "tunnel[0].ike.pools",
        "no protect policy",
    );
    // Only a listening tunnel hands out addresses.
    assert_invalid(
        &with_pool(ok, "\"ra\"")
            .replace("start_action = \"listen\"", "start_action = \"initiate\""),
        "tunnel[0].ike.pools",
        "start_action = \"listen\"",
    );
    assert_invalid(
        &format!("{}\n[control]\nstate_dir = \"\"\n", base()),
        "control.state_dir",
        "must not be empty",
    );
}

/// Certificate files of `[tunnel.ike]`.
mod certs;
