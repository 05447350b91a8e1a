//! The safe layer over DPDK: the EAL, mempools, ports and mbufs, and the
//! poll-mode [`Worker`] that runs the data plane's `Node` over them.
//!
//! This crate is the only caller of `dpdk-sys`. Every `unsafe` block says
//! why it is sound. Built without DPDK (see `ffi/dpdk-sys/build.rs`) it is
//! empty.
//! Ownership follows capsule's (capsule-rs) lessons: an [`Mbuf`]
//! has one owner, is not `Clone`, frees itself on drop, and is handed to the
//! NIC by [`TxQueue::tx_burst`], which leaves unsent mbufs with the caller.

#![cfg(have_dpdk)]

mod eal;
mod mbuf;
mod mempool;
mod port;
mod worker;

pub use eal::{register_thread, unregister_thread, Eal, EalError, TELEMETRY_SOCKET};
pub use mbuf::{Mbuf, MbufError};
pub use mempool::{Mempool, MempoolConfig, PoolMemory};
pub use port::{DescLimits, DeviceInfo, LinkStatus, Port, PortConfig, PortStats, RxQueue, TxQueue};
pub use worker::{Worker, WorkerPorts};

pub use dataplane::BURST_SIZE;

use std::ffi::CStr;
use std::fmt;

/// A failed DPDK call: which operation, and the errno DPDK reported
/// (`rte_errno` or a negative return value).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DpdkError {
    /// The DPDK function that failed.
    pub op: &'static str,
    /// The positive errno value.
    pub errno: i32,
}

impl DpdkError {
    pub(crate) fn new(op: &'static str, errno: i32) -> Self {
        Self {
            op,
            errno: errno.abs(),
        }
    }

    /// Builds an error from `rte_errno` after a call that signals failure
    /// through a null pointer or -1.
    pub(crate) fn from_rte_errno(op: &'static str) -> Self {
        // SAFETY: reads the calling thread's `rte_errno`; no preconditions.
        let errno = unsafe { dpdk_sys::espresso_errno() };
        Self::new(op, errno)
    }

    /// Turns a DPDK status code (0 or a negative errno) into a `Result`.
    pub(crate) fn check(op: &'static str, rc: i32) -> Result<i32, DpdkError> {
        if rc < 0 {
            Err(Self::new(op, rc))
        } else {
            Ok(rc)
        }
    }

    /// DPDK's text for the errno.
    pub fn message(&self) -> String {
        // SAFETY: `rte_strerror` accepts any errno and returns a pointer to a
        // NUL-terminated string in a static or thread-local buffer.
        let ptr = unsafe { dpdk_sys::rte_strerror(self.errno) };
        if ptr.is_null() {
            return format!("errno {}", self.errno);
        }
        // SAFETY: non-null, NUL-terminated, valid until the next call on this
        // thread; copied out immediately.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

impl fmt::Debug for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DpdkError({}: errno {})", self.op, self.errno)
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {} (errno {})",
            self.op,
            self.message(),
            self.errno
        )
    }
}

impl std::error::Error for DpdkError {}

/// The TSC clock (`cpu::clock`): after [`Eal::init`], [`tsc_hz`] is the
/// frequency EAL measured.
pub use cpu::clock::{rdtsc, tsc_hz};
