//! The socket server against a fake control loop: bounds, refusals,
//! concurrency and subscriptions, without DPDK.

use super::*;
use crate::api::{Client, ClientError};
use serde_json::json;
use std::io::{BufRead, BufReader};

fn temp_socket(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("espresso-ctl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("ctl.sock")
}

/// A control loop that answers every command at once with its name, and
/// counts what reached it.
fn fake_control(rx: Receiver<Request>) -> (JoinHandle<()>, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let t = std::thread::spawn(move || {
        while let Ok(r) = rx.recv() {
            seen2.fetch_add(1, Ordering::Relaxed);
            let answer = match r.command {
                Command::Rekey { tunnel } if tunnel == "nope" => {
                    Err(ApiError::not_found("no tunnel nope"))
                }
                c => Ok(json!({ "command": format!("{c:?}") })),
            };
            let _ = r.reply.send(answer);
        }
    });
    (t, seen)
}

/// Sends raw bytes and reads one reply line.
fn raw(path: &Path, bytes: &[u8]) -> Value {
    let mut c = UnixStream::connect(path).unwrap();
    c.write_all(bytes).unwrap();
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn error_code(v: &Value) -> &str {
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["v"], json!(1), "{v}");
    v["error"]["code"].as_str().unwrap()
}

/// Malformed JSON, unknown fields, commands and versions are answered
/// with a JSON error naming the problem, counted by reason, and never
/// reach the control thread; the connection stays usable.
#[test]
fn refusals_are_answered_counted_and_stay_off_the_control_thread() {
    let path = temp_socket("refusals");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let (control, seen) = fake_control(rx);
    let cases: [(&str, &str, Refusal, &str); 6] = [
        (
            "{\"v\":1,\"cmd\":",
            "bad_request",
            Refusal::Malformed,
            "not a JSON",
        ),
        ("[\"stats\"]", "bad_request", Refusal::NotAnObject, "object"),
        (
            r#"{"v":1,"id":1,"cmd":"stats","sudo":true}"#,
            "bad_request",
            Refusal::UnknownField,
            "`sudo`",
        ),
        (
            r#"{"v":1,"id":2,"cmd":"format-disk"}"#,
            "unknown_command",
            Refusal::UnknownCommand,
            "`format-disk`",
        ),
        (
            r#"{"v":7,"id":3,"cmd":"stats"}"#,
            "unsupported_version",
            Refusal::UnsupportedVersion,
            "version 7",
        ),
        (
            r#"{"v":1,"id":4,"cmd":"rekey","args":{"tunnel":5}}"#,
            "bad_request",
            Refusal::BadArgs,
            "rekey",
        ),
    ];
    // All on one connection, then a good request on the same one.
    let mut c = UnixStream::connect(&path).unwrap();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    for (req, code, reason, text) in cases {
        c.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(error_code(&v), code, "{req}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(text), "{req}: {msg}");
        assert_eq!(sock.stats().refused(reason), 1, "{req}");
    }
    c.write_all(b"{\"v\":1,\"id\":\"last\",\"cmd\":\"tunnels\"}\n")
        .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], json!("last"));
    assert_eq!(v["result"]["command"], json!("Tunnels"));
    assert_eq!(seen.load(Ordering::Relaxed), 1);
    assert_eq!(sock.stats().served.load(Ordering::Relaxed), 7);
    let lines = sock.stats().lines();
    assert!(
        lines.contains("control.socket.refused.unknown_command 1\n"),
        "{lines}"
    );
    drop(c);
    drop(sock);
    control.join().unwrap();
    assert!(!path.exists());
}

/// Several requests in one write are answered in order; `version` is
/// answered without the control thread; errors of the command keep their
/// code.
#[test]
fn pipelined_requests_on_one_connection() {
    let path = temp_socket("pipeline");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o077, 0, "{dir_mode:o}");
    let (control, seen) = fake_control(rx);
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(
        b"{\"v\":1,\"id\":1,\"cmd\":\"version\"}\n\n{\"v\":1,\"id\":2,\"cmd\":\"rekey\",\"args\":{\"tunnel\":\"nope\"}}\n{\"v\":1,\"id\":3,\"cmd\":\"log\",\"args\":{\"filter\":\"debug\"}}",
    )
    .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let replies: Vec<Value> = BufReader::new(c)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0]["result"]["protocol"], json!(1));
    assert_eq!(
        replies[0]["result"]["version"],
        json!(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(replies[1]["id"], json!(2));
    assert_eq!(error_code(&replies[1]), "not_found");
    assert_eq!(
        replies[2]["result"]["command"],
        json!("Log { filter: Some(\"debug\") }")
    );
    assert_eq!(seen.load(Ordering::Relaxed), 2);
    drop(sock);
    control.join().unwrap();
}

/// A client that stalls (silent, or half-way through a request) is
/// dropped after the read deadline, counted, while another is served at
/// once.
#[test]
fn stalled_clients_are_dropped_while_others_are_served() {
    let path = temp_socket("stall");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let (control, _) = fake_control(rx);
    let silent = UnixStream::connect(&path).unwrap();
    let mut partial = UnixStream::connect(&path).unwrap();
    partial.write_all(b"{\"v\":1,\"cmd\":\"sta").unwrap();
    let t = Instant::now();
    let r = api::call(&path, "stats", json!({})).unwrap();
    assert_eq!(r["command"], json!("Stats"));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // Both are told, then closed, within the deadline (plus slack).
    for s in [silent, partial] {
        s.set_read_timeout(Some(READ_TIMEOUT * 3)).unwrap();
        let mut out = String::new();
        let t = Instant::now();
        (&s).read_to_string(&mut out).unwrap();
        assert!(t.elapsed() < READ_TIMEOUT + Duration::from_secs(1));
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(error_code(&v), "timeout");
    }
    assert_eq!(sock.stats().read_timeouts.load(Ordering::Relaxed), 2);
    drop(sock);
    control.join().unwrap();
}

/// A request over the limit is refused and the client dropped; more than
/// MAX_CLIENTS connections get "busy" rather than a thread each.
#[test]
fn oversize_requests_and_too_many_clients_are_refused() {
    let path = temp_socket("bounds");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let (control, seen) = fake_control(rx);
    let mut c = UnixStream::connect(&path).unwrap();
    // A request that would be valid, padded past the limit.
    let big = format!(
        "{{\"v\":1,\"cmd\":\"stats\",\"id\":\"{}\"}}\n",
        "x".repeat(MAX_REQUEST)
    );
    // The server stops reading at the limit: the rest of the write may
    // fail with a reset.
    let _ = c.write_all(big.as_bytes());
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    if !out.is_empty() {
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(error_code(&v), "bad_request");
    }
    assert_eq!(sock.stats().too_long.load(Ordering::Relaxed), 1);
    assert_eq!(seen.load(Ordering::Relaxed), 0);
    // Just under the limit is fine.
    let fits = format!(
        "{{\"v\":1,\"cmd\":\"stats\",\"id\":\"{}\"}}\n",
        "x".repeat(MAX_REQUEST - 64)
    );
    let v = raw(&path, fits.as_bytes());
    assert_eq!(v["ok"], json!(true));
    // Silent clients until the server answers one with "busy" at once:
    // MAX_CLIENTS of them hold every place (however slowly a loaded
    // machine accepts them; a silent one is dropped after READ_TIMEOUT,
    // so a fixed count with a fixed sleep was flaky).
    let mut silent: Vec<UnixStream> = Vec::new();
    let v = loop {
        assert!(silent.len() <= 8 * MAX_CLIENTS, "never busy");
        let s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut line = String::new();
        match BufReader::new(&s).read_line(&mut line) {
            Ok(n) if n > 0 => break serde_json::from_str::<Value>(line.trim()).unwrap(),
            _ => silent.push(s),
        }
    };
    assert!(
        silent.len() >= MAX_CLIENTS - 1,
        "busy after {}",
        silent.len()
    );
    assert_eq!(error_code(&v), "busy");
    assert!(sock.stats().refused_busy.load(Ordering::Relaxed) >= 1);
    drop(silent);
    drop(sock);
    control.join().unwrap();
}

/// Clients on their own threads, each with several requests on one
/// connection, all get their own answers.
#[test]
fn concurrent_clients_are_served() {
    let path = temp_socket("concurrent");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let (control, seen) = fake_control(rx);
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&path).unwrap();
                for j in 0..20 {
                    let tunnel = format!("t{i}-{j}");
                    let r = c.call("rekey", json!({ "tunnel": tunnel })).unwrap();
                    assert_eq!(
                        r["command"],
                        json!(format!("Rekey {{ tunnel: \"{tunnel}\" }}"))
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(seen.load(Ordering::Relaxed), 120);
    assert_eq!(sock.stats().served.load(Ordering::Relaxed), 120);
    drop(sock);
    control.join().unwrap();
}

/// Subscribers receive every event in order; a subscriber that stops
/// reading is dropped once its queue is full, counted, without the
/// emitter ever waiting, and is told so when it reads again; the number
/// of subscribers is bounded.
#[test]
fn subscribers_get_events_and_slow_ones_are_dropped() {
    let path = temp_socket("events");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let (control, _) = fake_control(rx);
    let mut fast = Client::connect(&path).unwrap();
    assert_eq!(
        fast.call("subscribe", json!({})).unwrap(),
        json!({"subscribed": true})
    );
    let mut slow = UnixStream::connect(&path).unwrap();
    slow.write_all(b"{\"v\":1,\"id\":\"s\",\"cmd\":\"subscribe\"}\n")
        .unwrap();
    let mut others: Vec<Client> = (0..MAX_SUBSCRIBERS - 2)
        .map(|_| {
            let mut c = Client::connect(&path).unwrap();
            c.call("subscribe", json!({})).unwrap();
            c
        })
        .collect();
    let t = Instant::now();
    while sock.subscribers() < MAX_SUBSCRIBERS {
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(10));
    }
    match Client::connect(&path).unwrap().call("subscribe", json!({})) {
        Err(ClientError::Api(e)) => assert_eq!(e.code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
    // The fast subscriber reads on a thread of its own.
    let n_events = 6_000;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < n_events {
            let v = fast.next_event().unwrap().unwrap();
            got.push(v["event"]["tunnel"].as_str().unwrap().to_string());
        }
        got
    });
    // Long names fill the slow one's socket buffer, then its queue.
    let pad = "x".repeat(1000);
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..n_events {
        let e = Instant::now();
        sock.emit(&Event::TunnelUp {
            tunnel: format!("{i}{pad}"),
        });
        worst = worst.max(e.elapsed());
        // Pace the emitter so that the fast reader keeps up even on a
        // busy machine (it has SUBSCRIBER_QUEUE events of slack).
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Far below WRITE_TIMEOUT, which a blocked write to the slow one
    // would take.
    assert!(worst < Duration::from_millis(500), "emit waited {worst:?}");
    let got = reader.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(30));
    for (i, name) in got.iter().enumerate() {
        assert_eq!(name, &format!("{i}{pad}"));
    }
    assert_eq!(
        sock.stats()
            .subscribers_dropped_slow
            .load(Ordering::Relaxed),
        1 + others.len() as u64,
        "the idle subscribers fell behind too"
    );
    assert_eq!(sock.stats().events.load(Ordering::Relaxed), n_events as u64);
    // The slow one, reading at last, gets its backlog and then the error.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let lines: Vec<Value> = BufReader::new(&slow)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines[0]["result"], json!({"subscribed": true}));
    let last = lines.last().unwrap();
    assert_eq!(last["id"], json!("s"));
    assert_eq!(error_code(last), "busy");
    assert!(lines.len() > SUBSCRIBER_QUEUE && lines.len() < n_events);
    for c in &mut others {
        let mut n = 0;
        loop {
            match c.next_event() {
                Ok(Some(v)) if v.get("event").is_some() => n += 1,
                Ok(Some(v)) => {
                    assert_eq!(v["error"]["code"], json!("busy"));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(n >= SUBSCRIBER_QUEUE);
    }
    drop(sock);
    control.join().unwrap();
}

/// Closing a subscription frees its place.
#[test]
fn a_subscriber_that_leaves_frees_its_place() {
    let path = temp_socket("leave");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let (control, _) = fake_control(rx);
    for _ in 0..MAX_SUBSCRIBERS + 2 {
        let mut c = Client::connect(&path).unwrap();
        c.call("subscribe", json!({})).unwrap();
        sock.emit(&Event::Reload {
            trigger: "sighup".into(),
            ok: true,
            message: "reloaded".into(),
        });
        let v = c.next_event().unwrap().unwrap();
        assert_eq!(v["event"]["type"], json!("reload"));
        drop(c);
        let t = Instant::now();
        while sock.subscribers() > 0 {
            assert!(t.elapsed() < SUBSCRIBER_POLL * 4);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(sock);
    control.join().unwrap();
}

/// Who may connect: root, the gateway's user, and with a group its
/// members (primary or supplementary); nobody else.
#[test]
fn peer_credentials() {
    let none = Access { group: None };
    let group = Access { group: Some(50) };
    assert!(permitted(0, 100, 1000, none, || false));
    assert!(permitted(1000, 100, 1000, none, || false));
    assert!(!permitted(1001, 100, 1000, none, || true));
    assert!(permitted(1001, 50, 1000, group, || false));
    assert!(permitted(1001, 100, 1000, group, || true));
    assert!(!permitted(1001, 100, 1000, group, || false));
}

/// A client of another user is refused by the credentials check (needs
/// root to switch users).
#[test]
fn other_users_are_refused() {
    use testkit::Need;
    testkit::require!(
        Need::Root,
        Need::Program("setpriv"),
        Need::Program(testkit::PYTHON)
    );
    let path = temp_socket("peer");
    let (sock, rx) = ControlSocket::bind(&path, Access { group: None }).unwrap();
    let (control, seen) = fake_control(rx);
    // Let anyone reach the socket file, so that only the credentials
    // check stands between nobody and the gateway.
    let dir = path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(testkit::PYTHON)
        .arg("-c")
        .arg(
            "import socket,sys\n\
             s=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.settimeout(3)\n\
             try:\n s.sendall(b'{\"v\":1,\"cmd\":\"stats\"}\\n')\n got=s.recv(100)\n\
             except (BrokenPipeError, ConnectionResetError):\n got=b''\n\
             sys.exit(0 if got==b'' else 1)",
        )
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "nobody was answered: {status:?}");
    assert_eq!(sock.stats().refused_peer.load(Ordering::Relaxed), 1);
    assert_eq!(seen.load(Ordering::Relaxed), 0);
    drop(sock);
    control.join().unwrap();
}
