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
use dataplane::esp::{DropReason, Spd};
use dataplane::gateway::msg::SaStats;
use dataplane::gateway::neigh::Refused;
use dataplane::gateway::{
    control_queues, ControlMsg, FromWorkers, GwDrop, Handoff, Interface, Next, Node, QueueDrops,
    Role, Spares, Turn, WorkerMsg, WorkerStats,
};
use dpdk::{
    register_thread, unregister_thread, Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig,
};
use dpdk::{Worker, WorkerPorts};

use crate::config::GatewayConfig;
use crate::control_socket::{Access, ControlSocket, Request};
use crate::ike_driver::{IkeAction, IkeDriver, SystemRng};
use crate::sa::{Planner, Wanted};

/// Everything that went wrong starting or running the gateway.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Options from the command line that are not in the file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration file (re-read on `reload`).
    pub config_path: PathBuf,
    /// Sleep this long when a poll finds nothing (0: spin).
    pub idle_sleep: Duration,
}

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

    /// Brings the workers' SPD and SAs in line with `fresh` (`None`: the
    /// configuration the gateway started with) and IKE's Child SAs. A
    /// policy or manual SA that does not build fails the whole step:
    /// nothing is sent and the configuration stays as it was.
    fn apply_config(&mut self, fresh: Option<GatewayConfig>) -> Result<(), Error> {
        let config = fresh.as_ref().unwrap_or(&self.config);
        let spd = spd_of(config)?;
        let manual = Wanted::from_config(config);
        let plan = self.planner.plan(&[&manual, &self.ike.sas()]);
        if let Some(f) = plan.failed.first() {
            return Err(format!("{f} ({} SAs failed)", plan.failed.len()).into());
        }
        if let Some(fresh) = fresh {
            self.config = fresh;
        }
        self.broadcast(|| ControlMsg::SetSpd(Box::new(spd.clone().with_flow_cache())));
        self.manual = manual;
        let msgs = self.planner.commit(plan);
        self.send_plan(msgs);
        Ok(())
    }

    /// Sends planned messages, each worker's in order. SA messages are
    /// never dropped (a blocking send: the worker drains its queue every
    /// poll).
    fn send_plan(&self, msgs: Vec<(u16, ControlMsg)>) {
        for (worker, msg) in msgs {
            self.send(worker, msg);
        }
    }

    /// Re-reads the configuration file and applies SA and policy changes.
    /// Interfaces, routes, data-plane settings and `[tunnel.ike]` sections
    /// need a restart (the IKE driver keeps the configuration it started
    /// with).
    fn reload(&mut self) -> Result<String, Error> {
        let _reloading = crate::systemd::Reloading::begin();
        let fresh = GatewayConfig::load(&self.options.config_path)?;
        if fresh.interfaces.len() != self.config.interfaces.len()
            || fresh
                .tunnels
                .iter()
                .map(|t| &t.name)
                .ne(self.config.tunnels.iter().map(|t| &t.name))
        {
            return Err(
                "reload: interfaces or the list of tunnels changed; restart espresso".into(),
            );
        }
        self.apply_config(Some(fresh))?;
        if let Some(l) = crate::logging::get() {
            l.apply_config(&self.config);
        }
        crate::systemd::status(&self.status_line());
        Ok(format!(
            "reloaded {}: {} inbound SAs, {} outbound SAs\n",
            self.options.config_path.display(),
            self.planner.installed().inbound(),
            self.planner.installed().outbound()
        ))
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
                self.broadcast(|| ControlMsg::Neighbour { ip, mac, iface });
            }
            WorkerMsg::Event { worker, event } => {
                self.events += 1;
                tracing::warn!(worker, ?event, "SA event");
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
            let msgs = self.planner.commit(plan);
            self.send_plan(msgs);
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
        let _ = sel.ready_timeout(timeout);
    }

    /// Answers the control socket's waiting commands.
    fn serve_requests(&mut self) {
        while let Ok(r) = self.requests.try_recv() {
            let reply = self.command(&r.command);
            let _ = r.reply.send(reply);
        }
    }

    fn command(&mut self, command: &str) -> String {
        match command {
            "stats" => {
                let mut s = format_stats(
                    &self.collect(),
                    &self.ports,
                    &self.config,
                    self.punted,
                    self.started,
                );
                s.push_str(&format!(
                    "control.ike_unauth_waiting {}\ncontrol.ike_half_open_waiting {}\ndrop.control.transmit_full {}\n",
                    self.from_workers.ike_new.len(),
                    self.from_workers.ike_half_open.len(),
                    self.transmit_full
                ));
                s.push_str(&self.socket.stats().lines());
                s.push_str(&self.ike.stats_lines());
                s
            }
            "tunnels" => self.ike.tunnels_report(Instant::now()),
            _ if command.starts_with("rekey ") => {
                let r = self
                    .ike
                    .rekey(Instant::now(), command["rekey ".len()..].trim());
                self.apply_ike();
                match r {
                    Ok(s) => s,
                    Err(e) => format!("error: {e}\n"),
                }
            }
            "reload" => match self.reload() {
                Ok(s) => s,
                Err(e) => format!("error: {e}\n"),
            },
            other => {
                format!("error: unknown command {other:?} (stats, tunnels, rekey TUNNEL, reload)\n")
            }
        }
    }
}

/// The configured SPD, compiled here on the control thread so that the
/// workers (which share the compiled classifier) never build it.
fn spd_of(config: &GatewayConfig) -> Result<Spd, Error> {
    let mut spd = Spd::new();
    for p in config.policies() {
        spd.insert(p.clone())?;
    }
    spd.compile();
    Ok(spd)
}

/// Counters in a stable `key value` form (one per line, after a header),
/// easy for people and scripts alike.
pub fn format_stats(
    workers: &[WorkerStats],
    ports: &[Port],
    config: &GatewayConfig,
    punted: u64,
    started: Instant,
) -> String {
    let mut s = String::new();
    let mut line = |k: String, v: u64| s.push_str(&format!("{k} {v}\n"));
    line("uptime_s".into(), started.elapsed().as_secs());
    for (i, p) in ports.iter().enumerate() {
        let name = &config.interfaces[i].name;
        if let Ok(st) = p.stats() {
            line(format!("port.{name}.rx_packets"), st.ipackets);
            line(format!("port.{name}.tx_packets"), st.opackets);
            line(format!("port.{name}.rx_bytes"), st.ibytes);
            line(format!("port.{name}.tx_bytes"), st.obytes);
            line(format!("port.{name}.rx_missed"), st.imissed);
            line(format!("port.{name}.rx_errors"), st.ierrors);
            line(format!("port.{name}.tx_errors"), st.oerrors);
            line(format!("port.{name}.rx_nombuf"), st.rx_nombuf);
        }
    }
    let mut total = dataplane::gateway::NodeCounters::default();
    let mut queue_total = QueueDrops::default();
    for w in workers {
        let id = w.worker;
        let n = &w.node;
        total.merge(n);
        queue_total.merge(&w.queue_drops);
        for (k, v) in node_fields(n) {
            line(format!("worker.{id}.{k}"), v);
        }
        for (k, v) in w.queue_drops.fields() {
            line(format!("worker.{id}.queue.{k}"), v);
        }
        line(format!("worker.{id}.max_poll_gap_us"), w.max_poll_gap_us);
        line(format!("worker.{id}.max_control_us"), w.max_control_us);
        line(
            format!("worker.{id}.max_control_cpu_us"),
            w.max_control_cpu_us,
        );
        line(format!("worker.{id}.spd_cache_hits"), w.spd_cache_hits);
        line(format!("worker.{id}.spd_cache_misses"), w.spd_cache_misses);
    }
    for (k, v) in node_fields(&total) {
        line(format!("total.{k}"), v);
    }
    for r in GwDrop::ALL {
        line(format!("drop.{}", r.name()), total.drops[r.index()]);
    }
    for r in DropReason::ALL {
        line(format!("drop.esp.{}", r.name()), total.esp_drops[r.index()]);
    }
    for (k, v) in queue_total.fields() {
        line(format!("drop.queue.{k}"), v);
    }
    for r in Refused::ALL {
        line(
            format!("neighbour.refused.{}", r.name()),
            total.neighbour_refused[r.index()],
        );
    }
    line("control.punted".into(), punted);
    let mut sas: BTreeMap<(u8, u32), (&SaStats, u16)> = BTreeMap::new();
    for w in workers {
        for sa in &w.outbound {
            sas.insert((0, sa.spi.get()), (sa, w.worker));
        }
        for sa in &w.inbound {
            sas.insert((1, sa.spi.get()), (sa, w.worker));
        }
    }
    for ((dir, spi), (sa, worker)) in sas {
        let d = if dir == 0 { "out" } else { "in" };
        let k = format!("sa.{d}.{spi:#010x}");
        s.push_str(&format!(
            "{k}.algorithm {} worker {}\n",
            sa.algorithm, worker
        ));
        s.push_str(&format!("{k}.packets {}\n", sa.counters.packets));
        s.push_str(&format!("{k}.bytes {}\n", sa.counters.bytes));
        s.push_str(&format!("{k}.seq {}\n", sa.seq));
        for r in DropReason::ALL {
            let v = sa.counters.drops_for(r);
            if v > 0 {
                s.push_str(&format!("{k}.drop.{} {v}\n", r.name()));
            }
        }
    }
    s
}

fn node_fields(n: &dataplane::gateway::NodeCounters) -> Vec<(&'static str, u64)> {
    vec![
        ("rx", n.rx),
        ("tx", n.tx),
        ("encapsulated", n.encapsulated),
        ("decapsulated", n.decapsulated),
        ("bypassed", n.bypassed),
        ("neighbour_replies", n.neighbour_replies),
        ("neighbour_requests", n.neighbour_requests),
        ("neighbour_flushes", n.neighbour_flushes),
        ("echo_replies", n.echo_replies),
        ("icmp_errors", n.icmp_errors),
        ("mss_clamped", n.mss_clamped),
        ("punted", n.punted),
        ("handoffs_out", n.handoffs_out),
        ("handoffs_in", n.handoffs_in),
        ("drops", n.total_drops()),
    ]
}

/// EAL arguments for the configuration: lcores, memory, a unique prefix.
fn eal_args(config: &GatewayConfig) -> Vec<String> {
    crate::eal_args::eal_args(
        "espresso",
        &main_lcore(config).to_string(),
        config.dataplane.memory_mb,
        &config.dataplane.eal_args,
    )
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
    crate::eal_args::pin_before_eal(main_lcore(&config));
    let eal = Eal::init(eal_args(&config))?;
    let pool = Mempool::new(
        &eal,
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
        let mut pc = PortConfig::new(pool.clone());
        pc.rx_queues = workers as u16;
        pc.tx_queues = workers as u16;
        let port = Port::open(&eal, &iface.device, &pc)
            .map_err(|e| format!("interface {}: {e}", iface.name))?;
        tracing::info!(interface = %iface.name, device = %iface.device, mac = ?port.mac_addr(), "port up");
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
    let eal_ref: &'static Eal = Box::leak(Box::new(eal));
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
            rx: ports
                .iter()
                .map(|p| p.rx_queue(w as u16).ok_or("rx queue"))
                .collect::<Result<_, _>>()?,
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
        );
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
    let planner = Planner::new(
        workers,
        config.dataplane.crypto_backend,
        config.tunnels.iter().map(|t| t.name.clone()).collect(),
    );
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
    };
    control.apply_config(None)?;
    // Each worker answers after the SAs and policies queued before: once
    // all have, the gateway is up (systemd's READY=1).
    control.collect();
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
    let mut report = format_stats(
        &finals,
        &control.ports,
        &control.config,
        control.punted,
        control.started,
    );
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
