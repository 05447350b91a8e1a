//! The control socket: the JSON control API ([`crate::api`]) served off
//! the control thread.
//!
//! The control thread runs IKE; a client that connects and says nothing,
//! or stops half-way through a request, must not hold it. So a thread of
//! its own accepts clients and checks who they are; each client then has a
//! short-lived thread (a bounded number at once) that reads its requests,
//! one bounded line each within a deadline, parses and checks them, and
//! only then hands a well-formed [`Command`] to the control thread as a
//! [`Request`], which the control loop answers between its other work.
//! What is malformed is answered here, counted by reason, and goes no
//! further.
//!
//! `subscribe` turns a connection into an event stream: the control thread
//! [`ControlSocket::emit`]s events into every subscriber's bounded queue
//! without ever waiting; a subscriber whose queue is full is dropped (and
//! told so, once it reads again) rather than slowing the gateway.
//!
//! Access: the socket file is mode 0600, or 0660 with the configured
//! group, in a directory made 0700 (0750); and each client's credentials
//! (`SO_PEERCRED`) must be root, the gateway's own user, or a member of
//! that group.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::Value;

use crate::api::{self, Answer, ApiError, Command, ErrorCode, Event, Refusal};

/// Everything that can go wrong binding the socket.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The longest request line.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has to send each complete request (counted from
/// connecting, or from the previous reply).
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the control thread has to answer (a `stats` waits for every
/// worker's snapshot, at most 2 s).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long writing one reply or event may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once (subscribers included); more are turned away.
pub const MAX_CLIENTS: usize = 8;
/// Subscribers at once: fewer than [`MAX_CLIENTS`], so that queries are
/// still served with every subscriber slot taken.
pub const MAX_SUBSCRIBERS: usize = 4;
/// Events waiting for one subscriber at most.
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// Requests waiting for the control thread at most.
const REQUEST_QUEUE: usize = MAX_CLIENTS;
/// How often an idle subscriber's thread checks whether its client left.
const SUBSCRIBER_POLL: Duration = Duration::from_millis(500);

/// A command for the control thread and where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// The checked command.
    pub command: Command,
    /// The answer.
    pub reply: Sender<Answer>,
}

/// Who may use the socket besides root and our own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Members of this group (the socket is then 0660 and owned by it).
    pub group: Option<u32>,
}

/// The socket's counters (`control.socket.*` in `stats`).
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Requests answered (successfully or not).
    pub served: AtomicU64,
    /// Credentials that are not root, ours or the group's.
    pub refused_peer: AtomicU64,
    /// [`MAX_CLIENTS`] were being served, or the control thread had too
    /// many requests waiting, or [`MAX_SUBSCRIBERS`] were subscribed.
    pub refused_busy: AtomicU64,
    /// No complete request line within [`READ_TIMEOUT`]: the client was
    /// dropped.
    pub read_timeouts: AtomicU64,
    /// A request line longer than [`MAX_REQUEST`]: the client was dropped.
    pub too_long: AtomicU64,
    /// The control thread did not answer within [`REPLY_TIMEOUT`].
    pub reply_timeouts: AtomicU64,
    /// Requests refused before the control thread, by [`Refusal`].
    pub refused: [AtomicU64; Refusal::ALL.len()],
    /// Subscriptions started.
    pub subscribed: AtomicU64,
    /// Subscribers dropped because their queue was full.
    pub subscribers_dropped_slow: AtomicU64,
    /// Events emitted (to however many subscribers).
    pub events: AtomicU64,
}

impl SocketStats {
    /// `(name, value)` of every counter, names after `control.socket.`.
    pub fn fields(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = [
            ("served", &self.served),
            ("refused_peer", &self.refused_peer),
            ("refused_busy", &self.refused_busy),
            ("read_timeouts", &self.read_timeouts),
            ("too_long", &self.too_long),
            ("reply_timeouts", &self.reply_timeouts),
            ("subscribed", &self.subscribed),
            ("subscribers_dropped_slow", &self.subscribers_dropped_slow),
            ("events", &self.events),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed)))
        .collect();
        for r in Refusal::ALL {
            out.push((
                format!("refused.{}", r.name()),
                self.refused[r.index()].load(Ordering::Relaxed),
            ));
        }
        out
    }

    /// `control.socket.*` lines.
    pub fn lines(&self) -> String {
        self.fields()
            .into_iter()
            .map(|(k, v)| format!("control.socket.{k} {v}\n"))
            .collect()
    }

    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused[r.index()].load(Ordering::Relaxed)
    }
}

/// One subscriber's queue and state, shared between the control thread
/// (which fills it) and the subscriber's thread (which drains it).
struct Subscriber {
    tx: Sender<Arc<str>>,
    /// Set when its queue overflowed and it was dropped.
    lagged: Arc<AtomicBool>,
    /// Set by its thread when the client left.
    gone: Arc<AtomicBool>,
}

/// The subscribers.
#[derive(Default)]
struct Hub {
    subs: Mutex<Vec<Subscriber>>,
}

impl Hub {
    /// A new subscriber's queue, unless [`MAX_SUBSCRIBERS`] are subscribed.
    #[allow(clippy::type_complexity)]
    fn subscribe(&self) -> Option<(Receiver<Arc<str>>, Arc<AtomicBool>, Arc<AtomicBool>)> {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| !s.gone.load(Ordering::Relaxed));
        if subs.len() >= MAX_SUBSCRIBERS {
            return None;
        }
        let (tx, rx) = bounded(SUBSCRIBER_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let gone = Arc::new(AtomicBool::new(false));
        subs.push(Subscriber {
            tx,
            lagged: lagged.clone(),
            gone: gone.clone(),
        });
        Some((rx, lagged, gone))
    }

    /// Queues `line` for every subscriber without waiting; drops those
    /// whose queue is full. Returns how many were dropped.
    fn emit(&self, line: &str) -> u64 {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return 0;
        }
        let line: Arc<str> = Arc::from(line);
        let mut dropped = 0;
        subs.retain(|s| match s.tx.try_send(line.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                s.lagged.store(true, Ordering::Relaxed);
                dropped += 1;
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        dropped
    }

    fn len(&self) -> usize {
        let subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.iter()
            .filter(|s| !s.gone.load(Ordering::Relaxed))
            .count()
    }

    /// Ends every subscription (the gateway is stopping).
    fn close(&self) {
        self.subs.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The running socket server.
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    stats: Arc<SocketStats>,
    hub: Arc<Hub>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ControlSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSocket")
            .field("path", &self.path)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ControlSocket {
    /// Binds `path` (refusing if another gateway answers there; making its
    /// directory 0700, or 0750 with a group, if it does not exist), sets
    /// its mode and group, and starts serving. Requests arrive on the
    /// returned receiver.
    pub fn bind(path: &Path, access: Access) -> Result<(Self, Receiver<Request>), Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(if access.group.is_some() { 0o750 } else { 0o700 })
                    .create(dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                if let Some(gid) = access.group {
                    std::os::unix::fs::chown(dir, None, Some(gid)).map_err(|e| {
                        format!("{}: cannot give it group {gid}: {e}", dir.display())
                    })?;
                }
            }
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{}: another espresso is running", path.display()).into());
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mode = match access.group {
            Some(gid) => {
                std::os::unix::fs::chown(path, None, Some(gid))
                    .map_err(|e| format!("{}: cannot give it group {gid}: {e}", path.display()))?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        let (tx, rx) = bounded(REQUEST_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SocketStats::default());
        let hub = Arc::new(Hub::default());
        let server = Server {
            access,
            uid: nix::unistd::geteuid().as_raw(),
            requests: tx,
            stats: stats.clone(),
            hub: hub.clone(),
            stop: stop.clone(),
            clients: Arc::new(AtomicUsize::new(0)),
        };
        let thread = std::thread::Builder::new()
            .name("espresso-ctl".into())
            .spawn(move || server.accept_loop(listener))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                stop,
                stats,
                hub,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// The counters.
    pub fn stats(&self) -> &SocketStats {
        &self.stats
    }

    /// Tells every subscriber about `event`; never waits (a subscriber
    /// that cannot keep up is dropped and counted).
    pub fn emit(&self, event: &Event) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        if self.hub.len() == 0 {
            return;
        }
        let dropped = self.hub.emit(&api::event_line(event));
        if dropped > 0 {
            self.stats
                .subscribers_dropped_slow
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                "control socket: subscriber too slow, dropped (its queue was full)"
            );
        }
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.hub.len()
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.hub.close();
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Server {
    access: Access,
    uid: u32,
    requests: Sender<Request>,
    stats: Arc<SocketStats>,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    clients: Arc<AtomicUsize>,
}

/// Gives a client's place back when its thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a client's thread needs.
struct ClientCtx {
    requests: Sender<Request>,
    stats: Arc<SocketStats>,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn accept_loop(&self, listener: UnixListener) {
        for stream in listener.incoming() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(stream) = stream else { continue };
            if !self.allowed(&stream) {
                self.stats.refused_peer.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.clients.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
                self.clients.fetch_sub(1, Ordering::Relaxed);
                self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                let _ = write_line(
                    &stream,
                    &api::reply_line(
                        &Value::Null,
                        &Err(ApiError::new(
                            ErrorCode::Busy,
                            format!("{MAX_CLIENTS} clients connected; try again"),
                        )),
                    ),
                );
                continue;
            }
            let slot = Slot(self.clients.clone());
            let cx = ClientCtx {
                requests: self.requests.clone(),
                stats: self.stats.clone(),
                hub: self.hub.clone(),
                stop: self.stop.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name("espresso-ctl-client".into())
                .spawn(move || {
                    let _slot = slot;
                    serve_client(stream, &cx);
                });
            if spawned.is_err() {
                self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Root, our own user, or (with a group configured) its members.
    fn allowed(&self, stream: &UnixStream) -> bool {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let Ok(cred) = getsockopt(stream, PeerCredentials) else {
            return false;
        };
        permitted(cred.uid(), cred.gid(), self.uid, self.access, || {
            in_supplementary_groups(cred.pid(), self.access.group.unwrap_or(u32::MAX))
        })
    }
}

/// Whether a peer with `uid` and primary `gid` may use the socket of a
/// gateway running as `ours`; `supplementary` says whether it is in the
/// group through its supplementary groups (asked only when needed).
fn permitted(
    uid: u32,
    gid: u32,
    ours: u32,
    access: Access,
    supplementary: impl FnOnce() -> bool,
) -> bool {
    if uid == 0 || uid == ours {
        return true;
    }
    match access.group {
        Some(g) => gid == g || supplementary(),
        None => false,
    }
}

/// Whether process `pid` has `gid` among its supplementary groups (the
/// `Groups:` line of /proc/PID/status; SO_PEERCRED carries only the
/// primary group).
fn in_supplementary_groups(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

fn write_line(mut stream: &UnixStream, line: &str) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.write_all(line.as_bytes())
}

/// What reading the next request gave.
enum Line {
    Request(Vec<u8>),
    /// The client closed its side.
    Eof,
    Timeout,
    TooLong,
    Failed,
}

/// A client's byte stream cut into request lines, each at most
/// [`MAX_REQUEST`] bytes and complete within [`READ_TIMEOUT`].
struct Lines<'a> {
    stream: &'a UnixStream,
    /// Bytes read past the last line (a client may send several requests
    /// at once); never more than [`MAX_REQUEST`] plus one read.
    pending: Vec<u8>,
}

impl Lines<'_> {
    fn next(&mut self) -> Line {
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                if pos > MAX_REQUEST {
                    return Line::TooLong;
                }
                let rest = self.pending.split_off(pos + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                return Line::Request(line);
            }
            if self.pending.len() > MAX_REQUEST {
                return Line::TooLong;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return Line::Timeout;
            }
            match (&mut &*self.stream).read(&mut chunk) {
                // The client shut down its side: a last request without
                // its newline still counts.
                Ok(0) if self.pending.iter().all(u8::is_ascii_whitespace) => return Line::Eof,
                Ok(0) => return Line::Request(std::mem::take(&mut self.pending)),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Line::Timeout
                }
                Err(_) => return Line::Failed,
            }
        }
    }
}

fn serve_client(stream: UnixStream, cx: &ClientCtx) {
    let stats = &cx.stats;
    let mut lines = Lines {
        stream: &stream,
        pending: Vec::new(),
    };
    loop {
        if cx.stop.load(Ordering::Relaxed) {
            return;
        }
        let line = match lines.next() {
            Line::Request(l) => l,
            Line::Eof | Line::Failed => return,
            Line::Timeout => {
                stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
                let _ = write_line(
                    &stream,
                    &api::reply_line(
                        &Value::Null,
                        &Err(ApiError::new(
                            ErrorCode::Timeout,
                            format!(
                                "no complete request within {} s; closing",
                                READ_TIMEOUT.as_secs()
                            ),
                        )),
                    ),
                );
                return;
            }
            Line::TooLong => {
                stats.too_long.fetch_add(1, Ordering::Relaxed);
                let _ = write_line(
                    &stream,
                    &api::reply_line(
                        &Value::Null,
                        &Err(ApiError::bad_request(format!(
                            "request longer than {MAX_REQUEST} bytes; closing"
                        ))),
                    ),
                );
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let envelope = match api::parse_request(&line) {
            Ok(e) => e,
            Err(r) => {
                stats.refused[r.reason.index()].fetch_add(1, Ordering::Relaxed);
                stats.served.fetch_add(1, Ordering::Relaxed);
                if write_line(&stream, &api::reply_line(&r.id, &Err(r.error))).is_err() {
                    return;
                }
                continue;
            }
        };
        let answer = match envelope.command {
            // Needs nothing of the gateway's state.
            Command::Version => api::to_result(&api::version()),
            Command::Subscribe => {
                stats.served.fetch_add(1, Ordering::Relaxed);
                subscribe(&stream, &envelope.id, cx);
                return;
            }
            command => forward(command, cx),
        };
        stats.served.fetch_add(1, Ordering::Relaxed);
        if write_line(&stream, &api::reply_line(&envelope.id, &answer)).is_err() {
            return;
        }
    }
}

/// Hands `command` to the control thread and waits for its answer.
fn forward(command: Command, cx: &ClientCtx) -> Answer {
    let (tx, rx) = bounded(1);
    match cx.requests.try_send(Request { command, reply: tx }) {
        Ok(()) => match rx.recv_timeout(REPLY_TIMEOUT) {
            Ok(a) => a,
            // The control loop dropped the request unanswered: it stopped.
            Err(RecvTimeoutError::Disconnected) => Err(ApiError::failed("the gateway is stopping")),
            Err(RecvTimeoutError::Timeout) => {
                cx.stats.reply_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the gateway did not answer within {} s",
                        REPLY_TIMEOUT.as_secs()
                    ),
                ))
            }
        },
        Err(TrySendError::Full(_)) => {
            cx.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::new(
                ErrorCode::Busy,
                "too many requests waiting; try again",
            ))
        }
        Err(TrySendError::Disconnected(_)) => Err(ApiError::failed("the gateway is stopping")),
    }
}

/// Serves a subscription until the client leaves, the gateway stops, or
/// the subscriber falls behind.
fn subscribe(stream: &UnixStream, id: &Value, cx: &ClientCtx) {
    let Some((rx, lagged, gone)) = cx.hub.subscribe() else {
        cx.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
        let _ = write_line(
            stream,
            &api::reply_line(
                id,
                &Err(ApiError::new(
                    ErrorCode::Busy,
                    format!("{MAX_SUBSCRIBERS} subscribers already; try again"),
                )),
            ),
        );
        return;
    };
    cx.stats.subscribed.fetch_add(1, Ordering::Relaxed);
    // Marks the subscription gone however this thread ends.
    struct Gone(Arc<AtomicBool>);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _gone = Gone(gone);
    let ok = api::reply_line(id, &Ok(serde_json::json!({"subscribed": true})));
    if write_line(stream, &ok).is_err() {
        return;
    }
    loop {
        match rx.recv_timeout(SUBSCRIBER_POLL) {
            Ok(line) => {
                if write_line(stream, &line).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if cx.stop.load(Ordering::Relaxed) || client_left(stream) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if lagged.load(Ordering::Relaxed) {
                    let _ = write_line(
                        stream,
                        &api::reply_line(
                            id,
                            &Err(ApiError::new(
                                ErrorCode::Busy,
                                format!(
                                    "subscriber too slow ({SUBSCRIBER_QUEUE} events waiting): dropped; subscribe again"
                                ),
                            )),
                        ),
                    );
                }
                return;
            }
        }
    }
}

/// Whether a subscriber's client closed the connection. What it sends
/// after `subscribe` is read and ignored.
fn client_left(stream: &UnixStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 512];
    // Bounded: a client that keeps sending is not drained forever here.
    let mut reads = 0;
    let left = loop {
        match (&mut &*stream).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) if reads < 64 => reads += 1,
            Ok(_) => break false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).is_err() || left
}

#[cfg(test)]
mod tests;
