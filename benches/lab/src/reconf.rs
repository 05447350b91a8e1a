//! The reconfiguration case: SA installs and deletes while the worker
//! forwards at full rate (`espresso-lab bench-reconf`, a child process per run
//! like [`case`]).
//!
//! The gateway starts as in a throughput case and gets `sa_count` tunnels,
//! each with an outbound SA (slot `i`, policy `i`) and an inbound SA, and
//! the pcap spreads traffic over all of them. After the warm-up it
//! measures a quiet window (forwarding only), then a churn window in which
//! this thread, playing the control thread, adds `churn` more tunnels and
//! removes them again with the messages `espresso reload` sends
//! (`Control::reload` and `apply_sas` in `gateway.rs`; IKE installs and
//! deletes use the same ones):
//!
//! 1. add: `SetSpd` with the policies of the old and the new tunnels, then
//!    per new tunnel `InstallInbound` + `InboundOwner`, then per new tunnel
//!    `InstallOutbound` + `OutboundOwner`;
//! 2. delete: `SetSpd` with the old policies only, then per tunnel
//!    `RemoveOutbound` + `OutboundOwner(None)`, then per tunnel
//!    `RemoveInbound` + `InboundOwner(None)`.
//!
//! SAs are made as the control thread makes them (key expansion by
//! `new_transform` on this thread, not on the worker) and sent through a
//! control queue of the gateway's size (4096 messages; a full queue blocks
//! the sender as it blocks `espresso run`'s control thread). Installs per
//! second count both SAs of each added tunnel, from the first SA built
//! until the worker answered a statistics request queued behind the last
//! message. The stall is what the worker saw: its longest gap between two
//! polls (`max_poll_gap_us`), reset at the start of each window.

use std::time::{Duration, Instant};

use dataplane::esp::SaRef;
use dataplane::gateway::{ControlMsg, MsgKind, Spares, WorkerMsg};
use serde::{Deserialize, Serialize};

use super::case::{self, CaseRequest};
use super::report::median;
use super::spec::CaseSpec;
use super::traffic;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The control queue's capacity in `espresso run` (`gateway.rs`).
pub const GATEWAY_CONTROL_QUEUE: usize = 4096;

/// One reconfiguration case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconfSpec {
    /// The traffic and the steady tunnels (`sa_count` of them).
    pub traffic: CaseSpec,
    /// Tunnels added and then removed during the churn window.
    pub churn: u32,
}

impl ReconfSpec {
    /// E.g. `reconf encrypt aes128gcm16 imix 100000SA +100000`.
    pub fn name(&self) -> String {
        format!("reconf {} +{}", self.traffic.name(), self.churn)
    }
}

/// The standard reconfiguration cases: 100,000 tunnels carrying IMIX
/// AES-128-GCM traffic, one way and the other, while 100,000 more are
/// added and removed.
pub fn standard() -> Vec<ReconfSpec> {
    super::spec::Direction::ALL
        .into_iter()
        .map(|direction| ReconfSpec {
            traffic: CaseSpec {
                direction,
                algorithm: super::spec::BenchAlgorithm::AesGcm128,
                frame: super::spec::FrameSize::Imix,
                udp_encap: false,
                sa_count: 100_000,
                scale_frames: 0,
            },
            churn: 100_000,
        })
        .collect()
}

/// The quick one (`--quick`): 1,000 tunnels, 1,000 added and removed.
pub fn quick() -> Vec<ReconfSpec> {
    vec![ReconfSpec {
        traffic: CaseSpec {
            direction: super::spec::Direction::Encrypt,
            algorithm: super::spec::BenchAlgorithm::AesGcm128,
            frame: super::spec::FrameSize::Imix,
            udp_encap: false,
            sa_count: 1_000,
            scale_frames: 0,
        },
        churn: 1_000,
    }]
}

/// How to run one reconfiguration case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconfRequest {
    /// The traffic part (pcap, warm-up, window length, core).
    pub case: CaseRequest,
    /// Tunnels added and removed.
    pub churn: u32,
}

/// What one run measured (one JSON line on stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconfSample {
    /// SAs installed in the churn window (two per added tunnel).
    pub installs: u64,
    /// SAs deleted in the churn window.
    pub deletes: u64,
    /// Control messages sent in the churn window.
    pub messages: u64,
    /// Seconds from the first SA built until the worker had applied the
    /// last install.
    pub install_s: f64,
    /// The same for the deletes.
    pub delete_s: f64,
    /// Seconds this (control) thread spent building SAs and SPDs.
    pub build_s: f64,
    /// Longest gap between two polls of the worker in the churn window (µs).
    pub max_gap_us: u64,
    /// The same in the quiet window before it.
    pub quiet_max_gap_us: u64,
    /// Longest time the worker spent applying control messages in one
    /// poll during the churn window (µs): the part of a stall the changes
    /// themselves cause (wall clock).
    pub max_control_us: u64,
    /// The same in the worker's on-CPU time (what the changes cost the
    /// worker, whatever else runs on the machine).
    pub max_control_cpu_us: u64,
    /// Frames forwarded per second (wall clock) in the churn window.
    pub churn_mpps: f64,
    /// The same in the quiet window.
    pub quiet_mpps: f64,
    /// Frames dropped in the churn window (any reason).
    pub dropped: u64,
    /// Seconds from process start until the steady tunnels were installed.
    pub setup_s: f64,
    /// The poll before the churn window's longest gap taken apart (µs):
    /// control work, forwarding, flush, the rest until the next poll.
    #[serde(default)]
    pub slowest_poll_us: [u64; 4],
    /// Control messages that poll applied.
    #[serde(default)]
    pub slowest_poll_messages: u32,
    /// The most expensive of them (or `Step`, the table maintenance) and
    /// what it took (µs).
    #[serde(default)]
    pub slowest_poll_kind: Option<String>,
    /// See `slowest_poll_kind`.
    #[serde(default)]
    pub slowest_poll_kind_us: u64,
    /// The poll whose control work took the most CPU
    /// (`max_control_cpu_us`): its messages, and the slowest of them on
    /// the wall clock with what it took (µs).
    #[serde(default)]
    pub costliest_control: (u32, Option<String>, u64),
    /// The longest single message of each kind in the churn window (µs,
    /// wall clock), kinds that were sent only.
    #[serde(default)]
    pub max_msg_us: std::collections::BTreeMap<String, u64>,
}

impl ReconfSample {
    /// The slowest poll in a few words, e.g. `"64 msgs 900 us, slowest
    /// InstallInbound 400 us"`.
    pub fn slowest_poll(&self) -> String {
        let [control, forward, flush, rest] = self.slowest_poll_us;
        let (n, kind, us) = &self.costliest_control;
        format!(
            "control {control} us ({} msgs, slowest {} {} us), forward {forward}, flush {flush}, rest {rest}; \
             costliest control poll {} us on CPU: {n} msgs, slowest {} {us} us",
            self.slowest_poll_messages,
            self.slowest_poll_kind.as_deref().unwrap_or("-"),
            self.slowest_poll_kind_us,
            self.max_control_cpu_us,
            kind.as_deref().unwrap_or("-"),
        )
    }
}

fn send(gw: &case::Running, msg: ControlMsg) -> Result<(), Error> {
    gw.to_worker
        .send(msg)
        .map_err(|_| "the worker stopped".into())
}

/// Takes what the worker sent: frees what it handed back and builds the
/// spare tables it asks for, as the gateway's control loop does.
fn serve_worker(gw: &case::Running) -> Result<(), Error> {
    while let Ok(m) = gw.from_worker.try_recv() {
        if let WorkerMsg::WantSpares {
            inbound, owners, ..
        } = m
        {
            send(
                gw,
                ControlMsg::Spares(Box::new(Spares::build(inbound, owners))),
            )?;
        }
    }
    Ok(())
}

/// Installs tunnel `t`'s outbound SA (slot `t`) and inbound SA.
fn build_pair(
    spec: &CaseSpec,
    t: u32,
) -> Result<(dataplane::esp::OutboundSa, dataplane::esp::InboundSa), Error> {
    Ok((
        traffic::gateway_outbound(spec, t)?,
        traffic::gateway_inbound(spec, t)?,
    ))
}

/// Runs one reconfiguration case in this process (which must not have
/// started EAL).
pub fn run(req: &ReconfRequest) -> Result<ReconfSample, Error> {
    let spec = req.case.spec;
    let gw = case::start(&req.case, GATEWAY_CONTROL_QUEUE)?;
    // The steady tunnels: both SAs of each, as `espresso run` starts.
    send(
        &gw,
        ControlMsg::SetSpd(Box::new(
            traffic::outbound_spd(spec.sa_count)?.with_flow_cache(),
        )),
    )?;
    for t in 0..spec.sa_count {
        let (out, inb) = build_pair(&spec, t)?;
        send(&gw, ControlMsg::InstallInbound(Box::new(inb)))?;
        send(
            &gw,
            ControlMsg::InstallOutbound {
                slot: SaRef(t),
                sa: Box::new(out),
            },
        )?;
    }
    gw.collect(Duration::from_secs(300))?;
    let setup_s = gw.started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(req.case.warmup_s));

    // Quiet window.
    send(&gw, ControlMsg::ResetMaxPollGap)?;
    let q0 = gw.collect(Duration::from_secs(5))?;
    let tq0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(req.case.duration_s));
    let q1 = gw.collect(Duration::from_secs(5))?;
    let tq1 = Instant::now();

    // Churn window.
    send(&gw, ControlMsg::ResetMaxPollGap)?;
    let s0 = gw.collect(Duration::from_secs(5))?;
    let t0 = Instant::now();
    let first = spec.sa_count;
    let last = spec.sa_count + req.churn;
    let mut build = Duration::ZERO;
    let mut messages = 0u64;
    let mut msg = |m: ControlMsg| -> Result<(), Error> {
        messages += 1;
        send(&gw, m)?;
        serve_worker(&gw)
    };
    // Add (reload: SetSpd first, then inbound SAs, then outbound SAs).
    let b = Instant::now();
    let spd = traffic::outbound_spd(last)?.with_flow_cache();
    build += b.elapsed();
    msg(ControlMsg::SetSpd(Box::new(spd)))?;
    let mut outbound = Vec::with_capacity(req.churn as usize);
    for t in first..last {
        let b = Instant::now();
        let (out, inb) = build_pair(&spec, t)?;
        build += b.elapsed();
        let spi = inb.config().spi;
        outbound.push(out);
        msg(ControlMsg::InstallInbound(Box::new(inb)))?;
        msg(ControlMsg::InboundOwner {
            spi,
            worker: Some(0),
        })?;
    }
    for (t, out) in (first..last).zip(outbound) {
        let slot = SaRef(t);
        msg(ControlMsg::InstallOutbound {
            slot,
            sa: Box::new(out),
        })?;
        msg(ControlMsg::OutboundOwner {
            slot,
            worker: Some(0),
        })?;
    }
    gw.collect(Duration::from_secs(60))?;
    let t1 = Instant::now();
    // Delete (reload: SetSpd first, then outbound SAs, then inbound SAs).
    let b = Instant::now();
    let spd = traffic::outbound_spd(first)?.with_flow_cache();
    build += b.elapsed();
    msg(ControlMsg::SetSpd(Box::new(spd)))?;
    for t in first..last {
        let slot = SaRef(t);
        msg(ControlMsg::RemoveOutbound { slot })?;
        msg(ControlMsg::OutboundOwner { slot, worker: None })?;
    }
    for t in first..last {
        let spi = traffic::spi(t)?;
        msg(ControlMsg::RemoveInbound(spi))?;
        msg(ControlMsg::InboundOwner { spi, worker: None })?;
    }
    let s1 = gw.collect(Duration::from_secs(60))?;
    let t2 = Instant::now();
    gw.stop();

    let rate =
        |a: &dataplane::gateway::WorkerStats, b: &dataplane::gateway::WorkerStats, s: f64| {
            (case::sent_frames(b) - case::sent_frames(a)) as f64 / s / 1e6
        };
    Ok(ReconfSample {
        installs: 2 * u64::from(req.churn),
        deletes: 2 * u64::from(req.churn),
        messages,
        install_s: (t1 - t0).as_secs_f64(),
        delete_s: (t2 - t1).as_secs_f64(),
        build_s: build.as_secs_f64(),
        max_gap_us: s1.max_poll_gap_us,
        max_control_us: s1.max_control_us,
        max_control_cpu_us: s1.max_control_cpu_us,
        quiet_max_gap_us: q1.max_poll_gap_us,
        churn_mpps: rate(&s0, &s1, (t2 - t0).as_secs_f64()),
        quiet_mpps: rate(&q0, &q1, (tq1 - tq0).as_secs_f64()),
        dropped: s1.node.total_drops() - s0.node.total_drops(),
        setup_s,
        slowest_poll_us: {
            let p = &s1.slowest_poll;
            [p.control_us, p.forward_us, p.flush_us, p.rest_us]
        },
        slowest_poll_messages: s1.slowest_poll.messages,
        slowest_poll_kind: s1.slowest_poll.slowest.map(|k| k.name().to_string()),
        slowest_poll_kind_us: s1.slowest_poll.slowest_us,
        costliest_control: (
            s1.costliest_control.messages,
            s1.costliest_control.slowest.map(|k| k.name().to_string()),
            s1.costliest_control.slowest_us,
        ),
        max_msg_us: MsgKind::ALL
            .iter()
            .filter(|k| s1.max_msg_us[k.index()] > 0)
            .map(|k| (k.name().to_string(), s1.max_msg_us[k.index()]))
            .collect(),
    })
}

/// One reconfiguration case's record in `latest.json` (`reconf`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconfRecord {
    /// Always `reconf`.
    pub kind: String,
    /// Direction of the traffic.
    pub direction: String,
    /// Suite of every SA.
    pub algorithm: String,
    /// Frame size of the traffic.
    pub frame_size: String,
    /// Tunnels (an outbound and an inbound SA each) carrying traffic.
    pub sa_count: u32,
    /// Tunnels added and removed per run.
    pub churn: u32,
    /// Median SA installs per second (both SAs of each added tunnel).
    pub installs_per_s: f64,
    /// Median SA deletes per second.
    pub deletes_per_s: f64,
    /// Median of the runs' longest worker stall (µs) while SAs changed.
    pub max_stall_us: f64,
    /// The longest stall of any run (µs).
    pub worst_stall_us: u64,
    /// Median longest stall in the quiet window before (µs): what the
    /// shared machine alone costs.
    pub quiet_max_stall_us: f64,
    /// Median of the runs' longest control-message work in one poll (µs).
    pub max_control_us: f64,
    /// The longest of any run (µs).
    pub worst_control_us: u64,
    /// Median of the runs' longest control-message work in one poll in
    /// the worker's on-CPU time (µs).
    pub max_control_cpu_us: f64,
    /// The longest of any run (µs on CPU).
    pub worst_control_cpu_us: u64,
    /// Median Mpps forwarded while SAs changed.
    pub churn_mpps: f64,
    /// Median Mpps in the quiet window.
    pub quiet_mpps: f64,
    /// Frames dropped while SAs changed (all runs).
    pub dropped: u64,
    /// Every run.
    pub runs: Vec<ReconfSample>,
}

impl ReconfRecord {
    /// The record of a case's runs.
    pub fn new(spec: &ReconfSpec, runs: &[ReconfSample]) -> Self {
        let m = |f: fn(&ReconfSample) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Self {
            kind: "reconf".into(),
            direction: spec.traffic.direction.name().into(),
            algorithm: spec.traffic.algorithm.name().into(),
            frame_size: spec.traffic.frame.label(),
            sa_count: spec.traffic.sa_count,
            churn: spec.churn,
            installs_per_s: m(|r| r.installs as f64 / r.install_s),
            deletes_per_s: m(|r| r.deletes as f64 / r.delete_s),
            max_stall_us: m(|r| r.max_gap_us as f64),
            worst_stall_us: runs.iter().map(|r| r.max_gap_us).max().unwrap_or(0),
            quiet_max_stall_us: m(|r| r.quiet_max_gap_us as f64),
            max_control_us: m(|r| r.max_control_us as f64),
            worst_control_us: runs.iter().map(|r| r.max_control_us).max().unwrap_or(0),
            max_control_cpu_us: m(|r| r.max_control_cpu_us as f64),
            worst_control_cpu_us: runs.iter().map(|r| r.max_control_cpu_us).max().unwrap_or(0),
            churn_mpps: m(|r| r.churn_mpps),
            quiet_mpps: m(|r| r.quiet_mpps),
            dropped: runs.iter().map(|r| r.dropped).sum(),
            runs: runs.to_vec(),
        }
    }
}

/// The reconfiguration table (plain text).
pub fn table(records: &[ReconfRecord]) -> String {
    let mut s = format!(
        "{:<8} {:<12} {:>5} {:>6} {:>7} | {:>10} {:>10} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>7} {:>7}\n",
        "dir",
        "algorithm",
        "frame",
        "SAs",
        "churn",
        "install/s",
        "delete/s",
        "stall us",
        "worst us",
        "quiet us",
        "ctl us",
        "ctl cpu",
        "cpu worst",
        "Mpps",
        "quiet"
    );
    for r in records {
        s.push_str(&format!(
            "{:<8} {:<12} {:>5} {:>6} {:>7} | {:>10.0} {:>10.0} | {:>9.0} {:>9} {:>9.0} | {:>9.0} {:>9.0} {:>9} | {:>7.3} {:>7.3}\n",
            r.direction,
            r.algorithm,
            r.frame_size,
            r.sa_count,
            r.churn,
            r.installs_per_s,
            r.deletes_per_s,
            r.max_stall_us,
            r.worst_stall_us,
            r.quiet_max_stall_us,
            r.max_control_us,
            r.max_control_cpu_us,
            r.worst_control_cpu_us,
            r.churn_mpps,
            r.quiet_mpps
        ));
    }
    s
}

/// The same in Markdown (for README.md).
pub fn markdown_table(records: &[ReconfRecord]) -> String {
    let mut s = String::from(
        "| direction | algorithm | frame | SAs | added+removed | installs/s | deletes/s | longest stall, median (µs) | longest stall, worst run (µs) | quiet window's longest gap (µs) | longest control work in a poll, median (µs) | the same on CPU, median (µs) | on CPU, worst run (µs) | Mpps while changing | Mpps quiet |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in records {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {:.3} | {:.3} |\n",
            r.direction,
            r.algorithm,
            r.frame_size,
            r.sa_count,
            r.churn,
            r.installs_per_s,
            r.deletes_per_s,
            r.max_stall_us,
            r.worst_stall_us,
            r.quiet_max_stall_us,
            r.max_control_us,
            r.max_control_cpu_us,
            r.worst_control_cpu_us,
            r.churn_mpps,
            r.quiet_mpps
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::buf::HeapBuf;
    use dataplane::gateway::Node;
    use dataplane::route::RouteTable;

    use cpu::clock::thread_cpu_time as cpu;

    /// The reconfiguration case's messages applied to a bare `Node`, each
    /// timed on this thread's CPU clock (immune to preemption): the
    /// slowest of each kind. `cargo test --release -p espresso-control
    /// --lib reconf::tests::message_costs -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement that prints costs, run by hand in release mode"]
    fn message_costs() {
        let spec = standard()[1].traffic;
        let mut node: Node<HeapBuf> = Node::new(0, Vec::new(), RouteTable::new());
        let mut worst: std::collections::BTreeMap<&str, (u64, u32, u64)> = Default::default();
        let mut over = 0u32;
        let mut note = |k: &'static str, t: u32, c0: Duration| {
            let us = (cpu() - c0).as_micros() as u64;
            let e = worst.entry(k).or_default();
            if us > e.0 {
                *e = (us, t, e.2);
            }
            if us > 100 {
                e.2 += 1;
                over += 1;
            }
        };
        let (first, last) = (spec.sa_count, spec.sa_count + standard()[1].churn);
        let spd = traffic::outbound_spd(first).unwrap();
        let c = cpu();
        node.set_spd(spd);
        note("SetSpd", 0, c);
        for t in 0..last {
            if t == first {
                let spd = traffic::outbound_spd(last).unwrap();
                let c = cpu();
                let old = node.set_spd(spd);
                note("SetSpd", t, c);
                drop(old);
            }
            let (out, inb) = build_pair(&spec, t).unwrap();
            let (out, inb) = (Box::new(out), Box::new(inb));
            let spi = inb.config().spi;
            let c = cpu();
            let _ = node.install_inbound(inb);
            note("InstallInbound", t, c);
            let c = cpu();
            node.set_inbound_owner(spi, Some(0));
            note("InboundOwner", t, c);
            let c = cpu();
            node.step();
            note("Step", t, c);
            // The control thread's answer to `WantSpares` (not timed).
            if let Some((inbound, owners)) = node.spares_wanted() {
                let spares = Spares::build(inbound, owners);
                let c = cpu();
                let _ = node.give_spares(spares);
                note("Spares", t, c);
            }
            drop(node.take_retired_tables());
            let c = cpu();
            let _ = node.install_outbound(SaRef(t), out);
            note("InstallOutbound", t, c);
            let c = cpu();
            node.set_outbound_owner(SaRef(t), Some(0));
            note("OutboundOwner", t, c);
        }
        for t in first..last {
            let c = cpu();
            let old = node.remove_outbound(SaRef(t));
            note("RemoveOutbound", t, c);
            let c = cpu();
            node.set_outbound_owner(SaRef(t), None);
            note("OutboundOwner(None)", t, c);
            drop(old);
            let spi = traffic::spi(t).unwrap();
            let c = cpu();
            let old = node.remove_inbound(spi);
            note("RemoveInbound", t, c);
            let c = cpu();
            node.set_inbound_owner(spi, None);
            note("InboundOwner(None)", t, c);
            drop(old);
        }
        for (k, (us, t, n)) in &worst {
            println!("{k:<22} worst {us:>6} us on CPU (tunnel {t}), {n} over 100 us");
        }
        println!("{over} operations over 100 us");
    }
}
