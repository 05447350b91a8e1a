//! `[metrics] listen`: the statistics as OpenMetrics text at `GET
//! /metrics`, for Prometheus and anything else that scrapes that format.
//!
//! Served on a thread of its own, never a worker or the control thread
//! (which runs IKE). A scrape asks the control thread for a
//! [`StatsSnapshot`] the way the control socket asks for `stats`: a
//! [`SnapshotRequest`] on a bounded queue, answered between the control
//! loop's other work, waited for at most [`REPLY_TIMEOUT`]. A snapshot is
//! reused for [`MIN_REFRESH`], so however many scrapers there are, the
//! control thread collects at most a couple of times a second, and no
//! value served is older than that. Publishing a snapshot on a timer
//! instead would cost the workers a collection every period whether or not
//! anyone scrapes.
//!
//! The HTTP is the least a scraper needs (RFC 9112): one request per
//! connection, a request head of at most [`MAX_REQUEST`] bytes read within
//! [`READ_TIMEOUT`], `GET` or `HEAD` of `/metrics` only, the answer written
//! within what is left of [`SCRAPE_TIMEOUT`], then the connection closed.
//! At most [`MAX_CLIENTS`] at once; more are answered 503. Each refusal is
//! counted (`metrics.*` in `espresso stats`, `espresso_metrics_requests_total`
//! here). A general HTTP server crate would bring its own threads and
//! defaults for all of this; the bounds are the point, so they are here.
//!
//! The text is encoded by `prometheus-client`, the Prometheus project's
//! Rust client (OpenMetrics 1.0 text: `_total` counters, `# EOF`), from a
//! registry built afresh for each snapshot.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::stats::{Counts, StatsSnapshot};

/// Everything that can go wrong starting the endpoint.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The longest request head (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the control thread has to hand over a snapshot (it waits up
/// to 2 s for the workers' counters).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// Everything about one connection, from accept to the last byte written.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered 503.
pub const MAX_CLIENTS: usize = 4;
/// A snapshot younger than this is served again rather than asked for.
pub const MIN_REFRESH: Duration = Duration::from_millis(500);
/// Snapshot requests waiting for the control thread at most: scrapes share
/// one snapshot, so one request in flight is enough.
const REQUEST_QUEUE: usize = 1;

/// The OpenMetrics text format's media type (OpenMetrics 1.0 §"Overall
/// Structure"); Prometheus asks for it first.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A snapshot wanted by the metrics thread.
#[derive(Debug)]
pub struct SnapshotRequest {
    /// Where the control thread sends it.
    pub reply: Sender<StatsSnapshot>,
}

/// The endpoint's counters (`metrics.*` in `espresso stats`).
#[derive(Debug, Default)]
pub struct MetricsStats {
    /// Scrapes answered with the metrics.
    pub served: AtomicU64,
    /// Paths other than `/metrics` (404).
    pub not_found: AtomicU64,
    /// Methods other than GET and HEAD (405).
    pub method_not_allowed: AtomicU64,
    /// Request lines that are not HTTP/1.x (400).
    pub bad_request: AtomicU64,
    /// Request heads over [`MAX_REQUEST`] (431).
    pub too_large: AtomicU64,
    /// No complete request head within [`READ_TIMEOUT`]; connection closed.
    pub read_timeouts: AtomicU64,
    /// [`MAX_CLIENTS`] connections were open (503).
    pub refused_busy: AtomicU64,
    /// The control thread gave no snapshot in time (503).
    pub unavailable: AtomicU64,
    /// Answers not completely written within [`SCRAPE_TIMEOUT`].
    pub write_errors: AtomicU64,
}

impl MetricsStats {
    /// Every counter by name.
    pub fn counts(&self) -> Counts {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts(vec![
            ("served", c(&self.served)),
            ("not_found", c(&self.not_found)),
            ("method_not_allowed", c(&self.method_not_allowed)),
            ("bad_request", c(&self.bad_request)),
            ("too_large", c(&self.too_large)),
            ("read_timeouts", c(&self.read_timeouts)),
            ("refused_busy", c(&self.refused_busy)),
            ("unavailable", c(&self.unavailable)),
            ("write_errors", c(&self.write_errors)),
        ])
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<MetricsStats>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and starts serving; snapshot requests arrive on
    /// the returned receiver.
    pub fn bind(addr: SocketAddr) -> Result<(Self, Receiver<SnapshotRequest>), Error> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("[metrics] listen {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = bounded(REQUEST_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(MetricsStats::default());
        let server = Arc::new(Server {
            requests: tx,
            stats: stats.clone(),
            clients: Arc::new(AtomicUsize::new(0)),
            cache: Mutex::new(None),
        });
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("espresso-metrics".into())
            .spawn(move || server.accept_loop(listener, &stop2))?;
        Ok((
            Self {
                addr,
                stop,
                stats,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// The address it listens on (the configured one, with the port the
    /// system chose if that was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn stats(&self) -> &MetricsStats {
        &self.stats
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Server {
    requests: Sender<SnapshotRequest>,
    stats: Arc<MetricsStats>,
    clients: Arc<AtomicUsize>,
    /// The last snapshot and when it arrived, shared by the scrapes.
    cache: Mutex<Option<(Instant, Arc<StatsSnapshot>)>>,
}

/// Gives a client's place back when its thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

impl Server {
    fn accept_loop(self: Arc<Self>, listener: TcpListener, stop: &AtomicBool) {
        for stream in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(stream) = stream else { continue };
            if self.clients.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
                self.clients.fetch_sub(1, Ordering::Relaxed);
                self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                // A short answer into an empty socket buffer: it does not
                // block, and if it would, the timeout gives up quickly.
                let deadline = Instant::now() + Duration::from_millis(100);
                let _ = respond(
                    &stream,
                    deadline,
                    "503 Service Unavailable",
                    "",
                    b"busy\n",
                    false,
                );
                continue;
            }
            let slot = Slot(self.clients.clone());
            let server = self.clone();
            let spawned = std::thread::Builder::new()
                .name("espresso-metrics-client".into())
                .spawn(move || {
                    let _slot = slot;
                    server.serve(stream);
                });
            if spawned.is_err() {
                self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn serve(&self, stream: TcpStream) {
        let deadline = Instant::now() + SCRAPE_TIMEOUT;
        let head = match read_head(&stream) {
            Ok(h) => h,
            Err(ReadError::TooLarge) => {
                self.stats.too_large.fetch_add(1, Ordering::Relaxed);
                self.answer(
                    &stream,
                    deadline,
                    "431 Request Header Fields Too Large",
                    "",
                    b"",
                );
                return;
            }
            Err(ReadError::Timeout) => {
                self.stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match parse_head(&head) {
            Parsed::Metrics { head_only } => match self.snapshot(deadline) {
                Some(snap) => match encode_snapshot(&snap) {
                    Ok(text) => {
                        if respond(
                            &stream,
                            deadline,
                            "200 OK",
                            &format!("Content-Type: {CONTENT_TYPE}\r\n"),
                            text.as_bytes(),
                            head_only,
                        )
                        .is_ok()
                        {
                            self.stats.served.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                        self.answer(&stream, deadline, "500 Internal Server Error", "", b"");
                    }
                },
                None => {
                    self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                    self.answer(
                        &stream,
                        deadline,
                        "503 Service Unavailable",
                        "Retry-After: 1\r\n",
                        b"the gateway did not answer in time\n",
                    );
                }
            },
            Parsed::NotFound => {
                self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                self.answer(&stream, deadline, "404 Not Found", "", b"try /metrics\n");
            }
            Parsed::MethodNotAllowed => {
                self.stats
                    .method_not_allowed
                    .fetch_add(1, Ordering::Relaxed);
                self.answer(
                    &stream,
                    deadline,
                    "405 Method Not Allowed",
                    "Allow: GET, HEAD\r\n",
                    b"",
                );
            }
            Parsed::BadRequest => {
                self.stats.bad_request.fetch_add(1, Ordering::Relaxed);
                self.answer(&stream, deadline, "400 Bad Request", "", b"");
            }
        }
    }

    /// An error answer; a failure to write it is counted.
    fn answer(
        &self,
        stream: &TcpStream,
        deadline: Instant,
        status: &str,
        headers: &str,
        body: &[u8],
    ) {
        if respond(stream, deadline, status, headers, body, false).is_err() {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A snapshot no older than [`MIN_REFRESH`], or `None` if the control
    /// thread did not give one before `deadline` or [`REPLY_TIMEOUT`].
    /// Scrapes that arrive together wait on the cache's lock for the one
    /// request in flight (at most [`REPLY_TIMEOUT`]) and share its answer.
    fn snapshot(&self, deadline: Instant) -> Option<Arc<StatsSnapshot>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, snap)) = cache.as_ref() {
            if at.elapsed() < MIN_REFRESH {
                return Some(snap.clone());
            }
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(REPLY_TIMEOUT);
        if wait.is_zero() {
            return None;
        }
        let (tx, rx) = bounded(1);
        match self.requests.try_send(SnapshotRequest { reply: tx }) {
            Ok(()) => {}
            // Only a request abandoned by a timed-out scrape can be
            // waiting: the control thread is behind, so is this scrape.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return None,
        }
        let snap = Arc::new(rx.recv_timeout(wait).ok()?);
        *cache = Some((Instant::now(), snap.clone()));
        Some(snap)
    }
}

enum ReadError {
    TooLarge,
    Timeout,
}

/// Reads up to the blank line that ends a request head (RFC 9112 §2.1),
/// within [`READ_TIMEOUT`] and [`MAX_REQUEST`] bytes. A body is never
/// read: the connection is closed after the answer.
fn read_head(mut stream: &TcpStream) -> Result<Vec<u8>, ReadError> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_REQUEST {
            return Err(ReadError::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(ReadError::Timeout);
        }
        let want = buf.len().min(MAX_REQUEST + 1 - head.len());
        match stream.read(&mut buf[..want]) {
            // The client closed before finishing its head.
            Ok(0) => return Err(ReadError::Timeout),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Timeout),
        }
    }
}

/// Where the head ends: after `\r\n\r\n`, or `\n\n` (RFC 9112 §2.2 lets a
/// recipient accept a bare LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The request line (RFC 9112 §3): `method SP request-target SP
/// HTTP-version`. Headers are not needed: the answer is the same for every
/// client.
fn parse_head(head: &[u8]) -> Parsed {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Parsed::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
        return Parsed::BadRequest;
    }
    // Origin form, or absolute form (§3.2.2) as a proxy would send it.
    let path = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |p| &rest[p..])
        }
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    if path != "/metrics" {
        return Parsed::NotFound;
    }
    match method {
        "GET" => Parsed::Metrics { head_only: false },
        "HEAD" => Parsed::Metrics { head_only: true },
        _ => Parsed::MethodNotAllowed,
    }
}

/// Writes a whole answer before `deadline`, each write's timeout set to
/// what is left, so a client that reads slowly is dropped at the deadline.
fn respond(
    mut stream: &TcpStream,
    deadline: Instant,
    status: &str,
    headers: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    let mut sent = 0;
    while sent < out.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        let end = out.len().min(sent + 64 * 1024);
        match stream.write(&out[sent..end]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

type Labels = Vec<(&'static str, String)>;

/// Registers and returns a labelled counter family.
fn counters(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

/// Registers and returns a labelled gauge family.
fn gauges(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge<u64, AtomicU64>> {
    let f = Family::<Labels, Gauge<u64, AtomicU64>>::default();
    reg.register(name, help, f.clone());
    f
}

fn label(k: &'static str, v: impl ToString) -> (&'static str, String) {
    (k, v.to_string())
}

/// Port counters: (field, metric name, help).
const PORT_METRICS: [(&str, &str, &str); 8] = [
    (
        "rx_packets",
        "port_rx_packets",
        "Frames received by the port",
    ),
    ("tx_packets", "port_tx_packets", "Frames sent by the port"),
    ("rx_bytes", "port_rx_bytes", "Bytes received by the port"),
    ("tx_bytes", "port_tx_bytes", "Bytes sent by the port"),
    (
        "rx_missed",
        "port_rx_missed",
        "Frames the port dropped for want of room in its receive ring",
    ),
    ("rx_errors", "port_rx_errors", "Erroneous frames received"),
    ("tx_errors", "port_tx_errors", "Frames that failed to send"),
    (
        "rx_nombuf",
        "port_rx_nombuf",
        "Receive buffer allocation failures",
    ),
];

/// Worker pipeline counters: (field, metric name, help). `drops` is left
/// out: `espresso_drops_total` has it by reason.
const WORKER_METRICS: [(&str, &str, &str); 14] = [
    ("rx", "worker_rx_packets", "Frames the worker received"),
    (
        "tx",
        "worker_tx_packets",
        "Frames the worker queued for transmission",
    ),
    (
        "encapsulated",
        "worker_encapsulated_packets",
        "Packets ESP-protected",
    ),
    (
        "decapsulated",
        "worker_decapsulated_packets",
        "ESP packets verified and decapsulated",
    ),
    (
        "bypassed",
        "worker_bypassed_packets",
        "Packets forwarded without ESP by a BYPASS policy",
    ),
    (
        "neighbour_replies",
        "worker_neighbour_replies",
        "ARP replies and neighbour advertisements sent",
    ),
    (
        "neighbour_requests",
        "worker_neighbour_requests",
        "ARP requests and neighbour solicitations sent",
    ),
    (
        "neighbour_flushes",
        "worker_neighbour_flushes",
        "Neighbours resolved afresh on the control thread's request",
    ),
    (
        "echo_replies",
        "worker_echo_replies",
        "ICMP echo replies built",
    ),
    (
        "icmp_errors",
        "worker_icmp_errors",
        "ICMP errors built (time exceeded, fragmentation needed, packet too big)",
    ),
    (
        "mss_clamped",
        "worker_mss_clamped",
        "TCP SYNs whose MSS was lowered",
    ),
    (
        "punted",
        "worker_punted_packets",
        "Packets handed to the control thread (IKE)",
    ),
    (
        "handoffs_out",
        "worker_handoffs_out",
        "Packets handed to the worker that owns their SA",
    ),
    (
        "handoffs_in",
        "worker_handoffs_in",
        "Packets received from another worker",
    ),
];

/// IKE engine counters that have a family of their own: (counter, metric
/// name, label key, label value, help). The rest go to
/// `espresso_ike_events_total{event}`.
const IKE_TUNNEL_METRICS: [(&str, &str, &str, &str, &str); 14] = [
    (
        "rx_datagrams",
        "ike_datagrams",
        "direction",
        "in",
        "IKE datagrams by tunnel and direction",
    ),
    (
        "tx_datagrams",
        "ike_datagrams",
        "direction",
        "out",
        "IKE datagrams by tunnel and direction",
    ),
    (
        "ike_sa_established",
        "ike_established",
        "sa",
        "ike",
        "IKE SAs and Child SAs established (IKE_AUTH, CREATE_CHILD_SA exchanges)",
    ),
    (
        "child_sa_established",
        "ike_established",
        "sa",
        "child",
        "IKE SAs and Child SAs established (IKE_AUTH, CREATE_CHILD_SA exchanges)",
    ),
    (
        "cookies_sent",
        "ike_cookies",
        "event",
        "sent",
        "COOKIE notifications sent, invalid cookies returned, secret rotations (RFC 7296 2.6)",
    ),
    (
        "cookies_invalid",
        "ike_cookies",
        "event",
        "invalid",
        "COOKIE notifications sent, invalid cookies returned, secret rotations (RFC 7296 2.6)",
    ),
    (
        "cookie_secret_rotations",
        "ike_cookies",
        "event",
        "secret_rotation",
        "COOKIE notifications sent, invalid cookies returned, secret rotations (RFC 7296 2.6)",
    ),
    (
        "auth_failures",
        "ike_auth_failures",
        "",
        "",
        "IKE_AUTH exchanges whose peer failed authentication",
    ),
    (
        "auth_refused_identity",
        "ike_auth_refused",
        "reason",
        "identity",
        "IKE_AUTH requests refused, by reason: identity not the tunnel's or template's, no secret for the identity, method, wrong AUTH value",
    ),
    (
        "auth_refused_unknown_identity",
        "ike_auth_refused",
        "reason",
        "unknown_identity",
        "IKE_AUTH requests refused, by reason: identity not the tunnel's or template's, no secret for the identity, method, wrong AUTH value",
    ),
    (
        "auth_refused_method",
        "ike_auth_refused",
        "reason",
        "method",
        "IKE_AUTH requests refused, by reason: identity not the tunnel's or template's, no secret for the identity, method, wrong AUTH value",
    ),
    (
        "auth_refused_bad_auth",
        "ike_auth_refused",
        "reason",
        "bad_auth",
        "IKE_AUTH requests refused, by reason: identity not the tunnel's or template's, no secret for the identity, method, wrong AUTH value",
    ),
    (
        "handoffs",
        "ike_template_handoffs",
        "",
        "",
        "Half-open IKE SAs handed to a sibling template by the identity in IKE_AUTH",
    ),
    (
        "retransmits",
        "ike_retransmits",
        "",
        "",
        "IKE requests retransmitted",
    ),
];

/// The snapshot as OpenMetrics text.
pub fn encode_snapshot(s: &StatsSnapshot) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("espresso");

    let g = gauges(
        &mut reg,
        "uptime_seconds",
        "Seconds since the gateway started",
    );
    g.get_or_create(&vec![]).set(s.uptime_s);

    for (field, name, help) in PORT_METRICS {
        let f = counters(&mut reg, name, help);
        for p in &s.ports {
            let v = p
                .fields()
                .iter()
                .find(|(k, _)| *k == field)
                .map_or(0, |x| x.1);
            f.get_or_create(&vec![label("port", &p.name)]).inc_by(v);
        }
    }

    for (field, name, help) in WORKER_METRICS {
        let f = counters(&mut reg, name, help);
        for w in &s.workers {
            let v = w
                .node
                .fields()
                .iter()
                .find(|(k, _)| *k == field)
                .map_or(0, |x| x.1);
            f.get_or_create(&vec![label("worker", w.worker)]).inc_by(v);
        }
    }
    let polls = counters(
        &mut reg,
        "worker_polls",
        "Poll-loop iterations of the worker",
    );
    let idle = counters(
        &mut reg,
        "worker_idle_polls",
        "Poll-loop iterations that received nothing",
    );
    let gap = gauges(
        &mut reg,
        "worker_max_poll_gap_microseconds",
        "Longest time between two polls of the worker since it started",
    );
    let spd = counters(
        &mut reg,
        "worker_spd_lookups",
        "SPD lookups by whether the flow cache answered",
    );
    let drops = counters(
        &mut reg,
        "drops",
        "Packets dropped by worker, layer (gateway, esp, queue) and reason",
    );
    let refused = counters(
        &mut reg,
        "neighbour_refused",
        "ARP and neighbour discovery packets that taught the neighbour table nothing, by reason",
    );
    for w in &s.workers {
        let id = || label("worker", w.worker);
        polls.get_or_create(&vec![id()]).inc_by(w.polls);
        idle.get_or_create(&vec![id()]).inc_by(w.idle_polls);
        gap.get_or_create(&vec![id()]).set(w.max_poll_gap_us);
        spd.get_or_create(&vec![id(), label("result", "hit")])
            .inc_by(w.spd_cache_hits);
        spd.get_or_create(&vec![id(), label("result", "miss")])
            .inc_by(w.spd_cache_misses);
        for (layer, counts) in [
            ("gateway", &w.drops.gateway),
            ("esp", &w.drops.esp),
            ("queue", &w.drops.queue),
        ] {
            for (reason, v) in &counts.0 {
                drops
                    .get_or_create(&vec![id(), label("layer", layer), label("reason", reason)])
                    .inc_by(*v);
            }
        }
        for (reason, v) in &w.drops.neighbour_refused.0 {
            refused
                .get_or_create(&vec![id(), label("reason", reason)])
                .inc_by(*v);
        }
    }
    let missing = gauges(
        &mut reg,
        "workers_missing",
        "Workers that did not hand over their counters for this snapshot",
    );
    missing.get_or_create(&vec![]).set(s.workers_missing);

    let tunnels = gauges(
        &mut reg,
        "tunnels",
        "Tunnels configured, and those up (IKE SA established, or a manual SA in the outbound slot)",
    );
    tunnels
        .get_or_create(&vec![label("state", "configured")])
        .set(s.tunnels_configured);
    tunnels
        .get_or_create(&vec![label("state", "up")])
        .set(s.tunnels_up);
    let up = gauges(
        &mut reg,
        "tunnel_up",
        "Whether the tunnel is up (1) or not (0)",
    );
    let tsas = gauges(
        &mut reg,
        "tunnel_sas",
        "SAs of the tunnel on the workers, by direction",
    );
    for t in &s.tunnels {
        let n = || label("tunnel", &t.name);
        up.get_or_create(&vec![n()]).set(u64::from(t.up));
        tsas.get_or_create(&vec![n(), label("direction", "in")])
            .set(t.sas_in);
        tsas.get_or_create(&vec![n(), label("direction", "out")])
            .set(t.sas_out);
    }

    let sa_packets = counters(&mut reg, "sa_packets", "Packets processed by the SA");
    let sa_bytes = counters(
        &mut reg,
        "sa_bytes",
        "Bytes of the inner packets processed by the SA",
    );
    let sa_drops = counters(&mut reg, "sa_drops", "Packets the SA dropped, by reason");
    let sa_seq = gauges(
        &mut reg,
        "sa_sequence_number",
        "Last sequence number sent (out) or highest accepted (in)",
    );
    let sa_info = gauges(
        &mut reg,
        "sa_info",
        "The SA's algorithm and owning worker (always 1)",
    );
    for sa in &s.sas {
        let key = || {
            vec![
                label("tunnel", sa.tunnel.as_deref().unwrap_or("")),
                label("direction", sa.direction.name()),
                label("spi", sa.spi_hex()),
            ]
        };
        sa_packets.get_or_create(&key()).inc_by(sa.packets);
        sa_bytes.get_or_create(&key()).inc_by(sa.bytes);
        sa_seq.get_or_create(&key()).set(sa.seq);
        let mut info = key();
        info.push(label("algorithm", &sa.algorithm));
        info.push(label("worker", sa.worker));
        sa_info.get_or_create(&info).set(1);
        for (reason, v) in &sa.drops.0 {
            let mut l = key();
            l.push(label("reason", reason));
            sa_drops.get_or_create(&l).inc_by(*v);
        }
    }

    encode_ike(&mut reg, s);
    encode_control(&mut reg, s);

    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

fn encode_ike(reg: &mut Registry, s: &StatsSnapshot) {
    let ike = &s.ike;
    let driver = counters(
        reg,
        "ike_driver_events",
        "Punted packets the IKE driver handled or refused, by event",
    );
    for (k, v) in &ike.counters.0 {
        driver.get_or_create(&vec![label("event", k)]).inc_by(*v);
    }
    let half_open = gauges(
        reg,
        "ike_half_open_sas",
        "Half-open responder IKE SAs of all tunnels",
    );
    half_open
        .get_or_create(&vec![])
        .set(ike.gauges.get("half_open"));
    let missed = gauges(
        reg,
        "ike_known_spis_missed",
        "Authenticated IKE SPIs that did not fit the workers' table at its last rebuild",
    );
    missed
        .get_or_create(&vec![])
        .set(ike.gauges.get("known_spis_missed"));
    let proto = counters(
        reg,
        "ike_protocol_errors",
        "IKE messages refused for the protocol rule the peer broke (RFC 7296 2.21)",
    );
    for (rule, v) in &ike.protocol_errors.0 {
        proto.get_or_create(&vec![label("rule", rule)]).inc_by(*v);
    }
    let frag = counters(
        reg,
        "ike_fragments_refused",
        "IKE fragments dropped, by reason (RFC 7383 2.6)",
    );
    for (reason, v) in &ike.fragment_refusals.0 {
        frag.get_or_create(&vec![label("reason", reason)])
            .inc_by(*v);
    }
    let sas = gauges(
        reg,
        "ike_sas",
        "IKE SAs established now (0 or 1 per tunnel)",
    );
    let child = gauges(reg, "ike_child_sas", "Child SAs installed now");
    let tunnel_half_open = gauges(
        reg,
        "ike_tunnel_half_open_sas",
        "Half-open responder IKE SAs of the tunnel's engine",
    );
    let events = counters(
        reg,
        "ike_events",
        "Other IKE engine counters by tunnel and name (ike.<tunnel>.<event> in espresso stats)",
    );
    let mut families: Vec<(&str, Family<Labels, Counter>)> = Vec::new();
    for (_, name, _, _, help) in IKE_TUNNEL_METRICS {
        if !families.iter().any(|(n, _)| *n == name) {
            families.push((name, counters(reg, name, help)));
        }
    }
    for t in &ike.tunnels {
        let n = || label("tunnel", &t.name);
        sas.get_or_create(&vec![n()]).set(t.ike_sas);
        child.get_or_create(&vec![n()]).set(t.child_sas);
        tunnel_half_open.get_or_create(&vec![n()]).set(t.half_open);
        for (k, v) in &t.counters.0 {
            match IKE_TUNNEL_METRICS.iter().find(|m| m.0 == *k) {
                Some(&(_, name, lk, lv, _)) => {
                    let mut l = vec![n()];
                    if !lk.is_empty() {
                        l.push(label(lk, lv));
                    }
                    if let Some((_, f)) = families.iter().find(|(fname, _)| *fname == name) {
                        f.get_or_create(&l).inc_by(*v);
                    }
                }
                None => {
                    events
                        .get_or_create(&vec![n(), label("event", k)])
                        .inc_by(*v);
                }
            }
        }
    }
}

fn encode_control(reg: &mut Registry, s: &StatsSnapshot) {
    let c = &s.control;
    let punted = counters(
        reg,
        "control_punted_packets",
        "Packets the workers punted to the control thread",
    );
    punted.get_or_create(&vec![]).inc_by(c.punted);
    let events = counters(
        reg,
        "control_sa_events",
        "SA events from the workers (lifetimes, sequence numbers)",
    );
    events.get_or_create(&vec![]).inc_by(c.events);
    let waiting = gauges(
        reg,
        "control_ike_waiting",
        "IKE datagrams waiting in the queues from the workers",
    );
    waiting
        .get_or_create(&vec![label("queue", "unauthenticated")])
        .set(c.ike_unauth_waiting);
    waiting
        .get_or_create(&vec![label("queue", "half_open")])
        .set(c.ike_half_open_waiting);
    let full = counters(
        reg,
        "control_transmit_full",
        "IKE datagrams dropped because the worker's control queue was full",
    );
    full.get_or_create(&vec![]).inc_by(c.transmit_full);
    let socket = counters(
        reg,
        "control_socket_requests",
        "Control socket connections by outcome",
    );
    for (k, v) in &c.socket.0 {
        socket.get_or_create(&vec![label("result", k)]).inc_by(*v);
    }
    if let Some(m) = &s.metrics {
        let f = counters(
            reg,
            "metrics_requests",
            "Connections to this endpoint by outcome",
        );
        for (k, v) in &m.0 {
            f.get_or_create(&vec![label("result", k)]).inc_by(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Checks the OpenMetrics text the way a scraper reads it: every
    /// sample belongs to a family announced by `# TYPE` and `# HELP`, has
    /// well-formed labels and a numeric value, no series twice, and the
    /// text ends with `# EOF`. Returns the samples by series.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut types: BTreeMap<&str, &str> = BTreeMap::new();
        let mut helped = BTreeSet::new();
        let mut samples = BTreeMap::new();
        let mut eof = false;
        for l in text.lines() {
            assert!(!eof, "text after # EOF: {l}");
            if l == "# EOF" {
                eof = true;
                continue;
            }
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE name type");
                assert!(
                    ["counter", "gauge", "info"].contains(&ty),
                    "type {ty} of {name}"
                );
                assert!(types.insert(name, ty).is_none(), "{name} typed twice");
                continue;
            }
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(help.len() > 5, "{name}: {help:?}");
                helped.insert(name.to_string());
                continue;
            }
            assert!(!l.starts_with('#'), "unexpected comment {l}");
            let (series, value) = l.rsplit_once(' ').expect("series value");
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {l}"));
            let name = series.split('{').next().unwrap();
            assert!(name.starts_with("espresso_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
            let family = types
                .keys()
                .find(|f| {
                    name == **f
                        || (types[*f] == "counter" && name == format!("{f}_total"))
                        || (types[*f] == "info" && name == format!("{f}_info"))
                })
                .unwrap_or_else(|| panic!("no TYPE for {name}"));
            assert!(helped.contains(*family), "no HELP for {family}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|x| x.strip_suffix('}'))
                        .unwrap_or_else(|| panic!("labels of {l}"));
                    for pair in split_labels(inner) {
                        let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{l}"));
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                        assert!(
                            v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                            "{l}"
                        );
                    }
                }
            }
            assert!(
                samples.insert(series.to_string(), v).is_none(),
                "twice: {series}"
            );
        }
        assert!(eof, "no # EOF");
        samples
    }

    /// `a="x",b="y,z"` into pairs, commas inside quotes kept.
    fn split_labels(s: &str) -> Vec<String> {
        let mut out = vec![String::new()];
        let (mut quoted, mut escaped) = (false, false);
        for c in s.chars() {
            match c {
                ',' if !quoted => out.push(String::new()),
                _ => {
                    if c == '"' && !escaped {
                        quoted = !quoted;
                    }
                    escaped = c == '\\' && !escaped;
                    out.last_mut().unwrap().push(c);
                }
            }
        }
        out
    }

    #[test]
    fn snapshot_encodes_as_openmetrics() {
        let snap = crate::stats::tests::sample();
        let text = encode_snapshot(&snap).unwrap();
        let m = parse(&text);
        let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
        assert_eq!(get("espresso_port_rx_packets_total{port=\"wan\"}"), 12.0);
        assert_eq!(
            get("espresso_drops_total{worker=\"1\",layer=\"esp\",reason=\"replay\"}"),
            3.0
        );
        assert_eq!(
            get(
                "espresso_sa_packets_total{tunnel=\"site-b\",direction=\"out\",spi=\"0x00002001\"}"
            ),
            5.0
        );
        assert_eq!(
            get("espresso_sa_drops_total{tunnel=\"site-b\",direction=\"in\",spi=\"0x00001001\",reason=\"replay\"}"),
            1.0
        );
        assert_eq!(
            get("espresso_sa_info{tunnel=\"site-b\",direction=\"out\",spi=\"0x00002001\",algorithm=\"aes256gcm16 (ipsec-mb)\",worker=\"0\"}"),
            1.0
        );
        assert_eq!(get("espresso_tunnels{state=\"configured\"}"), 2.0);
        assert_eq!(get("espresso_tunnels{state=\"up\"}"), 1.0);
        assert_eq!(get("espresso_tunnel_up{tunnel=\"manual\"}"), 0.0);
        assert_eq!(
            get("espresso_ike_protocol_errors_total{rule=\"missing_sa\"}"),
            2.0
        );
        assert_eq!(
            get("espresso_ike_fragments_refused_total{reason=\"forged\"}"),
            3.0
        );
        assert_eq!(
            get("espresso_ike_auth_failures_total{tunnel=\"site-b\"}"),
            1.0
        );
        assert_eq!(
            get("espresso_ike_cookies_total{tunnel=\"site-b\",event=\"sent\"}"),
            4.0
        );
        assert_eq!(get("espresso_ike_sas{tunnel=\"site-b\"}"), 1.0);
        assert_eq!(
            get("espresso_control_socket_requests_total{result=\"served\"}"),
            9.0
        );
        assert_eq!(
            get("espresso_metrics_requests_total{result=\"not_found\"}"),
            1.0
        );
        assert_eq!(get("espresso_uptime_seconds"), 42.0);
    }

    /// A tunnel name is the operator's text: quotes, backslashes and line
    /// breaks in it stay inside the label value.
    #[test]
    fn hostile_tunnel_names_stay_in_their_label() {
        let mut snap = crate::stats::tests::sample();
        snap.tunnels[1].name = "a\"} evil{x=\"1\\\nnext".into();
        let text = encode_snapshot(&snap).unwrap();
        let m = parse(&text);
        assert!(!m.keys().any(|k| k.starts_with("evil")), "{text}");
        assert!(
            m.keys().any(|k| k.contains(r#"a\"} evil{x=\"1\\\nnext"#)),
            "{text}"
        );
    }

    /// A control thread that answers with the sample snapshot.
    fn control(rx: Receiver<SnapshotRequest>) -> JoinHandle<()> {
        std::thread::spawn(move || {
            while let Ok(r) = rx.recv() {
                let _ = r.reply.send(crate::stats::tests::sample());
            }
        })
    }

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let (server, rx) = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let ctl = control(rx);
        let addr = server.local_addr();
        let ok = get(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        let body = &ok[ok.find("\r\n\r\n").unwrap() + 4..];
        assert!(ok.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(parse(body).contains_key("espresso_tunnels{state=\"up\"}"));
        let head = get(addr, "HEAD /metrics?x=1 HTTP/1.0\n\n");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        let nf = get(addr, "GET /other HTTP/1.1\r\n\r\n");
        assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
        let na = get(
            addr,
            "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert!(na.starts_with("HTTP/1.1 405 "), "{na}");
        assert!(na.contains("Allow: GET, HEAD\r\n"), "{na}");
        let bad = get(addr, "GET /metrics\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let st = server.stats();
        assert_eq!(st.served.load(Ordering::Relaxed), 2);
        assert_eq!(st.not_found.load(Ordering::Relaxed), 1);
        assert_eq!(st.method_not_allowed.load(Ordering::Relaxed), 1);
        assert_eq!(st.bad_request.load(Ordering::Relaxed), 1);
        drop(server);
        ctl.join().unwrap();
    }

    #[test]
    fn oversize_request_is_refused() {
        let (server, rx) = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let ctl = control(rx);
        let mut c = TcpStream::connect(server.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST)
        );
        // The server stops reading at the limit; the rest may be refused.
        let _ = c.write_all(huge.as_bytes());
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 431 "), "{out}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(server.stats().too_large.load(Ordering::Relaxed), 1);
        assert_eq!(server.stats().served.load(Ordering::Relaxed), 0);
        drop(server);
        ctl.join().unwrap();
    }

    /// Silent clients are dropped after READ_TIMEOUT; while MAX_CLIENTS of
    /// them are connected, others get 503 at once, and a scrape succeeds
    /// again once they are gone.
    #[test]
    fn slow_clients_are_dropped_and_limited() {
        let (server, rx) = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let ctl = control(rx);
        let addr = server.local_addr();
        let silent: Vec<TcpStream> = (0..MAX_CLIENTS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let busy = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(busy.starts_with("HTTP/1.1 503 "), "{busy}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(server.stats().refused_busy.load(Ordering::Relaxed), 1);
        std::thread::sleep(READ_TIMEOUT + Duration::from_millis(300));
        assert_eq!(
            server.stats().read_timeouts.load(Ordering::Relaxed),
            MAX_CLIENTS as u64
        );
        let ok = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
        drop(silent);
        drop(server);
        ctl.join().unwrap();
    }

    /// A control thread that never answers costs a scrape REPLY_TIMEOUT
    /// and a 503, not a hang.
    #[test]
    fn unanswered_snapshot_is_503_within_the_reply_timeout() {
        let (server, rx) = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let t = Instant::now();
        let out = get(server.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
        let took = t.elapsed();
        assert!(
            took >= REPLY_TIMEOUT && took < REPLY_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(server.stats().unavailable.load(Ordering::Relaxed), 1);
        drop(rx);
        drop(server);
    }

    /// Scrapes within MIN_REFRESH share one snapshot.
    #[test]
    fn close_scrapes_share_a_snapshot() {
        let (server, rx) = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let asked = Arc::new(AtomicU64::new(0));
        let asked2 = asked.clone();
        let ctl = std::thread::spawn(move || {
            while let Ok(r) = rx.recv() {
                asked2.fetch_add(1, Ordering::Relaxed);
                let _ = r.reply.send(crate::stats::tests::sample());
            }
        });
        for _ in 0..3 {
            let out = get(server.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n");
            assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        }
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        std::thread::sleep(MIN_REFRESH);
        let out = get(server.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        assert_eq!(asked.load(Ordering::Relaxed), 2);
        drop(server);
        ctl.join().unwrap();
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\n\r\n"),
            Parsed::Metrics { head_only: false }
        );
        assert_eq!(
            parse_head(b"GET http://gw:9469/metrics HTTP/1.1\r\n\r\n"),
            Parsed::Metrics { head_only: false }
        );
        assert_eq!(
            parse_head(b"GET /metrics/ HTTP/1.1\r\n\r\n"),
            Parsed::NotFound
        );
        assert_eq!(
            parse_head(b"DELETE /metrics HTTP/1.1\r\n\r\n"),
            Parsed::MethodNotAllowed
        );
        assert_eq!(
            parse_head(b"GET /metrics HTTP/2\r\n\r\n"),
            Parsed::BadRequest
        );
        assert_eq!(parse_head(b"\xff\xfe\r\n\r\n"), Parsed::BadRequest);
        assert_eq!(
            parse_head(b"GET  /metrics HTTP/1.1\r\n\r\n"),
            Parsed::BadRequest
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
