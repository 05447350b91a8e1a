#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (a cargo-fuzz crate outside the
# workspace) and runs each for its share of SECONDS_TOTAL (default 60).
# Exits non-zero if any target crashes, times out or runs out of memory;
# prints per target the executions and coverage libFuzzer reports.
#
#   scripts/fuzz.sh [SECONDS_TOTAL]
#
# Environment: FUZZ_TARGETS (space-separated, default: every target),
# FUZZ_PER_TARGET (seconds each target runs, instead of a share of the total),
# FUZZ_SANITIZER (address, the default, or none).
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-...);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Each run starts
# from fuzz/seeds/<target> (committed) and fuzz/corpus/<target> (kept
# between runs on one machine, ignored by git); crashes land in
# fuzz/artifacts/<target>.
set -euo pipefail

total=${1:-60}
if ! [[ $total =~ ^[0-9]+$ ]] || [ "$total" -lt 1 ]; then
	echo "usage: $0 [SECONDS_TOTAL]" >&2
	exit 2
fi
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
read -r -a targets <<<"${FUZZ_TARGETS:-inbound outbound views spd node_rx ike_message ike_responder ike_fragments ike_cert}"

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "== installing cargo-fuzz"
	cargo install --locked cargo-fuzz
fi

echo "== building fuzz targets (sanitizer: $sanitizer)"
start=$SECONDS
cargo fuzz build -s "$sanitizer"
echo "== build took $((SECONDS - start)) s"

per=$((total / ${#targets[@]}))
[ "$per" -ge 1 ] || per=1
# FUZZ_PER_TARGET (seconds) overrides the share: `make fuzz-long`.
if [ -n "${FUZZ_PER_TARGET:-}" ]; then per=$FUZZ_PER_TARGET; fi
logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
	mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
	log="$logs/$t.log"
	echo "== fuzzing $t for $per s"
	# One job: the machine's two cores are shared with other builds.
	if cargo fuzz run -s "$sanitizer" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
		-max_total_time="$per" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
		status=ok
	else
		status=FAILED
		failed+=("$t")
		tail -n 60 "$log"
		grep -h "Test unit written to" "$log" || true
	fi
	# The last status line: "#N DONE cov: C ft: F corp: U/S exec/s: E ...".
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
	execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -n 1 || true)
	cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
	ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
	corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$done_line")
	rate=$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$done_line")
	summary+=("$(printf '%-13s %-6s execs %-9s exec/s %-6s cov %-6s ft %-6s corpus %s' \
		"$t" "$status" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done

echo "== fuzz summary (${per} s per target, logs in $logs)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
