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
