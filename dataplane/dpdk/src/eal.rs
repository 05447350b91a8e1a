//! The Environment Abstraction Layer: initialised once per process.

use std::ffi::CString;
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::DpdkError;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Why [`Eal::init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum EalError {
    /// `Eal::init` was already called in this process (DPDK allows one).
    #[error("the DPDK EAL is already initialised in this process")]
    AlreadyInitialised,
    /// An argument held a NUL byte.
    #[error("EAL argument {0:?} contains a NUL byte")]
    BadArgument(String),
    /// `rte_eal_init` failed.
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
}

/// Proof that DPDK's EAL is up. APIs that need the EAL take `&Eal`.
///
/// The EAL lives until the process exits: DPDK cannot be initialised twice
/// in one process, and `rte_eal_cleanup` while mempools or ports exist would
/// leave them dangling, so this value deliberately does not clean up on drop.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Runs `rte_eal_init` with `args` (the program name first, as in argv).
    /// Fails if called a second time in the process.
    pub fn init<I, S>(args: I) -> Result<Eal, EalError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<CString> = args
            .into_iter()
            .map(|a| {
                CString::new(a.as_ref()).map_err(|_| EalError::BadArgument(a.as_ref().to_owned()))
            })
            .collect::<Result<_, _>>()?;
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(EalError::AlreadyInitialised);
        }
        // DPDK may keep pointers into argv (and permutes the array), so the
        // strings are leaked: this runs once per process.
        let args: &'static mut [CString] = Vec::leak(args);
        let argv: &'static mut [*mut c_char] = Vec::leak(
            args.iter_mut()
                .map(|a| a.as_ptr() as *mut c_char)
                .chain(std::iter::once(std::ptr::null_mut()))
                .collect(),
        );
        let argc = (argv.len() - 1) as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings followed by a
        // null pointer, all alive for the rest of the process; this is the
        // only call of rte_eal_init in the process (guarded above).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(DpdkError::from_rte_errno("rte_eal_init").into());
        }
        remove_empty_runtime_dir();
        // SAFETY: reads a value EAL set during the init that just
        // succeeded; no pointer is involved.
        cpu::clock::set_tsc_hz(unsafe { dpdk_sys::rte_get_tsc_hz() });
        Ok(Eal { _private: () })
    }

    /// TSC ticks per second, as EAL measured them (`cpu::clock::tsc_hz`
    /// once EAL is up).
    pub fn tsc_hz(&self) -> u64 {
        cpu::clock::tsc_hz()
    }

    /// Number of EAL lcores.
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: valid after EAL init.
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    /// Number of Ethernet ports probed so far.
    pub fn port_count(&self) -> u16 {
        // SAFETY: valid after EAL init.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// Whether EAL runs on hugepages.
    pub fn has_hugepages(&self) -> bool {
        // SAFETY: valid after EAL init; reads its configuration.
        unsafe { dpdk_sys::rte_eal_has_hugepages() != 0 }
    }

    /// EAL's runtime directory: `/var/run/dpdk/<file-prefix>` for root
    /// (`$XDG_RUNTIME_DIR/dpdk/<file-prefix>`, else `/tmp/dpdk/...`, for
    /// other users), which DPDK 22.11 fixes at `rte_eal_init`.
    pub fn runtime_dir(&self) -> Option<PathBuf> {
        runtime_dir()
    }

    /// DPDK's telemetry socket (`<runtime dir>/dpdk_telemetry.v2`, a
    /// `SOCK_SEQPACKET` socket answering JSON to commands like
    /// `/ethdev/list`), if EAL created it (telemetry is on unless
    /// `--no-telemetry`).
    pub fn telemetry_socket(&self) -> Option<PathBuf> {
        let path = runtime_dir()?.join(TELEMETRY_SOCKET);
        path.exists().then_some(path)
    }

    /// Removes the telemetry sockets' names and EAL's runtime directory if
    /// nothing else is left in it, so that a stopped process leaves no
    /// trace: DPDK unlinks the sockets at exit but never the directory.
    /// Telemetry cannot be reached afterwards; call it last.
    pub fn remove_runtime_files(&self) {
        let Some(dir) = runtime_dir() else {
            return;
        };
        for name in [TELEMETRY_SOCKET, TELEMETRY_LEGACY_SOCKET] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let _ = std::fs::remove_dir(dir);
    }
}

/// The telemetry socket's name in EAL's runtime directory (DPDK's
/// `get_socket_path`: `dpdk_telemetry.v<version>`).
pub const TELEMETRY_SOCKET: &str = "dpdk_telemetry.v2";
/// The legacy (v1) telemetry socket, created only when a library
/// registers legacy commands.
const TELEMETRY_LEGACY_SOCKET: &str = "telemetry";

fn runtime_dir() -> Option<PathBuf> {
    // SAFETY: valid after EAL init; returns a pointer to a static string.
    let ptr = unsafe { dpdk_sys::rte_eal_get_runtime_dir() };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null NUL-terminated static string.
    let dir = unsafe { std::ffi::CStr::from_ptr(ptr) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

/// With `--no-shconf` EAL creates its runtime directory
/// (`/var/run/dpdk/<file-prefix>`) but puts nothing in it but the telemetry
/// socket and never removes it. Remove it while it is empty so that
/// side-by-side runs leave no trace; `remove_dir` refuses a non-empty
/// directory, so this never deletes state (with telemetry on, see
/// [`Eal::remove_runtime_files`]).
fn remove_empty_runtime_dir() {
    if let Some(dir) = runtime_dir() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Registers the calling (non-EAL) thread with DPDK so that it gets an
/// lcore id, and with it per-lcore mempool caches. Returns the lcore id.
/// Workers call this once when they start.
pub fn register_thread(_eal: &Eal) -> Result<u32, DpdkError> {
    // SAFETY: EAL is initialised (`_eal`); registering the current thread
    // has no other precondition.
    let rc = unsafe { dpdk_sys::rte_thread_register() };
    if rc < 0 {
        return Err(DpdkError::from_rte_errno("rte_thread_register"));
    }
    // SAFETY: reads the calling thread's lcore id.
    Ok(unsafe { dpdk_sys::espresso_lcore_id() })
}

/// Undoes [`register_thread`] (before the thread exits).
pub fn unregister_thread() {
    // SAFETY: valid for a registered or unregistered thread alike.
    unsafe { dpdk_sys::rte_thread_unregister() }
}
