//! Telling systemd how the gateway is doing (sd_notify(3), the protocol
//! of `Type=notify` services): `READY=1` once the ports are up and the
//! workers hold the initial SAs and policies, `RELOADING=1` then `READY=1`
//! around a reload, `STOPPING=1` on shutdown, `STATUS=` lines for
//! `systemctl status`, and `WATCHDOG=1` from the control loop when the
//! unit sets `WatchdogSec=`. Outside systemd (`NOTIFY_SOCKET` unset) every
//! call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Sends `states`; a failure is logged (systemd then times the start-up
/// out or stops waiting for the reload, which says more than we could).
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The gateway is up: systemd starts the units ordered after it.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A one-line status for `systemctl status`.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// The gateway is stopping (SIGTERM, SIGINT or a worker gone).
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `RELOADING=1` now, `READY=1` when dropped, whether the reload worked or
/// not (a refused reload leaves the old configuration running).
#[derive(Debug)]
#[must_use = "READY=1 is sent when the guard is dropped"]
pub struct Reloading(());

impl Reloading {
    /// Sends `RELOADING=1` with the `MONOTONIC_USEC=` that systemd 253 and
    /// later want with it (older ones ignore the field).
    pub fn begin() -> Reloading {
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => notify(&[NotifyState::Reloading, now]),
            Err(_) => notify(&[NotifyState::Reloading]),
        }
        Reloading(())
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        notify(&[NotifyState::Ready]);
    }
}

/// `WATCHDOG=1` at half the unit's `WatchdogSec=`, from the loop of the
/// control thread: a control thread stuck (on a full worker queue, say)
/// stops them and systemd restarts the service.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Watchdog {
    /// From `WATCHDOG_USEC`/`WATCHDOG_PID` as systemd set them.
    pub fn from_env() -> Watchdog {
        Watchdog::new(sd_notify::watchdog_enabled())
    }

    /// A watchdog of `timeout` (`None`: off).
    pub fn new(timeout: Option<Duration>) -> Watchdog {
        Watchdog {
            every: timeout.filter(|t| !t.is_zero()).map(|t| t / 2),
            last: None,
        }
    }

    /// Whether a ping is due at `now` (and records it as sent).
    pub fn due(&mut self, now: Instant) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        if self.last.is_some_and(|l| now.duration_since(l) < every) {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// Pings systemd if a ping is due.
    pub fn ping(&mut self, now: Instant) {
        if self.due(now) {
            notify(&[NotifyState::Watchdog]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_at_half_the_timeout() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Some(Duration::from_secs(10)));
        assert!(w.due(t0));
        assert!(!w.due(t0 + Duration::from_secs(4)));
        assert!(w.due(t0 + Duration::from_secs(5)));
        assert!(!w.due(t0 + Duration::from_secs(9)));
        assert!(w.due(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn no_watchdog_never_pings() {
        let mut w = Watchdog::new(None);
        assert!(!w.due(Instant::now()));
        let mut w = Watchdog::new(Some(Duration::ZERO));
        assert!(!w.due(Instant::now()));
    }
}
