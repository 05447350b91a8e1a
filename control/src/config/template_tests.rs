//! Responder templates and `[[secret]]`: parsing and every refusal.

use std::os::unix::fs::PermissionsExt;

use super::tests::{assert_invalid, base, parse};
use super::*;

const ALICE: &str = "alice's secret, long enough";
const BOB: &str = "bob's secret, also long enough";

/// `base()` without its tunnel, plus `rest`.
fn without_tunnel(rest: &str) -> String {
    let b = base();
    format!("{}{rest}", &b[..b.find("[[tunnel]]").unwrap()])
}

/// A template tunnel `name` with `remote_addrs`, `remote_id` and extra
/// `[tunnel.ike]` lines.
fn template(name: &str, remote_addrs: &str, remote_id: &str, ike: &str) -> String {
    // Templates' policies must not shadow each other: each its own.
    let remote_ts = if name == "routers" {
        "10.8.0.0/16"
    } else {
        "10.9.0.0/16"
    };
    format!(
        r#"
[[tunnel]]
name = "{name}"
local_addrs = "192.0.2.1"
remote_addrs = {remote_addrs}

  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "{remote_ts}"

  [tunnel.ike]
  remote_id = "{remote_id}"
{ike}
"#
    )
}

fn secrets() -> String {
    format!(
        r#"
[[secret]]
id = "alice@branches.example"
psk = "{ALICE}"

[[secret]]
ids = ["bob@branches.example", "r1.routers.example"]
psk = "{BOB}"
"#
    )
}

#[test]
fn a_template_with_secrets_by_identity_parses() {
    let text = without_tunnel(&format!(
        "{}{}",
        template("rw", "\"%any\"", "*@branches.example", ""),
        secrets()
    ));
    let c = parse(&text).unwrap();
    let t = &c.tunnels[0];
    assert!(t.is_template());
    assert_eq!(
        t.remote_prefixes,
        Some(vec!["0.0.0.0/0".parse::<IpNet>().unwrap()])
    );
    let ike = t.ike.as_ref().unwrap();
    assert_eq!(
        ike.remote_ids,
        Some(IkeIdPattern::EmailDomain("branches.example".into()))
    );
    assert!(ike.psk.is_empty());
    assert_eq!(ike.start_action, StartAction::Listen);
    assert_eq!(c.secrets.len(), 2);
    assert_eq!(
        c.secrets[0].ids,
        vec![IkeIdPattern::Exact(IkeId::Email(
            "alice@branches.example".into()
        ))]
    );
    assert_eq!(c.secrets[1].ids.len(), 2);
    assert_eq!(
        c.secrets[1].ids[1],
        IkeIdPattern::Exact(IkeId::Fqdn("r1.routers.example".into()))
    );
    assert_eq!(c.secrets[1].psk.expose(), BOB.as_bytes());
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(ALICE) && !dbg.contains(BOB), "secret leaked");
}

#[test]
fn template_prefixes_and_patterns() {
    let text = without_tunnel(&format!(
        "{}{}",
        template(
            "routers",
            "[\"198.51.100.0/24\", \"203.0.113.7\"]",
            "*.routers.example",
            ""
        ),
        secrets()
    ));
    let c = parse(&text).unwrap();
    assert_eq!(
        c.tunnels[0].remote_prefixes,
        Some(vec![
            "198.51.100.0/24".parse().unwrap(),
            "203.0.113.7/32".parse().unwrap()
        ])
    );
    assert_eq!(
        c.tunnels[0].ike.as_ref().unwrap().remote_ids,
        Some(IkeIdPattern::FqdnSuffix("routers.example".into()))
    );
    // A template with its own PSK needs no [[secret]].
    let own = without_tunnel(&template(
        "rw",
        "\"%any\"",
        "%any",
        &format!("  psk = \"{ALICE}\""),
    ));
    let c = parse(&own).unwrap();
    assert_eq!(
        c.tunnels[0].ike.as_ref().unwrap().remote_ids,
        Some(IkeIdPattern::Any)
    );
    // A site-to-site peer may now be an e-mail identity.
    let b = base().replace(
        "  [[tunnel.sa]]",
        &format!("  [tunnel.ike]\n  psk = \"{ALICE}\"\n  remote_id = \"gw@b.example\"\n\n  [[tunnel.sa]]"),
    );
    let c = parse(&b).unwrap();
    assert_eq!(
        c.tunnels[0].ike.as_ref().unwrap().remote_id,
        IkeId::Email("gw@b.example".into())
    );
}

#[test]
fn templates_are_refused_where_they_cannot_work() {
    let s = secrets();
    assert_invalid(
        &without_tunnel(&format!(
            "{}{s}",
            template(
                "rw",
                "\"%any\"",
                "*@branches.example",
                "  start_action = \"initiate\""
            )
        )),
        "tunnel[0].ike.start_action",
        "no peer address to initiate to",
    );
    assert_invalid(
        &without_tunnel(&format!(
            "{}{s}",
            template("rw", "\"%any\"", "*@elsewhere.example", "")
        )),
        "tunnel[0].ike.remote_id",
        "no [[secret]]",
    );
    let no_id = template("rw", "\"%any\"", "x", "").replace("  remote_id = \"x\"\n", "");
    assert_invalid(
        &without_tunnel(&format!("{no_id}{s}")),
        "tunnel[0].ike.remote_id",
        "names the identities it takes",
    );
    assert_invalid(
        &without_tunnel(&format!(
            "{}{s}",
            template("rw", "\"%any\"", "*@*.example", "")
        )),
        "tunnel[0].ike.remote_id",
        "domain name",
    );
    assert_invalid(
        &without_tunnel(&format!(
            "{}{s}",
            template("rw", "[\"%any\", \"10.0.0.0/8\"]", "*@branches.example", "")
        )),
        "tunnel[0].remote_addrs",
        "give it alone",
    );
    assert_invalid(
        &without_tunnel(&format!(
            "{}{s}",
            template("rw", "\"2001:db8::/32\"", "*@branches.example", "")
        )),
        "tunnel[0].remote_addrs",
        "address family",
    );
    // A pattern on a site-to-site tunnel.
    let b = base().replace(
        "  [[tunnel.sa]]",
        &format!(
            "  [tunnel.ike]\n  psk = \"{ALICE}\"\n  remote_id = \"*@b.example\"\n\n  [[tunnel.sa]]"
        ),
    );
    assert_invalid(&b, "tunnel[0].ike.remote_id", "responder templates");
    // Manual SAs on a template.
    let b = base().replace("remote_addrs = \"192.0.2.2\"", "remote_addrs = \"%any\"");
    assert_invalid(&b, "tunnel[0]", "needs [tunnel.ike]");
}

#[test]
fn sibling_templates_must_agree_on_what_precedes_the_identity() {
    let s = secrets();
    let two = |a: &str, b: &str| {
        without_tunnel(&format!(
            "{}{}{s}",
            template("branches", "\"%any\"", "*@branches.example", a),
            template("routers", "\"%any\"", "*.routers.example", b)
        ))
    };
    assert!(parse(&two("", "")).is_ok());
    assert_invalid(
        &two("", "  proposals = [\"aes128gcm16-prfsha256-ecp256\"]"),
        "tunnel[1].ike.proposals",
        "same IKE proposals",
    );
    let other_addrs = without_tunnel(&format!(
        "{}{}{s}",
        template("branches", "\"%any\"", "*@branches.example", ""),
        template("routers", "\"198.51.100.0/24\"", "*.routers.example", "")
    ));
    assert_invalid(&other_addrs, "tunnel[1].remote_addrs", "same remote_addrs");
    let same_id = without_tunnel(&format!(
        "{}{}{s}",
        template("a", "\"%any\"", "*@branches.example", ""),
        template("routers", "\"%any\"", "*@branches.example", "")
    ));
    assert_invalid(&same_id, "tunnel[1].ike.remote_id", "already takes");
}

#[test]
fn secrets_are_refused_when_ambiguous_or_incomplete() {
    let t = template("rw", "\"%any\"", "*@branches.example", "");
    let dup = format!(
        "{}\n[[secret]]\nid = \"Alice@branches.example\"\npsk = \"{BOB}\"\n",
        secrets()
    )
    .replace("id = \"Alice@", "id = \"alice@");
    assert_invalid(
        &without_tunnel(&format!("{t}{dup}")),
        "secret[2].id",
        "already has a secret in secret[0]",
    );
    assert_invalid(
        &without_tunnel(&format!(
            "{t}\n[[secret]]\nid = \"a@b.example\"\nids = [\"c@b.example\"]\npsk = \"{BOB}\"\n"
        )),
        "secret[0].ids",
        "not both",
    );
    assert_invalid(
        &without_tunnel(&format!("{t}\n[[secret]]\npsk = \"{BOB}\"\n")),
        "secret[0].id",
        "missing",
    );
    assert_invalid(
        &without_tunnel(&format!(
            "{t}\n[[secret]]\nid = \"a@branches.example\"\npsk = \"short\"\n"
        )),
        "secret[0].psk",
        "at least 16",
    );
    let e = assert_invalid(
        &without_tunnel(&format!(
            "{t}\n[[secret]]\nid = \"a@branches.example\"\npsk = \"hunter2\"\n"
        )),
        "secret[0].psk",
        "bytes long",
    );
    assert!(!e.to_string().contains("hunter2"));
}

#[test]
fn secret_files_get_the_permission_checks_of_every_secret() {
    let dir = std::env::temp_dir().join(format!("espresso-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("alice.psk");
    std::fs::write(&file, format!("{ALICE}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let t = template("rw", "\"%any\"", "*@branches.example", "");
    let text = without_tunnel(&format!(
        "{t}\n[[secret]]\nid = \"alice@branches.example\"\npsk_file = \"{}\"\n",
        file.display()
    ));
    let c = parse(&text).unwrap();
    assert_eq!(c.secrets[0].psk.expose(), ALICE.as_bytes());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field(), Some("secret[0].psk_file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn distinguished_names_as_patterns_and_secret_ids() {
    let text = without_tunnel(&format!(
        "{}\n[[secret]]\nids = [\"C=DE, O=Example, CN=alice\"]\npsk = \"{ALICE}\"\n",
        template("rw", "\"%any\"", "C=DE, O=Example, CN=*", "")
    ));
    let c = parse(&text).unwrap();
    let ike = c.tunnels[0].ike.as_ref().unwrap();
    match &ike.remote_ids {
        Some(IkeIdPattern::Dn { text, pattern }) => {
            assert_eq!(text, "C=DE, O=Example, CN=*");
            assert_eq!(pattern.0.len(), 3);
            assert_eq!(pattern.0[2].1, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&c.secrets[0].ids[0], IkeIdPattern::Dn { pattern, .. } if pattern.0[2].1.as_deref() == Some("alice"))
    );
    // No secret of that DN's shape: nobody could authenticate.
    let text = without_tunnel(&format!(
        "{}\n[[secret]]\nid = \"C=DE, O=Other, CN=alice\"\npsk = \"{ALICE}\"\n",
        template("rw", "\"%any\"", "C=DE, O=Example, CN=*", "")
    ));
    assert_invalid(&text, "tunnel[0].ike.remote_id", "no [[secret]]");
    assert_invalid(
        &without_tunnel(&format!(
            "{}{}",
            template("rw", "\"%any\"", "C=DE, X=1", ""),
            secrets()
        )),
        "tunnel[0].ike.remote_id",
        "unknown DN attribute",
    );
}
