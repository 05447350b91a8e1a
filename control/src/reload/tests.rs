//! The diff of two configurations, the slots, and what the planner sends
//! for a reload: no DPDK.

use dataplane::gateway::ControlMsg;

use super::*;
use crate::sa::Planner;

const KEY_A: &str = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223";
const KEY_B: &str = "0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3";

/// A gateway with a manually keyed tunnel `m` (SPIs 0x100/0x200) and an
/// IKE tunnel `k`.
const BASE: &str = r#"
[dataplane]
workers = 1
[control]
socket = "/run/espresso-reload-test.sock"
log = "info"
[[interface]]
name = "lan"
device = "net_null1"
role = "lan"
addresses = ["10.1.0.1/16"]
[[interface]]
name = "wan"
device = "net_null0"
role = "wan"
addresses = ["192.0.2.1/24"]
[[route]]
prefix = "10.2.0.0/16"
via = "192.0.2.2"
interface = "wan"
[[neighbour]]
address = "192.0.2.2"
mac = "02:00:00:00:00:02"
interface = "wan"
[[tunnel]]
name = "m"
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.2"
  [[tunnel.policy]]
  local_ts = "10.1.1.0/24"
  remote_ts = "10.2.1.0/24"
  [[tunnel.sa]]
  spi_in = 0x100
  spi_out = 0x200
  algorithm = "aes256gcm16"
  key_in = "KEY_IN"
  key_out = "KEY_OUT"
[[tunnel]]
name = "k"
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.3"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.3.0.0/24"
  [tunnel.ike]
  local_id = "gw-a.example"
  remote_id = "gw-c.example"
  psk = "the first pre-shared key"
  proposals = ["aes128gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes128gcm16"]
  start_action = "initiate"
  child_lifetime = "1h"
  dpd_interval = "30s"
"#;

fn base_text() -> String {
    BASE.replace("KEY_IN", KEY_A).replace("KEY_OUT", KEY_B)
}

fn parse(text: &str) -> GatewayConfig {
    GatewayConfig::from_str_any_host(text, "test.toml").unwrap()
}

/// The base configuration with `from` replaced by `to` (which must occur).
fn edited(edits: &[(&str, &str)]) -> GatewayConfig {
    let mut t = base_text();
    for (from, to) in edits {
        assert!(t.contains(from), "{from:?} not in the base configuration");
        t = t.replacen(from, to, 1);
    }
    parse(&t)
}

fn change<'a>(d: &'a Diff, name: &str) -> &'a TunnelChange {
    d.changed
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("tunnel {name} not changed: {d:?}"))
}

#[test]
fn the_same_file_differs_in_nothing() {
    let d = diff(&parse(&base_text()), &parse(&base_text()));
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.unchanged, 2);
}

#[test]
fn tunnels_are_matched_by_name_not_by_place() {
    // `k` first, then `m`: the same tunnels.
    let text = base_text();
    let (head, rest) = text.split_at(text.find("[[tunnel]]\nname = \"m\"").unwrap());
    let (m, k) = rest.split_at(rest.find("[[tunnel]]\nname = \"k\"").unwrap());
    let swapped = parse(&format!("{head}{k}{m}"));
    let d = diff(&parse(&base_text()), &swapped);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn added_and_removed_tunnels() {
    let old = parse(&base_text());
    let mut text = base_text();
    let k = text.find("[[tunnel]]\nname = \"k\"").unwrap();
    text.truncate(k);
    text.push_str(
        "[[tunnel]]\nname = \"n\"\nlocal_addrs = \"192.0.2.1\"\nremote_addrs = \"192.0.2.4\"\n  [[tunnel.policy]]\n  local_ts = \"10.1.4.0/24\"\n  remote_ts = \"10.4.0.0/24\"\n  [[tunnel.sa]]\n  spi_in = 0x300\n  spi_out = 0x400\n  algorithm = \"aes256gcm16\"\n",
    );
    text.push_str(&format!(
        "  key_in = \"{KEY_A}\"\n  key_out = \"{KEY_B}\"\n"
    ));
    let new = parse(&text);
    let d = diff(&old, &new);
    assert_eq!(d.added, vec!["n".to_string()]);
    assert_eq!(d.removed, vec!["k".to_string()]);
    assert!(d.changed.is_empty());
    assert_eq!(d.unchanged, 1);
    assert!(d.refused.is_empty());
    // And back.
    let d = diff(&new, &old);
    assert_eq!(
        (d.added.clone(), d.removed.clone()),
        (vec!["k".into()], vec!["n".into()])
    );
}

#[test]
fn policy_and_manual_sa_changes_are_named() {
    let old = parse(&base_text());
    let new = edited(&[("remote_ts = \"10.2.1.0/24\"", "remote_ts = \"10.2.9.0/24\"")]);
    let d = diff(&old, &new);
    // A manual SA carries its tunnel's selectors: it changes too.
    assert_eq!(change(&d, "m").fields, vec!["policy", "sa"]);
    assert_eq!(change(&d, "m").ike, None);
    assert_eq!(d.unchanged, 1);

    // Same SPI, new key: the planner must build the SA again.
    const KEY_C: &str =
        "0x505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273";
    let new = edited(&[(
        &format!("key_in = \"{KEY_A}\""),
        &format!("key_in = \"{KEY_C}\""),
    )]);
    let d = diff(&old, &new);
    assert_eq!(change(&d, "m").fields, vec!["sa"]);
    let slots = Slots::of(&old);
    let (inbound, outbound) = respecified(&manual_sas(&old, &slots), &manual_sas(&new, &slots));
    assert_eq!((inbound, outbound), (vec![0x100], vec![]));

    // A new SPI is a new SA, not a re-specified one.
    let new = edited(&[("spi_out = 0x200", "spi_out = 0x201")]);
    let d = diff(&old, &new);
    assert_eq!(change(&d, "m").fields, vec!["sa"]);
    let (inbound, outbound) = respecified(&manual_sas(&old, &slots), &manual_sas(&new, &slots));
    assert!(inbound.is_empty() && outbound.is_empty());
}

#[test]
fn identity_psk_and_peer_changes_reestablish_the_ike_sa() {
    let old = parse(&base_text());
    for (from, to, field) in [
        (
            "psk = \"the first pre-shared key\"",
            "psk = \"the second pre-shared key\"",
            "ike.psk",
        ),
        (
            "local_id = \"gw-a.example\"",
            "local_id = \"gw-a2.example\"",
            "ike.local_id",
        ),
        (
            "remote_id = \"gw-c.example\"",
            "remote_id = \"gw-c2.example\"",
            "ike.remote_id",
        ),
        (
            "remote_addrs = \"192.0.2.3\"",
            "remote_addrs = \"192.0.2.5\"",
            "remote",
        ),
        (
            "remote_ts = \"10.3.0.0/24\"",
            "remote_ts = \"10.3.1.0/24\"",
            "policy",
        ),
    ] {
        let d = diff(&old, &edited(&[(from, to)]));
        let c = change(&d, "k");
        assert_eq!(c.fields, vec![field]);
        assert_eq!(c.ike, Some(IkeChange::Reestablish), "{field}");
    }
}

#[test]
fn proposals_lifetimes_dpd_start_action_and_encapsulation_apply_from_the_next_exchange() {
    let old = parse(&base_text());
    let new = edited(&[
        (
            "child_lifetime = \"1h\"",
            "child_lifetime = \"30m\"\n  ike_lifetime = \"2h\"",
        ),
        (
            "dpd_interval = \"30s\"",
            "dpd_interval = \"10s\"\n  force_encap = true",
        ),
        (
            "esp_proposals = [\"aes128gcm16\"]",
            "esp_proposals = [\"aes256gcm16\"]",
        ),
        (
            "proposals = [\"aes128gcm16-prfsha256-ecp256\"]",
            "proposals = [\"aes256gcm16-prfsha256-ecp256\"]",
        ),
        ("start_action = \"initiate\"", "start_action = \"listen\""),
    ]);
    let d = diff(&old, &new);
    let c = change(&d, "k");
    let mut fields = c.fields.clone();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "ike.child_lifetime",
            "ike.dpd_interval",
            "ike.esp_proposals",
            "ike.force_encap",
            "ike.ike_lifetime",
            "ike.proposals",
            "ike.start_action",
        ]
    );
    assert_eq!(c.ike, Some(IkeChange::NextExchange));
    // The PSK as well: re-established.
    let new2 = edited(&[
        ("child_lifetime = \"1h\"", "child_lifetime = \"30m\""),
        (
            "psk = \"the first pre-shared key\"",
            "psk = \"another pre-shared key\"",
        ),
    ]);
    assert_eq!(
        change(&diff(&old, &new2), "k").ike,
        Some(IkeChange::Reestablish)
    );
}

#[test]
fn ike_added_to_or_removed_from_a_tunnel() {
    let old = parse(&base_text());
    let ike_section = &base_text()[base_text().find("  [tunnel.ike]").unwrap()..];
    let without = base_text().replace(
        ike_section,
        "  [[tunnel.sa]]\n  spi_in = 0x500\n  spi_out = 0x600\n  algorithm = \"aes256gcm16\"\n",
    ) + &format!("  key_in = \"{KEY_A}\"\n  key_out = \"{KEY_B}\"\n");
    let new = parse(&without);
    let c = change(&diff(&old, &new), "k").clone();
    assert!(
        c.fields.contains(&"ike") && c.fields.contains(&"sa"),
        "{c:?}"
    );
    assert_eq!(c.ike, Some(IkeChange::Removed));
    assert_eq!(change(&diff(&new, &old), "k").ike, Some(IkeChange::Added));
}

#[test]
fn routes_neighbours_log_and_live_bounds() {
    let old = parse(&base_text());
    let new = edited(&[
        ("prefix = \"10.2.0.0/16\"", "prefix = \"10.2.0.0/15\""),
        ("mac = \"02:00:00:00:00:02\"", "mac = \"02:00:00:00:00:09\""),
        (
            "log = \"info\"",
            "log = \"debug\"\nike_cookie_threshold = 3\nike_half_open_per_source = 2",
        ),
        ("workers = 1", "workers = 1\nicmp_errors_per_second = 5"),
    ]);
    let d = diff(&old, &new);
    assert!(d.routes && d.neighbours && d.log);
    assert_eq!(
        d.control,
        vec![
            "control.ike_cookie_threshold",
            "control.ike_half_open_per_source"
        ]
    );
    assert_eq!(d.dataplane, vec!["dataplane.icmp_errors_per_second"]);
    assert!(d.refused.is_empty(), "{:?}", d.refused);
    assert_eq!(d.unchanged, 2);
}

#[test]
fn what_is_fixed_at_start_up_is_refused_field_by_field() {
    let old = parse(&base_text());
    let new = edited(&[
        (
            "workers = 1",
            "workers = 2\nmemory_mb = 256\nmbufs = 4095\ncrypto_backend = \"rust\"\nburst = 16\nhugepages = \"off\"\ntelemetry = false",
        ),
        (
            "socket = \"/run/espresso-reload-test.sock\"",
            "socket = \"/run/other.sock\"\nike_half_open_max = 10",
        ),
        ("device = \"net_null0\"", "device = \"net_null7\""),
        (
            "addresses = [\"10.1.0.1/16\"]",
            "addresses = [\"10.1.0.1/16\"]\nmtu = 1400\nrx_desc = 512",
        ),
        // A live change alongside: refused with the rest.
        ("prefix = \"10.2.0.0/16\"", "prefix = \"10.2.0.0/15\""),
    ]);
    let d = diff(&old, &new);
    let fields: Vec<&str> = d.refused.iter().map(|r| r.field.as_str()).collect();
    for f in [
        "dataplane.workers",
        "dataplane.memory_mb",
        "dataplane.mbufs",
        "dataplane.burst",
        "dataplane.crypto_backend",
        "control.socket",
        "control.ike_half_open_max",
        "interface[1].device",
        "interface[0].mtu",
        "interface[0].rx_desc",
        "dataplane.hugepages",
        "dataplane.telemetry",
    ] {
        assert!(fields.contains(&f), "{f} not refused: {fields:?}");
    }
    assert!(d.refused.iter().all(|r| !r.reason.is_empty()));
    // The report says nothing was applied, and why for each field.
    let report = ReloadReport {
        action: "reload".into(),
        file: "test.toml".into(),
        applied: false,
        diff: d,
        ..Default::default()
    };
    let text = report.to_string();
    assert!(text.contains("refused, nothing applied"), "{text}");
    assert!(
        text.contains("refused interface[1].device: ports are opened at start-up"),
        "{text}"
    );
    assert!(!text.contains("routes replaced"), "{text}");

    // The metrics endpoint is bound once; the log format is applied live.
    let d = diff(
        &old,
        &parse(&format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:9469\"\n",
            base_text()
        )),
    );
    assert_eq!(d.refused.len(), 1, "{:?}", d.refused);
    assert_eq!(d.refused[0].field, "metrics.listen");
    let json = base_text().replacen("socket = ", "log_format = \"json\"\nsocket = ", 1);
    let d = diff(&old, &parse(&json));
    assert!(d.refused.is_empty() && d.log, "{d:?}");

    // One interface more.
    let more = base_text().replacen(
        "[[route]]",
        "[[interface]]\nname = \"dmz\"\ndevice = \"net_null2\"\nrole = \"lan\"\naddresses = [\"10.9.0.1/24\"]\n[[route]]",
        1,
    );
    let d = diff(&old, &parse(&more));
    assert_eq!(d.refused.len(), 1);
    assert_eq!(d.refused[0].field, "interface");
    assert!(d.refused[0]
        .reason
        .contains("2 interfaces running, 3 in the file"));
}

#[test]
fn a_broken_file_does_not_load() {
    // The control thread loads the file before it diffs anything: a file
    // that does not parse or validate stops the reload there.
    assert!(GatewayConfig::from_str("[[tunnel]\nname=", "broken.toml").is_err());
    let e = GatewayConfig::from_str(
        &base_text().replace("spi_out = 0x200", "spi_out = 0"),
        "broken.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("broken.toml"), "{e}");
}

#[test]
fn tunnels_keep_their_slots_and_new_ones_never_take_a_slot_freed_in_the_same_reload() {
    let old = parse(&base_text());
    let slots = Slots::of(&old);
    assert_eq!((slots.get("m"), slots.get("k")), (Some(0), Some(1)));
    // `m` goes, `n` comes: `k` keeps slot 1, `n` takes 2, not `m`'s 0.
    let mut new = old.clone();
    new.tunnels.retain(|t| t.name != "m");
    let mut n = old.tunnels[1].clone();
    n.name = "n".into();
    new.tunnels.push(n);
    let next = slots.next(&new);
    assert_eq!(
        (next.get("k"), next.get("n"), next.get("m")),
        (Some(1), Some(2), None)
    );
    // A later reload reuses the free slot.
    let mut again = new.clone();
    let mut o = old.tunnels[1].clone();
    o.name = "o".into();
    again.tunnels.push(o);
    assert_eq!(next.next(&again).get("o"), Some(0));
    assert_eq!(next.names(), vec!["".to_string(), "k".into(), "n".into()]);
    // The policies follow the slots.
    let p = policies(&new, &next);
    let refs: Vec<Action> = p.iter().map(|p| p.action).collect();
    assert_eq!(
        refs,
        vec![Action::Protect(SaRef(1)), Action::Protect(SaRef(2))]
    );
}

/// Removing a tunnel sends the workers messages about its SAs only: the
/// other tunnel's SAs are neither reinstalled nor moved.
#[test]
fn removing_a_tunnel_touches_no_other_tunnels_sas() {
    // Two manual tunnels: `m` (0x100/0x200) and `x` (0x700/0x800).
    let mut text = base_text();
    text.truncate(text.find("[[tunnel]]\nname = \"k\"").unwrap());
    text.push_str(&format!(
        "[[tunnel]]\nname = \"x\"\nlocal_addrs = \"192.0.2.1\"\nremote_addrs = \"192.0.2.7\"\n  [[tunnel.policy]]\n  local_ts = \"10.1.7.0/24\"\n  remote_ts = \"10.7.0.0/24\"\n  [[tunnel.sa]]\n  spi_in = 0x700\n  spi_out = 0x800\n  algorithm = \"aes256gcm16\"\n  key_in = \"{KEY_A}\"\n  key_out = \"{KEY_B}\"\n"
    ));
    let old = parse(&text);
    let slots = Slots::of(&old);
    let mut planner = Planner::new(2, old.dataplane.crypto_backend, slots.names());
    let plan = planner.plan(&[&manual_sas(&old, &slots)]);
    assert!(plan.failed.is_empty());
    planner.commit(plan);

    let new = without_tunnel(&old, "m");
    let d = diff(&old, &new);
    assert_eq!((d.removed.clone(), d.unchanged), (vec!["m".into()], 1));
    let next = slots.next(&new);
    assert_eq!(next.get("x"), slots.get("x"));
    let plan = planner.plan(&[&manual_sas(&new, &next)]);
    let msgs = planner.commit(plan);
    assert!(!msgs.is_empty());
    for (_, m) in &msgs {
        match m {
            ControlMsg::RemoveInbound(spi) => assert_eq!(spi.get(), 0x100),
            ControlMsg::RemoveOutbound { slot } => assert_eq!(*slot, SaRef(0)),
            ControlMsg::InboundOwner { spi, worker: None } => assert_eq!(spi.get(), 0x100),
            ControlMsg::OutboundOwner { slot, worker: None } => assert_eq!(*slot, SaRef(0)),
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert_eq!(planner.installed().inbound_tunnel(0x700), Some(1));
    assert_eq!(planner.installed().outbound_spi(1), Some(0x800));

    // A key change under the same SPI: forgetting it makes the planner
    // build it again (an install that replaces it in place), nothing else.
    let mut rekeyed = new.clone();
    let pair = &mut rekeyed.tunnels[0].sas[0];
    pair.inbound.keys = pair.outbound.keys.clone();
    let (re_in, re_out) = respecified(&manual_sas(&new, &next), &manual_sas(&rekeyed, &next));
    assert_eq!((re_in.clone(), re_out.clone()), (vec![0x700], vec![]));
    planner.forget(&re_in, &re_out);
    let msgs = planner.commit(planner.plan(&[&manual_sas(&rekeyed, &next)]));
    let installs: Vec<u32> = msgs
        .iter()
        .filter_map(|(_, m)| match m {
            ControlMsg::InstallInbound(sa) => Some(sa.config().spi.get()),
            ControlMsg::InstallOutbound { .. } | ControlMsg::RemoveInbound(_) => {
                panic!("only the re-keyed inbound SA is sent: {m:?}")
            }
            _ => None,
        })
        .collect();
    assert_eq!(installs, vec![0x700]);
}

#[test]
fn load_and_unload_change_one_tunnel() {
    let old = parse(&base_text());
    let file = edited(&[
        ("remote_ts = \"10.2.1.0/24\"", "remote_ts = \"10.2.9.0/24\""),
        (
            "psk = \"the first pre-shared key\"",
            "psk = \"another pre-shared key\"",
        ),
    ]);
    let k = file.tunnels.iter().find(|t| t.name == "k").unwrap();
    let target = with_tunnel(&old, k);
    let d = diff(&old, &target);
    assert_eq!(d.changed.len(), 1);
    assert_eq!(change(&d, "k").fields, vec!["ike.psk"]);
    // What `load k` leaves: `m`'s policy.
    assert_eq!(
        diff(&target, &file).lines(),
        vec!["tunnel m changed: policy, sa".to_string()]
    );
    let gone = without_tunnel(&old, "m");
    let d = diff(&old, &gone);
    assert_eq!((d.removed.clone(), d.unchanged), (vec!["m".into()], 1));
}

#[test]
fn the_report_names_every_change_in_text_and_json() {
    let old = parse(&base_text());
    let new = edited(&[
        ("child_lifetime = \"1h\"", "child_lifetime = \"30m\""),
        (
            "psk = \"the first pre-shared key\"",
            "psk = \"another pre-shared key\"",
        ),
        ("prefix = \"10.2.0.0/16\"", "prefix = \"10.2.0.0/15\""),
    ]);
    let report = ReloadReport {
        action: "reload".into(),
        file: "test.toml".into(),
        applied: true,
        diff: diff(&old, &new),
        not_applied: vec![],
        inbound_sas: 3,
        outbound_sas: 2,
    };
    let text = report.to_string();
    assert!(
        text.contains("changed tunnel k: ike.psk, ike.child_lifetime (IKE SA re-established)"),
        "{text}"
    );
    assert!(text.contains("routes replaced"), "{text}");
    assert!(text.contains("1 tunnels unchanged"), "{text}");
    assert!(
        text.contains("SAs installed: 3 inbound, 2 outbound"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["applied"], true);
    assert_eq!(json["changed"][0]["name"], "k");
    assert_eq!(json["changed"][0]["ike"], "reestablish");
    assert_eq!(json["changed"][0]["fields"][0], "ike.psk");
    assert_eq!(json["routes"], true);
    assert_eq!(json["unchanged"], 1);
}

/// RFC 5685: starting to drain a gateway (`redirect = "always"`) is a
/// change for new clients only; the SAs up now stay.
#[test]
fn redirect_settings_apply_from_the_next_exchange() {
    let old = parse(&base_text());
    let new = edited(&[(
        "dpd_interval = \"30s\"",
        "dpd_interval = \"30s\"\n  redirect = \"always\"\n  redirect_to = [\"192.0.2.9\"]\n  follow_redirects = false",
    )]);
    let d = diff(&old, &new);
    let c = change(&d, "k");
    let mut fields = c.fields.clone();
    fields.sort();
    assert_eq!(fields, vec!["ike.follow_redirects", "ike.redirect"]);
    assert_eq!(c.ike, Some(IkeChange::NextExchange));
}

/// A responder template `rw` beside the base tunnels, with secrets.
fn with_template(psk: &str) -> GatewayConfig {
    parse(&format!(
        r#"{}
[[tunnel]]
name = "rw"
local_addrs = "192.0.2.1"
remote_addrs = "%any"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.9.0.0/16"
  [tunnel.ike]
  remote_id = "*@branches.example"
[[secret]]
id = "alice@branches.example"
psk = "{psk}"
"#,
        base_text()
    ))
}

#[test]
fn new_secrets_reach_the_templates_for_their_next_ike_auth() {
    let old = with_template("alice's first secret");
    assert!(diff(&old, &with_template("alice's first secret")).is_empty());
    let d = diff(&old, &with_template("alice's second secret"));
    let c = change(&d, "rw");
    assert_eq!(c.fields, ["secret"]);
    assert_eq!(c.ike, Some(IkeChange::NextExchange));
    // Site-to-site tunnels do not use [[secret]].
    assert_eq!(d.changed.len(), 1);
}

#[test]
fn a_template_added_beside_another_refreshes_its_siblings() {
    let old = with_template("alice's first secret");
    let mut text = base_text();
    text.push_str(
        r#"
[[tunnel]]
name = "rw"
local_addrs = "192.0.2.1"
remote_addrs = "%any"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.9.0.0/16"
  [tunnel.ike]
  remote_id = "*@branches.example"
[[tunnel]]
name = "routers"
local_addrs = "192.0.2.1"
remote_addrs = "%any"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.8.0.0/16"
  [tunnel.ike]
  remote_id = "*.routers.example"
  psk = "the routers' own secret"
[[secret]]
id = "alice@branches.example"
psk = "alice's first secret"
"#,
    );
    let d = diff(&old, &parse(&text));
    assert_eq!(d.added, ["routers"]);
    // rw's engine must learn of its new sibling.
    let c = change(&d, "rw");
    assert_eq!(c.ike, Some(IkeChange::NextExchange));
    assert_eq!(c.fields, ["siblings"]);
}
