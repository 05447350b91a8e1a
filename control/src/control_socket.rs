//! The control socket (`espresso stats`, `tunnels`, `rekey`, `reload`),
//! served off the control thread.
//!
//! The control thread runs IKE; a client that connects and says nothing
//! must not hold it. So a thread of its own accepts clients, checks who
//! they are, reads one bounded request line with a deadline (each client
//! on a short-lived thread, a bounded number at once) and only then hands
//! the command to the control thread as a [`Request`], which the control
//! loop answers between its other work.
//!
//! Access: the socket file is mode 0600, or 0660 with the configured
//! group; and each client's credentials (`SO_PEERCRED`) must be root, the
//! gateway's own user, or a member of that group.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};

/// Everything that can go wrong binding the socket.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The longest request line (commands are a word and a tunnel name).
pub const MAX_REQUEST: usize = 512;
/// How long a client has to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the control thread has to answer (a `stats` waits for every
/// worker's snapshot).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long writing the answer may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; more are turned away.
pub const MAX_CLIENTS: usize = 8;
/// Requests waiting for the control thread at most.
const REQUEST_QUEUE: usize = MAX_CLIENTS;

/// A command for the control thread and where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// The request line, trimmed.
    pub command: String,
    /// The answer.
    pub reply: Sender<String>,
}

/// Who may use the socket besides root and our own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Members of this group (the socket is then 0660 and owned by it).
    pub group: Option<u32>,
}

/// The socket's counters (`control.socket.*` in `espresso stats`).
#[derive(Debug, Default)]
pub struct SocketStats {
    pub served: AtomicU64,
    /// Credentials that are not root, ours or the group's.
    pub refused_peer: AtomicU64,
    /// [`MAX_CLIENTS`] were being served, or the control thread had too
    /// many requests waiting.
    pub refused_busy: AtomicU64,
    /// No complete request line within [`READ_TIMEOUT`].
    pub read_timeouts: AtomicU64,
    /// A request line longer than [`MAX_REQUEST`].
    pub too_long: AtomicU64,
    /// The control thread did not answer within [`REPLY_TIMEOUT`].
    pub reply_timeouts: AtomicU64,
}

impl SocketStats {
    /// `control.socket.*` lines.
    pub fn lines(&self) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("served", &self.served),
            ("refused_peer", &self.refused_peer),
            ("refused_busy", &self.refused_busy),
            ("read_timeouts", &self.read_timeouts),
            ("too_long", &self.too_long),
            ("reply_timeouts", &self.reply_timeouts),
        ] {
            s.push_str(&format!(
                "control.socket.{k} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        s
    }
}

/// The running socket server.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    stats: Arc<SocketStats>,
    thread: Option<JoinHandle<()>>,
}

impl ControlSocket {
    /// Binds `path` (refusing if another gateway answers there), sets its
    /// mode and group, and starts serving. Requests arrive on the returned
    /// receiver.
    pub fn bind(path: &Path, access: Access) -> Result<(Self, Receiver<Request>), Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{}: another espresso is running", path.display()).into());
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
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
        let server = Server {
            access,
            uid: nix::unistd::geteuid().as_raw(),
            requests: tx,
            stats: stats.clone(),
            clients: Arc::new(AtomicUsize::new(0)),
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("espresso-ctl".into())
            .spawn(move || server.accept_loop(listener, &stop2))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                stop,
                stats,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// The counters.
    pub fn stats(&self) -> &SocketStats {
        &self.stats
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
    clients: Arc<AtomicUsize>,
}

/// Gives a client's place back when its thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Server {
    fn accept_loop(&self, listener: UnixListener, stop: &AtomicBool) {
        for stream in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
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
                let _ = reply_busy(stream);
                continue;
            }
            let slot = Slot(self.clients.clone());
            let requests = self.requests.clone();
            let stats = self.stats.clone();
            let spawned = std::thread::Builder::new()
                .name("espresso-ctl-client".into())
                .spawn(move || {
                    let _slot = slot;
                    serve_client(stream, &requests, &stats);
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
        if cred.uid() == 0 || cred.uid() == self.uid {
            return true;
        }
        match self.access.group {
            Some(gid) => cred.gid() == gid || in_supplementary_groups(cred.pid(), gid),
            None => false,
        }
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

fn reply_busy(mut stream: UnixStream) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.write_all(b"error: busy, try again\n")
}

/// Reads one request line within [`READ_TIMEOUT`] and at most
/// [`MAX_REQUEST`] bytes.
fn read_request(stream: &UnixStream, stats: &SocketStats) -> Option<String> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut reader = BufReader::new(stream.try_clone().ok()?.take(MAX_REQUEST as u64 + 1));
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match reader.read_until(b'\n', &mut line) {
            // End of input (the client shut down its side) or a whole line.
            Ok(0) => break,
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) if line.len() > MAX_REQUEST => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
    if line.len() > MAX_REQUEST {
        stats.too_long.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    Some(String::from_utf8_lossy(&line).trim().to_string())
}

fn serve_client(mut stream: UnixStream, requests: &Sender<Request>, stats: &SocketStats) {
    let Some(command) = read_request(&stream, stats) else {
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = stream.write_all(b"error: no valid request line\n");
        return;
    };
    let (tx, rx) = bounded(1);
    let answer = match requests.try_send(Request { command, reply: tx }) {
        Ok(()) => match rx.recv_timeout(REPLY_TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                stats.reply_timeouts.fetch_add(1, Ordering::Relaxed);
                "error: the gateway did not answer in time\n".to_string()
            }
        },
        Err(TrySendError::Full(_)) => {
            stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            "error: busy, try again\n".to_string()
        }
        Err(TrySendError::Disconnected(_)) => "error: the gateway is stopping\n".to_string(),
    };
    stats.served.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.write_all(answer.as_bytes());
}

/// Sends one command to a running gateway and returns its answer.
pub fn query(
    socket: &Path,
    command: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("{}: {e} (is espresso running?)", socket.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    std::io::Write::write_all(&mut s, format!("{command}\n").as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_socket(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("espresso-ctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("ctl.sock")
    }

    /// A control loop that answers `stats` at once.
    fn answer(rx: Receiver<Request>) -> JoinHandle<()> {
        std::thread::spawn(move || {
            while let Ok(r) = rx.recv() {
                let _ = r.reply.send(format!("answer to {}\n", r.command));
            }
        })
    }

    /// A client that connects and sends nothing does not delay another
    /// client's `stats`; it is dropped after the read timeout, counted.
    #[test]
    fn silent_client_does_not_delay_stats() {
        let path = temp_socket("silent");
        let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let control = answer(rx);
        let silent: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let t = Instant::now();
        let out = super::query(&path, "stats").unwrap();
        assert_eq!(out, "answer to stats\n");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        std::thread::sleep(READ_TIMEOUT + Duration::from_millis(300));
        assert_eq!(sock.stats().read_timeouts.load(Ordering::Relaxed), 3);
        drop(silent);
        drop(sock);
        control.join().unwrap();
        assert!(!path.exists());
    }

    /// Over-long request lines are refused; more than MAX_CLIENTS silent
    /// clients get "busy" rather than a thread each.
    #[test]
    fn long_requests_and_too_many_clients_are_refused() {
        let path = temp_socket("bounds");
        let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
        let control = answer(rx);
        let mut c = UnixStream::connect(&path).unwrap();
        c.write_all("x".repeat(MAX_REQUEST + 10).as_bytes())
            .unwrap();
        // The answer, or a reset for the bytes the server left unread.
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("error:"), "{out}");
        assert_eq!(sock.stats().too_long.load(Ordering::Relaxed), 1);
        assert_eq!(sock.stats().served.load(Ordering::Relaxed), 0);
        let silent: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut c = UnixStream::connect(&path).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert_eq!(out, "error: busy, try again\n");
        assert!(sock.stats().refused_busy.load(Ordering::Relaxed) >= 1);
        drop(silent);
        drop(sock);
        control.join().unwrap();
    }
}
