#!/usr/bin/env bash
# Two-site IPsec scenarios with two espresso gateways, each in a network
# namespace of its own, and a host behind each:
#
#   hostA 10.1.0.10   lan0 [gwA 192.0.2.1] wan0 ==== wan0 [gwB 192.0.2.2] lan0   10.2.0.20 hostB
#         fd01::10                 2001:db8::1      2001:db8::2               fd02::20
#
# Manually keyed AES-GCM-256 SAs with UDP encapsulation (RFC 3948), or
# SAs negotiated by IKEv2 (scenarios ike and demo); DPDK net_af_packet
# ports on the veths, --no-huge.
#
# Usage: two-site.sh SCENARIO
#   tunnel     tunnel mode: ping v4/v6, iperf3 100 MB (v4) + 20 MB (v6) with
#              the payload's SHA-256 compared, tshark decryption of the WAN
#   transport  transport mode (bump in the wire): the same, 20 MB each
#   rekey      new SA pair installed, traffic moved, old one deleted while
#              iperf3 runs: no drop counted on either gateway
#   hostile    malformed, replayed, unauthenticated and random packets on
#              the WAN mixed into a ping: forwarding goes on, every bad
#              packet is counted under its reason
#   workers    gwA with two workers: traffic arrives on both, and no ESP
#              sequence number is ever sent twice on an SA
#   pmtu       DF packets larger than the tunnel MTU: ICMP fragmentation
#              needed with the right MTU reaches the sender
#   ike        IKEv2 (PSK) negotiates the SAs: gwA initiates, gwB listens;
#              ping v4/v6, TCP with SHA-256, Child SA rekeys started by
#              either side under a continuous ping (no loss), tshark
#              decrypts the WAN (ESP and IKE_AUTH) with Espresso's key log
#   edge       attacks from the WAN and the LAN on an IKE tunnel while a
#              ping runs through it: Delete bombs at UDP 500/4500 (memory
#              stays flat), ARP/NA poisoning and 5,000 random claims (a new
#              LAN host is still reached), packets that expire or exceed
#              the LAN MTU after decapsulation (no ICMP in clear on the
#              WAN), a spoofed IKE_SA_INIT flood from 2,000 addresses
#              during a rekey; the ping loses nothing
#   reload     two tunnels (IKE for IPv4, manual SAs for IPv6); live
#              reloads remove the manual one and change the IKE one's
#              lifetime (a continuous ping loses nothing, its Child SA is
#              not reinstalled), then its PSK (IKE SA re-established);
#              a broken file and a refused change apply nothing
#   api        the same two tunnels, driven through the control API on
#              gwA: terminate and initiate the IKE one (down on both sides,
#              its SAs gone, back with a new IKE SA), unload and load it
#              (gwB sees the DELETE), then each pair back to back; the
#              manual one loses no ping meanwhile; an unknown tunnel is
#              refused by name
#   demo       the ike scenario narrated, with bulk transfers (what `make
#              demo` runs)
#
# Everything it creates (namespaces, processes, files) is removed on exit,
# also on failure. Exit status 0 means every check passed.
set -euo pipefail

SCENARIO=${1:-demo}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ESPRESSO_BIN:-$ROOT/target/release/espresso}
PY=/usr/bin/python3
ID=$$
NS_HA=esp-ha-$ID NS_GA=esp-ga-$ID NS_GB=esp-gb-$ID NS_HB=esp-hb-$ID
DIR=$(mktemp -d /tmp/espresso-two-site.XXXXXX)
PIDS=()
FAILED=0

KEY_AB=0x$(head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \n')
KEY_BA=0x$(head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \n')
KEY2_AB=0x$(head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \n')
KEY2_BA=0x$(head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \n')
PSK=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

. "$ROOT/scripts/lib.sh"

cleanup() {
    set +e
    netns_cleanup
}
trap cleanup EXIT
# Killed (a timeout, Ctrl-C): clean up too; EXIT alone does not fire then.
trap 'exit 130' INT TERM


setup_network() {
    make_namespaces
    # The gateways' kernels must stay out of the way: no addresses, no IPv6.
    # (wan0 keeps the qdisc path, qdisc_bypass=0 below, so that a capture on
    # it sees what the gateway sends as well as what it receives.)
    for ns in $NS_GA $NS_GB; do
        in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        in_ns "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
        for l in lan0 wan0; do
            in_ns "$ns" sysctl -qw "net.ipv6.conf.$l.disable_ipv6=1"
            ip -n "$ns" link set "$l" up
        done
    done
    ip -n $NS_GA link set wan0 address 02:00:00:00:a0:02
    ip -n $NS_GB link set wan0 address 02:00:00:00:b0:02
    ip -n $NS_GA link set lan0 address 02:00:00:00:a0:01
    ip -n $NS_GB link set lan0 address 02:00:00:00:b0:01
    local n
    for n in A B; do
        local ns net
        if [ $n = A ]; then ns=$NS_HA; net=1; else ns=$NS_HB; net=2; fi
        in_ns "$ns" sysctl -qw net.ipv6.conf.h0.accept_ra=0
        ip -n "$ns" link set h0 up
        # veth leaves TCP/UDP checksums to "hardware" (CHECKSUM_PARTIAL);
        # an AF_PACKET reader such as DPDK's net_af_packet then sees
        # unfinished checksums. Have the hosts' kernels compute them.
        in_ns "$ns" ethtool -K h0 tx off >/dev/null
        ip -n "$ns" addr add 10.$net.0.$((net * 10))/24 dev h0
        ip -n "$ns" addr add fd0$net::$((net * 10))/64 dev h0 nodad
        ip -n "$ns" route add default via 10.$net.0.1
        ip -n "$ns" -6 route add default via fd0$net::1
    done
}

# write_config SITE MODE SA_BLOCKS WAN_MTU
write_config() {
    local site=$1 mode=$2 sas=$3 mtu=${4:-1500}
    local me peer mynet peernet my6 peer6 pmac host host6 peerhost peerhost6
    if [ "$site" = a ]; then
        me=192.0.2.1 peer=192.0.2.2 mynet=10.1.0.0/24 peernet=10.2.0.0/24 my6=fd01::/64 peer6=fd02::/64
        pmac=02:00:00:00:b0:02 host=10.1.0.10 host6=fd01::10 peerhost=10.2.0.20 peerhost6=fd02::20 n=1
    else
        me=192.0.2.2 peer=192.0.2.1 mynet=10.2.0.0/24 peernet=10.1.0.0/24 my6=fd02::/64 peer6=fd01::/64
        pmac=02:00:00:00:a0:02 host=10.2.0.20 host6=fd02::20 peerhost=10.1.0.10 peerhost6=fd01::10 n=2
    fi
    local f=$DIR/site-$site.toml
    local workers=1 q=""
    if [ "$site" = a ] && [ "${WORKERS_A:-1}" -gt 1 ]; then workers=$WORKERS_A; q=",qpairs=$WORKERS_A"; fi
    cat >"$f" <<EOF
[dataplane]
workers = $workers
memory_mb = 256
mbufs = 4095
[control]
socket = "$DIR/gw-$site.sock"
log = "info"
[[interface]]
name = "lan"
device = "net_af_packet0,iface=lan0,framecnt=2048$q"
role = "lan"
addresses = ["10.$n.0.1/24", "fd0$n::1/64"]
$( if [ "$site" = a ] && [ -n "${LAN_MTU_A:-}" ]; then echo "mtu = $LAN_MTU_A"; echo "mss_clamp = $((LAN_MTU_A - 40))"; else echo "mss_clamp = 1300"; fi)
[[interface]]
name = "wan"
device = "net_af_packet1,iface=wan0,qdisc_bypass=0,framecnt=2048$q"
role = "wan"
addresses = ["$me/24", "2001:db8::$n/64"]
mtu = $mtu
[[route]]
prefix = "$peernet"
via = "$peer"
interface = "wan"
[[route]]
prefix = "$peer6"
via = "2001:db8::$((3 - n))"
interface = "wan"
[[neighbour]]
address = "$peer"
mac = "$pmac"
interface = "wan"
EOF
    if [ "$mode" = ike ]; then
        # IKEv2 negotiates the SAs: gwA initiates, gwB listens.
        local start=listen lid=gw-b.example rid=gw-a.example
        [ "$site" = a ] && start=initiate lid=gw-a.example rid=gw-b.example
        cat >>"$f" <<EOF
[[tunnel]]
name = "site"
local_addrs = "$me"
remote_addrs = "$peer"
mode = "tunnel"
  [[tunnel.policy]]
  local_ts = "$mynet"
  remote_ts = "$peernet"
$( [ -n "${SPLIT_V6:-}" ] || printf '  [[tunnel.policy]]
  local_ts = "%s"
  remote_ts = "%s"
' "$my6" "$peer6")
  [tunnel.ike]
  local_id = "$lid"
  remote_id = "$rid"
  psk = "$PSK"
  proposals = ["${IKE_PROPOSAL:-aes256gcm16-prfsha384-x25519}"]
  esp_proposals = ["${ESP_PROPOSAL:-aes256gcm16}"]
  start_action = "$start"
  dpd_interval = "10s"
  child_lifetime = "${CHILD_LIFETIME:-1h}"
  force_encap = ${FORCE_ENCAP:-false}
  keylog_dir = "$DIR/keylog-$site"
EOF
        if [ "${SPLIT_V6:-}" = manual ]; then
            cat >>"$f" <<EOF
[[tunnel]]
name = "extra"
local_addrs = "$me"
remote_addrs = "$peer"
mode = "tunnel"
udp_encap = true
  [[tunnel.policy]]
  local_ts = "$my6"
  remote_ts = "$peer6"
$(sa_blocks "$site" "1" 0)
EOF
        fi
    elif [ "$mode" = tunnel ]; then
        cat >>"$f" <<EOF
[[tunnel]]
name = "site"
local_addrs = "$me"
remote_addrs = "$peer"
mode = "tunnel"
udp_encap = true
  [[tunnel.policy]]
  local_ts = "$mynet"
  remote_ts = "$peernet"
  [[tunnel.policy]]
  local_ts = "$my6"
  remote_ts = "$peer6"
$(sa_blocks "$site" "$sas" 0)
EOF
    else
        cat >>"$f" <<EOF
[[tunnel]]
name = "hosts-v4"
local_addrs = "$host"
remote_addrs = "$peerhost"
mode = "transport"
udp_encap = true
  [[tunnel.policy]]
  local_ts = "$host/32"
  remote_ts = "$peerhost/32"
$(sa_blocks "$site" "$sas" 0)
[[tunnel]]
name = "hosts-v6"
local_addrs = "$host6"
remote_addrs = "$peerhost6"
mode = "transport"
udp_encap = true
  [[tunnel.policy]]
  local_ts = "$host6/128"
  remote_ts = "$peerhost6/128"
$(sa_blocks "$site" "$sas" 16)
EOF
    fi
}

# sa_blocks SITE "1 2" SPI_OFFSET: SA pair 1 (0x1001/0x2001) and/or pair 2
# (0x1101/0x2101), in the order given (the first carries outbound traffic).
sa_blocks() {
    local site=$1 list=$2 off=$3 p
    for p in $list; do
        local ab ba base_a base_b
        if [ "$p" = 1 ]; then ab=$KEY_AB ba=$KEY_BA base_a=$((0x1001 + off)) base_b=$((0x2001 + off));
        else ab=$KEY2_AB ba=$KEY2_BA base_a=$((0x1101 + off)) base_b=$((0x2101 + off)); fi
        # A sends with base_b (B's inbound SPI) and key ab.
        if [ "$site" = a ]; then
            printf '  [[tunnel.sa]]\n  spi_in = %d\n  spi_out = %d\n  algorithm = "aes256gcm16"\n  key_in = "%s"\n  key_out = "%s"\n' \
                "$base_a" "$base_b" "$ba" "$ab"
        else
            printf '  [[tunnel.sa]]\n  spi_in = %d\n  spi_out = %d\n  algorithm = "aes256gcm16"\n  key_in = "%s"\n  key_out = "%s"\n' \
                "$base_b" "$base_a" "$ab" "$ba"
        fi
    done
}

start_gateways() {
    for site in a b; do
        local ns=$NS_GA; [ $site = b ] && ns=$NS_GB
        "$BIN" check -c "$DIR/site-$site.toml" >/dev/null
        ip netns exec "$ns" "$BIN" run -c "$DIR/site-$site.toml" >"$DIR/gw-$site.out" 2>"$DIR/gw-$site.log" &
        PIDS+=($!)
        eval "GW_${site^^}_PID=$!"
    done
    for site in a b; do
        for _ in $(seq 100); do
            grep -q "espresso running" "$DIR/gw-$site.log" 2>/dev/null && break
            if ! kill -0 "$(eval echo \$GW_${site^^}_PID)" 2>/dev/null; then
                cat "$DIR/gw-$site.log"; echo "gateway $site died"; exit 1
            fi
            sleep 0.1
        done
        grep -q "espresso running" "$DIR/gw-$site.log" || { cat "$DIR/gw-$site.log"; echo "gateway $site did not start"; exit 1; }
    done
}

stop_gateways() {
    for site in a b; do
        local pid; pid=$(eval echo \$GW_${site^^}_PID)
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        if grep -q "^mempool.free_before" "$DIR/gw-$site.out"; then
            local before after
            before=$(awk '/^mempool.free_before/{print $2}' "$DIR/gw-$site.out")
            after=$(awk '/^mempool.free_after/{print $2}' "$DIR/gw-$site.out")
            if [ "$before" = "$after" ]; then ok "gateway $site stopped cleanly, all $before mbufs back in the pool"
            else fail "gateway $site leaked mbufs ($before before, $after after)"; fi
        else
            fail "gateway $site printed no final counters"; cat "$DIR/gw-$site.log" | tail -5
        fi
    done
}

stats() { "$BIN" stats -c "$DIR/site-$1.toml"; }
stat_of() { stats "$1" | awk -v k="$2" '$1==k{print $2}'; }

# Fails on any drop counter except those listed.
check_no_drops() {
    local site=$1; shift
    local allowed=" $* " bad
    bad=$(stats "$site" | awk '$1 ~ /^drop\./ && $2 > 0 {print $1"="$2}' | while read -r kv; do
        k=${kv%%=*}; [[ "$allowed" == *" $k "* ]] || echo "$kv"; done)
    if [ -z "$bad" ]; then ok "gateway $site: no packet dropped"; else fail "gateway $site dropped: $bad"; fi
}

start_capture() {
    rm -f "$DIR/wan.pcapng"
    # Background jobs of a non-interactive shell ignore SIGINT, which tshark
    # needs to stop its capture child: restore it.
    ip netns exec $NS_GA bash -c "trap - INT; exec tshark -q -n -i wan0 -w '$DIR/wan.pcapng' 2>'$DIR/tshark.log'" &
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    for _ in $(seq 50); do grep -q "Capturing on" "$DIR/tshark.log" 2>/dev/null && break; sleep 0.1; done
}

stop_capture() {
    sleep 0.3
    pkill -INT -f "tshark -q -n -i wan0 -w $DIR/wan.pcapng" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
}

# Wireshark's esp_sa table for the SAs (pair 1), as the configs hold them.
write_esp_sa() {
    local conf=$DIR/wireshark
    mkdir -p "$conf"
    : >"$conf/esp_sa"
    local src dst spi key
    while read -r src dst spi key; do
        printf '"%s","%s","%s","0x%08x","AES-GCM with 16 octet ICV [RFC4106]","%s","NULL",""\n' \
            "$( [[ $src == *:* ]] && echo IPv6 || echo IPv4 )" "$src" "$dst" "$spi" "$key" >>"$conf/esp_sa"
    done <<EOF
$1
EOF
}

verify_capture() {
    local marker=$1 expect_min=$2
    local inner
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" "$expect_min" || true
    inner=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark tshark -n -r "$DIR/wan.pcapng" -o esp.enable_encryption_decode:TRUE \
        -Y 'esp && (icmp || icmpv6 || tcp)' 2>/dev/null | wc -l)
    [ "$inner" -gt 0 ] || fail "tshark decrypted no inner ICMP/TCP"
    # No plaintext of the hosts' traffic: neither the ping pattern nor any
    # bare ICMP/TCP between the hosts appears on the WAN.
    if grep -c -F "$marker" "$DIR/wan.pcapng" >/dev/null; then fail "ping payload in clear on the WAN"; else ok "no ping payload in clear on the WAN"; fi
    local clear
    clear=$(tshark -n -r "$DIR/wan.pcapng" -Y '(ip.src == 10.0.0.0/8 || ipv6.src == fd00::/8) && !esp && !udp' 2>/dev/null | wc -l)
    if [ "$clear" = 0 ]; then ok "no unencrypted host traffic on the WAN"; else fail "$clear unencrypted host packets on the WAN"; fi
}

ping_check() {
    local ns=$1 dst=$2 count=${3:-5}
    local out
    if out=$(in_ns "$ns" ping -c "$count" -i 0.2 -W 2 -p "$PING_PATTERN" "$dst" 2>&1); then
        ok "ping $dst: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
    else
        fail "ping $dst"; echo "$out" | tail -3
    fi
    [ "${VERBOSE:-0}" = 1 ] && echo "$out" | sed 's/^/    /'
    return 0
}

# transfer HOST_IP MB: an iperf3 TCP transfer of MB megabytes (throughput),
# then the same amount of random data over TCP with its SHA-256 compared on
# both ends (payload integrity through the tunnel).
transfer() {
    local dst=$1 mb=$2 out
    in_ns $NS_HB iperf3 -s -1 -p 5201 >"$DIR/iperf-s.log" 2>&1 &
    local spid=$!; PIDS+=("$spid")
    sleep 0.3
    if out=$(in_ns $NS_HA iperf3 -c "$dst" -p 5201 -n "${mb}M" 2>&1); then
        ok "iperf3 TCP ${mb} MB to $dst: $(echo "$out" | awk '/sender/{print $7" "$8}' | tail -1)"
    else
        fail "iperf3 to $dst"; echo "$out" | tail -3
    fi
    wait "$spid" 2>/dev/null || true
    head -c $((mb * 1024 * 1024)) /dev/urandom >"$DIR/send.bin"
    in_ns $NS_HB $PY "$ROOT/scripts/tcp_sha.py" recv 5202 >"$DIR/recv.sha" 2>&1 &
    local rpid=$!; PIDS+=("$rpid")
    sleep 0.3
    local sent got
    sent=$(in_ns $NS_HA $PY "$ROOT/scripts/tcp_sha.py" send "$dst" 5202 "$DIR/send.bin" 2>&1) || true
    wait "$rpid" 2>/dev/null || true
    got=$(cat "$DIR/recv.sha")
    if [ -n "$sent" ] && [ "$sent" = "$got" ]; then
        ok "TCP ${mb} MB to $dst: SHA-256 ${got#* } matches on both ends"
    else
        fail "payload through the tunnel: sent '$sent', received '$got'"
    fi
}

PING_PATTERN=e59e550ca11e
sa_table_pair1() {
    local mode=$1
    if [ "$mode" = tunnel ]; then
        printf '192.0.2.1 192.0.2.2 %d %s\n192.0.2.2 192.0.2.1 %d %s\n' $((0x2001)) "$KEY_AB" $((0x1001)) "$KEY_BA"
    else
        printf '10.1.0.10 10.2.0.20 %d %s\n10.2.0.20 10.1.0.10 %d %s\n' $((0x2001)) "$KEY_AB" $((0x1001)) "$KEY_BA"
        printf 'fd01::10 fd02::20 %d %s\nfd02::20 fd01::10 %d %s\n' $((0x2001 + 16)) "$KEY_AB" $((0x1001 + 16)) "$KEY_BA"
    fi
}

run_traffic_scenario() {
    local mode=$1 mb4=$2 mb6=$3
    say "network: hostA - gwA - WAN - gwB - hostB in namespaces *-$ID"
    setup_network
    say "gateways: espresso run, $mode mode, AES-GCM-256, UDP encapsulation"
    write_config a "$mode" "1"
    write_config b "$mode" "1"
    start_gateways
    ok "both gateways up ($(grep -c 'install .* SA' "$DIR/gw-a.log") SAs installed on gwA)"
    write_esp_sa "$(sa_table_pair1 "$mode")"
    start_capture
    say "ping through the tunnel (IPv4 and IPv6 inner)"
    ping_check $NS_HA 10.2.0.20 5
    ping_check $NS_HA fd02::20 5
    say "TCP through the tunnel (captured)"
    transfer 10.2.0.20 5
    stop_capture
    say "WAN capture decrypted by tshark with the configured keys"
    verify_capture "$(echo $PING_PATTERN | xxd -r -p 2>/dev/null || printf '\xe5\x9e\x55\x0c\xa1\x1e')" 10
    say "bulk transfers (not captured)"
    transfer 10.2.0.20 "$mb4"
    transfer fd02::20 "$mb6"
    say "counters"
    # not_for_us: the hosts' own IPv6 multicast chatter (MLD reports, router
    # solicitations) that a gateway answers with silence.
    check_no_drops a drop.not_for_us
    check_no_drops b drop.not_for_us
    for s in a b; do
        printf '    gw%s: encapsulated %s, decapsulated %s, mss_clamped %s\n' "$s" \
            "$(stat_of $s total.encapsulated)" "$(stat_of $s total.decapsulated)" "$(stat_of $s total.mss_clamped)"
    done
    [ "${VERBOSE:-0}" = 1 ] && { echo "--- espresso stats (gwA) ---"; stats a | grep -v ' 0$'; }
    say "stopping the gateways"
    stop_gateways
}

scenario_rekey() {
    say "network and gateways (tunnel mode, SA pair 1)"
    setup_network
    write_config a tunnel "1"; write_config b tunnel "1"
    start_gateways
    in_ns $NS_HB iperf3 -s -1 -p 5201 >"$DIR/iperf-s.log" 2>&1 &
    local spid=$!; PIDS+=("$spid")
    sleep 0.5
    say "iperf3 TCP for 8 s; meanwhile: add SA pair 2, move traffic to it, delete pair 1"
    in_ns $NS_HA iperf3 -c 10.2.0.20 -p 5201 -t 8 >"$DIR/iperf-c.log" 2>&1 &
    local cpid=$!; PIDS+=("$cpid")
    sleep 2
    local step
    for step in "1 2" "2 1" "2"; do
        write_config a tunnel "$step"; write_config b tunnel "$step"
        "$BIN" reload -c "$DIR/site-a.toml" >/dev/null && "$BIN" reload -c "$DIR/site-b.toml" >/dev/null \
            && ok "reloaded both gateways with SA pairs [$step] (the first carries outbound traffic)" || fail "reload [$step]"
        sleep 1.5
    done
    if wait "$cpid"; then
        ok "iperf3 completed: $(awk '/sender/{print $5" "$6" at "$7" "$8}' "$DIR/iperf-c.log" | tail -1), $(awk '/sender/{print $9}' "$DIR/iperf-c.log" | tail -1) TCP retransmissions"
    else
        fail "iperf3 failed"; tail -3 "$DIR/iperf-c.log"
    fi
    wait "$spid" 2>/dev/null || true
    local old new
    old=$(stat_of a sa.in.0x00001001.packets)
    [ -z "$old" ] && ok "old inbound SA 0x1001 deleted on gwA" || fail "old SA still installed on gwA"
    old=$(stat_of b sa.in.0x00002001.packets)
    [ -z "$old" ] && ok "old inbound SA 0x2001 deleted on gwB" || fail "old SA still installed on gwB"
    new=$(stat_of b sa.in.0x00002101.packets)
    [ "${new:-0}" -gt 1000 ] && ok "new SA 0x2101 carried $new packets into gwB" || fail "new SA 0x2101 carried ${new:-0} packets"
    new=$(stat_of a sa.in.0x00001101.packets)
    [ "${new:-0}" -gt 100 ] && ok "new SA 0x1101 carried $new packets into gwA" || fail "new SA 0x1101 carried ${new:-0} packets"
    check_no_drops a drop.not_for_us
    check_no_drops b drop.not_for_us
    stop_gateways
}

scenario_hostile() {
    say "network and gateways"
    setup_network
    write_config a tunnel "1"; write_config b tunnel "1"
    start_gateways
    # A real ESP packet from gwB to gwA to replay, captured on gwB's side.
    # Bounded: on a loaded machine the capture may start after the pings,
    # and waiting for packets that never come hung the test.
    in_ns $NS_GB bash -c "trap - INT; exec tshark -q -n -i wan0 -c 3 -a duration:15 -f 'udp port 4500 and src host 192.0.2.2' -w '$DIR/replay.pcap' 2>/dev/null" &
    local cpid=$!; PIDS+=("$cpid")
    sleep 1
    in_ns $NS_HB ping -c 3 -i 0.2 10.1.0.10 >/dev/null 2>&1 || true
    # More traffic while the capture still waits (it stops at 3 packets).
    in_ns $NS_HB ping -c 10 -i 0.5 10.1.0.10 >/dev/null 2>&1 &
    local more=$!; PIDS+=("$more")
    wait "$cpid" 2>/dev/null || true
    kill "$more" 2>/dev/null || true
    say "sending 5 each of 7 kinds of bad packets at gwA while hostA pings hostB"
    in_ns $NS_HA ping -c 20 -i 0.1 -W 2 10.2.0.20 >"$DIR/ping.log" 2>&1 &
    local ppid=$!; PIDS+=("$ppid")
    in_ns $NS_GB $PY "$ROOT/scripts/hostile.py" wan0 02:00:00:00:a0:02 02:00:00:00:b0:02 192.0.2.2 192.0.2.1 \
        0x1001 "$DIR/replay.pcap" 5 >"$DIR/hostile.log" 2>&1 || { cat "$DIR/hostile.log"; fail "hostile.py"; }
    cat "$DIR/hostile.log" | sed 's/^/    /'
    if wait "$ppid"; then ok "ping during the attack: $(grep -o '[0-9]* received' "$DIR/ping.log")"; else fail "ping during the attack"; cat "$DIR/ping.log" | tail -2; fi
    local k want
    for kv in drop.esp.unknown_spi:5 drop.esp.auth_failed:5 drop.esp.replay:5 drop.esp.bad_length:5 \
              drop.bad_frame:10 drop.esp.nat_keepalive:5; do
        k=${kv%%:*}; want=${kv#*:}
        local got; got=$(stat_of a "$k")
        if [ "${got:-0}" -eq "$want" ]; then ok "gwA counted $got under $k"; else fail "gwA counted ${got:-0} under $k (want $want)"; fi
    done
    ping_check $NS_HA 10.2.0.20 3
    stop_gateways
}

scenario_pmtu() {
    say "network and gateways, WAN MTU 1400"
    setup_network
    write_config a tunnel "1" 1400; write_config b tunnel "1" 1400
    start_gateways
    local out mtu
    in_ns $NS_HA ping -c 1 -W 2 10.2.0.20 >/dev/null 2>&1 || true
    out=$(in_ns $NS_HA ping -c 2 -i 0.3 -W 2 -M do -s 1400 10.2.0.20 2>&1 || true)
    mtu=$(echo "$out" | grep -o 'mtu = [0-9]*' | head -1 | awk '{print $3}')
    # What fits: 1400 - outer IPv4 (20) - UDP (8) - ESP (8) - IV (8) - ICV (16)
    # - pad length and next header (2) = 1338 for AES-GCM (1338 + 2 is a
    # multiple of 4: no padding).
    if [ "${mtu:-0}" = 1338 ]; then ok "ICMP fragmentation needed reached hostA with mtu = $mtu"
    else fail "expected 'mtu = 1338' from ping, got: $(echo "$out" | head -3)"; fi
    out=$(in_ns $NS_HA ping -c 2 -i 0.3 -W 2 -M do -s $((1338 - 28)) 10.2.0.20 2>&1) && ok "a DF packet of exactly 1338 bytes passes" || fail "1338-byte DF ping: $out"
    out=$(in_ns $NS_HA ping -c 1 -W 2 -M do -s $((1339 - 28)) 10.2.0.20 2>&1) && fail "a 1339-byte DF packet passed" || ok "a 1339-byte DF packet does not"
    local icmp; icmp=$(stat_of a total.icmp_errors)
    [ "${icmp:-0}" -ge 1 ] && ok "gwA sent $icmp ICMP errors (drop.too_big $(stat_of a drop.too_big))" || fail "no ICMP error counted"
    # IPv6: packet too big.
    out=$(in_ns $NS_HA ping -6 -c 2 -i 0.3 -W 2 -M do -s 1400 fd02::20 2>&1 || true)
    mtu=$(echo "$out" | grep -o 'mtu = [0-9]*\|mtu=[0-9]*' | head -1 | grep -o '[0-9]*')
    if [ -n "$mtu" ] && [ "$mtu" -lt 1400 ]; then ok "ICMPv6 packet too big reached hostA with mtu = $mtu"
    else fail "no ICMPv6 packet too big: $(echo "$out" | head -3)"; fi
    stop_gateways
}

scenario_workers() {
    say "network; gwA with 2 workers (2 RX/TX queues per port), gwB with 1"
    setup_network
    WORKERS_A=2 write_config a tunnel "1"; write_config b tunnel "1"
    start_gateways
    write_esp_sa "$(sa_table_pair1 tunnel)"
    start_capture
    say "4 parallel TCP streams each way, spread over both workers by the af_packet fanout"
    in_ns $NS_HB iperf3 -s -1 -p 5201 >"$DIR/iperf-s.log" 2>&1 &
    local spid=$!; PIDS+=("$spid")
    sleep 0.3
    if in_ns $NS_HA iperf3 -c 10.2.0.20 -p 5201 -P 4 -b 60M -t 2 --bidir >"$DIR/iperf-c.log" 2>&1; then
        ok "iperf3 -P 4 --bidir: $(awk '/SUM.*sender/{print $6" "$7}' "$DIR/iperf-c.log" | head -2 | tr '\n' ' ')"
    else
        fail "iperf3"; tail -3 "$DIR/iperf-c.log"
    fi
    wait "$spid" 2>/dev/null || true
    stop_capture
    say "every ESP sequence number on the WAN is used once per SPI"
    local total dups w0 w1
    tshark -n -r "$DIR/wan.pcapng" -Y esp -T fields -e esp.spi -e esp.sequence 2>/dev/null >"$DIR/seq.txt"
    total=$(wc -l <"$DIR/seq.txt")
    dups=$(sort "$DIR/seq.txt" | uniq -d | wc -l)
    if [ "$total" -gt 1000 ] && [ "$dups" = 0 ]; then ok "$total ESP packets, no sequence number sent twice on any SA"
    else fail "$total ESP packets, $dups duplicated (SPI, sequence) pairs"; fi
    w0=$(stat_of a worker.0.rx); w1=$(stat_of a worker.1.rx)
    if [ "${w0:-0}" -gt 100 ] && [ "${w1:-0}" -gt 100 ]; then ok "both gwA workers received traffic (worker 0: $w0, worker 1: $w1 frames)"
    else fail "traffic did not spread over both workers (worker 0: ${w0:-0}, worker 1: ${w1:-0})"; fi
    local h; h=$(stat_of a total.handoffs_out)
    [ "${h:-0}" -gt 0 ] && ok "$h packets handed to the SA's owning worker" || fail "no hand-off between workers"
    verify_capture "no-ping-pattern-in-this-run" 1000
    check_no_drops a drop.not_for_us
    check_no_drops b drop.not_for_us
    stop_gateways
}

# Waits until both gateways report their IKE tunnel up with a Child SA.
wait_ike_up() {
    local site t0=$SECONDS
    for site in a b; do
        for _ in $(seq 100); do
            "$BIN" tunnels -c "$DIR/site-$site.toml" 2>/dev/null | grep -q '^  child .* active' && break
            sleep 0.1
        done
    done
    if "$BIN" tunnels -c "$DIR/site-a.toml" | grep -q ' up ' && "$BIN" tunnels -c "$DIR/site-b.toml" | grep -q ' up '; then
        ok "IKE SA and Child SA up on both gateways (within $((SECONDS - t0 + 1)) s)"
    else
        fail "IKE tunnel did not come up"; tail -20 "$DIR/gw-a.log"; tail -20 "$DIR/gw-b.log"; return 1
    fi
}

# The gateways' IKE log lines, without timestamps and colours.
show_ike_log() {
    local site=$1
    sed -E 's/\x1b\[[0-9;]*m//g' "$DIR/gw-$site.log" | grep -E 'IKE:|SA \(IKE\)' | sed -E 's/^[^ ]+ +//' | sed "s/^/    gw$site | /" || true
}

# Subscribes to gwA's events (JSON lines into events-a.jsonl) for api_check.
api_events_start() {
    "$BIN" --socket "$DIR/gw-a.sock" --json events >"$DIR/events-a.jsonl" 2>"$DIR/events-a.err" &
    EVENTS_PID=$!; PIDS+=("$EVENTS_PID")
}

# The control API through the CLI on gwA: JSON results, refusals by name,
# errors with their code, SIGHUP reloads, and the events seen since
# api_events_start (a Child SA rekey with REKEYED=1).
api_check() {
    local rekeyed=$1 out
    out=$("$BIN" --socket "$DIR/gw-a.sock" --json tunnels) || fail "espresso --json tunnels failed"
    if echo "$out" | $PY -c 'import json,sys; t=[x for x in json.load(sys.stdin) if x["name"]=="site"][0]; assert t["kind"]=="ike" and t["state"]=="up" and len(t["ike_sa"]["spi_i"])==16 and any(c["state"]=="active" for c in t["child_sas"]), t'; then
        ok "tunnels (JSON): site is up, with an IKE SA and an active Child SA"
    else fail "tunnels (JSON): $out"; fi
    out=$("$BIN" -c "$DIR/site-a.toml" --json stats) || fail "espresso --json stats failed"
    if echo "$out" | $PY -c 'import json,sys; c=json.load(sys.stdin)["counters"]; assert c["total.rx"]>0 and c["control.socket.served"]>0 and any(k.startswith("sa.in.") for k in c); print(len(c))' >"$DIR/n-counters"; then
        ok "stats (JSON): $(cat "$DIR/n-counters") counters"
    else fail "stats (JSON) incomplete"; fi
    out=$("$BIN" --socket "$DIR/gw-a.sock" --json child-sas) || fail "espresso --json child-sas failed"
    if echo "$out" | $PY -c 'import json,sys; a=[c for c in json.load(sys.stdin) if c["state"]=="active"][0]; assert a["inbound"]["packets"]>0 and a["outbound"]["packets"]>0, a'; then
        ok "child-sas (JSON): the active Child SA has packets in and out"
    else fail "child-sas (JSON): $out"; fi
    out=$("$BIN" --socket "$DIR/gw-a.sock" version) && echo "$out" | grep -q '(control API v1)$' && ok "version: $out" || fail "version: '$out'"
    out=$("$BIN" --socket "$DIR/gw-a.sock" --json policies) && echo "$out" | $PY -c 'import json,sys; p=json.load(sys.stdin); assert any(x["action"]=="protect" and x["tunnel"]=="site" for x in p), p' && ok "policies (JSON): $(echo "$out" | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))') entries" || fail "policies: $out"
    out=$("$BIN" --socket "$DIR/gw-a.sock" --json routes) && echo "$out" | $PY -c 'import json,sys; r=json.load(sys.stdin); assert any(x["kind"]=="connected" for x in r), r' && ok "routes (JSON): $(echo "$out" | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))') routes" || fail "routes: $out"
    out=$("$BIN" --socket "$DIR/gw-a.sock" --json neighbours) && echo "$out" | $PY -c 'import json,sys; n=json.load(sys.stdin); assert any(x["kind"]=="learned" for x in n), n' && ok "neighbours (JSON): $(echo "$out" | $PY -c 'import json,sys; print(" ".join(x["address"]+"/"+x["kind"] for x in json.load(sys.stdin)))')" || fail "neighbours: $out"
    out=$("$BIN" --socket "$DIR/gw-a.sock" sas) && echo "$out" | grep -q '^ike ' && echo "$out" | grep -q '^child .* in [1-9][0-9]* pkts' && ok "sas: $(echo "$out" | wc -l) lines, the IKE SA and Child SAs with counters" || fail "sas: $out"
    out=$($PY - "$DIR/gw-a.sock" <<'PYEOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
s.sendall(b'{"v":1,"cmd":\n{"v":2,"id":1,"cmd":"stats"}\n{"v":1,"id":2,"cmd":"halt"}\n')
f = s.makefile()
print(" ".join(json.loads(f.readline())["error"]["code"] for _ in range(3)))
PYEOF
)
    [ "$out" = "bad_request unsupported_version unknown_command" ] && ok "malformed, wrong-version and unknown requests refused by name" || fail "refusals: '$out'"
    [ "$(stat_of a control.socket.refused.malformed)" -ge 1 ] && ok "the refusals are counted (control.socket.refused.*)" || fail "control.socket.refused.malformed not counted"
    if "$BIN" --socket "$DIR/gw-a.sock" rekey no-such-tunnel 2>"$DIR/rekey.err"; then fail "rekey of an unknown tunnel succeeded"
    elif grep -q not_found "$DIR/rekey.err"; then ok "rekey of an unknown tunnel: $(cat "$DIR/rekey.err")"
    else fail "rekey error: $(cat "$DIR/rekey.err")"; fi
    kill -HUP "$GW_A_PID"
    for _ in $(seq 50); do grep -q '"type":"reload"' "$DIR/events-a.jsonl" && break; sleep 0.1; done
    if grep '"type":"reload"' "$DIR/events-a.jsonl" | grep -q '"trigger":"sighup"'; then ok "SIGHUP reloaded gwA: $(grep -o '"message":"[^"]*"' "$DIR/events-a.jsonl" | tail -1)"
    else fail "no reload event after SIGHUP"; fi
    if [ "$rekeyed" = 1 ]; then
        grep -q '"type":"child_sa_rekeyed"' "$DIR/events-a.jsonl" && ok "events: $(grep -c . "$DIR/events-a.jsonl") lines, Child SA rekeys among them" || fail "no child_sa_rekeyed event: $(head -c 400 "$DIR/events-a.jsonl")"
    fi
    kill "$EVENTS_PID" 2>/dev/null || true
}

# active_child SITE: "SPI_IN SPI_OUT" of the Child SA carrying outbound traffic.
active_child() { "$BIN" tunnels -c "$DIR/site-$1.toml" | awk '/^  child .* active/{print $3" "$5}'; }

# Continuous ping through a Child SA rekey started by SITE: no loss.
rekey_under_ping() {
    local site=$1 before after out
    before=$(active_child a || true)
    in_ns $NS_HA ping -c 60 -i 0.05 -W 2 10.2.0.20 >"$DIR/ping-rekey.log" 2>&1 &
    local ppid=$!; PIDS+=("$ppid")
    sleep 1
    "$BIN" rekey -c "$DIR/site-$site.toml" site >/dev/null || fail "rekey command on gw$site"
    wait "$ppid" || true
    after=$(active_child a || true)
    out=$(grep -o '[0-9]* packets transmitted, [0-9]* received, [0-9.]*% packet loss' "$DIR/ping-rekey.log" || true)
    if [ "$before" != "$after" ] && [ -n "$after" ]; then
        ok "gw$site rekeyed the Child SA: gwA's SPIs (in out) $before -> $after"
    else
        fail "Child SA not rekeyed by gw$site (before '$before', after '$after')"
    fi
    if echo "$out" | grep -q ' 0% packet loss'; then ok "continuous ping during the rekey: $out"
    else fail "ping during the rekey lost packets: $out"; fi
}

# decrypt_check KEYDIR MIN_SPIS: tshark decrypts the WAN capture with the
# key log Espresso wrote (ESP ICVs, IKE_AUTH identities).
decrypt_check() {
    local keys=$1 min_spis=$2 mode ids spis
    ls -l "$keys" | awk 'NR>1{print "    "$1" "$NF}'
    mode=$(stat -c %a "$keys/esp_sa")
    [ "$mode" = 600 ] && ok "key log files are mode 600" || fail "key log mode $mode"
    mkdir -p "$DIR/wireshark"
    cp "$keys/esp_sa" "$keys/ikev2_decryption_table" "$DIR/wireshark/"
    verify_capture "$(echo $PING_PATTERN | xxd -r -p 2>/dev/null || printf '\xe5\x9e\x55\x0c\xa1\x1e')" 10
    ids=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark tshark -n -r "$DIR/wan.pcapng" -Y 'isakmp.id.data.fqdn' -T fields -e isakmp.id.data.fqdn 2>/dev/null | tr ',' '\n' | sort -u | tr '\n' ' ')
    if echo "$ids" | grep -q gw-a.example && echo "$ids" | grep -q gw-b.example; then ok "IKE_AUTH decrypted: identities $ids"
    else fail "IKE_AUTH not decrypted (identities: '$ids')"; fi
    spis=$(tshark -n -r "$DIR/wan.pcapng" -Y esp -T fields -e esp.spi 2>/dev/null | sort -u | wc -l)
    [ "$spis" -ge "$min_spis" ] && ok "ESP on $spis SPIs in the capture" || fail "only $spis ESP SPIs in the capture (want $min_spis)"
}

scenario_ike() {
    say "network: hostA - gwA - WAN - gwB - hostB in namespaces *-$ID"
    setup_network
    write_config a ike ""; write_config b ike ""
    start_capture
    say "gateways: gwA initiates IKEv2 (PSK, ${IKE_PROPOSAL:-aes256gcm16-prfsha384-x25519} / ${ESP_PROPOSAL:-aes256gcm16}), gwB listens"
    start_gateways
    wait_ike_up || return 0
    api_events_start
    say "the IKE exchange, from the gateways' logs"
    show_ike_log a
    show_ike_log b
    say "espresso tunnels"
    "$BIN" tunnels -c "$DIR/site-a.toml" | sed 's/^/    gwA | /'
    "$BIN" tunnels -c "$DIR/site-b.toml" | sed 's/^/    gwB | /'
    say "ping through the tunnel (IPv4 and IPv6 inner)"
    ping_check $NS_HA 10.2.0.20 5
    ping_check $NS_HA fd02::20 5
    say "TCP through the tunnel (captured)"
    transfer 10.2.0.20 5
    if [ "${IKE_REKEY:-1}" = 1 ]; then
        say "Child SA rekeys under a continuous ping (20 pings/s), started by gwA, then by gwB"
        rekey_under_ping a
        rekey_under_ping b
        sleep 6
        local n_in
        n_in=$(stats a | grep -c '^sa\.in\..*\.packets' || true)
        [ "$n_in" = 1 ] && ok "gwA removed the rekeyed inbound SAs after the grace period (1 inbound SA left)" || fail "gwA has $n_in inbound SAs after the rekeys"
        ping_check $NS_HA 10.2.0.20 3
    fi
    stop_capture
    say "WAN capture decrypted by tshark with the keys Espresso exported (keylog_dir)"
    decrypt_check "$DIR/keylog-a" $([ "${IKE_REKEY:-1}" = 1 ] && echo 6 || echo 2)
    if [ -n "${BULK_MB4:-}" ]; then
        say "bulk transfers (not captured)"
        transfer 10.2.0.20 "$BULK_MB4"
        transfer fd02::20 "${BULK_MB6:-$BULK_MB4}"
    fi
    say "the control API (JSON) through the CLI"
    api_check "${IKE_REKEY:-1}"
    say "counters"
    check_no_drops a drop.not_for_us
    check_no_drops b drop.not_for_us
    for s in a b; do
        printf '    gw%s: encapsulated %s, decapsulated %s, mss_clamped %s\n' "$s" \
            "$(stat_of $s total.encapsulated)" "$(stat_of $s total.decapsulated)" "$(stat_of $s total.mss_clamped)"
    done
    [ "${VERBOSE:-0}" = 1 ] && { echo "--- espresso stats (gwA) ---"; stats a | grep -v ' 0$'; }
    stats a | grep -E '^ike\.(rx|tx)_packets|^ike\.site\.(ike_sa|child_sa)_established|^ike\.site\.(retransmits|integrity_failures)' | sed 's/^/    gwA | /' || true
    say "stopping the gateways"
    stop_gateways
}

# reload_both LABEL WANT...: reloads gwB then gwA (a listener's DELETE
# first, so that the initiator's new IKE SA meets the new settings) and
# checks that each report contains every WANT.
reload_both() {
    local label=$1 site out w; shift
    for site in b a; do
        if out=$("$BIN" reload -c "$DIR/ctl-$site.toml" 2>&1); then
            echo "$out" | sed "s/^/    gw$site | /"
            for w in "$@"; do
                echo "$out" | grep -qF "$w" && ok "gw$site report ($label): $w" || fail "gw$site report ($label) lacks '$w'"
            done
        else
            fail "gw$site reload ($label) failed"; echo "$out"
        fi
    done
}

scenario_reload() {
    say "network and gateways: tunnel site (IKE, IPv4) and tunnel extra (manual SAs, IPv6)"
    setup_network
    SPLIT_V6=manual
    write_config a ike ""; write_config b ike ""
    # The gateways re-read site-*.toml; the command line reaches them
    # through a copy, which stays readable when a test breaks the file.
    cp "$DIR/site-a.toml" "$DIR/ctl-a.toml"; cp "$DIR/site-b.toml" "$DIR/ctl-b.toml"
    start_gateways
    wait_ike_up || return 0
    ping_check $NS_HA 10.2.0.20 3
    ping_check $NS_HA fd02::20 3
    local in6 before after spi_before spi_after out
    in6=$(stat_of a sa.in.0x00001001.packets)
    [ "${in6:-0}" -gt 0 ] && ok "tunnel extra's SA 0x1001 carried $in6 packets into gwA" || fail "tunnel extra carried nothing"
    before=$(active_child a)
    spi_before=$("$BIN" tunnels -c "$DIR/ctl-a.toml" | awk '/^  ike /{print $3}')

    say "reload: tunnel extra removed, site's child_lifetime 1h -> 50m, under a continuous ping through site"
    in_ns $NS_HA ping -c 80 -i 0.05 -W 2 10.2.0.20 >"$DIR/ping-reload.log" 2>&1 &
    local ppid=$!; PIDS+=("$ppid")
    sleep 1
    SPLIT_V6=ike-only CHILD_LIFETIME=50m
    write_config a ike ""; write_config b ike ""
    reload_both "remove + lifetime" "removed tunnel extra" \
        "changed tunnel site: ike.child_lifetime (IKE settings used from the next exchange)" "0 tunnels unchanged"
    wait "$ppid" || true
    out=$(grep -o '[0-9]* packets transmitted, [0-9]* received, [0-9.]*% packet loss' "$DIR/ping-reload.log" || true)
    if echo "$out" | grep -q ' 0% packet loss'; then ok "ping through the kept tunnel during the reload: $out"
    else fail "ping through the kept tunnel lost packets: $out"; fi
    after=$(active_child a)
    [ -n "$after" ] && [ "$before" = "$after" ] && ok "site's Child SA untouched (SPIs $after)" || fail "site's Child SA changed: '$before' -> '$after'"
    [ -z "$(stat_of a sa.in.0x00001001.packets)" ] && ok "tunnel extra's inbound SA gone from gwA" || fail "SA 0x1001 still on gwA"
    [ -z "$(stat_of b sa.in.0x00002001.packets)" ] && ok "tunnel extra's inbound SA gone from gwB" || fail "SA 0x2001 still on gwB"
    "$BIN" tunnels -c "$DIR/ctl-a.toml" | grep -q '^tunnel extra' && fail "gwA's tunnels still lists extra" || ok "gwA's tunnels lists only site"

    say "reload: a new PSK for site on both gateways"
    PSK=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    write_config a ike ""; write_config b ike ""
    reload_both "psk" "changed tunnel site: ike.psk (IKE SA re-established)"
    sleep 0.5
    wait_ike_up || return 0
    spi_after=$("$BIN" tunnels -c "$DIR/ctl-a.toml" | awk '/^  ike /{print $3}')
    [ -n "$spi_after" ] && [ "$spi_after" != "$spi_before" ] && ok "new IKE SA with the new PSK (spi_i $spi_before -> $spi_after)" || fail "IKE SA not re-established ($spi_before -> $spi_after)"
    ping_check $NS_HA 10.2.0.20 3

    say "a broken file and a refused change apply nothing"
    cp "$DIR/site-a.toml" "$DIR/good-a.toml"
    echo "[[tunnel]" >>"$DIR/site-a.toml"
    if out=$("$BIN" reload -c "$DIR/ctl-a.toml" 2>&1); then fail "a broken file was accepted"
    else echo "$out" | grep -q "nothing changed" && ok "broken file refused: $(echo "$out" | head -1)" || fail "broken file: $out"; fi
    sed 's/^workers = 1/workers = 2/; s/child_lifetime = "50m"/child_lifetime = "40m"/' "$DIR/good-a.toml" >"$DIR/site-a.toml"
    if out=$("$BIN" reload -c "$DIR/ctl-a.toml" 2>&1); then fail "a workers change was accepted"
    else echo "$out" | grep -q "refused dataplane.workers" && ok "workers change refused, nothing applied" || fail "refusal: $out"; fi
    "$BIN" tunnels -c "$DIR/ctl-a.toml" | grep -q "^tunnel site up" && ok "site still up" || fail "site down after refused reloads"
    ping_check $NS_HA 10.2.0.20 3
    stop_gateways
}

# tunnel_field SITE NAME: "STATE IKE_SPI_I CHILD_SPI_IN..." of tunnel NAME
# on gwSITE from `espresso --json tunnels` ("absent" when not listed, "-"
# for no IKE SA).
tunnel_field() {
    "$BIN" --socket "$DIR/gw-$1.sock" --json tunnels | $PY -c '
import json, sys
t = [x for x in json.load(sys.stdin) if x["name"] == sys.argv[1]]
if not t: print("absent"); sys.exit()
t = t[0]
print(t["state"], (t.get("ike_sa") or {}).get("spi_i", "-"), *[c["spi_in"] for c in t["child_sas"]])' "$2"
}

# wait_state SITE NAME STATE SECONDS: until tunnel NAME's state on gwSITE
# is STATE (or "absent"); 1 if it never is.
wait_state() {
    local i
    for i in $(seq $(($4 * 10))); do
        [ "$(tunnel_field "$1" "$2" | awk '{print $1}')" = "$3" ] && return 0
        sleep 0.1
    done
    return 1
}

# sa_gone SITE SPI_IN...: none of the inbound SAs is in gwSITE's stats.
sa_gone() {
    local site=$1 s st; shift
    st=$(stats "$site")
    for s in "$@"; do
        echo "$st" | grep -q "^sa\.in\.0x$(printf '%08x' $((16#${s#0x}))).packets " && return 1
    done
    return 0
}

# ping_ok DST: three pings from hostA to DST, all answered.
ping_ok() { in_ns $NS_HA ping -c 3 -i 0.2 -W 2 "$1" >/dev/null 2>&1; }

scenario_api() {
    say "network and gateways: tunnel site (IKE, IPv4) and tunnel extra (manual SAs, IPv6)"
    setup_network
    SPLIT_V6=manual
    write_config a ike ""; write_config b ike ""
    start_gateways
    wait_ike_up || return 0
    ping_check $NS_HA 10.2.0.20 3
    ping_check $NS_HA fd02::20 3
    local sock=$DIR/gw-a.sock out before before_b after t0
    before=$(tunnel_field a site); before_b=$(tunnel_field b site)
    echo "    gwA | site: $before"
    echo "    gwB | site: $before_b"

    say "terminate site on gwA (IPv6 pings through extra meanwhile)"
    in_ns $NS_HA ping -c 60 -i 0.05 -W 2 fd02::20 >"$DIR/ping-extra.log" 2>&1 &
    local ppid=$!; PIDS+=("$ppid")
    sleep 0.5
    t0=$SECONDS
    if out=$("$BIN" --socket "$sock" terminate site 2>&1); then ok "terminate site answered: $out"
    else fail "terminate site failed: $out"; fi
    if wait_state a site down 5; then "$BIN" --socket "$sock" tunnels | sed 's/^/    gwA | /'; ok "gwA: site down"
    else fail "gwA: site not down after terminate: $(tunnel_field a site)"; fi
    # shellcheck disable=SC2086
    sa_gone a ${before#* * } && ok "gwA: site's inbound Child SAs (${before#* * }) gone from stats" || fail "gwA still has site's inbound SAs ${before#* * }"
    wait_state b site down 5 && ok "gwB saw the DELETE: site down" || fail "gwB: site $(tunnel_field b site) after gwA's terminate"
    # shellcheck disable=SC2086
    sa_gone b ${before_b#* * } && ok "gwB: site's inbound Child SAs (${before_b#* * }) gone from stats" || fail "gwB still has site's inbound SAs ${before_b#* * }"
    wait "$ppid" || true
    out=$(grep -o '[0-9]* packets transmitted, [0-9]* received, [0-9.]*% packet loss' "$DIR/ping-extra.log" || true)
    echo "$out" | grep -q ' 0% packet loss' && ok "tunnel extra passed traffic throughout: $out" || fail "tunnel extra lost packets during terminate: $out"
    ping_ok 10.2.0.20 && fail "IPv4 ping answered through a terminated tunnel" || ok "no IPv4 traffic through site while it is down"
    # An initiator retries a lost IKE SA after 5 s; a terminated one waits
    # for initiate.
    sleep $((t0 + 7 - SECONDS > 0 ? t0 + 7 - SECONDS : 0))
    out=$(tunnel_field a site)
    [ "${out%% *}" = down ] && ok "gwA: site still down $((SECONDS - t0)) s after terminate (no automatic retry)" || fail "gwA: site $out after terminate"

    say "initiate site on gwA"
    t0=$SECONDS
    if out=$("$BIN" --socket "$sock" initiate site 2>&1); then ok "initiate site answered: $out"
    else fail "initiate site failed: $out"; fi
    if wait_state a site up 10; then
        after=$(tunnel_field a site)
        [ "$(echo "$after" | awk '{print $2}')" != "$(echo "$before" | awk '{print $2}')" ] \
            && ok "site up again within $((SECONDS - t0 + 1)) s with a new IKE SA ($(echo "$before" | awk '{print $2}') -> $(echo "$after" | awk '{print $2}'))" \
            || fail "site up with the old IKE SPI: $after"
    else fail "site not up 10 s after initiate: $(tunnel_field a site)"; fi
    wait_state b site up 5 || fail "gwB: site $(tunnel_field b site) after initiate"
    ping_check $NS_HA 10.2.0.20 3
    if out=$("$BIN" --socket "$sock" initiate site 2>&1); then fail "initiate of an up tunnel succeeded: $out"
    else echo "$out" | grep -q 'up already' && ok "initiate of an up tunnel refused: $out" || fail "initiate while up: $out"; fi
    before=$(tunnel_field a site); before_b=$(tunnel_field b site)

    say "unload site on gwA (IPv6 pings through extra meanwhile)"
    in_ns $NS_HA ping -c 60 -i 0.05 -W 2 fd02::20 >"$DIR/ping-extra.log" 2>&1 &
    ppid=$!; PIDS+=("$ppid")
    sleep 0.5
    if out=$("$BIN" --socket "$sock" unload site 2>&1); then
        echo "$out" | sed 's/^/    gwA | /'
        echo "$out" | grep -q 'removed tunnel site' && ok "unload site answered with its report" || fail "unload report lacks 'removed tunnel site'"
    else fail "unload site failed: $out"; fi
    [ "$(tunnel_field a site)" = absent ] && ok "gwA's tunnels no longer lists site" || fail "gwA still lists site: $(tunnel_field a site)"
    # shellcheck disable=SC2086
    sa_gone a ${before#* * } && ok "gwA: site's inbound Child SAs gone from stats" || fail "gwA still has site's inbound SAs ${before#* * }"
    wait_state b site down 5 && ok "gwB saw the DELETE: site down" || fail "gwB: site $(tunnel_field b site) after gwA's unload"
    # shellcheck disable=SC2086
    sa_gone b ${before_b#* * } && ok "gwB: site's inbound Child SAs gone from stats" || fail "gwB still has site's inbound SAs ${before_b#* * }"
    wait "$ppid" || true
    out=$(grep -o '[0-9]* packets transmitted, [0-9]* received, [0-9.]*% packet loss' "$DIR/ping-extra.log" || true)
    echo "$out" | grep -q ' 0% packet loss' && ok "tunnel extra passed traffic throughout: $out" || fail "tunnel extra lost packets during unload: $out"

    say "load site on gwA (the file still has it)"
    t0=$SECONDS
    if out=$("$BIN" --socket "$sock" load site 2>&1); then
        echo "$out" | sed 's/^/    gwA | /'
        echo "$out" | grep -q 'added tunnel site' && ok "load site answered with its report" || fail "load report lacks 'added tunnel site'"
    else fail "load site failed: $out"; fi
    if wait_state a site up 10 && wait_state b site up 5; then ok "site up on both gateways within $((SECONDS - t0 + 1)) s: $(tunnel_field a site)"
    else fail "site not up after load: gwA $(tunnel_field a site), gwB $(tunnel_field b site)"; fi
    ping_check $NS_HA 10.2.0.20 3
    ping_check $NS_HA fd02::20 3

    say "back to back: unload + load, then terminate + initiate"
    before=$(tunnel_field a site)
    "$BIN" --socket "$sock" unload site >/dev/null && "$BIN" --socket "$sock" load site >/dev/null || fail "unload + load failed"
    if wait_state a site up 10 && wait_state b site up 5; then ok "site up after unload + load: $(tunnel_field a site)"
    else fail "site after unload + load: gwA $(tunnel_field a site), gwB $(tunnel_field b site)"; fi
    "$BIN" --socket "$sock" terminate site >/dev/null && "$BIN" --socket "$sock" initiate site >/dev/null || fail "terminate + initiate failed"
    if wait_state a site up 10 && wait_state b site up 5; then ok "site up after terminate + initiate: $(tunnel_field a site)"
    else fail "site after terminate + initiate: gwA $(tunnel_field a site), gwB $(tunnel_field b site)"; fi
    ping_check $NS_HA 10.2.0.20 3
    local site
    for site in a b; do
        out=$(stats $site | grep -c '^sa\.in\..*\.packets ' || true)
        [ "$out" = 2 ] && ok "gw${site^^} holds 2 inbound SAs (one per tunnel)" || fail "gw${site^^} holds $out inbound SAs (want 2)"
    done

    say "errors and JSON"
    if out=$("$BIN" --socket "$sock" terminate nosuch 2>&1); then fail "terminate nosuch succeeded: $out"
    elif echo "$out" | grep -q nosuch; then ok "terminate nosuch refused (non-zero): $out"
    else fail "terminate nosuch: message does not name the tunnel: $out"; fi
    if out=$("$BIN" --socket "$sock" initiate extra 2>&1); then fail "initiate of a manual tunnel succeeded: $out"
    else ok "initiate extra (manual) refused: $out"; fi
    if out=$("$BIN" --socket "$sock" --json terminate site) && echo "$out" | $PY -c 'import json,sys; print(json.load(sys.stdin))' >"$DIR/term.json"; then
        ok "--json terminate parses as JSON: $(cat "$DIR/term.json")"
    else fail "--json terminate: '$out'"; fi
    "$BIN" --socket "$sock" initiate site >/dev/null || fail "initiate site after --json terminate"
    wait_state a site up 10 && ping_check $NS_HA 10.2.0.20 3 || fail "site not up after the last initiate"
    stop_gateways
}

# rss_kb PID: resident memory of a process.
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# rss_check SITE BEFORE_KB WHAT: memory grew by less than 16 MB.
rss_check() {
    local site=$1 before=$2 what=$3 pid after
    pid=$(eval echo \$GW_${site^^}_PID)
    after=$(rss_kb "$pid")
    if [ $((after - before)) -lt 16384 ]; then ok "gw$site memory flat through $what: ${before} -> ${after} kB"
    else fail "gw$site memory grew through $what: ${before} -> ${after} kB"; fi
}

scenario_edge() {
    local ATK=$ROOT/scripts/edge_attack.py
    say "network and gateways: IKEv2 tunnel, gwA's LAN MTU 1300"
    setup_network
    LAN_MTU_A=1300 write_config a ike ""; write_config b ike ""
    start_gateways
    wait_ike_up || return 0
    start_capture
    in_ns $NS_HA ping -c 450 -i 0.1 -W 2 10.2.0.20 >"$DIR/ping-edge.log" 2>&1 &
    local ppid=$!; PIDS+=("$ppid")
    sleep 1

    say "Delete bombs (SPI size 0, 65,535 SPIs x 175 per datagram) at UDP 500 and 4500, spoofing the peer"
    local ra rb
    ra=$(rss_kb "$GW_A_PID"); rb=$(rss_kb "$GW_B_PID")
    for port in 500 4500; do
        in_ns $NS_GB $PY "$ATK" delete-bomb wan0 02:00:00:00:a0:02 192.0.2.2 192.0.2.1 $port 200 | sed 's/^/    gwA <- /'
        in_ns $NS_GA $PY "$ATK" delete-bomb wan0 02:00:00:00:b0:02 192.0.2.1 192.0.2.2 $port 200 | sed 's/^/    gwB <- /'
    done
    sleep 1
    rss_check a "$ra" "800 Delete bombs"
    rss_check b "$rb" "800 Delete bombs"

    say "ARP and NA poisoning from the LAN and from the WAN, then 5,000 random claims"
    in_ns $NS_HA $PY "$ATK" arp h0 02:00:00:00:a0:01 192.0.2.2,192.0.2.1,10.1.0.1 2500 10.1.0.0/24 | sed 's/^/    LAN -> gwA: /'
    in_ns $NS_GB $PY "$ATK" arp wan0 02:00:00:00:a0:02 10.1.0.10,10.1.0.12 2500 192.0.2.0/24 | sed 's/^/    WAN -> gwA: /'
    in_ns $NS_HA $PY "$ATK" na h0 02:00:00:00:a0:01 2001:db8::2 200 | sed 's/^/    LAN -> gwA: /'
    in_ns $NS_GB $PY "$ATK" na wan0 02:00:00:00:a0:02 fd01::10 200 | sed 's/^/    WAN -> gwA: /'
    ip -n $NS_HA addr add 10.1.0.12/24 dev h0
    local out
    if out=$(in_ns $NS_HA ping -c 3 -i 0.2 -W 2 -I 10.1.0.12 10.2.0.20 2>&1); then
        ok "a new LAN host (10.1.0.12, claimed from the WAN) reaches hostB: $(echo "$out" | grep -o '[0-9]* received')"
    else fail "the new LAN host 10.1.0.12 is unreachable after the poisoning"; fi
    ping_check $NS_HA fd02::20 3

    say "packets that expire at gwA after decapsulation, and DF packets over its LAN MTU"
    # gwA's errors about them come from its LAN address, which the tunnel's
    # policy covers: they must reach hostB through the tunnel, never in clear.
    out=$(in_ns $NS_HB ping -c 3 -i 0.2 -W 1 -t 2 10.1.0.10 2>&1 || true)
    echo "$out" | grep -q 'From 10.1.0.1 .*Time to live exceeded' \
        && ok "ping -t 2 from hostB: time exceeded from 10.1.0.1 came back through the tunnel" \
        || fail "no time exceeded reached hostB: $(echo "$out" | sed -n 2p)"
    out=$(in_ns $NS_HB ping -6 -c 3 -i 0.2 -W 1 -t 2 fd01::10 2>&1 || true)
    echo "$out" | grep -qi 'From fd01::1 .*Time exceeded' \
        && ok "ping -6 -t 2 from hostB: time exceeded from fd01::1 came back through the tunnel" \
        || fail "no ICMPv6 time exceeded reached hostB: $(echo "$out" | sed -n 2p)"
    out=$(in_ns $NS_HB ping -c 3 -i 0.3 -W 1 -M do -s 1372 10.1.0.10 2>&1 || true)
    echo "$out" | grep -q 'mtu = 1300\|mtu=1300' \
        && ok "1400-byte DF ping from hostB: fragmentation needed (mtu 1300) came back through the tunnel" \
        || fail "no fragmentation needed reached hostB: $(echo "$out" | sed -n 2,3p | tr '\n' ' ')"
    out=$(in_ns $NS_HB ping -6 -c 3 -i 0.3 -W 1 -M do -s 1352 fd01::10 2>&1 || true)
    echo "$out" | grep -q 'mtu = 1300\|mtu=1300' \
        && ok "1400-byte IPv6 ping from hostB: packet too big (mtu 1300) came back through the tunnel" \
        || fail "no packet too big reached hostB: $(echo "$out" | sed -n 2,3p | tr '\n' ' ')"

    say "spoofed IKE_SA_INIT flood at gwB from 2,000 addresses while gwA rekeys"
    local before after
    before=$(active_child a || true)
    in_ns $NS_GA $PY "$ATK" ike-flood wan0 02:00:00:00:b0:02 192.0.2.2 2000 198.18.0.0/16 | sed 's/^/    WAN -> gwB: /' &
    local fpid=$!; PIDS+=("$fpid")
    sleep 0.5
    "$BIN" rekey -c "$DIR/site-a.toml" site >/dev/null || fail "rekey command on gwA"
    wait "$fpid" || true
    sleep 1
    after=$(active_child a || true)
    if [ "$before" != "$after" ] && [ -n "$after" ]; then ok "gwA rekeyed during the flood: SPIs $before -> $after"
    else fail "rekey during the flood did not complete (before '$before', after '$after')"; fi

    wait "$ppid" || true
    out=$(grep -o '[0-9]* packets transmitted, [0-9]* received, [0-9.]*% packet loss' "$DIR/ping-edge.log" || true)
    if echo "$out" | grep -q ' 0% packet loss'; then ok "ping through the tunnel during every attack: $out"
    else fail "ping through the tunnel lost packets: $out"; fi
    stop_capture

    say "the WAN capture: gwA sent no ICMP and no host traffic in clear"
    local clear from_gw="eth.src == 02:00:00:00:a0:02"
    clear=$(tshark -n -r "$DIR/wan.pcapng" -Y "$from_gw && (icmp || (icmpv6 && icmpv6.type < 128)) && !esp" 2>/dev/null | wc -l)
    if [ "$clear" = 0 ]; then ok "no ICMP error from gwA in clear on the WAN"
    else fail "$clear ICMP errors from gwA in clear on the WAN:"; tshark -n -r "$DIR/wan.pcapng" -Y "$from_gw && (icmp || (icmpv6 && icmpv6.type < 128)) && !esp" 2>/dev/null | head -5; fi
    clear=$(tshark -n -r "$DIR/wan.pcapng" -Y "$from_gw && (ip.src == 10.0.0.0/8 || ipv6.src == fd00::/8) && !esp" 2>/dev/null | wc -l)
    if [ "$clear" = 0 ]; then ok "no host traffic from gwA in clear on the WAN"; else fail "$clear host packets from gwA in clear on the WAN"; fi
    clear=$(tshark -n -r "$DIR/wan.pcapng" -Y "$from_gw && eth.dst == 02:66:66:66:66:66" 2>/dev/null | wc -l)
    if [ "$clear" = 0 ]; then ok "nothing sent to the attacker's MAC"; else fail "$clear frames sent to the attacker's MAC"; fi

    say "what the gateways refused, by reason"
    local sa sb
    sa=$(stats a) || fail "espresso stats on gwA did not answer"
    sb=$(stats b) || fail "espresso stats on gwB did not answer"
    echo "$sa" | awk '($1 ~ /^(drop|neighbour\.refused)\./ || ($1 ~ /^ike\./ && $1 !~ /(packets|_sent|established|up|child_sas|retransmits|keepalives.*)$/)) && $2 > 0 {print "    gwA | "$1" "$2}'
    echo "$sb" | awk '($1 ~ /^(drop|neighbour\.refused)\./ || ($1 ~ /^ike\./ && $1 !~ /(packets|established|up|child_sas|retransmits|keepalives.*)$/)) && $2 > 0 {print "    gwB | "$1" "$2}'
    local n
    n=$(echo "$sa" | awk '$1 ~ /^ike\..*payload_not_allowed$/ {s += $2} END {print s + 0}')
    [ "$n" -ge 400 ] && ok "gwA refused $n Delete bombs as payloads not allowed in IKE_SA_INIT" || fail "gwA counted $n refused Delete bombs (want 400)"
    n=$(echo "$sa" | awk '$1 ~ /^neighbour\.refused\./ {s += $2} END {print s + 0}')
    [ "$n" -ge 5000 ] && ok "gwA refused $n unsolicited ARP/NA claims" || fail "gwA counted $n refused neighbour claims (want 5,000+)"
    n=$(echo "$sb" | awk '$1 ~ /^ike\..*(cookies_sent|half_open_refused.*)$/ {s += $2} END {print s + 0}')
    [ "$n" -ge 1900 ] && ok "gwB answered or refused $n of the 2,000 spoofed IKE_SA_INIT with cookies or limits" || fail "gwB counted only $n cookies/refusals for 2,000 spoofed IKE_SA_INIT"
    "$BIN" tunnels -c "$DIR/site-a.toml" | grep -q ' up ' && ok "gwA's tunnel is still up" || fail "gwA's tunnel is down"
    "$BIN" tunnels -c "$DIR/site-b.toml" | grep -q ' up ' && ok "gwB's tunnel is still up" || fail "gwB's tunnel is down"
    stop_gateways
}

case "$SCENARIO" in
    ike) scenario_ike ;;
    workers) scenario_workers ;;
    tunnel) run_traffic_scenario tunnel 100 20 ;;
    transport) run_traffic_scenario transport 20 20 ;;
    rekey) scenario_rekey ;;
    hostile) scenario_hostile ;;
    pmtu) scenario_pmtu ;;
    edge) scenario_edge ;;
    reload) scenario_reload ;;
    api) scenario_api ;;
    demo) VERBOSE=1 BULK_MB4=100 BULK_MB6=20 scenario_ike ;;
    *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac

if [ $FAILED = 0 ]; then say "$SCENARIO: all checks passed"; else say "$SCENARIO: FAILED"; [ "${KEEP:-0}" = 1 ] || tail -20 "$DIR/gw-a.log"; fi
exit $FAILED
