# Shared by the namespace scenarios (two-site.sh, strongswan-interop.sh):
# output helpers and the hostA - gwA - WAN - gwB - hostB namespaces.
# The caller sets NS_HA NS_GA NS_GB NS_HB, DIR, PIDS=() and FAILED=0.
# The shell home of the namespace helpers; the Rust one is
# dataplane/testkit (testkit::netns). Both name a namespace
# <tag>-<role>-<pid of its owner>[-<n>] (esp-ga-$$; tags esp, ss, vs) and
# clean up the same way: kill what is left inside and delete the namespace,
# also on failure, and first delete those whose owner is gone.

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

# Deletes the namespaces <tag>-<role>-<pid>[-<n>] whose owning process is
# gone: a run killed before its EXIT trap (testkit::netns::remove_stale
# does the same for esp-).
netns_remove_stale() {
    local ns pid p
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case $ns in esp-*-*|ss-*-*|vs-*-*) ;; *) continue ;; esac
        pid=$(echo "$ns" | cut -d- -f3)
        [[ $pid =~ ^[0-9]+$ ]] && [ ! -d "/proc/$pid" ] || continue
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}

# The four namespaces and their veths: hostA h0 = lan0 gwA wan0 = wan0 gwB
# lan0 = h0 hostB.
make_namespaces() {
    netns_remove_stale
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

# esp_icv_check PCAP WIRESHARK_DIR MIN: every ESP frame of PCAP must carry a
# correct ICV under the keys in WIRESHARK_DIR/esp_sa, and there must be at
# least MIN of them. tshark checks them; it does so only after dissecting
# the decrypted payload, so an exception in an inner dissector (a TCP
# retransmission in reassembly, for one) leaves a frame with neither
# icv_good nor icv_bad: those frames are recomputed by scripts/esp_icv.py
# (Python's `cryptography`) instead. TCP reassembly is off to make that
# rare. Prints one ok/FAIL line; on failure, which SAs and frames.
esp_icv_check() {
    local pcap=$1 wsdir=$2 min=$3
    local ts="tshark -n -r $pcap -o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE -o tcp.desegment_tcp_streams:FALSE"
    local total good bad inner unchecked rechecked=0 frames out
    total=$(WIRESHARK_CONFIG_DIR=$wsdir $ts -Y esp 2>/dev/null | wc -l)
    good=$(WIRESHARK_CONFIG_DIR=$wsdir $ts -Y 'esp.icv_good == 1' 2>/dev/null | wc -l)
    bad=$(WIRESHARK_CONFIG_DIR=$wsdir $ts -Y 'esp.icv_bad == 1' 2>/dev/null | wc -l)
    inner=$(WIRESHARK_CONFIG_DIR=$wsdir $ts -Y 'esp && (icmp || icmpv6 || tcp)' 2>/dev/null | wc -l)
    unchecked=$((total - good - bad))
    if [ "$unchecked" -gt 0 ]; then
        frames=$(WIRESHARK_CONFIG_DIR=$wsdir $ts -Y 'esp && !esp.icv_good && !esp.icv_bad' -T fields -e frame.number 2>/dev/null | tr '\n' ' ')
        echo "    tshark left $unchecked ESP frame(s) unchecked (frames $frames)"
        # shellcheck disable=SC2086
        if out=$(/usr/bin/python3 "$ROOT/scripts/esp_icv.py" "$pcap" "$wsdir/esp_sa" $frames); then
            rechecked=$unchecked
        fi
        echo "$out" | sed 's/^/      esp_icv.py: /' | head -10
    fi
    if [ "$total" -ge "$min" ] && [ "$bad" = 0 ] && [ $((good + rechecked)) = "$total" ]; then
        if [ "$rechecked" -gt 0 ]; then
            ok "all $total ESP frames have a correct ICV ($good checked by tshark, $rechecked by esp_icv.py); $inner decrypt to ICMP/TCP"
        else
            ok "all $total ESP frames have a correct ICV (tshark); $inner decrypt to ICMP/TCP"
        fi
    else
        fail "$good of $total ESP frames with a correct ICV by tshark, $bad wrong, $unchecked unchecked of which $rechecked correct by esp_icv.py (expected at least $min frames)"
        WIRESHARK_CONFIG_DIR=$wsdir $ts -Y 'esp.icv_bad == 1' -T fields -e frame.time_relative -e ip.src -e esp.spi -e esp.sequence -e frame.len 2>/dev/null |
            awk '{k=$2" spi "$3; n[k]++; if (!(k in first)) first[k]=$1" seq "$4" len "$5} END {for (k in n) print "      bad ICV: "n[k]" frames from "k", first at "first[k]}'
        return 1
    fi
}
