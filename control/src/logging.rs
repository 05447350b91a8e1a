//! The process's log: one `tracing` subscriber, installed first thing in
//! `main`, whose filter and output can both be changed later.
//!
//! The subscriber is a registry with two reloadable layers
//! (`tracing_subscriber::reload`): an [`EnvFilter`] and the output layer
//! (text, JSON or the journal), boxed. The output is chosen by
//! `[control] log_format`, which is only known once the configuration has
//! been read; but the configuration's own loading, and everything before
//! it, must be logged too. Reading the file before installing a subscriber
//! would leave those messages nowhere (or need a second parse), so the
//! output starts as text on stderr and [`Logging::apply_config`] swaps it
//! once `espresso run` has its configuration. The same call applies a
//! changed `[control] log` or `log_format` on reload. The reload layer
//! costs one uncontended read lock per event that passes the filter, well
//! off the data path (workers log only on rare events).
//!
//! Only `espresso run` applies its configuration here: `espresso check`
//! and the client commands keep text on stderr, where their user is.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{GatewayConfig, LogFormat};

/// The filter when neither `RUST_LOG` nor the configuration says.
pub const DEFAULT_FILTER: &str = "info";

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

/// Where the log goes now (the resolved `[control] log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Human-readable lines on stderr.
    Text,
    /// JSON objects on stderr, one per line.
    Json,
    /// The journal's native protocol.
    Journald,
}

impl Sink {
    /// Its name in messages and in `[control] log_format`.
    pub fn name(self) -> &'static str {
        match self {
            Sink::Text => "text",
            Sink::Json => "json",
            Sink::Journald => "journald",
        }
    }
}

/// The handle on the installed subscriber: read and change the filter at
/// run time, apply the configuration's log settings.
#[derive(Clone)]
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Filtered>,
    /// `RUST_LOG` as it was at start, if set and valid: it wins over
    /// `[control] log` (but not over [`Logging::set_filter`], which an
    /// operator asks for explicitly).
    env_filter: Option<String>,
    sink: Arc<Mutex<Sink>>,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging")
            .field("filter", &self.filter())
            .field("sink", &self.sink())
            .field("env_filter", &self.env_filter)
            .finish()
    }
}

static LOGGING: OnceLock<Logging> = OnceLock::new();

/// Installs the process's subscriber: text on stderr, filtered by
/// `RUST_LOG` or [`DEFAULT_FILTER`]. Call it once, first thing; later calls
/// return the same handle. If another subscriber was installed already
/// (a test harness), the handle still works but changes nothing visible.
pub fn init() -> &'static Logging {
    LOGGING.get_or_init(|| {
        let env = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
        let (filter, env_filter, bad_env) = match env.as_deref().map(EnvFilter::try_new) {
            Some(Ok(f)) => (f, env.clone(), None),
            Some(Err(e)) => (EnvFilter::new(DEFAULT_FILTER), None, Some(e.to_string())),
            None => (EnvFilter::new(DEFAULT_FILTER), None, None),
        };
        let (filter_layer, filter) = reload::Layer::new(filter);
        let (output_layer, output) = reload::Layer::new(output_layer(Sink::Text));
        let installed = tracing_subscriber::registry()
            .with(filter_layer)
            .with(output_layer)
            .try_init()
            .is_ok();
        if let (Some(e), Some(env)) = (bad_env, env) {
            tracing::warn!(rust_log = %env, error = %e, "RUST_LOG is not a log filter; using {DEFAULT_FILTER}");
        }
        if !installed {
            tracing::debug!("a subscriber was installed already; espresso's log settings do not apply");
        }
        Logging {
            filter,
            output,
            env_filter,
            sink: Arc::new(Mutex::new(Sink::Text)),
        }
    })
}

/// The handle [`init`] installed, if it ran (it does in `espresso`).
pub fn get() -> Option<&'static Logging> {
    LOGGING.get()
}

impl Logging {
    /// The filter in force, in `EnvFilter` syntax.
    pub fn filter(&self) -> String {
        self.filter
            .with_current(|f| f.to_string())
            .unwrap_or_default()
    }

    /// Replaces the filter (`EnvFilter` syntax, e.g. `info` or
    /// `control=debug,warn`). A filter that does not parse changes nothing.
    pub fn set_filter(&self, f: &str) -> Result<(), String> {
        let new = EnvFilter::try_new(f).map_err(|e| format!("\"{f}\" is not a log filter: {e}"))?;
        let old = self.filter();
        let to = new.to_string();
        if old != to {
            // Under the old filter, which let the operator see this far.
            tracing::info!(from = %old, to = %to, "log filter changes");
        }
        self.filter.reload(new).map_err(|e| e.to_string())
    }

    /// Where the log goes now.
    pub fn sink(&self) -> Sink {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `[control] log` (unless `RUST_LOG` is set: it wins, and the
    /// log says so) and `[control] log_format`. Called by `espresso run`
    /// once the configuration is read, and again on each reload.
    pub fn apply_config(&self, config: &GatewayConfig) {
        self.set_sink(resolve(config.control.log_format, stderr_is_journal()));
        let wanted = &config.control.log;
        match &self.env_filter {
            Some(env) => {
                if env != wanted {
                    // A warning, so that a RUST_LOG quieter than info still
                    // shows why the file's setting has no effect.
                    tracing::warn!(rust_log = %env, control_log = %wanted, "RUST_LOG is set and wins over [control] log");
                }
            }
            None => {
                // Validated with the configuration; a failure here would be
                // a bug in that validation, so it is logged, not fatal.
                if let Err(e) = self.set_filter(wanted) {
                    tracing::error!(error = %e, "[control] log not applied");
                }
            }
        }
    }

    /// Switches the output. The journal is reached through its socket;
    /// without one (no systemd-journald on this machine), text on stderr.
    fn set_sink(&self, want: Sink) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if *sink == want {
            return;
        }
        let (layer, got, error) = match want {
            Sink::Journald => match tracing_journald::layer() {
                Ok(j) => (
                    Box::new(j.with_priority_mappings(journal_priorities())) as Output,
                    Sink::Journald,
                    None,
                ),
                Err(e) => (output_layer(Sink::Text), Sink::Text, Some(e)),
            },
            other => (output_layer(other), other, None),
        };
        if got == *sink {
            if let Some(e) = error {
                tracing::warn!(error = %e, "no journal to log to; logging text to stderr");
            }
            return;
        }
        // Said on the old output, so that whoever reads it knows where to
        // look next.
        tracing::info!(to = got.name(), "log output changes");
        if let Err(e) = self.output.reload(layer) {
            tracing::error!(error = %e, "log output not changed");
            return;
        }
        *sink = got;
        if let Some(e) = error {
            tracing::warn!(error = %e, "no journal to log to; logging text to stderr");
        }
    }
}

/// Syslog priorities by level, so that `journalctl -p info` means what
/// `[control] log = "info"` does (the crate's default puts INFO at
/// notice, DEBUG at info).
fn journal_priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    let mut m = tracing_journald::PriorityMappings::new();
    m.error = Priority::Error;
    m.warn = Priority::Warning;
    m.info = Priority::Informational;
    m.debug = Priority::Debug;
    m.trace = Priority::Debug;
    m
}

fn output_layer(sink: Sink) -> Output {
    let ansi = std::io::stderr().is_terminal();
    match sink {
        Sink::Json => Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        ),
        // Journald is set up in `set_sink` (it can fail); text otherwise.
        Sink::Text | Sink::Journald => Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr),
        ),
    }
}

/// `[control] log_format` on this process: `auto` is the journal when
/// stderr is the journal, text otherwise.
pub fn resolve(format: LogFormat, stderr_is_journal: bool) -> Sink {
    match format {
        LogFormat::Auto if stderr_is_journal => Sink::Journald,
        LogFormat::Auto | LogFormat::Text => Sink::Text,
        LogFormat::Json => Sink::Json,
        LogFormat::Journald => Sink::Journald,
    }
}

/// Whether stderr is connected to the journal: systemd sets
/// `JOURNAL_STREAM` to the device and inode of that stream, and a process
/// must compare them with its stderr's, since the variable is inherited by
/// children whose stderr may have been redirected (systemd.exec(5),
/// "Environment variables in spawned processes").
pub fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => journal_stream_matches(&stream, m.dev(), m.ino()),
        Err(_) => false,
    }
}

/// `JOURNAL_STREAM`'s `DEVICE:INODE` (decimal) against a file's.
pub fn journal_stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    match var.split_once(':') {
        Some((d, i)) => d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino),
        None => false,
    }
}

/// The control API's `log` command reads and changes the filter here.
impl crate::api::LogFilter for Logging {
    fn get(&self) -> String {
        self.filter()
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        self.set_filter(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_compared_field_by_field() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("9:1234", 8, 1234));
        assert!(!journal_stream_matches("8-1234", 8, 1234));
        assert!(!journal_stream_matches("8:", 8, 0));
        assert!(!journal_stream_matches(":1234", 0, 1234));
        assert!(!journal_stream_matches("8:1234:5", 8, 1234));
        assert!(!journal_stream_matches("", 0, 0));
    }

    #[test]
    fn auto_is_the_journal_only_under_it() {
        assert_eq!(resolve(LogFormat::Auto, true), Sink::Journald);
        assert_eq!(resolve(LogFormat::Auto, false), Sink::Text);
        assert_eq!(resolve(LogFormat::Text, true), Sink::Text);
        assert_eq!(resolve(LogFormat::Json, true), Sink::Json);
        assert_eq!(resolve(LogFormat::Journald, false), Sink::Journald);
    }

    /// The filter round-trips through the reload handle, a bad one is
    /// refused and leaves the old one in force.
    #[test]
    fn filter_changes_at_run_time() {
        let l = init();
        l.set_filter("control=debug,warn").unwrap();
        let f = l.filter();
        assert!(f.contains("control=debug") && f.contains("warn"), "{f}");
        let e = l.set_filter("info,=[").unwrap_err();
        assert!(e.contains("not a log filter"), "{e}");
        assert_eq!(l.filter(), f);
        // The other tests of this binary share the subscriber: leave it
        // silent.
        l.set_filter("off").unwrap();
        assert_eq!(l.filter(), "off");
    }
}
