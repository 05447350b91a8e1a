//! A client of DPDK's telemetry socket (`dpdk_telemetry.v2`, a Unix
//! `SOCK_SEQPACKET` socket: one JSON message per command, after a JSON
//! greeting). Used to read an external DPDK program's port counters.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    connect, recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Largest reply DPDK 22.11 sends (its `MAX_OUTPUT_LEN`).
const MAX_REPLY: usize = 16 * 1024;

/// One connection.
#[derive(Debug)]
pub struct Telemetry {
    fd: OwnedFd,
}

/// The counters of `/ethdev/stats,N` the lab reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Packets the device dropped for lack of descriptors or buffers.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Send errors.
    pub oerrors: u64,
    /// Receive buffer allocation failures.
    pub rx_nombuf: u64,
}

impl Telemetry {
    /// Connects to `path` and reads the greeting.
    pub fn connect(path: &Path) -> Result<Self, Error> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        let mut t = Self { fd };
        t.read_reply()?;
        Ok(t)
    }

    /// Connects, retrying until `within` has passed (the socket appears
    /// once EAL is up).
    pub fn connect_within(path: &Path, within: Duration) -> Result<Self, Error> {
        let deadline = Instant::now() + within;
        loop {
            match Self::connect(path) {
                Ok(t) => return Ok(t),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("telemetry {}: {e}", path.display()).into())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn read_reply(&mut self) -> Result<serde_json::Value, Error> {
        let mut buf = vec![0u8; MAX_REPLY];
        let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err("telemetry socket closed".into());
        }
        Ok(serde_json::from_slice(&buf[..n])?)
    }

    /// Sends `command` (e.g. `/ethdev/stats,1`) and returns the value
    /// under the command's name in the reply.
    pub fn query(&mut self, command: &str) -> Result<serde_json::Value, Error> {
        send(self.fd.as_raw_fd(), command.as_bytes(), MsgFlags::empty())?;
        let mut reply = self.read_reply()?;
        let name = command.split(',').next().unwrap_or(command);
        reply
            .get_mut(name)
            .map(serde_json::Value::take)
            .ok_or_else(|| format!("telemetry: no `{name}` in the reply to `{command}`").into())
    }

    /// The counters of port `port`.
    pub fn port_stats(&mut self, port: u16) -> Result<PortStats, Error> {
        let v = self.query(&format!("/ethdev/stats,{port}"))?;
        Ok(parse_port_stats(&v)
            .ok_or_else(|| format!("telemetry: bad stats of port {port}: {v}"))?)
    }
}

/// The counters in an `/ethdev/stats,N` object.
pub fn parse_port_stats(v: &serde_json::Value) -> Option<PortStats> {
    let get = |k: &str| v.get(k)?.as_u64();
    Some(PortStats {
        ipackets: get("ipackets")?,
        opackets: get("opackets")?,
        imissed: get("imissed").unwrap_or(0),
        ierrors: get("ierrors").unwrap_or(0),
        oerrors: get("oerrors").unwrap_or(0),
        rx_nombuf: get("rx_nombuf").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_from_a_22_11_reply() {
        let reply: serde_json::Value = serde_json::from_str(
            r#"{"/ethdev/stats": {"ipackets": 10, "opackets": 7, "ibytes": 640, "obytes": 448, "imissed": 1, "ierrors": 0, "oerrors": 2, "rx_nombuf": 0, "q_ipackets": [10], "q_opackets": [7], "q_ibytes": [640], "q_obytes": [448], "q_errors": [0]}}"#,
        )
        .unwrap();
        let s = parse_port_stats(&reply["/ethdev/stats"]).unwrap();
        assert_eq!(
            (s.ipackets, s.opackets, s.imissed, s.oerrors),
            (10, 7, 1, 2)
        );
        assert!(parse_port_stats(&serde_json::json!({"opackets": 1})).is_none());
    }
}
