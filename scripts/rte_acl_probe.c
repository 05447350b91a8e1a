/*
 * rte_acl on the SPD benchmark's rule sets, for comparison with Espresso's
 * own classifier (dataplane/src/esp/classifier.rs). Not part of the build.
 *
 * The rules and keys are those of benches/src/tables.rs SpdBench: 1, 100 and
 * 10,000 policies, distinct /24 pairs or random prefixes of lengths 8..32
 * (same SplitMix64 stream, seed 0x5bd0 + n), any protocol and ports, rank =
 * insertion order; 4096 keys, each inside a random policy. Fields as in
 * DPDK's ipsec-secgw: protocol (1 byte), source and destination (4-byte
 * MASK), ports (RANGE). Prints TSC cycles per lookup, median of 201 runs of
 * 256 lookups, classifying one packet per call and 32 per call.
 *
 *   gcc -O2 -march=native -o /tmp/rte_acl_probe scripts/rte_acl_probe.c \
 *       $(pkg-config --cflags --libs libdpdk)
 *   /tmp/rte_acl_probe --no-huge --no-pci -m 1024 --no-shconf \
 *       --file-prefix=acl-probe-$$ -l 0 --log-level=lib.eal:error
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <x86intrin.h>
#include <rte_eal.h>
#include <rte_acl.h>

static uint64_t sm;
static uint64_t next_u64(void) {
	sm += 0x9E3779B97F4A7C15ULL;
	uint64_t z = sm;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return next_u64() % n; }

struct key { uint8_t proto; uint32_t src; uint32_t dst; uint16_t sport; uint16_t dport; } __attribute__((packed));

static struct rte_acl_field_def defs[5] = {
	{ .type = RTE_ACL_FIELD_TYPE_BITMASK, .size = 1, .field_index = 0, .input_index = 0, .offset = offsetof(struct key, proto) },
	{ .type = RTE_ACL_FIELD_TYPE_MASK, .size = 4, .field_index = 1, .input_index = 1, .offset = offsetof(struct key, src) },
	{ .type = RTE_ACL_FIELD_TYPE_MASK, .size = 4, .field_index = 2, .input_index = 2, .offset = offsetof(struct key, dst) },
	{ .type = RTE_ACL_FIELD_TYPE_RANGE, .size = 2, .field_index = 3, .input_index = 3, .offset = offsetof(struct key, sport) },
	{ .type = RTE_ACL_FIELD_TYPE_RANGE, .size = 2, .field_index = 4, .input_index = 3, .offset = offsetof(struct key, dport) },
};
RTE_ACL_RULE_DEF(rule4, 5);

static uint32_t mask_of(uint32_t len) { return len ? ~0u << (32 - len) : 0; }

static int cmp_u64(const void *a, const void *b) { uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
	if (rte_eal_init(argc, argv) < 0) { fprintf(stderr, "eal\n"); return 1; }
	int sizes[3] = {1, 100, 10000};
	for (int shape = 0; shape < 2; shape++)
	for (int si = 0; si < 3; si++) {
		int n = sizes[si];
		sm = 0x5bd0 + n;
		uint32_t *src = malloc(n * 4), *dst = malloc(n * 4), *sl = malloc(n * 4), *dl = malloc(n * 4);
		struct rule4 *rules = calloc(n, sizeof(*rules));
		for (int i = 0; i < n; i++) {
			if (shape == 0) {
				sl[i] = 24; src[i] = 0x0A000000u | ((uint32_t)i << 8);
				dl[i] = 24; dst[i] = 0xAC100000u + ((uint32_t)i << 8);
			} else {
				uint32_t a = (uint32_t)next_u64(); sl[i] = 8 + below(25); src[i] = a & mask_of(sl[i]);
				uint32_t b = (uint32_t)next_u64(); dl[i] = 8 + below(25); dst[i] = b & mask_of(dl[i]);
			}
			rules[i].data.category_mask = 1;
			rules[i].data.priority = RTE_ACL_MAX_PRIORITY - i;
			rules[i].data.userdata = i + 1;
			rules[i].field[0].value.u8 = 0; rules[i].field[0].mask_range.u8 = 0;
			rules[i].field[1].value.u32 = src[i]; rules[i].field[1].mask_range.u32 = sl[i];
			rules[i].field[2].value.u32 = dst[i]; rules[i].field[2].mask_range.u32 = dl[i];
			rules[i].field[3].value.u16 = 0; rules[i].field[3].mask_range.u16 = 0xffff;
			rules[i].field[4].value.u16 = 0; rules[i].field[4].mask_range.u16 = 0xffff;
		}
		struct key *keys = malloc(4096 * sizeof(*keys));
		for (int k = 0; k < 4096; k++) {
			int i = below(n);
			uint32_t hs = (uint32_t)next_u64() & ~mask_of(sl[i]);
			uint32_t hd = (uint32_t)next_u64() & ~mask_of(dl[i]);
			keys[k].proto = 17;
			keys[k].src = htonl(src[i] | hs);
			keys[k].dst = htonl(dst[i] | hd);
			keys[k].sport = htons((uint16_t)next_u64());
			keys[k].dport = htons((uint16_t)next_u64());
		}
		char name[32]; snprintf(name, sizeof name, "probe%d-%d", shape, n);
		struct rte_acl_param p = { .name = name, .socket_id = SOCKET_ID_ANY, .rule_size = RTE_ACL_RULE_SZ(5), .max_rule_num = n };
		struct rte_acl_ctx *ctx = rte_acl_create(&p);
		if (!ctx || rte_acl_add_rules(ctx, (struct rte_acl_rule *)rules, n)) { fprintf(stderr, "add\n"); return 1; }
		struct rte_acl_config cfg = { .num_categories = 1, .num_fields = 5 };
		memcpy(cfg.defs, defs, sizeof defs);
		uint64_t t0 = __rdtsc();
		if (rte_acl_build(ctx, &cfg)) { fprintf(stderr, "build\n"); return 1; }
		uint64_t tb = __rdtsc() - t0;
		const uint8_t *data[4096]; uint32_t res[4096];
		for (int k = 0; k < 4096; k++) data[k] = (const uint8_t *)&keys[k];
		// Every key must match (a miss would mean a layout mistake).
		rte_acl_classify(ctx, data, res, 4096, 1);
		int miss = 0; for (int k = 0; k < 4096; k++) miss += res[k] == 0;
		for (int burst = 1; burst <= 32; burst *= 32) {
			uint64_t samples[201];
			for (int s = 0; s < 201; s++) {
				int base = (s * 256) % 4096;
				uint64_t a = __rdtsc();
				for (int j = 0; j < 256; j += burst)
					rte_acl_classify(ctx, data + base + j, res + base + j, burst, 1);
				samples[s] = __rdtsc() - a;
			}
			qsort(samples, 201, 8, cmp_u64);
			printf("rte_acl %s %5d rules burst %2d: %6.1f c/lookup (%.1f ns at 2.6 GHz TSC), misses %d, build %.1f ms\n",
			       shape ? "random /8../32" : "distinct /24  ", n, burst, samples[100] / 256.0, samples[100] / 256.0 / 2.6, miss, tb / 2.6e6);
		}
		rte_acl_free(ctx);
	}
	return 0;
}
