#!/usr/bin/env bash
# The foundation demo: two hosts in their own network namespaces, joined
# only through `espresso forward` (DPDK net_af_packet ports) in a third.
#
#   hostA (10.99.0.1) a0 ==veth== fa [espresso forward] fb ==veth== b0 (10.99.0.2) hostB
#
# It pings hostB from hostA across the forwarder, then stops the forwarder
# and prints its port counters. Everything it creates is removed on exit.
set -euo pipefail
BIN=${ESPRESSO_BIN:-target/release/espresso}
id=$$
A=espdemo-a-$id; B=espdemo-b-$id; F=espdemo-f-$id
LOG=$(mktemp)
FWD_PID=

cleanup() {
    [ -n "$FWD_PID" ] && kill "$FWD_PID" 2>/dev/null || true
    for ns in $A $B $F; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -f "$LOG"
}
trap cleanup EXIT
# Killed (a timeout, Ctrl-C): clean up too; EXIT alone does not fire then.
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }

step "creating namespaces $A, $F, $B"
for ns in $A $B $F; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
ip link add a0 netns "$A" type veth peer name fa netns "$F"
ip link add b0 netns "$B" type veth peer name fb netns "$F"
ip -n "$A" addr add 10.99.0.1/24 dev a0
ip -n "$B" addr add 10.99.0.2/24 dev b0
for l in a0:$A b0:$B fa:$F fb:$F; do ip -n "${l#*:}" link set "${l%%:*}" up; done

step "starting: espresso forward --port net_af_packet0,iface=fa --port net_af_packet1,iface=fb"
ip netns exec "$F" "$BIN" forward --port net_af_packet0,iface=fa --port net_af_packet1,iface=fb \
    --report-every 1 >"$LOG" 2>&1 &
FWD_PID=$!
for _ in $(seq 50); do grep -q "forwarded 0->1" "$LOG" && break; sleep 0.1; done

step "ping 10.99.0.2 from hostA, through the forwarder"
ip netns exec "$A" ping -c 5 -i 0.2 -W 2 10.99.0.2

step "stopping the forwarder (SIGTERM); its final counters:"
kill -TERM "$FWD_PID"
wait "$FWD_PID"
FWD_PID=
grep -v "^\s*\[" "$LOG"
