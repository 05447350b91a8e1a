#!/usr/bin/env bash
# Espresso against the alternative a user of this machine would pick:
# strongSwan 5.9 with kernel-libipsec (this kernel has no ESP, so charon's
# userspace ESP over a TUN device is the only other IPsec it can run). The
# same two-site topology is built twice in turn, once per system:
#
#   hostA 10.1.0.10  h0 = lan0 [gwA 192.0.2.1] wan0 ==== wan0 [gwB 192.0.2.2] lan0 = h0  10.2.0.20 hostB
#
#   strongswan  both gateways: the kernel forwards, charon (kernel-libipsec,
#               kernel-netlink) does IKEv2 with a PSK and ESP in userspace
#               (AES-128-GCM, UDP-encapsulated as libipsec always does);
#               gwA initiates. One charon per gateway, each with its own
#               strongswan.conf, vici socket and /run (a private mount
#               namespace for the hard-coded PID file).
#   espresso    both gateways: `espresso run` on net_af_packet ports (the
#               two-site setup), manually keyed AES-128-GCM SAs, ESP in UDP
#               4500 (RFC 3948) for a like-for-like comparison.
#
#   plain       (a reference) no IPsec: both gateways' kernels forward; the
#               ceiling of this topology with these hosts.
#
# The hosts compute their own TCP/UDP checksums (`ethtool -K h0 tx off`:
# DPDK's af_packet would otherwise see them unfinished), so they send
# MTU-sized segments, no TSO, for every system alike.
#
# Per system, host to host: iperf3 TCP (one stream, TCP_S seconds: the
# receiver's Gbit/s, retransmits, and the CPU time both gateway processes
# used) and iperf3 UDP with UDP_LEN-byte datagrams at an unlimited offered
# rate (UDP_S seconds: sent and received packets per second, loss). gwA's
# own counters (its SA, or wan0 for plain) must show at least one WAN
# packet per TCP segment and per UDP datagram received: the traffic did go
# through the tunnel. The records are built by scripts/vs_record.py.
#
# Usage: vs-strongswan.sh [OUT.json]   (default: print the JSON)
# Environment: TCP_S (10), UDP_S (10), UDP_LEN (64), SYSTEMS ("strongswan
# espresso plain", in that order), ESPRESSO_BIN, KEEP=1 keeps the work
# directory. Everything it creates (namespaces vs-*-SYSTEM-PID, processes,
# files) is removed on exit, also on failure. Exit status 0 when every
# system carried the traffic through gwA.
set -euo pipefail

OUT=${1:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ESPRESSO_BIN:-$ROOT/target/release/espresso}
TCP_S=${TCP_S:-10}
UDP_S=${UDP_S:-10}
UDP_LEN=${UDP_LEN:-64}
SYSTEMS=${SYSTEMS:-strongswan espresso plain}
ID=$$
DIR=$(mktemp -d /tmp/espresso-vs-swan.XXXXXX)
PIDS=()
GW_PIDS=()
FAILED=0
NS_HA= NS_GA= NS_GB= NS_HB=

. "$ROOT/scripts/lib.sh"

# Ends one system's run: its processes and namespaces (the work directory
# stays until the end).
teardown() {
    local keep=${KEEP:-0}
    KEEP=1 netns_cleanup >/dev/null
    KEEP=$keep
    set -e
    PIDS=()
    GW_PIDS=()
    NS_HA= NS_GA= NS_GB= NS_HB=
    mkdir -p "$DIR"
}

cleanup() {
    set +e
    netns_cleanup
}
trap cleanup EXIT
# Killed (a timeout, Ctrl-C): clean up too; EXIT alone does not fire then.
trap 'exit 130' INT TERM

# Fresh namespaces for a system: vs-{ha,ga,gb,hb}-PID-SYS (lib.sh's
# naming).
new_namespaces() {
    local sys=$1
    NS_HA=vs-ha-$ID-$sys NS_GA=vs-ga-$ID-$sys NS_GB=vs-gb-$ID-$sys NS_HB=vs-hb-$ID-$sys
    make_namespaces
    setup_hosts_v4
    ip -n $NS_GA link set wan0 address 02:00:00:00:a0:02
    ip -n $NS_GB link set wan0 address 02:00:00:00:b0:02
    ip -n $NS_GA link set lan0 address 02:00:00:00:a0:01
    ip -n $NS_GB link set lan0 address 02:00:00:00:b0:01
}

# ------------------------------------------------------------- strongSwan

# swan_gateway SITE: addresses, forwarding and a charon in gw SITE.
swan_gateway() {
    local site=$1 ns me peer mynet peernet n
    if [ "$site" = a ]; then ns=$NS_GA me=192.0.2.1 peer=192.0.2.2 mynet=10.1.0.0/24 peernet=10.2.0.0/24 n=1
    else ns=$NS_GB me=192.0.2.2 peer=192.0.2.1 mynet=10.2.0.0/24 peernet=10.1.0.0/24 n=2; fi
    ip -n "$ns" addr add "$me/24" dev wan0
    ip -n "$ns" addr add "10.$n.0.1/24" dev lan0
    for l in lan0 wan0; do ip -n "$ns" link set "$l" up; done
    in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
    local d=$DIR/swan-$site
    mkdir -p "$d/run"
    cat >"$d/strongswan.conf" <<EOF
charon {
  load_modular = no
  load = random nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici
  plugins {
    vici {
      socket = unix://$d/charon.vici
    }
  }
  filelog {
    main {
      path = $d/charon.log
      default = 1
      time_format = %T
      flush_line = yes
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
}
EOF
    cat >"$d/swanctl.conf" <<EOF
connections {
  net {
    version = 2
    local_addrs = $me
    remote_addrs = $peer
    proposals = aes128gcm16-prfsha256-ecp256
    encap = yes
    dpd_delay = 0
    local {
      auth = psk
      id = gw-$site.example
    }
    remote {
      auth = psk
      id = gw-$([ "$site" = a ] && echo b || echo a).example
    }
    children {
      net {
        local_ts = $mynet
        remote_ts = $peernet
        esp_proposals = aes128gcm16
      }
    }
  }
}
secrets {
  ike-vs {
    id-a = gw-a.example
    id-b = gw-b.example
    secret = "$PSK"
  }
}
EOF
    ip netns exec "$ns" env STRONGSWAN_CONF="$d/strongswan.conf" unshare --mount --propagation private -- \
        sh -c "mount --bind '$d/run' /run && exec /usr/lib/ipsec/charon" >"$d/charon.out" 2>&1 &
    PIDS+=($!)
    GW_PIDS+=($!)
    for _ in $(seq 50); do [ -S "$d/charon.vici" ] && break; sleep 0.1; done
    [ -S "$d/charon.vici" ] || { cat "$d/charon.out" "$d/charon.log"; echo "charon in gw$site did not start" >&2; exit 1; }
    in_ns "$ns" swanctl --load-all --file "$d/swanctl.conf" --uri "unix://$d/charon.vici" >"$d/load.log" 2>&1 \
        || { cat "$d/load.log"; echo "swanctl --load-all in gw$site failed" >&2; exit 1; }
}

swan() { local site=$1; shift; in_ns "$([ "$site" = a ] && echo $NS_GA || echo $NS_GB)" swanctl "$@" --uri "unix://$DIR/swan-$site/charon.vici"; }

start_strongswan() {
    swan_gateway a
    swan_gateway b
    swan a --initiate --child net --timeout 10 >"$DIR/swan-a/initiate.log" 2>&1 \
        || { cat "$DIR/swan-a/initiate.log"; echo "swanctl --initiate failed" >&2; exit 1; }
    SYSTEM_VERSION=$(/usr/lib/ipsec/charon --version 2>/dev/null | head -1 || true)
    [ -n "$SYSTEM_VERSION" ] || SYSTEM_VERSION=$(dpkg-query -W -f='strongSwan ${Version}' strongswan-charon 2>/dev/null || echo strongSwan)
    ok "both charons up, Child SA installed ($SYSTEM_VERSION, kernel-libipsec)"
}

# ESP packets gwA sent on its Child SA (swanctl --list-sas --raw).
strongswan_wan_out_a() {
    swan a --list-sas --raw 2>/dev/null | grep -o 'packets-out=[0-9]*' | head -1 | cut -d= -f2
}

# --------------------------------------------------------------- espresso

KEY_AB=0x$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
KEY_BA=0x$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
PSK=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

# The largest inner packet Espresso's tunnel carries in a 1500-byte WAN
# frame: 1500 - outer IPv4 (20) - UDP (8) - ESP (8) - IV (8) - ICV (16)
# - pad length and next header (2) = 1438 (1438 + 2 is a multiple of 4);
# its TCP MSS is 1438 - 40.
ESPRESSO_MSS=1398

espresso_config() {
    local site=$1 me peer mynet peernet pmac n spi_in spi_out key_in key_out lcores
    if [ "$site" = a ]; then
        me=192.0.2.1 peer=192.0.2.2 mynet=10.1.0.0/24 peernet=10.2.0.0/24 pmac=02:00:00:00:b0:02 n=1
        spi_in=$((0x1001)) spi_out=$((0x2001)) key_in=$KEY_BA key_out=$KEY_AB lcores=${LCORES_A:-1,0}
    else
        me=192.0.2.2 peer=192.0.2.1 mynet=10.2.0.0/24 peernet=10.1.0.0/24 pmac=02:00:00:00:a0:02 n=2
        spi_in=$((0x2001)) spi_out=$((0x1001)) key_in=$KEY_AB key_out=$KEY_BA lcores=${LCORES_B:-0,1}
    fi
    cat >"$DIR/site-$site.toml" <<EOF
[dataplane]
workers = 1
lcores = "$lcores"
memory_mb = 256
mbufs = 4095
[control]
socket = "$DIR/gw-$site.sock"
log = "info"
[[interface]]
name = "lan"
device = "net_af_packet0,iface=lan0,framecnt=2048"
role = "lan"
addresses = ["10.$n.0.1/24"]
mss_clamp = $ESPRESSO_MSS
[[interface]]
name = "wan"
device = "net_af_packet1,iface=wan0,framecnt=2048"
role = "wan"
addresses = ["$me/24"]
[[route]]
prefix = "$peernet"
via = "$peer"
interface = "wan"
[[neighbour]]
address = "$peer"
mac = "$pmac"
interface = "wan"
[[tunnel]]
name = "site"
local_addrs = "$me"
remote_addrs = "$peer"
mode = "tunnel"
udp_encap = true
  [[tunnel.policy]]
  local_ts = "$mynet"
  remote_ts = "$peernet"
  [[tunnel.sa]]
  spi_in = $spi_in
  spi_out = $spi_out
  algorithm = "aes128gcm16"
  key_in = "$key_in"
  key_out = "$key_out"
EOF
}

start_espresso() {
    local site ns
    for site in a b; do
        ns=$NS_GA; [ $site = b ] && ns=$NS_GB
        in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        for l in lan0 wan0; do ip -n "$ns" link set "$l" up; done
        espresso_config $site
        "$BIN" check -c "$DIR/site-$site.toml" >/dev/null
        ip netns exec "$ns" "$BIN" run -c "$DIR/site-$site.toml" >"$DIR/gw-$site.out" 2>"$DIR/gw-$site.log" &
        PIDS+=($!)
        GW_PIDS+=($!)
    done
    for site in a b; do
        for _ in $(seq 100); do grep -q "espresso running" "$DIR/gw-$site.log" 2>/dev/null && break; sleep 0.1; done
        grep -q "espresso running" "$DIR/gw-$site.log" || { cat "$DIR/gw-$site.log"; echo "espresso gw$site did not start" >&2; exit 1; }
    done
    SYSTEM_VERSION="espresso $("$BIN" --version 2>/dev/null | awk '{print $2}')"
    ok "both espresso gateways up ($SYSTEM_VERSION, net_af_packet, AES-128-GCM, UDP encapsulation)"
}

espresso_wan_out_a() {
    "$BIN" stats -c "$DIR/site-a.toml" | awk '$1 ~ /^sa\.out\..*\.packets$/ {s += $2} END {print s + 0}'
}

# ------------------------------------------------------------------ plain

# No IPsec: the gateways' kernels forward.
start_plain() {
    local site ns n me
    for site in a b; do
        if [ $site = a ]; then ns=$NS_GA n=1 me=192.0.2.1; else ns=$NS_GB n=2 me=192.0.2.2; fi
        ip -n "$ns" addr add "$me/24" dev wan0
        ip -n "$ns" addr add "10.$n.0.1/24" dev lan0
        for l in lan0 wan0; do ip -n "$ns" link set "$l" up; done
        in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
    done
    ip -n $NS_GA route add 10.2.0.0/24 via 192.0.2.2
    ip -n $NS_GB route add 10.1.0.0/24 via 192.0.2.1
    SYSTEM_VERSION="Linux $(uname -r | cut -d- -f1), no IPsec"
    ok "both gateways forward in the kernel, no IPsec"
}

# The packets gwA forwarded (wan0's TX counter).
plain_wan_out_a() { ip -n $NS_GA -s -j link show wan0 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["packets"])'; }

# ---------------------------------------------------------------- traffic

# CPU time (user + system, clock ticks) the gateway processes (both charons
# or both espressos, every thread; for espresso this includes the kernel
# work its af_packet sends do for the receiver) have used so far.
gw_ticks() {
    local p t=0
    for p in "${GW_PIDS[@]}"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo $t
}

# iperf3_run NAME SECONDS ARGS...: hostA -> hostB, JSON in $DIR/NAME.json.
iperf3_run() {
    local name=$1 secs=$2; shift 2
    in_ns $NS_HB iperf3 -s -1 -p 5201 >"$DIR/$name-server.log" 2>&1 &
    local spid=$!; PIDS+=("$spid")
    for _ in $(seq 30); do in_ns $NS_HB ss -ltn 2>/dev/null | grep -q ':5201 ' && break; sleep 0.1; done
    # A tunnel that breaks mid-run must not hang the lab.
    if ! in_ns $NS_HA timeout $((secs + 20)) iperf3 -c 10.2.0.20 -p 5201 -J -t "$secs" "$@" \
        >"$DIR/$name.json" 2>"$DIR/$name.err"; then
        fail "iperf3 $name: $(tail -2 "$DIR/$name.err") $(grep -o '"error":.*' "$DIR/$name.json" || true)"
        kill "$spid" 2>/dev/null || true
    fi
    wait "$spid" 2>/dev/null || true
}

# measure SYSTEM: ping, TCP, UDP; appends a JSON object to $DIR/records
# and checks that the traffic went through gwA.
measure() {
    local sys=$1 out
    if ! out=$(in_ns $NS_HA ping -c 3 -i 0.2 -W 2 10.2.0.20 2>&1); then
        fail "$sys: no ping through the tunnel"; echo "$out" | tail -2; return 0
    fi
    local wan0 wan1 wan2 cpu0 cpu1
    wan0=$("${sys}_wan_out_a"); cpu0=$(gw_ticks)
    say "$sys: iperf3 TCP, ${TCP_S} s"
    iperf3_run "$sys-tcp" "$TCP_S"
    wan1=$("${sys}_wan_out_a"); cpu1=$(gw_ticks)
    say "$sys: iperf3 UDP, ${UDP_LEN}-byte datagrams, unlimited offered rate, ${UDP_S} s"
    iperf3_run "$sys-udp" "$UDP_S" -u -b 0 -l "$UDP_LEN"
    wan2=$("${sys}_wan_out_a")
    if /usr/bin/python3 "$ROOT/scripts/vs_record.py" record "$DIR/records" "$sys" "$SYSTEM_VERSION" \
        "$DIR/$sys-tcp.json" "$DIR/$sys-udp.json" "$wan0" "$wan1" "$wan2" "$UDP_LEN" \
        "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" "${#GW_PIDS[@]}"; then
        ok "$sys: gwA sent at least one WAN packet per TCP segment and per UDP datagram received"
    else
        fail "$sys: the traffic did not go through gwA"
    fi
}

command -v /usr/lib/ipsec/charon >/dev/null || { echo "strongSwan (strongswan-charon) is not installed" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "iperf3 is not installed" >&2; exit 2; }
: >"$DIR/records"
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for sys in $SYSTEMS; do
    say "$sys on both gateways: namespaces vs-*-$sys-$ID"
    new_namespaces "$sys"
    case $sys in
        strongswan) start_strongswan ;;
        espresso) start_espresso ;;
        plain) start_plain ;;
        *) echo "unknown system $sys" >&2; exit 2 ;;
    esac
    measure "$sys"
    teardown
done

RESULT=$(/usr/bin/python3 "$ROOT/scripts/vs_record.py" result "$DIR/records" "$STARTED" "$TCP_S" "$UDP_S" "$UDP_LEN")
if [ -n "$OUT" ]; then echo "$RESULT" >"$OUT"; else echo "$RESULT"; fi
ratio=$(echo "$RESULT" | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
if r["tcp_ratio"] and r["udp_ratio"]:
    print("TCP %.1fx, UDP %.1fx" % (r["tcp_ratio"], r["udp_ratio"]))')
if [ -n "$ratio" ]; then say "espresso / strongswan: $ratio"; fi
if [ $FAILED = 0 ]; then say "all systems carried the traffic through gwA"; else say "FAILED"; fi
exit $FAILED
