//! Is the lab's bare-AEAD figure fair to the gateway? The lab
//! (`benches/lab/src/aead.rs`) seals the same 32 buffers over and over, so
//! the payload is in L1/L2 when the cipher reads it. In the gateway the
//! payload was written a moment before by the PMD (net_pcap copies each
//! frame into an mbuf of a pool of thousands) and the burst of 32 frames
//! (45 KB at 1420 bytes) is larger than L1, so the cipher reads it from
//! further away. This measures both, alternated: TSC cycles per `seal` on
//! 32 warm buffers, and on 32 buffers taken in turn from a 16 MB pool and
//! filled by `copy_from_slice` just before the (timed) burst.
//!
//! Usage: `aead_cold [ESP_PAYLOAD_LEN [ROUNDS [POOL_BUFFERS [copy|nocopy]]]]` (default 1404: a 1420-byte
//! frame's ESP payload with AES-GCM). Wall clock: run on a quiet core.

use dataplane::crypto::{default_backend, new_transform, Algorithm, SaKeys};

const BURST: usize = 32;
/// A DPDK mbuf element: 64 of mempool header, 128 of `rte_mbuf`, 128 of
/// headroom, 2048 of data (a stride of 2048 would put every second buffer
/// on the same 4 KiB offset, which stalls loads behind unrelated stores).
const STRIDE: usize = 2368;
const BURSTS: usize = 200;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let len: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1404);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    // Buffers in the pool (8192 of 2 KB: a DPDK mempool's worth), and
    // whether to copy the frame in before sealing (as net_pcap does).
    let pool_n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8192);
    let copy = args.next().is_none_or(|a| a != "nocopy");
    let alg = Algorithm::AES_GCM_128;
    let key: Vec<u8> = (0..alg.encryption.key_len()).map(|k| k as u8).collect();
    let mut t =
        new_transform(default_backend(alg), alg, &SaKeys::new(&key, &[])).expect("transform");
    let header = [0x10, 0, 0, 1, 0, 0, 0, 1];
    let mut iv = vec![0u8; t.iv_len()];
    t.fill_iv(1, &mut iv);
    let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let mut icv = vec![0u8; t.icv_len()];
    let mut warm: Vec<Vec<u8>> = (0..BURST).map(|_| plain.clone()).collect();
    let mut pool = vec![0u8; pool_n * STRIDE];
    // The gateway's mbuf pool is in transparent huge pages too.
    cpu::huge::advise_huge_pages(&pool);
    let mut next = 0usize;
    let (mut w_all, mut c_all, mut copy_all) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut w = Vec::with_capacity(BURSTS);
        for _ in 0..BURSTS {
            let t0 = cpu::clock::rdtsc();
            for p in &mut warm {
                t.seal(&header, None, &iv, p, &mut icv).expect("seal");
            }
            w.push((cpu::clock::rdtsc() - t0) as f64 / BURST as f64);
        }
        let (mut c, mut cp) = (Vec::with_capacity(BURSTS), Vec::with_capacity(BURSTS));
        for _ in 0..BURSTS {
            let first = next;
            next = (next + BURST) % pool_n;
            let t0 = cpu::clock::rdtsc();
            for i in (first..first + BURST).filter(|_| copy) {
                pool[i * STRIDE..i * STRIDE + len].copy_from_slice(&plain);
            }
            let t1 = cpu::clock::rdtsc();
            for i in first..first + BURST {
                t.seal(
                    &header,
                    None,
                    &iv,
                    &mut pool[i * STRIDE..i * STRIDE + len],
                    &mut icv,
                )
                .expect("seal");
            }
            cp.push((t1 - t0) as f64 / BURST as f64);
            c.push((cpu::clock::rdtsc() - t1) as f64 / BURST as f64);
        }
        let (mw, mc, mcp) = (median(&mut w), median(&mut c), median(&mut cp));
        println!("warm {mw:7.1}  after-copy {mc:7.1}  (copy {mcp:6.1})");
        w_all.push(mw);
        c_all.push(mc);
        copy_all.push(mcp);
    }
    println!(
        "median over rounds: warm {:.1} after-copy {:.1} copy {:.1} cycles/packet",
        median(&mut w_all),
        median(&mut c_all),
        median(&mut copy_all)
    );
}
