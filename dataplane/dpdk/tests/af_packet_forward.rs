//! Foundation acceptance test: two veth pairs inside a namespace of the
//! test's own; both kernel-facing ends opened as `net_af_packet` ports with
//! `--no-huge`; 10,000 frames of mixed sizes (60-1514 bytes) sent from the
//! kernel into port 0 are forwarded in Rust to port 1 and checked, byte for
//! byte, on the kernel side; afterwards the mempool is full again.
//!
//! Needs root (namespaces, raw sockets) and DPDK, as CI has; skipped
//! without them (failed under `ESPRESSO_TEST_FULL`).
#![cfg(have_dpdk)]

mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dpdk::{Eal, Mempool, MempoolConfig, Port, PortConfig, BURST_SIZE};
use support::Netns;
use testkit::{require, Need};

const FRAMES: u32 = 10_000;

#[test]
fn forwards_every_frame_byte_for_byte_without_leaking_mbufs() {
    require!(
        Need::Root,
        Need::Program("ip"),
        Need::Program(testkit::PYTHON)
    );
    let ns = Netns::new("fwd");
    ns.veth("k0", "d0"); // kernel sends on k0; DPDK port 0 on d0
    ns.veth("d1", "k1"); // DPDK port 1 on d1; kernel receives on k1
    ns.enter();

    let eal = Eal::init(support::eal_args(256, &[])).expect("EAL init");
    assert!(matches!(
        Eal::init(support::eal_args(256, &[])),
        Err(dpdk::EalError::AlreadyInitialised)
    ));
    let pool = Mempool::new(
        &eal,
        &MempoolConfig {
            name: "fwd_pool".into(),
            size: 4095,
            cache_size: 0,
            data_room: 2048 + 128,
        },
    )
    .expect("mempool");
    let start_free = pool.available();
    assert_eq!(start_free, pool.size());

    let (forwarded, stats0, stats1) = {
        let mut cfg = PortConfig::new(pool.clone());
        cfg.rx_desc = 512;
        cfg.tx_desc = 512;
        let p0 = Port::open(&eal, "net_af_packet0,iface=d0", &cfg).expect("port 0");
        let p1 = Port::open(&eal, "net_af_packet1,iface=d1", &cfg).expect("port 1");
        assert!(p0.link().expect("link").up);
        let mut rx = p0.rx_queue(0).expect("rx queue");
        assert!(p0.rx_queue(0).is_none(), "a queue can be taken once");
        assert!(p0.rx_queue(1).is_none(), "only one queue configured");
        let mut tx = p1.tx_queue(0).expect("tx queue");

        let mut sender = support::Reaper(
            ns.command(testkit::PYTHON)
                .args([
                    &support::support_file("frames.py"),
                    "k0",
                    "k1",
                    &FRAMES.to_string(),
                    "7",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start frames.py"),
        );

        let mut burst = Vec::with_capacity(BURST_SIZE);
        let mut forwarded = 0u64;
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if rx.rx_burst(&mut burst) > 0 {
                let (sent, dropped) = tx.tx_burst_all(&mut burst, 64);
                forwarded += sent as u64;
                assert_eq!(dropped, 0, "TX dropped frames");
            } else if let Some(status) = sender.0.try_wait().expect("wait") {
                break status;
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
            assert!(Instant::now() < deadline, "forwarding test timed out");
        };
        let mut out = String::new();
        sender
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        sender
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            status.success(),
            "kernel side saw loss or corruption: {out} {err}"
        );
        assert!(out.contains("\"ok\": true"), "{out}");
        assert!(out.contains(&format!("\"received\": {FRAMES}")), "{out}");
        (forwarded, p0.stats().unwrap(), p1.stats().unwrap())
        // queues and ports dropped here: stopped and closed
    };
    assert!(forwarded >= u64::from(FRAMES), "forwarded {forwarded}");
    assert!(stats0.ipackets >= u64::from(FRAMES), "{stats0:?}");
    assert!(stats1.opackets >= u64::from(FRAMES), "{stats1:?}");
    assert_eq!(pool.available(), start_free, "mbufs leaked");
}
