//! The `espresso` commands that talk to a running gateway through the
//! control API ([`crate::api`]): which socket, which request, and the
//! result as text (or as the API's JSON with `--json`).

use std::io::Write;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::api::{
    self, ChildSaView, IkeSaView, LogView, MessageView, NeighbourView, PolicyView, RouteView,
    StatsView, TunnelView, VersionView,
};
use crate::cli::{Cli, Command};

/// Where the gateway listens when neither `--socket` nor `-c` says.
pub const DEFAULT_SOCKET: &str = "/run/espresso/espresso.sock";

/// The socket: `--socket`, else the configuration file's (given before or
/// after the command), else [`DEFAULT_SOCKET`].
pub fn socket_path(cli: &Cli, after: Option<&PathBuf>) -> Result<PathBuf, String> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    match cli.config.as_ref().or(after) {
        Some(c) => crate::config::GatewayConfig::load(c)
            .map(|g| g.control.socket)
            .map_err(|e| e.to_string()),
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
    }
}

/// Runs a client command; `None` for the commands that are not one
/// (`run`, `check`, `forward`).
pub fn run(cli: &Cli) -> Option<Result<(), String>> {
    let (after, cmd, args): (_, &str, Value) = match &cli.command {
        Command::Version { c } => (c, "version", json!({})),
        Command::Tunnels { c } => (c, "tunnels", json!({})),
        Command::Sas { c } => (c, "sas", json!({})),
        Command::IkeSas { c } => (c, "ike-sas", json!({})),
        Command::ChildSas { c } => (c, "child-sas", json!({})),
        Command::Policies { c } => (c, "policies", json!({})),
        Command::Routes { c } => (c, "routes", json!({})),
        Command::Neighbours { c } => (c, "neighbours", json!({})),
        Command::Stats { c } => (c, "stats", json!({})),
        Command::Rekey { c, tunnel } => (c, "rekey", json!({ "tunnel": tunnel })),
        Command::Redirect { c, tunnel, gateway } => (
            c,
            "redirect",
            json!({ "tunnel": tunnel, "gateway": gateway }),
        ),
        Command::Reload { c } => (c, "reload", json!({})),
        Command::Load { c, tunnel } => (c, "load", json!({ "tunnel": tunnel })),
        Command::Unload { c, tunnel } => (c, "unload", json!({ "tunnel": tunnel })),
        Command::Initiate { c, tunnel } => (c, "initiate", json!({ "tunnel": tunnel })),
        Command::Terminate { c, tunnel } => (c, "terminate", json!({ "tunnel": tunnel })),
        Command::Log { c, filter } => (
            c,
            "log",
            match filter {
                Some(f) => json!({ "filter": f }),
                None => json!({}),
            },
        ),
        Command::Events { c } => (c, "subscribe", json!({})),
        Command::Run { .. } | Command::Check { .. } | Command::Forward { .. } => return None,
    };
    Some(call(cli, after.config.as_ref(), cmd, args))
}

fn call(cli: &Cli, after: Option<&PathBuf>, cmd: &str, args: Value) -> Result<(), String> {
    let path = socket_path(cli, after)?;
    let mut client = api::Client::connect(&path).map_err(|e| e.to_string())?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut print = |s: &str| out.write_all(s.as_bytes()).map_err(|e| e.to_string());
    if cmd == "subscribe" {
        client.call(cmd, args).map_err(|e| e.to_string())?;
        while let Some(line) = client.next_event().map_err(|e| e.to_string())? {
            if line.get("event").is_none() {
                // An error reply: the gateway ended the subscription.
                return api::reply_result(line)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
            }
            let text = if cli.json {
                format!("{line}\n")
            } else {
                event_text(&line)
            };
            print(&text)?;
        }
        return Err("the gateway closed the connection".into());
    }
    let result = if cmd == "sas" {
        let ike = client
            .call("ike-sas", json!({}))
            .map_err(|e| e.to_string())?;
        let child = client
            .call("child-sas", json!({}))
            .map_err(|e| e.to_string())?;
        json!({ "ike_sas": ike, "child_sas": child })
    } else {
        client.call(cmd, args).map_err(|e| e.to_string())?
    };
    let text = if cli.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        )
    } else {
        text(cmd, &result)?
    };
    print(&text)
}

fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone())
        .map_err(|e| format!("unexpected result from the gateway: {e}"))
}

/// A command's result as text for people (and `grep`/`awk`).
pub fn text(cmd: &str, result: &Value) -> Result<String, String> {
    let mut s = String::new();
    match cmd {
        "version" => {
            let v: VersionView = typed(result)?;
            s = format!(
                "{} {} (control API v{})\n",
                v.program, v.version, v.protocol
            );
        }
        "tunnels" => {
            let ts: Vec<TunnelView> = typed(result)?;
            for t in &ts {
                s.push_str(&tunnel_text(t));
            }
            if ts.is_empty() {
                s.push_str("no tunnels\n");
            }
        }
        "sas" => {
            s.push_str(&text("ike-sas", &result["ike_sas"])?);
            s.push_str(&text("child-sas", &result["child_sas"])?);
        }
        "ike-sas" => {
            let v: Vec<IkeSaView> = typed(result)?;
            for i in &v {
                s.push_str(&format!("ike   {} {}\n", i.tunnel, ike_text(i)));
            }
            if v.is_empty() {
                s.push_str("no IKE SAs\n");
            }
        }
        "child-sas" => {
            let v: Vec<ChildSaView> = typed(result)?;
            for c in &v {
                s.push_str(&format!("child {} {}", c.tunnel, child_text(c)));
                for (dir, n) in [("in", &c.inbound), ("out", &c.outbound)] {
                    if let Some(n) = n {
                        s.push_str(&format!(" {dir} {} pkts {} bytes", n.packets, n.bytes));
                    }
                }
                s.push('\n');
            }
            if v.is_empty() {
                s.push_str("no Child SAs\n");
            }
        }
        "policies" => {
            let v: Vec<PolicyView> = typed(result)?;
            for p in &v {
                let proto = p.protocol.map_or("any".to_string(), |n| n.to_string());
                s.push_str(&format!(
                    "{} priority {} {} {} -> {} proto {} ports {} -> {}\n",
                    p.tunnel, p.priority, p.action, p.src, p.dst, proto, p.src_ports, p.dst_ports
                ));
            }
        }
        "routes" => {
            let v: Vec<RouteView> = typed(result)?;
            for r in &v {
                let via = r
                    .via
                    .as_ref()
                    .map_or(String::new(), |v| format!(" via {v}"));
                s.push_str(&format!(
                    "{} dev {}{via} {}\n",
                    r.prefix, r.interface, r.kind
                ));
            }
        }
        "neighbours" => {
            let v: Vec<NeighbourView> = typed(result)?;
            for n in &v {
                s.push_str(&format!(
                    "{} {} dev {} {}\n",
                    n.address, n.mac, n.interface, n.kind
                ));
            }
            if v.is_empty() {
                s.push_str("no neighbours\n");
            }
        }
        "stats" => {
            let v: StatsView = typed(result)?;
            for (k, n) in &v.counters {
                s.push_str(&format!("{k} {n}\n"));
            }
            for (k, l) in &v.labels {
                s.push_str(&format!("{k} {l}\n"));
            }
        }
        "rekey" | "reload" | "load" | "unload" | "initiate" | "terminate" | "redirect" => {
            let v: MessageView = typed(result)?;
            s = format!("{}\n", v.message);
        }
        "log" => {
            let v: LogView = typed(result)?;
            s = format!("{}\n", v.filter);
        }
        _ => s = format!("{result}\n"),
    }
    Ok(s)
}

fn ike_text(i: &IkeSaView) -> String {
    let mut s = format!(
        "spi_i {} spi_r {} {} {} {} -> {} age {}s",
        i.spi_i, i.spi_r, i.role, i.suite, i.local, i.remote, i.age_s
    );
    if !i.virtual_ips.is_empty() {
        s.push_str(&format!(" vip {}", i.virtual_ips.join(",")));
    }
    s
}

/// `spi_in X spi_out Y ALG ENCAP [STATE] [age Ns]`: the SPIs stay the
/// third and fifth fields of a `  child` line for scripts.
fn child_text(c: &ChildSaView) -> String {
    let mut s = format!(
        "spi_in {} spi_out {} {} {}",
        c.spi_in, c.spi_out, c.algorithm, c.encap
    );
    if !matches!(c.state.as_str(), "standby" | "installed") {
        s.push(' ');
        s.push_str(&c.state);
    }
    if let Some(a) = c.age_s {
        s.push_str(&format!(" age {a}s"));
    }
    s
}

pub(crate) fn tunnel_text(t: &TunnelView) -> String {
    // The fields keep the places scripts read them at; a manual tunnel's
    // state (`installed`) tells it from an IKE one.
    let mut s = format!(
        "tunnel {} {} local {} remote {}",
        t.name, t.state, t.local, t.peer
    );
    if let Some(r) = &t.last_down {
        s.push_str(&format!(" last_down {r}"));
    }
    if let (Some(f), Some(r)) = (t.failures, t.retry_in_s) {
        s.push_str(&format!(" failures {f} retry_in {r}s"));
    }
    s.push('\n');
    if let Some(i) = &t.ike_sa {
        s.push_str(&format!("  ike {}\n", ike_text(i)));
    }
    if !t.peers.is_empty() {
        // A responder template: each peer with its IKE SA and Child SAs,
        // one level deeper (a site-to-site tunnel's `  child` lines, which
        // scripts read, keep their place).
        for p in &t.peers {
            s.push_str(&format!(
                "  peer {} {} auth {}\n    ike {}\n",
                p.identity,
                p.ike_sa.remote,
                p.auth,
                ike_text(&p.ike_sa)
            ));
            for c in &p.child_sas {
                s.push_str(&format!("    child {}\n", child_text(c)));
            }
        }
        return s;
    }
    for c in &t.child_sas {
        s.push_str(&format!("  child {}\n", child_text(c)));
    }
    s
}

/// An event line as text: its time, type and fields.
pub fn event_text(line: &Value) -> String {
    let mut s = String::new();
    if let Some(t) = line.get("time").and_then(Value::as_f64) {
        s.push_str(&format!("{t:.3} "));
    }
    let ev = &line["event"];
    s.push_str(ev.get("type").and_then(Value::as_str).unwrap_or("event"));
    if let Some(m) = ev.as_object() {
        for (k, v) in m.iter().filter(|(k, _)| *k != "type") {
            match v {
                Value::String(x) => s.push_str(&format!(" {k}={x}")),
                other => s.push_str(&format!(" {k}={other}")),
            }
        }
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_socket_comes_from_the_flag_the_file_or_the_default() {
        let cli = Cli::parse_from(["espresso", "--socket", "/tmp/x.sock", "stats"]);
        assert_eq!(
            socket_path(&cli, None).unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        let cli = Cli::parse_from(["espresso", "tunnels"]);
        assert_eq!(
            socket_path(&cli, None).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert!(Cli::try_parse_from(["espresso", "--socket", "a", "-c", "b", "stats"]).is_err());
        // `-c` after the command, as scripts wrote it, still parses.
        let cli = Cli::parse_from(["espresso", "stats", "-c", "/no/such.toml"]);
        match &cli.command {
            Command::Stats { c } => {
                assert_eq!(
                    c.config.as_deref(),
                    Some(std::path::Path::new("/no/such.toml"))
                )
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::parse_from(["espresso", "--json", "log", "debug"]);
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Log { filter: Some(ref f), .. } if f == "debug"));
    }

    #[test]
    fn tunnels_text_keeps_the_fields_scripts_read() {
        let t = TunnelView {
            name: "site".into(),
            kind: "ike".into(),
            local: "192.0.2.1".into(),
            peer: "192.0.2.2".into(),
            state: "up".into(),
            last_down: None,
            failures: None,
            retry_in_s: None,
            ike_sa: None,
            peers: Vec::new(),
            child_sas: vec![ChildSaView {
                tunnel: "site".into(),
                kind: "ike".into(),
                spi_in: "c0000001".into(),
                spi_out: "c0000002".into(),
                algorithm: "AES_GCM_16_256".into(),
                encap: "esp".into(),
                state: "active".into(),
                age_s: Some(3),
                inbound: None,
                outbound: None,
            }],
        };
        let s = text("tunnels", &serde_json::to_value(vec![t]).unwrap()).unwrap();
        assert!(
            s.starts_with("tunnel site up local 192.0.2.1 remote 192.0.2.2\n"),
            "{s}"
        );
        let child = s.lines().find(|l| l.starts_with("  child ")).unwrap();
        let f: Vec<&str> = child.split_whitespace().collect();
        assert_eq!((f[2], f[4]), ("c0000001", "c0000002"));
        assert!(child.contains(" active"));
    }

    #[test]
    fn stats_text_is_one_name_value_per_line() {
        let v = StatsView::from_lines("total.rx 5\nsa.in.0x1.algorithm AES worker 0\n");
        let s = text("stats", &serde_json::to_value(v).unwrap()).unwrap();
        assert_eq!(s, "total.rx 5\nsa.in.0x1.algorithm AES worker 0\n");
    }

    #[test]
    fn events_read_as_lines() {
        let line = json!({"v":1,"time":1.5,"event":{"type":"tunnel_down","tunnel":"t","reason":"PeerDead"}});
        assert_eq!(
            event_text(&line),
            "1.500 tunnel_down reason=PeerDead tunnel=t\n"
        );
    }
}
