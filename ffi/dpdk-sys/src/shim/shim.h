/* Espresso's C shim over DPDK's static-inline functions.
 *
 * DPDK implements its hot-path calls (rx/tx burst, mbuf alloc/free, data
 * pointer arithmetic) as `static inline` functions in headers, which bindgen
 * cannot bind. Each one gets a thin exported wrapper here, prefixed
 * `espresso_`, compiled with the same cflags that bindgen uses (both come from
 * `pkg-config libdpdk`). This header is the one list of them. */
#ifndef ESPRESSO_SHIM_H
#define ESPRESSO_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_ethdev.h>

uint16_t espresso_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                               struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t espresso_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                               struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *espresso_pktmbuf_alloc(struct rte_mempool *mp);
int espresso_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                                unsigned int count);
void espresso_pktmbuf_free(struct rte_mbuf *m);
char *espresso_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *espresso_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *espresso_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int espresso_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
void *espresso_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t espresso_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t espresso_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t espresso_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t espresso_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t espresso_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t espresso_pktmbuf_port(const struct rte_mbuf *m);
int espresso_pktmbuf_is_contiguous(const struct rte_mbuf *m);
uint32_t espresso_pktmbuf_rss_hash(const struct rte_mbuf *m);

unsigned int espresso_lcore_id(void);
int espresso_errno(void);
uint64_t espresso_rdtsc(void);

#endif
