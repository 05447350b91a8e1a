//! Responder templates (`remote_addrs = "%any"` or prefixes, `remote_id`
//! a pattern) and `[[secret]]` (pre-shared keys by identity, as swanctl's
//! `secrets`).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use zeroize::Zeroizing;

use super::super::raw::RawSharedSecret;
use super::super::secret::read_secret_file;
use super::super::{IkeAuth, IkeIdPattern, Interface, SharedSecret, StartAction, Tunnel};
use super::{ike_id, is_own_address, psk_from_text, ConfigError, Ctx, FieldPath, Secret};

/// Whether `remote_addrs` makes the tunnel a responder template: `%any`,
/// a prefix, or more than one entry.
pub(super) fn is_template(remote_addrs: &[String]) -> bool {
    remote_addrs.len() != 1 || remote_addrs[0].trim() == "%any" || remote_addrs[0].contains('/')
}

/// A template's `remote_addrs`: the prefixes peers may come from, of
/// `local`'s family (`%any` is all of it).
pub(super) fn remote_prefixes(
    cx: &Ctx,
    p: &FieldPath,
    raw: &[String],
    local: IpAddr,
    interfaces: &[Interface],
) -> Result<Vec<IpNet>, ConfigError> {
    let field = p.key("remote_addrs");
    let mut out = Vec::with_capacity(raw.len());
    for s in raw {
        let s = s.trim();
        let net: IpNet = if s == "%any" {
            if raw.len() > 1 {
                return Err(cx.err(
                    &field,
                    "\"%any\" already takes every address; give it alone",
                ));
            }
            match local {
                IpAddr::V4(_) => "0.0.0.0/0".parse().expect("literal prefix"),
                IpAddr::V6(_) => "::/0".parse().expect("literal prefix"),
            }
        } else {
            match s.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match s.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => {
                        return Err(cx.err(
                            &field,
                            format!("\"{s}\" is not an address, a prefix or %any"),
                        ))
                    }
                },
            }
        };
        if net.addr().is_ipv4() != local.is_ipv4() {
            return Err(cx.err(
                &field,
                format!("{net} is not of the same address family as local {local}"),
            ));
        }
        if net.prefix_len() == net.max_prefix_len() && is_own_address(interfaces, net.addr()) {
            return Err(cx.err(
                &field,
                format!("{net} is one of this gateway's own addresses"),
            ));
        }
        out.push(net);
    }
    Ok(out)
}

/// `remote_id` of a template: one identity, `%any`, `*@domain` or
/// `*.domain`.
pub(super) fn id_pattern(s: &str) -> Result<IkeIdPattern, String> {
    let s = s.trim();
    if s == "%any" || s == "*" {
        return Ok(IkeIdPattern::Any);
    }
    let domain = |d: &str| -> Result<String, String> {
        match ike_id(d) {
            Ok(super::super::IkeId::Fqdn(f)) => Ok(f.to_ascii_lowercase()),
            _ => Err(format!("\"{s}\": after the wildcard comes a domain name")),
        }
    };
    if let Some(d) = s.strip_prefix("*@") {
        return domain(d).map(IkeIdPattern::EmailDomain);
    }
    if let Some(d) = s.strip_prefix("*.") {
        return domain(d).map(IkeIdPattern::FqdnSuffix);
    }
    if s.contains('=') {
        // A distinguished name (ID_DER_ASN1_DN), RDN values possibly `*`.
        return crate::ike::identity::DnPattern::parse(s)
            .map(|pattern| IkeIdPattern::Dn {
                text: s.to_string(),
                pattern,
            })
            .map_err(|e| format!("\"{s}\": {e}"));
    }
    if s.contains('*') {
        return Err(format!(
            "\"{s}\": a wildcard is only understood as \"%any\", \"*@domain\", \"*.domain\" or a DN value (CN=*)"
        ));
    }
    ike_id(s).map(IkeIdPattern::Exact)
}

/// `[[secret]]` sections: each key read (with the permission checks of
/// every secret file), each identity given once.
pub(super) fn secrets(cx: &Ctx, raw: Vec<Option<RawSharedSecret>>) -> Vec<SharedSecret> {
    let mut seen: HashMap<IkeIdPattern, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let p = FieldPath::indexed("secret", i);
        let texts: Vec<(String, String)> = match (r.id, r.ids) {
            (Some(_), Some(_)) => {
                cx.d.push(cx.err(p.key("ids"), "give either `id` or `ids`, not both"));
                continue;
            }
            (None, None) => {
                cx.d.push(cx.err(p.key("id"), "missing: give `id` or `ids`"));
                continue;
            }
            (Some(id), None) => vec![(p.key("id").to_string(), id)],
            (None, Some(ids)) if ids.is_empty() => {
                cx.d.push(cx.err(p.key("ids"), "must not be empty"));
                continue;
            }
            (None, Some(ids)) => ids
                .into_iter()
                .enumerate()
                .map(|(j, id)| (format!("{}[{j}]", p.key("ids")), id))
                .collect(),
        };
        let mut ids = Vec::with_capacity(texts.len());
        for (field, text) in texts {
            match id_pattern(&text) {
                Ok(id) => {
                    if let Some(first) = seen.get(&id) {
                        cx.d.push(cx.err(
                            field,
                            format!("{id} already has a secret in secret[{first}]; one identity, one secret"),
                        ));
                    } else {
                        seen.insert(id.clone(), i);
                        ids.push(id);
                    }
                }
                Err(e) => cx.d.push(cx.err(field, e)),
            }
        }
        let psk = match (r.psk, r.psk_file) {
            (Some(_), Some(_)) => {
                Err(cx.err(p.key("psk"), "give either `psk` or `psk_file`, not both"))
            }
            (None, None) => Err(cx.err(p.key("psk"), "missing: give `psk` or `psk_file`")),
            (Some(s), None) => psk_from_text(&s.0).map_err(|e| cx.err(p.key("psk"), e)),
            (None, Some(path)) => read_secret_file(cx.file(), &path)
                .map_err(|e| cx.err(p.key("psk_file"), e))
                .and_then(|(resolved, text)| {
                    let text = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string());
                    psk_from_text(&text).map_err(|e| {
                        cx.err(
                            p.key("psk_file"),
                            format!("the contents of {}: {e}", resolved.display()),
                        )
                    })
                }),
        };
        if let Some(psk) = cx.keep(psk) {
            if !ids.is_empty() {
                out.push(SharedSecret {
                    ids,
                    psk: Secret::new(psk),
                });
            }
        }
    }
    out
}

/// Whether some `[[secret]]` could serve a peer the template accepts: one
/// for an identity the pattern matches, for the pattern itself, or for a
/// broader one.
fn secret_for(pattern: &IkeIdPattern, secrets: &[SharedSecret]) -> bool {
    let covers = |s: &IkeIdPattern| -> bool {
        use IkeIdPattern::*;
        match (pattern, s) {
            (_, Any) => true,
            (a, b) if a == b => true,
            (Any, _) => true,
            (EmailDomain(d), Exact(super::super::IkeId::Email(e))) => e
                .rsplit_once('@')
                .is_some_and(|(_, ed)| ed.eq_ignore_ascii_case(d)),
            (FqdnSuffix(d), Exact(super::super::IkeId::Fqdn(f))) => {
                let f = f.to_ascii_lowercase();
                f.len() > d.len() + 1
                    && f.ends_with(d.as_str())
                    && f.as_bytes()[f.len() - d.len() - 1] == b'.'
            }
            (FqdnSuffix(d), FqdnSuffix(e)) => d.ends_with(&format!(".{e}")),
            // DNs with the same attributes in the same order: a secret
            // for one of the template's peers, or a pattern of its own.
            (Dn { pattern: p, .. }, Dn { pattern: q, .. }) => {
                p.0.len() == q.0.len()
                    && p.0.iter().zip(&q.0).all(|((po, pv), (qo, qv))| {
                        po == qo
                            && match (pv, qv) {
                                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                                _ => true,
                            }
                    })
            }
            (Exact(super::super::IkeId::Email(e)), EmailDomain(d)) => e
                .rsplit_once('@')
                .is_some_and(|(_, ed)| ed.eq_ignore_ascii_case(d)),
            (Exact(super::super::IkeId::Fqdn(f)), FqdnSuffix(d)) => {
                let f = f.to_ascii_lowercase();
                f.len() > d.len() + 1
                    && f.ends_with(d.as_str())
                    && f.as_bytes()[f.len() - d.len() - 1] == b'.'
            }
            _ => false,
        }
    };
    secrets.iter().any(|s| s.ids.iter().any(covers))
}

/// Checks between templates, and between templates and secrets.
pub(super) fn check(cx: &Ctx, tunnels: &[Tunnel], secrets: &[SharedSecret]) {
    // Templates by local address: IKE_SA_INIT carries no identity, so
    // they share the IKE SA's negotiation until IKE_AUTH tells them
    // apart (see docs/architecture.md).
    let mut by_local: HashMap<IpAddr, usize> = HashMap::new();
    for (i, t) in tunnels.iter().enumerate() {
        let (Some(prefixes), Some(ic)) = (&t.remote_prefixes, &t.ike) else {
            continue;
        };
        let p = FieldPath::indexed("tunnel", i);
        if ic.start_action == StartAction::Initiate {
            cx.d.push(cx.err(
                p.key("ike").key("start_action"),
                "a responder template (remote_addrs %any or prefixes) has no peer address to initiate to; use \"listen\" or leave it out",
            ));
        }
        if let Some(pattern) = &ic.remote_ids {
            // With certificates (remote_auth = "pubkey") the CA vouches
            // for each identity: no secret is needed.
            if ic.remote_auth == IkeAuth::Psk && ic.psk.is_empty() && !secret_for(pattern, secrets)
            {
                cx.d.push(cx.err(
                    p.key("ike").key("remote_id"),
                    format!("the template has no psk and no [[secret]] is for an identity {pattern} matches: no peer could authenticate"),
                ));
            }
        }
        match by_local.get(&t.endpoints.local) {
            None => {
                by_local.insert(t.endpoints.local, i);
            }
            Some(&first) => {
                let f = &tunnels[first];
                let fi = f.ike.as_ref().expect("templates have [tunnel.ike]");
                if fi.proposals != ic.proposals {
                    cx.d.push(cx.err(
                        p.key("ike").key("proposals"),
                        format!("templates sharing local address {} must offer the same IKE proposals (as tunnel \"{}\"): the IKE SA is negotiated before the peer's identity picks the template", t.endpoints.local, f.name),
                    ));
                }
                if f.remote_prefixes.as_ref() != Some(prefixes) {
                    cx.d.push(cx.err(
                        p.key("remote_addrs"),
                        format!("templates sharing local address {} must accept the same remote_addrs (as tunnel \"{}\")", t.endpoints.local, f.name),
                    ));
                }
                if fi.remote_ids == ic.remote_ids {
                    cx.d.push(cx.err(
                        p.key("ike").key("remote_id"),
                        format!(
                                "tunnel \"{}\" on the same local address already takes {}",
                                f.name,
                                ic.remote_ids
                                    .as_ref()
                                    .map_or(String::new(), |x| x.to_string())
                            ),
                    ));
                }
            }
        }
    }
}
