//! `espresso run`: the gateway process.
//!
//! The main thread is the control thread. It owns the configuration, opens
//! the ports, builds the SAs and the SPD, starts one worker per configured
//! core and talks to them only through bounded crossbeam queues:
//! install/update/delete messages for SAs and policies go out, punted IKE
//! packets, learned neighbours, SA events and counters come back, each
//! kind on its own queue ([`dataplane::gateway::queues`]). It also answers
//! the commands of the control socket ([`crate::control_socket`], served
//! on a thread of its own).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use dataplane::esp::{Action, Policy, SaRef, Spd};
use dataplane::gateway::{
    control_queues, ControlMsg, FromWorkers, Handoff, Interface, Next, Node, Role, Spares, Turn,
    WorkerMsg, WorkerStats,
};
use dpdk::{
    register_thread, unregister_thread, Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig,
};
use dpdk::{Worker, WorkerPorts};

use crate::api::{self, Answer, ApiError, Command, Event, LogFilter};
use crate::config::GatewayConfig;
use crate::control_socket::{Access, ControlSocket, Request};
use crate::ike_driver::{IkeAction, IkeDriver, SystemRng};
use crate::metrics::{MetricsServer, SnapshotRequest};
use crate::reload::{self, Diff, ReloadReport, Slots};
use crate::sa::{PeerPolicy, Planner, Wanted};

/// Everything that went wrong starting or running the gateway.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Options from the command line that are not in the file.
#[derive(Clone)]
pub struct RunOptions {
    /// The configuration file (re-read on `reload`).
    pub config_path: PathBuf,
    /// Sleep this long when a poll finds nothing (0: spin).
    pub idle_sleep: Duration,
    /// The process's log filter, for the API's `log` (`None`: `log`
    /// answers that it cannot).
    pub log_filter: Option<Arc<dyn LogFilter>>,
    /// Set by SIGHUP: the control loop reloads and clears it.
    pub reload_signal: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("config_path", &self.config_path)
            .field("idle_sleep", &self.idle_sleep)
            .field("log_filter", &self.log_filter.is_some())
            .field("reload_signal", &self.reload_signal.is_some())
            .finish()
    }
}

/// Control requests answered per turn of the control loop at most, so
/// that a burst of them does not hold up the workers' messages.
const REQUESTS_PER_TURN: usize = 4;
/// Learned neighbours remembered for the API at most (the workers keep
/// their own, bounded, tables).
const MAX_LEARNED_NEIGHBOURS: usize = 4096;

/// Capacity of each worker's control queue.
const CONTROL_QUEUE: usize = 4096;

/// Queues an IKE datagram for worker `tx` to send, never blocking the
/// control thread: under an IKE_SA_INIT flood most of these are cookie
/// replies to spoofed sources, and a control thread waiting for a busy
/// worker would stop serving SA installs and events. The last quarter of
/// the queue is kept for SA and policy messages, which are sent with a
/// blocking `send` and so never lost. False: the datagram was dropped (the
/// IKE engine retransmits its requests, RFC 7296 §2.1; the peer
/// retransmits for the responses).
fn queue_transmit(tx: &Sender<ControlMsg>, packet: Vec<u8>) -> bool {
    let reserve = tx.capacity().map_or(0, |c| c / 4);
    if tx.len() + reserve >= tx.capacity().unwrap_or(usize::MAX) {
        return false;
    }
    tx.try_send(ControlMsg::Transmit(packet)).is_ok()
}

/// The running gateway's control state.
struct Control {
    config: GatewayConfig,
    options: RunOptions,
    to_workers: Vec<Sender<ControlMsg>>,
    from_workers: FromWorkers,
    /// Commands from the control socket's thread.
    requests: Receiver<Request>,
    socket: ControlSocket,
    ports: Vec<Port>,
    /// What the workers have, and the messages that change it.
    planner: Planner,
    /// The configuration's manual SAs.
    manual: Wanted,
    punted: u64,
    events: u64,
    /// IKE datagrams dropped because worker 0's control queue was
    /// (nearly) full (`drop.control.transmit_full`).
    transmit_full: u64,
    started: Instant,
    /// IKEv2 for the tunnels that have `[tunnel.ike]`.
    ike: IkeDriver,
    /// Each running tunnel's SPD slot (kept across reloads).
    slots: Slots,
    /// The `[metrics]` endpoint, if configured.
    metrics: Option<MetricsServer>,
    /// Its scrapes' snapshot requests (never ready without it).
    snapshot_requests: Receiver<SnapshotRequest>,
    /// Neighbours the workers confirmed (address -> MAC, interface), for
    /// the API's `neighbours`.
    learned: BTreeMap<std::net::IpAddr, ([u8; 6], u16)>,
}

impl Control {
    fn broadcast(&self, make: impl Fn() -> ControlMsg) {
        for tx in &self.to_workers {
            let _ = tx.send(make());
        }
    }

    fn send(&self, worker: u16, msg: ControlMsg) {
        if let Some(tx) = self.to_workers.get(usize::from(worker)) {
            let _ = tx.send(msg);
        }
    }

    /// Installs the starting configuration's SPD and manual SAs. A
    /// policy or manual SA that does not build stops the start.
    fn apply_config(&mut self) -> Result<(), Error> {
        let manual = reload::manual_sas(&self.config, &self.slots);
        let plan = self.planner.plan(&[&manual, &self.ike.sas()]);
        if let Some(f) = plan.failed.first() {
            return Err(format!("{f} ({} SAs failed)", plan.failed.len()).into());
        }
        let spd = spd_of_with_peers(
            &reload::policies(&self.config, &self.slots),
            &plan.next().peer_policies(),
        )?;
        self.broadcast(|| ControlMsg::SetSpd(Box::new(spd.clone().with_flow_cache())));
        self.manual = manual;
        let msgs = self.planner.commit(plan);
        self.send_plan(msgs);
        Ok(())
    }

    /// Takes the running gateway to `target` (whose differences from the
    /// running configuration are `diff`, with nothing refused). Every
    /// policy, SA and IKE engine of `target` is built before anything
    /// changes: on error nothing did. Then, in order: routes, static
    /// neighbours and ICMP limits; the new and changed SAs (make before
    /// break: the removed tunnels' SAs are still in); the new SPD; IKE
    /// (DELETE for removed tunnels and for IKE SAs to re-establish, new
    /// tunnels initiating); last, the SAs no longer wanted go. Tunnels
    /// that did not change keep their slots and SAs: nothing of theirs is
    /// sent to the workers.
    fn apply(&mut self, target: GatewayConfig, diff: &Diff) -> Result<(), Error> {
        let now = Instant::now();
        // A new tunnel never takes an outbound slot a peer route holds.
        let slots = self
            .slots
            .next_avoiding(&target, self.planner.installed().peer_slots());
        spd_of(&reload::policies(&target, &slots))?;
        for t in target.tunnels.iter().filter(|t| t.ike.is_some()) {
            IkeDriver::check_tunnel(&target, t)?;
        }
        let manual = reload::manual_sas(&target, &slots);
        let removed: std::collections::BTreeSet<&str> =
            diff.removed.iter().map(String::as_str).collect();
        let leaving = Wanted::from_tunnels(
            reload::slotted_tunnels(&self.config, &self.slots)
                .filter(|(_, t)| removed.contains(t.name.as_str())),
        );
        let (re_in, re_out) = reload::respecified(&self.manual, &manual);
        let mut planner = self.planner.clone();
        planner.forget(&re_in, &re_out);
        planner.set_names(slots.names());
        let plan = planner.plan(&[&leaving, &manual, &self.ike.sas()]);
        if let Some(f) = plan.failed.first() {
            return Err(format!("{f} ({} SAs failed); nothing changed", plan.failed.len()).into());
        }
        let spd = spd_of_with_peers(
            &reload::policies(&target, &slots),
            &plan.next().peer_policies(),
        )?;

        if diff.routes {
            let routes = target.route_table();
            self.broadcast(|| ControlMsg::SetRoutes(Box::new(routes.clone())));
        }
        if diff.neighbours {
            let statics: Vec<_> = target
                .neighbours
                .iter()
                .map(|n| (n.address, n.mac.0, n.interface))
                .collect();
            self.broadcast(|| ControlMsg::SetStaticNeighbours(statics.clone()));
        }
        if !diff.dataplane.is_empty() {
            let (per_second, burst) = (
                target.dataplane.icmp_errors_per_second,
                target.dataplane.icmp_error_burst,
            );
            self.broadcast(|| ControlMsg::SetIcmpRateLimit { per_second, burst });
        }
        self.planner = planner;
        let msgs = self.planner.commit(plan);
        self.send_plan(msgs);
        self.broadcast(|| ControlMsg::SetSpd(Box::new(spd.clone().with_flow_cache())));

        for name in &diff.removed {
            self.ike.remove_tunnel(now, name);
        }
        let by_name = |n: &str| target.tunnels.iter().find(|t| t.name == n);
        for c in &diff.changed {
            let (Some(t), Some(slot)) = (by_name(&c.name), slots.get(&c.name)) else {
                continue;
            };
            let done = match c.ike {
                None => Ok(()),
                Some(reload::IkeChange::Removed) => {
                    self.ike.remove_tunnel(now, &c.name);
                    Ok(())
                }
                Some(reload::IkeChange::Added) => {
                    self.ike
                        .add_tunnel(&target, slot, t, now, Box::new(SystemRng::new()))
                }
                Some(reload::IkeChange::Reestablish) => {
                    self.ike.update_tunnel(&target, slot, t, true, now)
                }
                Some(reload::IkeChange::NextExchange) => {
                    self.ike.update_tunnel(&target, slot, t, false, now)
                }
            };
            if let Err(e) = done {
                tracing::error!(tunnel = %c.name, error = %e, "reload: IKE change failed");
            }
        }
        for name in &diff.added {
            let (Some(t), Some(slot)) = (by_name(name), slots.get(name)) else {
                continue;
            };
            if t.ike.is_some() {
                if let Err(e) =
                    self.ike
                        .add_tunnel(&target, slot, t, now, Box::new(SystemRng::new()))
                {
                    tracing::error!(tunnel = %name, error = %e, "reload: IKE tunnel not added");
                }
            }
        }
        if !diff.control.is_empty() {
            self.ike.set_admission(&target.control);
        }
        if diff.log {
            if let Some(l) = crate::logging::get() {
                l.apply_config(&target);
            }
        }

        self.config = target;
        self.slots = slots;
        self.manual = manual;
        self.planner.set_names(self.slots.names());
        let plan = self.planner.plan(&[&self.manual, &self.ike.sas()]);
        for f in &plan.failed {
            tracing::error!(error = %f, "reload: an SA does not build");
        }
        let spd_changed = plan.peer_policies_changed();
        let msgs = self.planner.commit(plan);
        self.send_plan(msgs);
        if spd_changed {
            self.send_spd();
        }
        self.apply_ike();
        tracing::info!(
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// Applies `diff` (to `target`) unless something in it is refused, and
    /// reports.
    fn apply_diff(
        &mut self,
        action: String,
        target: GatewayConfig,
        diff: Diff,
        not_applied: Vec<String>,
    ) -> Result<ReloadReport, Error> {
        let mut report = ReloadReport {
            action,
            file: self.options.config_path.display().to_string(),
            applied: false,
            diff,
            not_applied,
            inbound_sas: 0,
            outbound_sas: 0,
        };
        if report.diff.refused.is_empty() {
            self.apply(target, &report.diff)?;
            report.applied = true;
        }
        report.inbound_sas = self.planner.installed().inbound();
        report.outbound_sas = self.planner.installed().outbound();
        Ok(report)
    }

    /// Re-reads the configuration file and takes every change the running
    /// gateway can take: tunnels added, removed or changed, routes, static
    /// neighbours, the log filter, IKE admission bounds, ICMP limits. A
    /// file that does not load changes nothing (`Err`); one that changes
    /// something fixed at start-up changes nothing either (the report
    /// lists what was refused and why).
    fn reload(&mut self) -> Result<ReloadReport, Error> {
        let _reloading = crate::systemd::Reloading::begin();
        let fresh = GatewayConfig::load(&self.options.config_path)
            .map_err(|e| format!("{e}; nothing changed"))?;
        let diff = reload::diff(&self.config, &fresh);
        let r = self.apply_diff("reload".into(), fresh, diff, Vec::new());
        crate::systemd::status(&self.status_line());
        r
    }

    /// Re-reads the configuration file and adds tunnel `name` from it, or
    /// takes its changes; every other difference between the file and the
    /// running configuration stays (listed as not applied).
    fn load_tunnel(&mut self, name: &str) -> Result<ReloadReport, Error> {
        let fresh = GatewayConfig::load(&self.options.config_path)
            .map_err(|e| format!("{e}; nothing changed"))?;
        let t = fresh
            .tunnels
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                format!(
                    "no tunnel {name:?} in {}; nothing changed",
                    self.options.config_path.display()
                )
            })?;
        // The tunnel names its interface by index into the file's list.
        let i = usize::from(t.interface);
        if fresh.interfaces.get(i) != self.config.interfaces.get(i) {
            return Err(format!(
                "tunnel {name}'s interface differs from the running gateway's interface {i} (interfaces need a restart); nothing changed"
            )
            .into());
        }
        let target = reload::with_tunnel(&self.config, t);
        let diff = reload::diff(&self.config, &target);
        let rest = reload::diff(&target, &fresh).lines();
        self.apply_diff(format!("load {name}"), target, diff, rest)
    }

    /// Removes tunnel `name` from the running gateway (for an IKE tunnel:
    /// its IKE SA deleted with the peer), whatever the file says; a later
    /// reload brings it back if the file still has it.
    fn unload_tunnel(&mut self, name: &str) -> Result<ReloadReport, Error> {
        if !self.config.tunnels.iter().any(|t| t.name == name) {
            return Err(format!("no running tunnel {name:?}").into());
        }
        let target = reload::without_tunnel(&self.config, name);
        let diff = reload::diff(&self.config, &target);
        let rest = match GatewayConfig::load(&self.options.config_path) {
            Ok(fresh) => reload::diff(&target, &fresh).lines(),
            Err(e) => vec![format!("the file does not load: {e}")],
        };
        self.apply_diff(format!("unload {name}"), target, diff, rest)
    }

    /// Starts IKE for tunnel `name` now.
    fn initiate(&mut self, name: &str) -> Result<String, Error> {
        self.ike_tunnel(name)?;
        let r = self.ike.initiate(Instant::now(), name);
        self.apply_ike();
        Ok(r?)
    }

    /// Deletes tunnel `name`'s IKE SA with the peer, and its Child SAs.
    fn terminate(&mut self, name: &str) -> Result<String, Error> {
        self.ike_tunnel(name)?;
        let r = self.ike.terminate(Instant::now(), name);
        self.apply_ike();
        Ok(r?)
    }

    /// `Ok` if tunnel `name` runs with IKE; why not otherwise.
    fn ike_tunnel(&self, name: &str) -> Result<(), Error> {
        match self.config.tunnels.iter().find(|t| t.name == name) {
            None => Err(format!("no running tunnel {name:?}").into()),
            Some(t) if t.ike.is_none() => Err(format!(
                "tunnel {name} is manually keyed: it has no IKE SA (unload or reload to change its SAs)"
            )
            .into()),
            Some(_) => Ok(()),
        }
    }

    /// Sends planned messages, each worker's in order. SA messages are
    /// never dropped (a blocking send: the worker drains its queue every
    /// poll).
    fn send_plan(&self, msgs: Vec<(u16, ControlMsg)>) {
        for (worker, msg) in msgs {
            self.send(worker, msg);
        }
    }

    /// The statistics now: every worker's counters (each given up to 2 s
    /// to answer), the ports', the IKE driver's and the sockets'. What
    /// `stats` prints and the metrics endpoint encodes.
    pub fn stats_snapshot(&self) -> crate::stats::StatsSnapshot {
        let workers = self.collect();
        self.snapshot_of(&workers)
    }

    /// [`Self::stats_snapshot`] from workers' counters already collected.
    fn snapshot_of(&self, workers: &[WorkerStats]) -> crate::stats::StatsSnapshot {
        use crate::stats::{build, ControlSnapshot, PortStats, Sources};
        let ports = self
            .ports
            .iter()
            .zip(&self.config.interfaces)
            .filter_map(|(p, i)| {
                let st = p.stats().ok()?;
                Some(PortStats {
                    name: i.name.clone(),
                    rx_packets: st.ipackets,
                    tx_packets: st.opackets,
                    rx_bytes: st.ibytes,
                    tx_bytes: st.obytes,
                    rx_missed: st.imissed,
                    rx_errors: st.ierrors,
                    tx_errors: st.oerrors,
                    rx_nombuf: st.rx_nombuf,
                })
            })
            .collect();
        let sock = self.socket.stats();
        build(Sources {
            uptime: self.started.elapsed(),
            workers,
            workers_asked: self.to_workers.len(),
            ports,
            tunnels: self
                .config
                .tunnels
                .iter()
                .map(|t| (t.name.clone(), t.ike.is_some()))
                .collect(),
            installed: self.planner.installed(),
            ike: self.ike.stats_snapshot(),
            control: ControlSnapshot {
                punted: self.punted,
                events: self.events,
                ike_unauth_waiting: self.from_workers.ike_new.len() as u64,
                ike_half_open_waiting: self.from_workers.ike_half_open.len() as u64,
                transmit_full: self.transmit_full,
                socket: crate::stats::NamedCounts(sock.fields()),
            },
            metrics: self.metrics.as_ref().map(|m| m.stats().counts()),
        })
    }

    /// `systemctl status`'s line.
    fn status_line(&self) -> String {
        format!(
            "running: {} workers, {} inbound SAs, {} outbound SAs",
            self.to_workers.len(),
            self.planner.installed().inbound(),
            self.planner.installed().outbound()
        )
    }

    fn collect(&self) -> Vec<WorkerStats> {
        let (tx, rx) = bounded(self.to_workers.len());
        for w in &self.to_workers {
            let _ = w.send(ControlMsg::CollectStats(tx.clone()));
        }
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while out.len() < self.to_workers.len() {
            match rx.recv_deadline(deadline) {
                Ok(s) => out.push(s),
                Err(_) => break,
            }
        }
        out.sort_by_key(|s| s.worker);
        out
    }

    fn handle_worker_msg(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Punt {
                worker,
                iface,
                packet,
            } => {
                self.punted += 1;
                tracing::trace!(worker, iface, len = packet.len(), "IKE packet punted");
                self.ike.handle_punt(Instant::now(), &packet);
                self.apply_ike();
            }
            WorkerMsg::NeighbourLearned { ip, mac, iface } => {
                tracing::debug!(%ip, iface, "neighbour confirmed");
                if self.learned.len() < MAX_LEARNED_NEIGHBOURS || self.learned.contains_key(&ip) {
                    self.learned.insert(ip, (mac, iface));
                }
                self.broadcast(|| ControlMsg::Neighbour { ip, mac, iface });
            }
            WorkerMsg::Event { worker, event } => {
                self.events += 1;
                tracing::warn!(worker, ?event, "SA event");
                let (direction, spi, ev) = match &event {
                    dataplane::esp::EngineEvent::Outbound(_, spi, ev) => ("out", spi.get(), ev),
                    dataplane::esp::EngineEvent::Inbound(spi, ev) => ("in", spi.get(), ev),
                };
                if matches!(
                    ev,
                    dataplane::esp::SaEvent::HardLifetime | dataplane::esp::SaEvent::SeqOverflow
                ) {
                    self.socket.emit(&Event::ChildSaExpired {
                        spi: api::spi_hex(spi),
                        direction: direction.into(),
                        limit: format!("{ev:?}"),
                    });
                }
                if self.ike.handle_sa_event(Instant::now(), event) {
                    self.apply_ike();
                }
            }
            // Built here: faulting in a big table's pages would stall the
            // worker.
            WorkerMsg::WantSpares {
                worker,
                inbound,
                owners,
            } => self.send(
                worker,
                ControlMsg::Spares(Box::new(Spares::build(inbound, owners))),
            ),
            // Freed here, off the data path.
            WorkerMsg::Retired(_) => {}
        }
    }

    /// Sends the SPD of the running configuration with the installed peer
    /// routes to every worker.
    fn send_spd(&self) {
        match spd_of_with_peers(
            &reload::policies(&self.config, &self.slots),
            &self.planner.installed().peer_policies(),
        ) {
            Ok(spd) => {
                self.broadcast(|| ControlMsg::SetSpd(Box::new(spd.clone().with_flow_cache())))
            }
            Err(e) => tracing::error!(error = %e, "cannot build the SPD with the peer routes"),
        }
    }

    /// Carries out what the IKE driver decided: its SA changes go through
    /// the planner (with the manual SAs, which they take precedence over
    /// in a tunnel's outbound slot) before its packets, so that an
    /// IKE_AUTH or CREATE_CHILD_SA response leaves after the inbound SA it
    /// announces is on its way to the worker.
    fn apply_ike(&mut self) {
        if self.ike.take_sas_changed() {
            let plan = self.planner.plan(&[&self.manual, &self.ike.sas()]);
            for f in &plan.failed {
                tracing::error!(error = %f, "cannot build an SA of an IKE tunnel");
            }
            self.ike.count_install_errors(plan.failed.len());
            let spd_changed = plan.peer_policies_changed();
            let msgs = self.planner.commit(plan);
            // New routes' SAs are in their slots before the SPD names
            // them; a route gone leaves its slot empty until this SPD
            // (its peer's SA is gone anyway).
            self.send_plan(msgs);
            if spd_changed {
                self.send_spd();
            }
        }
        for e in self.ike.take_events() {
            self.socket.emit(&e);
        }
        for a in self.ike.take_actions() {
            match a {
                IkeAction::Transmit(p) => {
                    if !self
                        .to_workers
                        .first()
                        .is_some_and(|tx| queue_transmit(tx, p))
                    {
                        self.transmit_full += 1;
                    }
                }
                IkeAction::Reresolve(ip) => self.broadcast(|| ControlMsg::Reresolve { ip }),
            }
        }
    }

    fn drain_workers(&mut self) -> bool {
        let mut turn = Turn::default();
        loop {
            match self.from_workers.next_in_turn(&mut turn) {
                Next::Msg(m) => self.handle_worker_msg(m),
                Next::Done => return true,
                Next::Disconnected => return false,
            }
        }
    }

    /// Waits up to `timeout` for anything from the workers or the socket.
    fn wait(&self, timeout: Duration) {
        let mut sel = self.from_workers.select();
        sel.recv(&self.requests);
        sel.recv(&self.snapshot_requests);
        let _ = sel.ready_timeout(timeout);
    }

    /// Answers the control socket's waiting commands, a few per turn.
    fn serve_requests(&mut self) {
        for _ in 0..REQUESTS_PER_TURN {
            let Ok(r) = self.requests.try_recv() else {
                break;
            };
            let answer = self.command(r.command);
            let _ = r.reply.send(answer);
        }
        // One snapshot answers every scrape waiting (the metrics thread
        // keeps at most one request in flight).
        if let Ok(first) = self.snapshot_requests.try_recv() {
            let snap = self.stats_snapshot();
            let _ = first.reply.send(snap.clone());
            while let Ok(r) = self.snapshot_requests.try_recv() {
                let _ = r.reply.send(snap.clone());
            }
        }
    }

    /// One API command (checked by the socket's thread). Each is bounded
    /// in time: only `stats` and `child-sas` wait, for the workers'
    /// counters, at most [`Control::collect`]'s deadline.
    fn command(&mut self, command: Command) -> Answer {
        let now = Instant::now();
        match command {
            Command::Version => api::to_result(&api::version()),
            Command::Tunnels => api::to_result(&self.tunnel_views(now, false)),
            Command::IkeSas => {
                let sas: Vec<api::IkeSaView> = self
                    .ike
                    .tunnel_views(now)
                    .into_iter()
                    .flat_map(|t| {
                        t.ike_sa
                            .into_iter()
                            .chain(t.peers.into_iter().map(|p| p.ike_sa))
                    })
                    .collect();
                api::to_result(&sas)
            }
            Command::ChildSas => {
                let sas: Vec<api::ChildSaView> = self
                    .tunnel_views(now, true)
                    .into_iter()
                    .flat_map(|t| t.child_sas)
                    .collect();
                api::to_result(&sas)
            }
            Command::Policies => api::to_result(&api::policies(&self.config)),
            Command::Routes => api::to_result(&api::routes(&self.config)),
            Command::Neighbours => api::to_result(&api::neighbours(
                &self.config,
                self.learned.iter().map(|(ip, (mac, i))| (*ip, *mac, *i)),
            )),
            Command::Stats => {
                let snapshot = self.stats_snapshot();
                let mut view = api::StatsView::from_lines(&format_stats(&snapshot));
                view.snapshot = serde_json::to_value(&snapshot).ok();
                api::to_result(&view)
            }
            Command::Rekey { tunnel } => self.rekey(&tunnel),
            Command::Redirect { tunnel, gateway } => self.redirect(&tunnel, &gateway),
            Command::Reload => self.reload_and_report("socket"),
            Command::Load { tunnel } => {
                let r = self.load_tunnel(&tunnel);
                self.report_change("load", r)
            }
            Command::Unload { tunnel } => {
                let r = self.unload_tunnel(&tunnel);
                self.report_change("unload", r)
            }
            Command::Initiate { tunnel } => self
                .initiate(&tunnel)
                .map(|m| serde_json::json!({ "message": m.trim_end() }))
                .map_err(|e| ApiError::failed(e.to_string())),
            Command::Terminate { tunnel } => self
                .terminate(&tunnel)
                .map(|m| serde_json::json!({ "message": m.trim_end() }))
                .map_err(|e| ApiError::failed(e.to_string())),
            Command::Log { filter } => self.log(filter),
            // Served by the socket's thread; never forwarded.
            Command::Subscribe => Err(ApiError::bad_request(
                "subscribe is served by the socket itself",
            )),
        }
    }

    /// Every tunnel, manual and IKE, in file order; with `counters`, each
    /// Child SA's packets and bytes from the workers.
    fn tunnel_views(&self, now: Instant, counters: bool) -> Vec<api::TunnelView> {
        // By name: the IKE driver keeps its tunnels in the order they were
        // added (a `load` appends) and keeps a removed one until its DELETE
        // is answered; the running configuration's order and list win.
        let mut views: std::collections::HashMap<String, api::TunnelView> =
            api::manual_tunnels(&self.config)
                .into_iter()
                .chain(self.ike.tunnel_views(now))
                .filter(|v| v.state != "removed-deleting")
                .map(|v| (v.name.clone(), v))
                .collect();
        let mut out: Vec<api::TunnelView> = self
            .config
            .tunnels
            .iter()
            .filter_map(|t| views.remove(&t.name))
            .collect();
        if counters {
            let mut by_spi: BTreeMap<(bool, u32), api::SaCountersView> = BTreeMap::new();
            for w in self.collect() {
                for (inbound, list) in [(false, &w.outbound), (true, &w.inbound)] {
                    for sa in list {
                        let c = by_spi.entry((inbound, sa.spi.get())).or_default();
                        c.packets += sa.counters.packets;
                        c.bytes += sa.counters.bytes;
                    }
                }
            }
            let find = |inbound: bool, spi: &str| {
                u32::from_str_radix(spi, 16)
                    .ok()
                    .and_then(|s| by_spi.get(&(inbound, s)).copied())
            };
            for t in out.iter_mut() {
                let peers = t.peers.iter_mut().flat_map(|p| p.child_sas.iter_mut());
                for c in t.child_sas.iter_mut().chain(peers) {
                    c.inbound = find(true, &c.spi_in);
                    c.outbound = find(false, &c.spi_out);
                }
            }
        }
        out
    }

    fn rekey(&mut self, tunnel: &str) -> Answer {
        match self.config.tunnels.iter().find(|t| t.name == tunnel) {
            None => return Err(ApiError::not_found(format!("no tunnel {tunnel:?}"))),
            Some(t) if t.ike.is_none() => {
                return Err(ApiError::failed(format!(
                    "tunnel {tunnel} is manually keyed: change its SAs and reload"
                )))
            }
            Some(_) => {}
        }
        let r = self.ike.rekey(Instant::now(), tunnel);
        self.apply_ike();
        match r {
            Ok(message) => Ok(serde_json::json!({ "message": message.trim_end() })),
            Err(e) => Err(ApiError::failed(e)),
        }
    }

    /// RFC 5685 §5 (`redirect`): the tunnel's established clients go to
    /// `gateway`.
    fn redirect(&mut self, tunnel: &str, gateway: &str) -> Answer {
        match self.config.tunnels.iter().find(|t| t.name == tunnel) {
            None => return Err(ApiError::not_found(format!("no tunnel {tunnel:?}"))),
            Some(t) if t.ike.is_none() => {
                return Err(ApiError::failed(format!(
                    "tunnel {tunnel} is manually keyed: it has no IKE peer to redirect"
                )))
            }
            Some(_) => {}
        }
        let r = self.ike.redirect(Instant::now(), tunnel, gateway);
        self.apply_ike();
        match r {
            Ok(message) => Ok(serde_json::json!({ "message": message.trim_end() })),
            Err(e) => Err(ApiError::failed(e)),
        }
    }

    fn log(&self, filter: Option<String>) -> Answer {
        let Some(f) = &self.options.log_filter else {
            return Err(ApiError::failed(
                "this gateway cannot read or change its log filter at run time",
            ));
        };
        if let Some(new) = filter {
            f.set(&new)
                .map_err(|e| ApiError::bad_request(format!("log filter {new:?}: {e}")))?;
            tracing::info!(filter = %new, "log filter changed through the control socket");
        }
        api::to_result(&api::LogView { filter: f.get() })
    }

    /// Reloads, logs the outcome and tells subscribers; `trigger` says
    /// who asked (`socket`, `sighup`).
    fn reload_and_report(&mut self, trigger: &str) -> Answer {
        let r = self.reload();
        self.report_change(trigger, r)
    }

    /// The answer to a reload, `load` or `unload`: the report (what
    /// changed, or what was refused and why) as the result, or as the
    /// error's message when nothing was applied; logged and sent to
    /// subscribers either way.
    fn report_change(&mut self, trigger: &str, r: Result<ReloadReport, Error>) -> Answer {
        let (ok, message, report) = match &r {
            Ok(rep) => (rep.applied, rep.to_string(), serde_json::to_value(rep).ok()),
            Err(e) => (false, e.to_string(), None),
        };
        let message = message.trim_end().to_string();
        if ok {
            tracing::info!(trigger, "{message}");
        } else {
            tracing::error!(trigger, error = %message, "configuration change refused");
        }
        self.socket.emit(&Event::Reload {
            trigger: trigger.into(),
            ok,
            message: message.clone(),
        });
        if ok {
            Ok(serde_json::json!({ "message": message, "report": report }))
        } else {
            Err(ApiError::failed(message))
        }
    }

    /// A SIGHUP since the last turn: reload.
    fn reload_on_signal(&mut self) {
        let hup = self
            .options
            .reload_signal
            .as_ref()
            .is_some_and(|f| f.swap(false, Ordering::Relaxed));
        if hup {
            let _ = self.reload_and_report("sighup");
        }
    }
}

/// The configured SPD, compiled here on the control thread so that the
/// workers (which share the compiled classifier) never build it.
/// The SPD of `policies` with the per-peer return routes ahead of them:
/// each route's entries take the priority of its tunnel's first PROTECT
/// policy and are inserted first, so they win over it (and over any
/// later policy of that priority) while a policy the operator ranked
/// before the tunnel's (a BYPASS, say) still comes first. The
/// classifier's lookup cost does not grow with the number of routes.
fn spd_of_with_peers(policies: &[Policy], peers: &[PeerPolicy]) -> Result<Spd, Error> {
    let mut spd = Spd::new();
    let mut priority: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
    for p in policies {
        if let Action::Protect(SaRef(t)) = p.action {
            priority.entry(t).or_insert(p.priority);
        }
    }
    for r in peers {
        let Ok(t) = u32::try_from(r.tunnel) else {
            continue;
        };
        let priority = priority.get(&t).copied().unwrap_or(0);
        for sel in &r.selectors {
            spd.insert(Policy {
                selector: sel.clone(),
                action: Action::Protect(r.slot),
                priority,
            })?;
        }
    }
    for p in policies {
        spd.insert(p.clone())?;
    }
    spd.compile();
    Ok(spd)
}

fn spd_of(policies: &[Policy]) -> Result<Spd, Error> {
    let mut spd = Spd::new();
    for p in policies {
        spd.insert(p.clone())?;
    }
    spd.compile();
    Ok(spd)
}

/// Counters in a stable `key value` form, one per line, every value a
/// number: easy for people and scripts alike (see
/// [`crate::stats::StatsSnapshot::to_text`]).
pub fn format_stats(snapshot: &crate::stats::StatsSnapshot) -> String {
    snapshot.to_text()
}

/// EAL arguments for the configuration: lcores, memory (on hugepages or
/// not), PCI devices, telemetry, a unique prefix.
fn eal_args(config: &GatewayConfig, hugepages: bool) -> Vec<String> {
    crate::eal_args::build(
        "espresso",
        &main_lcore(config).to_string(),
        config.dataplane.memory_mb,
        &crate::eal_args::gateway_options(config, hugepages),
        &config.dataplane.eal_args,
    )
}

/// Makes DPDK's telemetry socket reachable at `<runtime_dir>/dpdk_telemetry.v2`
/// (a symbolic link): DPDK puts it in EAL's runtime directory, which for
/// root is always `/var/run/dpdk/<file-prefix>`, and the prefix is unique
/// per process. A link that still leads to a live socket belongs to
/// another gateway and is left alone. Returns the link.
fn link_telemetry(eal: &Eal, runtime_dir: &std::path::Path) -> Option<PathBuf> {
    let socket = eal.telemetry_socket()?;
    let link = runtime_dir.join(dpdk::TELEMETRY_SOCKET);
    if let Err(e) = std::fs::create_dir_all(runtime_dir) {
        tracing::warn!(dir = %runtime_dir.display(), error = %e, socket = %socket.display(), "telemetry: cannot create the runtime directory");
        return None;
    }
    if std::fs::symlink_metadata(&link).is_ok() {
        if socket_answers(&link) {
            tracing::warn!(link = %link.display(), socket = %socket.display(), "telemetry: the link is in use by another gateway (give each its own runtime_dir)");
            return None;
        }
        let _ = std::fs::remove_file(&link);
    }
    match std::os::unix::fs::symlink(&socket, &link) {
        Ok(()) => Some(link),
        Err(e) => {
            tracing::warn!(link = %link.display(), error = %e, socket = %socket.display(), "telemetry: cannot link the socket");
            None
        }
    }
}

/// Whether a telemetry socket (`SOCK_SEQPACKET`) at `path` has a
/// listener: a gateway killed without cleaning up leaves the socket's file
/// behind, which then refuses connections.
fn socket_answers(path: &std::path::Path) -> bool {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .is_ok_and(|fd| connect(fd.as_raw_fd(), &addr).is_ok())
}

/// Removes the telemetry link and EAL's runtime directory when `run`
/// returns, whether it stopped or failed to start.
struct RuntimeFiles {
    eal: &'static Eal,
    link: Option<PathBuf>,
}

impl Drop for RuntimeFiles {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
        self.eal.remove_runtime_files();
    }
}

/// Plans and opens the port of `iface` (queues, rings and RSS fitted to
/// what the device offers, see [`crate::port_plan`]).
fn open_port(
    eal: &Eal,
    iface: &crate::config::Interface,
    workers: u16,
    pool: &Mempool,
) -> Result<Port, Error> {
    let info = Port::probe(eal, &iface.device).map_err(|e| -> Error {
        match iface.device_kind() {
            Ok(crate::host::Device::Pci { addr, .. }) => {
                let bound = crate::host::pci_device(
                    std::path::Path::new(crate::host::SYSFS_PCI_DEVICES),
                    addr,
                )
                .map(|d| format!("{:?}", d.driver))
                .unwrap_or_else(|e| e);
                format!("interface {}: DPDK has no port for PCI device {addr} ({e}); its driver: {bound}; bind it to vfio-pci (`espresso check` tells more)", iface.name).into()
            }
            _ => format!("interface {}: {e}", iface.name).into(),
        }
    })?;
    let limits = crate::port_plan::DeviceLimits {
        driver: info.driver.clone(),
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
        rx_desc: crate::port_plan::DescRange {
            min: info.rx_desc.min,
            max: info.rx_desc.max,
            align: info.rx_desc.align,
        },
        tx_desc: crate::port_plan::DescRange {
            min: info.tx_desc.min,
            max: info.tx_desc.max,
            align: info.tx_desc.align,
        },
        rss_offloads: info.rss_offloads,
    };
    let plan = crate::port_plan::plan_port(iface, workers, &limits)?;
    for note in &plan.notes {
        tracing::info!(interface = %iface.name, "{note}");
    }
    let mut pc = PortConfig::new(pool.clone());
    pc.rx_queues = plan.rx_queues;
    pc.tx_queues = plan.tx_queues;
    pc.rx_desc = plan.rx_desc;
    pc.tx_desc = plan.tx_desc;
    pc.rss_hf = plan.rss.hash;
    let port = Port::open(eal, &iface.device, &pc)
        .map_err(|e| format!("interface {}: {e}", iface.name))?;
    tracing::info!(
        interface = %iface.name,
        device = %iface.device,
        driver = %info.driver,
        mac = ?port.mac_addr(),
        rx_queues = port.rx_queue_count(),
        tx_queues = port.tx_queue_count(),
        rx_desc = port.desc().0,
        tx_desc = port.desc().1,
        rss = %crate::port_plan::rss::names(port.rss_hf()),
        "port up: {}",
        plan.rss.why
    );
    Ok(port)
}

/// The core EAL's main lcore (and this control thread) runs on.
fn main_lcore(config: &GatewayConfig) -> usize {
    // Workers are registered with DPDK as non-EAL threads (they take lcore
    // ids of their own), so EAL itself runs on the list's first core only.
    config.dataplane.lcore_ids().first().copied().unwrap_or(0) as usize
}

/// Cores for the workers: the configured lcores after the first (the
/// control thread's) that exist on this machine, in turn; if none of them
/// exists, the machine's cores after the first, in turn.
fn worker_cores(config: &GatewayConfig) -> Vec<Option<core_affinity::CoreId>> {
    let n = config.dataplane.workers as usize;
    let present = core_affinity::get_core_ids().unwrap_or_default();
    let wanted: Vec<core_affinity::CoreId> = config
        .dataplane
        .lcore_ids()
        .into_iter()
        .skip(1)
        .filter_map(|id| present.iter().copied().find(|c| c.id == id as usize))
        .collect();
    let pick: Vec<core_affinity::CoreId> = if !wanted.is_empty() {
        wanted
    } else if present.len() > 1 {
        present[1..].to_vec()
    } else {
        present
    };
    (0..n)
        .map(|i| pick.get(i % pick.len().max(1)).copied())
        .collect()
}

/// Runs the gateway until `stop` is set. Returns the final statistics text.
pub fn run(
    config: GatewayConfig,
    options: RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<String, Error> {
    let workers = config.dataplane.workers as usize;
    // Before EAL pins this thread to its lcore and narrows what we see.
    let cores = worker_cores(&config);
    let huge = crate::host::decide_hugepages(
        config.dataplane.hugepages,
        config.dataplane.memory_mb,
        &crate::host::Hugepages::read(),
    )
    .map_err(|e| format!("dataplane.hugepages: {e}"))?;
    tracing::info!(hugepages = huge.use_hugepages, "EAL memory: {}", huge.why);
    crate::eal_args::pin_before_eal(main_lcore(&config));
    let args = eal_args(&config, huge.use_hugepages);
    tracing::info!("EAL arguments: {}", args.join(" "));
    // EAL lives until the process exits (see `Eal`).
    let eal: &'static Eal = Box::leak(Box::new(Eal::init(args)?));
    let telemetry = link_telemetry(eal, &config.dataplane.runtime_dir);
    let _runtime_files = RuntimeFiles {
        eal,
        link: telemetry.clone(),
    };
    match (&telemetry, eal.telemetry_socket()) {
        (Some(link), Some(socket)) => {
            tracing::info!(socket = %link.display(), target = %socket.display(), "telemetry")
        }
        (None, Some(socket)) => tracing::info!(socket = %socket.display(), "telemetry"),
        _ => tracing::info!("telemetry off"),
    }
    let pool = Mempool::new(
        eal,
        &MempoolConfig {
            name: "espresso_pool".into(),
            size: config.dataplane.mbufs,
            cache_size: 256.min(config.dataplane.mbufs / 4),
            data_room: 2048 + 128,
        },
    )?;
    tracing::info!(mbufs = pool.size(), memory = ?pool.memory(), "mbuf pool");
    let pool_free_before = pool.available();

    // Ports and the data path's view of the interfaces.
    let mut ports = Vec::new();
    let mut ifaces = Vec::new();
    for iface in &config.interfaces {
        let port = open_port(eal, iface, workers as u16, &pool)?;
        ifaces.push(Interface {
            name: iface.name.clone(),
            mac: port.mac_addr(),
            role: match iface.role {
                crate::config::Role::Lan => Role::Lan,
                crate::config::Role::Wan => Role::Wan,
            },
            addrs: iface.addresses.clone(),
            mtu: iface.mtu,
            mss_clamp: iface.mss_clamp,
        });
        ports.push(port);
    }

    let ike = IkeDriver::new(&config, Instant::now(), &mut || Box::new(SystemRng::new()))?;
    let (to_control, from_workers) = control_queues(ike.spi_tables());
    let handoffs: Vec<Arc<ArrayQueue<Handoff<Mbuf>>>> = (0..workers)
        .map(|_| Arc::new(ArrayQueue::new(2048)))
        .collect();
    let mut to_workers = Vec::new();
    let mut handles = Vec::new();
    let idle_sleep = options.idle_sleep;
    let eal_ref = eal;
    // One log of neighbour requests: an answer reaches whichever worker the
    // NIC gives it to.
    let solicits = Arc::new(dataplane::gateway::SolicitLog::new());
    for w in 0..workers {
        let (tx, rx) = bounded::<ControlMsg>(CONTROL_QUEUE);
        to_workers.push(tx);
        let mut node: Node<Mbuf> = Node::new(w as u16, ifaces.clone(), config.route_table());
        node.set_icmp_rate_limit(
            config.dataplane.icmp_errors_per_second,
            config.dataplane.icmp_error_burst,
        );
        node.share_solicit_log(solicits.clone());
        for n in &config.neighbours {
            node.add_static_neighbour(n.address, n.mac.0, n.interface);
        }
        let worker_ports = WorkerPorts {
            // A port with fewer RX queues than workers is polled by the
            // first ones only.
            rx: ports.iter().map(|p| p.rx_queue(w as u16)).collect(),
            tx: ports
                .iter()
                .map(|p| p.tx_queue(w as u16).ok_or("tx queue"))
                .collect::<Result<_, _>>()?,
        };
        let worker = Worker::new(
            w as u16,
            node,
            worker_ports,
            pool.clone(),
            rx,
            to_control.clone(),
            handoffs[w].clone(),
            handoffs.clone(),
            idle_sleep,
        )
        // Nothing is received before the starting configuration is in.
        .hold_rx();
        let core = cores[w];
        handles.push(
            std::thread::Builder::new()
                .name(format!("espresso-w{w}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let lcore = register_thread(eal_ref);
                    tracing::info!(worker = w, core = ?core, lcore = ?lcore, "worker started");
                    // Warm the crypto backends' per-thread state here, not
                    // on the first packet.
                    for alg in dataplane::crypto::Algorithm::ALL {
                        let _ = dataplane::crypto::available_backends(alg);
                    }
                    let stats = worker.run();
                    unregister_thread();
                    stats
                })?,
        );
    }
    drop(to_control);

    let socket_path = config.control.socket.clone();
    let access = Access {
        group: config.control.socket_group.as_ref().map(|g| g.gid),
    };
    let (socket, requests) = ControlSocket::bind(&socket_path, access)?;
    let (metrics, snapshot_requests) = match config.metrics.listen {
        Some(addr) => {
            let (m, rx) = MetricsServer::bind(addr)?;
            tracing::info!(listen = %m.local_addr(), "metrics endpoint up");
            (Some(m), rx)
        }
        None => (None, crossbeam::channel::never()),
    };
    let planner = Planner::new(
        workers,
        config.dataplane.crypto_backend,
        config.tunnels.iter().map(|t| t.name.clone()).collect(),
    );
    let slots = Slots::of(&config);
    let mut control = Control {
        ike,
        planner,
        manual: Wanted::new(),
        config,
        options,
        to_workers,
        from_workers,
        requests,
        socket,
        ports,
        punted: 0,
        events: 0,
        transmit_full: 0,
        started: Instant::now(),
        slots,
        metrics,
        snapshot_requests,
        learned: BTreeMap::new(),
    };
    control.apply_config()?;
    // Each worker answers after the SAs and policies queued before: once
    // all have, the gateway is up (systemd's READY=1) and its workers start
    // receiving.
    control.collect();
    control.broadcast(|| ControlMsg::StartForwarding);
    crate::systemd::ready(&control.status_line());
    let mut watchdog = crate::systemd::Watchdog::from_env();

    tracing::info!(socket = %socket_path.display(), workers, "espresso running");
    control.ike.start(Instant::now());
    control.apply_ike();

    while !stop.load(Ordering::Relaxed) {
        watchdog.ping(Instant::now());
        control.wait(Duration::from_millis(20));
        if !control.drain_workers() {
            break;
        }
        control.serve_requests();
        control.reload_on_signal();
        control.ike.tick(Instant::now());
        control.apply_ike();
    }

    tracing::info!("stopping");
    crate::systemd::stopping();
    let before_stop = control.collect();
    control.broadcast(|| ControlMsg::Stop);
    let mut finals = Vec::new();
    for h in handles {
        if let Ok(s) = h.join() {
            finals.push(s);
        }
    }
    finals.sort_by_key(|s| s.worker);
    let _ = before_stop;
    // The endpoint goes first: nothing answers its scrapes any more.
    drop(control.metrics.take());
    let mut report = format_stats(&control.snapshot_of(&finals));
    drop(control.socket);
    drop(control.ports);
    // Ports are closed; every mbuf must be back.
    let pool_free_after = pool.available();
    report.push_str(&format!(
        "mempool.free_before {pool_free_before}\nmempool.free_after {pool_free_after}\n"
    ));
    if pool_free_after != pool_free_before {
        tracing::error!(pool_free_before, pool_free_after, "mbufs leaked");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPD with three peers' return routes: a packet to each peer's
    /// address selects that peer's slot; one inside the template's bound
    /// that no peer claimed selects the template's (empty) slot; a BYPASS
    /// the operator ranked first still wins over a route.
    #[test]
    fn peer_routes_go_ahead_of_the_template_policy() {
        use dataplane::esp::{FlowKey, Selector};
        let sel = |src: &str, dst: &str| Selector::new(src.parse().unwrap(), dst.parse().unwrap());
        let bypass = Policy {
            selector: sel("10.2.0.0/24", "10.9.9.0/24"),
            action: Action::Bypass,
            priority: 5,
        };
        let template = Policy {
            selector: sel("10.2.0.0/24", "10.9.0.0/16"),
            action: Action::Protect(SaRef(0)),
            priority: 10,
        };
        let peers: Vec<PeerPolicy> = (1..=3u32)
            .map(|i| PeerPolicy {
                tunnel: 0,
                slot: SaRef(1 + i),
                selectors: vec![sel("10.2.0.0/24", &format!("10.9.{i}.0/24"))],
            })
            .chain(std::iter::once(PeerPolicy {
                tunnel: 0,
                slot: SaRef(9),
                selectors: vec![sel("10.2.0.0/24", "10.9.9.1/32")],
            }))
            .collect();
        let spd = spd_of_with_peers(&[bypass, template], &peers).unwrap();
        let to = |dst: &str| {
            let key = FlowKey {
                src: "10.2.0.5".parse().unwrap(),
                dst: dst.parse().unwrap(),
                proto: 1,
                sport: 0,
                dport: 0,
            };
            spd.lookup(&key).map(|p| p.action)
        };
        for i in 1..=3u32 {
            assert_eq!(
                to(&format!("10.9.{i}.7")),
                Some(Action::Protect(SaRef(1 + i)))
            );
        }
        assert_eq!(to("10.9.4.7"), Some(Action::Protect(SaRef(0))));
        assert_eq!(to("10.9.9.1"), Some(Action::Bypass));
    }

    /// A flood of IKE replies meets a worker that takes nothing: the
    /// control thread is never blocked, the surplus is refused (and
    /// counted by the caller), and SA messages still find room.
    #[test]
    fn transmits_never_block_and_leave_room_for_installs() {
        let (tx, rx) = bounded::<ControlMsg>(CONTROL_QUEUE);
        let sent = (0..3 * CONTROL_QUEUE)
            .filter(|_| queue_transmit(&tx, vec![0x45; 60]))
            .count();
        assert_eq!(sent, CONTROL_QUEUE - CONTROL_QUEUE / 4);
        assert_eq!(rx.len(), sent);
        let spi = dataplane::esp::Spi::new(0x1000).unwrap();
        for _ in 0..CONTROL_QUEUE / 4 {
            tx.try_send(ControlMsg::RemoveInbound(spi))
                .expect("SA messages have their quarter");
        }
        assert!(!queue_transmit(&tx, vec![0x45; 60]));
        // Once the worker catches up, replies flow again.
        for _ in 0..CONTROL_QUEUE / 2 {
            rx.try_recv().unwrap();
        }
        assert!(queue_transmit(&tx, vec![0x45; 60]));
    }
}
