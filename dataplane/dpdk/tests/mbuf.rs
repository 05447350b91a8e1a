//! Mbuf operations against a real DPDK mempool (EAL without hugepages).
#![cfg(have_dpdk)]

mod support;

use dpdk::{Mbuf, MbufError, Mempool, MempoolConfig, PoolMemory};

fn pool(name: &str) -> Mempool {
    Mempool::new(
        support::shared_eal(),
        &MempoolConfig {
            name: name.into(),
            size: 255,
            cache_size: 0,
            data_room: 2048 + 128,
        },
    )
    .expect("mempool")
}

#[test]
fn prepend_append_trim_adj_within_bounds() {
    let pool = pool("mbuf_ops");
    let mut m = Mbuf::from_slice(&pool, b"payload").unwrap();
    assert_eq!(m.data(), b"payload");
    let head = m.headroom();
    assert_eq!(head, 128, "RTE_PKTMBUF_HEADROOM");
    m.prepend(4).unwrap().copy_from_slice(b"hdr:");
    assert_eq!(m.data(), b"hdr:payload");
    assert_eq!(m.headroom(), head - 4);
    m.append(3).unwrap().copy_from_slice(b"!!!");
    assert_eq!(m.data(), b"hdr:payload!!!");
    m.adj(4).unwrap();
    assert_eq!(m.data(), b"payload!!!");
    m.trim(3).unwrap();
    assert_eq!(m.data(), b"payload");
    m.data_mut()[0] = b'P';
    assert_eq!(m.data(), b"Payload");
    assert_eq!(m.len(), 7);
    assert_eq!(m.pkt_len(), 7);
    assert!(m.is_contiguous());
}

#[test]
fn out_of_bounds_requests_are_errors_not_panics() {
    let pool = pool("mbuf_bounds");
    let mut m = Mbuf::from_slice(&pool, &[7u8; 100]).unwrap();
    let head = m.headroom();
    let tail = m.tailroom();
    assert_eq!(
        m.prepend(head + 1).unwrap_err(),
        MbufError::NoHeadroom {
            needed: head + 1,
            available: head
        }
    );
    assert_eq!(
        m.append(tail + 1).unwrap_err(),
        MbufError::NoTailroom {
            needed: tail + 1,
            available: tail
        }
    );
    assert_eq!(
        m.trim(101).unwrap_err(),
        MbufError::TooShort {
            needed: 101,
            available: 100
        }
    );
    assert_eq!(
        m.adj(101).unwrap_err(),
        MbufError::TooShort {
            needed: 101,
            available: 100
        }
    );
    // A failed request changes nothing.
    assert_eq!(m.data(), &[7u8; 100][..]);
    assert_eq!((m.headroom(), m.tailroom()), (head, tail));
    // Exactly the available room is fine.
    m.prepend(head).unwrap();
    m.append(tail).unwrap();
    assert_eq!(m.headroom(), 0);
    assert_eq!(m.tailroom(), 0);
    assert_eq!(
        m.prepend(1).unwrap_err(),
        MbufError::NoHeadroom {
            needed: 1,
            available: 0
        }
    );
    m.trim(m.len()).unwrap();
    assert!(m.is_empty());
    // Absurd sizes beyond u16 do not wrap around.
    assert!(m.append(70_000).is_err());
    assert!(m.prepend(70_000).is_err());
}

#[test]
fn drop_returns_mbufs_and_exhaustion_is_an_error() {
    let pool = pool("mbuf_exhaust");
    let start = pool.available();
    assert_eq!(start, 255);
    let mut all = Vec::new();
    Mbuf::alloc_bulk(&pool, 200, &mut all).unwrap();
    assert_eq!(pool.available(), start - 200);
    while let Ok(m) = Mbuf::alloc(&pool) {
        all.push(m);
    }
    assert_eq!(all.len(), 255);
    assert_eq!(Mbuf::alloc(&pool).unwrap_err(), MbufError::PoolEmpty);
    let mut more = Vec::new();
    assert_eq!(
        Mbuf::alloc_bulk(&pool, 1, &mut more).unwrap_err(),
        MbufError::PoolEmpty
    );
    drop(all);
    assert_eq!(pool.available(), start);
}

/// Without hugepages the pool lives in an anonymous mapping advised for
/// transparent huge pages, its objects packed (see `dpdk::mempool`): every
/// mbuf must still be a whole, separate buffer of the asked-for room.
#[test]
fn pool_without_hugepages_packs_whole_separate_mbufs() {
    let pool = pool("mbuf_thp");
    assert_eq!(pool.memory(), PoolMemory::AnonThp);
    let mut all = Vec::new();
    Mbuf::alloc_bulk(&pool, 255, &mut all).unwrap();
    for (i, m) in all.iter_mut().enumerate() {
        assert_eq!(m.headroom(), 128);
        assert_eq!(m.tailroom(), 2048, "data room minus headroom");
        // Fill the whole room: a buffer overlapping another would show
        // below.
        let room = m.tailroom();
        m.append(room).unwrap().fill(i as u8);
    }
    for (i, m) in all.iter().enumerate() {
        assert!(
            m.data().iter().all(|&b| b == i as u8),
            "mbuf {i} overwritten"
        );
    }
    let mut starts: Vec<usize> = all.iter().map(|m| m.data().as_ptr() as usize).collect();
    starts.sort_unstable();
    assert!(starts.windows(2).all(|w| w[1] - w[0] >= 2048));
    drop(all);
    assert_eq!(pool.available(), 255);
}
