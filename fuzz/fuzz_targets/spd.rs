//! The SPD's compiled classifier against a linear walk: arbitrary policy
//! sets (both families, overlapping prefixes, protocols, port ranges,
//! priorities) and arbitrary keys.
//!
//! Format: one byte, the number of policies (mod 32); per policy 17 bytes:
//! flags (bit 0 IPv6, bit 1 a protocol, bits 2..4 priority), source
//! address word, source length, destination address word, destination
//! length, protocol, source ports (two u16, ordered), destination ports
//! (two u16, ordered). An IPv6 address is the word in its top 32 bits and
//! again in its low 32. The rest are keys, 14 bytes each: flags (bit 0
//! IPv6), source word, destination word, protocol, source port, destination
//! port (kept for every protocol: the classifier must not care). Oracle:
//! `Spd::lookup_with_id` gives the policy a walk over all of them in
//! (priority, insertion) order finds first. Invalid selectors are refused
//! by `Spd::insert` and left out of the model too.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::esp::{Action, FlowKey, IpPrefix, Policy, PolicyId, SaRef, Selector, Spd};
use espresso_fuzz::Input;
use libfuzzer_sys::fuzz_target;

fn addr(word: u32, v6: bool) -> IpAddr {
    if v6 {
        let w = u128::from(word);
        IpAddr::V6(Ipv6Addr::from(w << 96 | w))
    } else {
        IpAddr::V4(Ipv4Addr::from(word))
    }
}

fn ports(inp: &mut Input<'_>) -> std::ops::RangeInclusive<u16> {
    let (a, b) = (inp.u16(), inp.u16());
    a.min(b)..=a.max(b)
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let n = inp.u8() % 32;
    let mut spd = Spd::new();
    let mut model: Vec<(PolicyId, Policy)> = Vec::new();
    for i in 0..n {
        let flags = inp.u8();
        let v6 = flags & 1 != 0;
        let src = IpPrefix::truncating(addr(inp.u32(), v6), inp.u8());
        let dst = IpPrefix::truncating(addr(inp.u32(), v6), inp.u8());
        let proto = inp.u8();
        let mut selector = Selector::new(src, dst)
            .with_src_ports(ports(&mut inp))
            .with_dst_ports(ports(&mut inp));
        if flags & 2 != 0 {
            selector = selector.with_protocol(proto);
        }
        let policy = Policy {
            selector,
            action: Action::Protect(SaRef(u32::from(i))),
            priority: u32::from(flags >> 2 & 7),
        };
        if let Ok(id) = spd.insert(policy.clone()) {
            model.push((id, policy));
        }
    }
    spd.compile();
    while !inp.is_empty() {
        let flags = inp.u8();
        let v6 = flags & 1 != 0;
        let key = FlowKey {
            src: addr(inp.u32(), v6),
            dst: addr(inp.u32(), v6),
            proto: inp.u8(),
            sport: inp.u16(),
            dport: inp.u16(),
        };
        let want = model
            .iter()
            .filter(|(_, p)| p.selector.matches(&key))
            .min_by_key(|(id, p)| (p.priority, *id))
            .map(|(id, _)| *id);
        assert_eq!(spd.lookup_with_id(&key).map(|x| x.0), want, "{key:?}");
    }
});
