# Shared by the namespace scenarios (two-site.sh, strongswan-interop.sh):
# output helpers and the hostA - gwA - WAN - gwB - hostB namespaces.
# The caller sets NS_HA NS_GA NS_GB NS_HB, DIR, PIDS=() and FAILED=0.

say() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAIL: %s\n' "$*"; FAILED=1; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Stops every process started (PIDS) or left in the namespaces, deletes the
# namespaces and the work directory (kept with KEEP=1).
netns_cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for ns in $NS_HA $NS_GA $NS_GB $NS_HB; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
}

# The four namespaces and their veths: hostA h0 = lan0 gwA wan0 = wan0 gwB
# lan0 = h0 hostB.
make_namespaces() {
    for ns in $NS_HA $NS_GA $NS_GB $NS_HB; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip link add h0 netns $NS_HA type veth peer name lan0 netns $NS_GA
    ip link add wan0 netns $NS_GA type veth peer name wan0 netns $NS_GB
    ip link add h0 netns $NS_HB type veth peer name lan0 netns $NS_GB
}

# The hosts' side: hostA is 10.1.0.10/24 and hostB 10.2.0.20/24, each
# routing through its gateway's .1. veth leaves TCP/UDP checksums to
# "hardware" (CHECKSUM_PARTIAL) and an AF_PACKET reader such as DPDK's
# net_af_packet then sees unfinished checksums, so the hosts' kernels
# compute them (the same for every system a script compares).
setup_hosts_v4() {
    local n ns
    for n in 1 2; do
        if [ $n = 1 ]; then ns=$NS_HA; else ns=$NS_HB; fi
        ip -n "$ns" link set h0 up
        in_ns "$ns" ethtool -K h0 tx off >/dev/null
        ip -n "$ns" addr add 10.$n.0.$((n * 10))/24 dev h0
        ip -n "$ns" route add default via 10.$n.0.1
    done
}
