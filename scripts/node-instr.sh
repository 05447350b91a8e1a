#!/bin/sh
# Instructions per packet of the worker's data path at 64 bytes (or FRAME
# bytes), AES-128-GCM, one SA (the lab's "aes128gcm16 64B 1SA" case on heap buffers, without
# DPDK): runs benches' node_burst under callgrind with two burst counts and
# divides the difference by the extra packets, so the setup drops out.
# Instruction counts repeat to within a few per packet, so this shows a
# change of the data path's work on a busy machine where cycles do not.
#
# Usage: scripts/node-instr.sh [BINARY [FRAME]]   (default: target/release/node_burst,
# built first with `cargo build --release -p espresso-benches --bin node_burst`)
# Prints: case, instructions per packet. "reload" is the driver's own share
# (refilling the buffers), included in the other two.
set -eu
bin=${1:-${CARGO_TARGET_DIR:-target}/release/node_burst}
frame=${2:-64}
[ -x "$bin" ] || { echo "no $bin (cargo build --release -p espresso-benches --bin node_burst)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
lo=200
hi=1200
burst=32
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # case bursts -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$1" "$2" "$frame" >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$tmp/out"
}
for case in encrypt decrypt reload; do
    a=$(count "$case" $lo)
    b=$(count "$case" $hi)
    echo "$case $(( (b - a) / ((hi - lo) * burst) ))"
done
