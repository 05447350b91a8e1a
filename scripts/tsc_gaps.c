/*
 * How often this machine takes a core away from a thread that never
 * yields: spins on the TSC for a few seconds and counts the gaps between
 * two consecutive reads of 16 us or more (the threshold of the latency
 * lab's "gw gaps>=16us" column) and of 100 us or more. A gap here is time
 * the VM or the kernel took; the gateway's worker and testpmd's lcore see
 * the same. Not part of the build.
 *
 *   gcc -O2 -o /tmp/tsc_gaps scripts/tsc_gaps.c
 *   taskset -c 1 /tmp/tsc_gaps [seconds, default 2] [TSC MHz, default 2600]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <x86intrin.h>

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	uint64_t per_us = argc > 2 ? strtoull(argv[2], NULL, 10) : 2600;
	uint64_t end = (uint64_t)(seconds * 1e6) * per_us;
	uint64_t t0 = __rdtsc(), prev = t0, over16 = 0, over100 = 0, max = 0;

	for (;;) {
		uint64_t t = __rdtsc(), gap = t - prev;

		prev = t;
		if (gap >= 16 * per_us) {
			over16++;
			if (gap >= 100 * per_us)
				over100++;
			if (gap > max)
				max = gap;
		}
		if (t - t0 >= end)
			break;
	}
	printf("%.1f s: %lu gaps >= 16 us (%.0f per s), %lu >= 100 us, longest %.1f us\n",
	       seconds, (unsigned long)over16, over16 / seconds,
	       (unsigned long)over100, (double)max / per_us);
	return 0;
}
