//! `[[pool]]` (virtual IPs for remote-access clients) and the tunnels'
//! `[tunnel.ike] pools` references.

use std::collections::HashMap;
use std::net::IpAddr;

use ike::pool::AddrRange;
use ipnet::IpNet;

use super::*;

/// The pools as written, each checked on its own.
pub(super) fn pools(cx: &Ctx, raw: Vec<Option<RawPool>>) -> Vec<PoolConfig> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let p = FieldPath::indexed("pool", i);
        if r.name.trim().is_empty() {
            cx.d.push(cx.err(p.key("name"), "must not be empty"));
            continue;
        }
        if let Some(first) = names.insert(r.name.clone(), i) {
            cx.d.push(cx.err(
                p.key("name"),
                format!("\"{}\" is already the name of pool[{first}]", r.name),
            ));
            continue;
        }
        let before = cx.errors();
        if r.addrs.is_empty() {
            cx.d.push(cx.err(p.key("addrs"), "must list at least one prefix or range"));
        }
        let ranges: Vec<AddrRange> = r
            .addrs
            .iter()
            .enumerate()
            .filter_map(|(j, s)| {
                cx.keep(AddrRange::parse(s).map_err(|e| cx.err(p.item("addrs", j), e.to_string())))
            })
            .collect();
        for (j, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[j + 1..].iter().find(|b| a.overlaps(b)) {
                cx.d.push(cx.err(p.key("addrs"), format!("ranges {a} and {b} overlap")));
            }
        }
        let dns: Vec<IpAddr> = r
            .dns
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(j, s)| {
                cx.keep(
                    s.parse::<IpAddr>()
                        .map_err(|_| cx.err(p.item("dns", j), format!("`{s}` is not an address"))),
                )
            })
            .collect();
        let subnets: Vec<IpNet> =
            r.subnets
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(j, s)| {
                    cx.keep(s.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
                        cx.err(p.item("subnets", j), format!("`{s}` is not a prefix"))
                    }))
                })
                .collect();
        if cx.errors() == before {
            out.push(PoolConfig {
                name: r.name,
                ranges,
                dns,
                subnets,
            });
        }
    }
    out
}

/// Pools against each other, the interfaces and the tunnels that use them.
pub(super) fn references(
    cx: &Ctx,
    interfaces: &[Interface],
    tunnels: &[Tunnel],
    pools: &[PoolConfig],
) {
    // Two pools sharing an address would hand it to two clients.
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            for ra in &a.ranges {
                if let Some(rb) = b.ranges.iter().find(|rb| ra.overlaps(rb)) {
                    cx.d.push(cx.err(
                        FieldPath::indexed("pool", i).key("addrs"),
                        format!(
                            "{ra} of pool \"{}\" overlaps {rb} of pool \"{}\": an address would be handed to two clients",
                            a.name, b.name
                        ),
                    ));
                }
            }
        }
        // A client given the gateway's own address would take its traffic.
        for iface in interfaces {
            for net in &iface.addresses {
                if let Some(r) = a.ranges.iter().find(|r| r.contains(net.addr())) {
                    cx.d.push(cx.err(
                        FieldPath::indexed("pool", i).key("addrs"),
                        format!(
                            "{r} contains {}, an address of interface \"{}\"",
                            net.addr(),
                            iface.name
                        ),
                    ));
                }
            }
        }
    }
    for (i, t) in tunnels.iter().enumerate() {
        let Some(ike) = &t.ike else { continue };
        let p = FieldPath::indexed("tunnel", i).key("ike").key("pools");
        if !ike.pools.is_empty() && ike.start_action != StartAction::Listen {
            cx.d.push(cx.err(
                p.clone(),
                "pools hand out addresses to clients: the tunnel must have start_action = \"listen\"",
            ));
        }
        for name in &ike.pools {
            let Some(pool) = pools.iter().find(|x| x.name == *name) else {
                let known: Vec<&str> = pools.iter().map(|x| x.name.as_str()).collect();
                cx.d.push(cx.err(
                    p.clone(),
                    format!("no [[pool]] named \"{name}\" (pools: {known:?})"),
                ));
                continue;
            };
            // Return traffic to a client is sent by the tunnel's policies:
            // their remote side must cover every address it may be given.
            for r in &pool.ranges {
                let covered = t.policies.iter().any(|pol| {
                    matches!(pol.action, Action::Protect(_))
                        && pol.selector.dst.contains(&r.start)
                        && pol.selector.dst.contains(&r.end)
                });
                if !covered {
                    cx.d.push(cx.err(
                        p.clone(),
                        format!(
                            "no protect policy of tunnel \"{}\" has {r} (pool \"{name}\") in its remote_ts: traffic to its clients would not enter the tunnel",
                            t.name
                        ),
                    ));
                }
            }
        }
    }
}
