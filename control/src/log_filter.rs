//! The process's log filter, replaceable while running (`[control] log`
//! on reload).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber: logs to standard error, filtered by
/// `RUST_LOG` or else `default`, with a filter [`set`] can replace.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let (layer, handle) = reload::Layer::new(filter);
    let _ = HANDLE.set(handle);
    tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}

/// Replaces the log filter with `filter` (`EnvFilter` syntax). False (and
/// a warning) when it does not parse or [`init`] did not install the
/// subscriber.
pub fn set(filter: &str) -> bool {
    let parsed = match EnvFilter::try_new(filter) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%filter, error = %e, "log filter not changed: it does not parse");
            return false;
        }
    };
    match HANDLE.get().map(|h| h.reload(parsed)) {
        Some(Ok(())) => {
            tracing::info!(%filter, "log filter replaced");
            true
        }
        _ => {
            tracing::warn!(%filter, "log filter not changed: no replaceable filter installed");
            false
        }
    }
}
