#!/usr/bin/env bash
# Espresso against strongSwan 5.9 (charon with kernel-libipsec), each
# gateway in a network namespace of its own, a host behind each:
#
#   hostA 10.1.0.10  lan0 [gwA espresso 192.0.2.1] wan0 ==== wan0 [gwB charon 192.0.2.2] lan0  10.2.0.20 hostB
#
# gwB is the kernel's forwarding plus charon's userspace ESP (libipsec's
# TUN device ipsec0, routes in table 220). libipsec always encapsulates ESP
# in UDP (charon fakes NAT detection), so IKE floats to 4500 and ESP goes
# in UDP 4500 (RFC 3948). One charon runs for the whole session in its own
# mount namespace (its own /run for the PID file) with its own vici socket;
# each run reloads its connection and restarts espresso.
#
# Usage: strongswan-interop.sh SCENARIO
#   matrix     for each proposal (PROPOSALS, default the four below):
#              espresso initiates, then strongSwan initiates; each time
#              ping and a TCP transfer (SHA-256 compared) pass and a Child
#              SA rekey (started by espresso, then by strongSwan) under a
#              continuous ping loses nothing; swanctl --terminate empties
#              espresso's SAs. One WAN capture for the session is then
#              decrypted by tshark with espresso's key logs (every ESP ICV,
#              every IKE_AUTH), and every key espresso exported is found
#              among the keys charon logged (level 4).
#   dpd        charon is killed; espresso's dead peer detection notices
#              and removes the SAs from its workers.
#   fragments  IKE fragmentation (RFC 7383) forced: a WAN MTU of 576 and
#              small fragment sizes (FRAGMENT_SIZE for espresso, default
#              192, its minimum; SWAN_FRAGMENT_SIZE for charon's
#              fragment_size, default 192, charon has no lower bound), so
#              that both PSK IKE_AUTH messages are fragmented, espresso
#              initiating, then strongSwan. Each run: the tunnel comes up
#              and passes a ping, the capture shows IKE_AUTH fragments
#              from both gateways, espresso counts messages it fragmented
#              and reassembled, charon logs both too. tshark reassembles
#              the fragments and decrypts each IKE_AUTH, and checks every
#              ESP ICV, with espresso's key logs.
#   redirect   RFC 5685: charon (the client, at gwB) connects to espresso
#              A (gwA), which redirects every client to a second espresso
#              C in namespaces of its own (see setup_redirect_network) in
#              IKE_SA_INIT; then, established with A, is sent to C by
#              `espresso redirect` (an INFORMATIONAL REDIRECT). Each time
#              charon ends up with its IKE SA and Child SA on C and hostB
#              pings hostC behind C; A counted the redirect and holds no SA.
#              charon's WAN capture (to A and to C) is decrypted by tshark
#              with A's and C's key logs: IKE_AUTH and every ESP ICV.
#   vip        remote access: charon is a client with vips = 0.0.0.0, ::
#              and espresso listens with a [[pool]] 10.3.0.0/24 +
#              fd03::/112; charon gets an address of each family from the
#              pool, pings hostA from both and sends it a
#              TCP transfer (SHA-256 compared); the lease is persisted in
#              state_dir (mode 0600), kept through charon's Child and IKE
#              SA rekeys and released on swanctl --terminate; reconnecting,
#              charon gets the same address; a restarted espresso reads
#              the lease back. tshark decrypts the IKE_AUTH messages (with
#              their CP payload) and checks every ESP ICV before the restart.
#   certs      certificate authentication (RFC 7427 signatures, CERT and
#              CERTREQ) with a test CA made at run time by openssl: for
#              ECDSA P-256, Ed25519 and RSA-2048 (RSASSA-PSS) certificates
#              on both sides, espresso initiates, then strongSwan does;
#              ping passes; tshark decrypts every IKE_AUTH with espresso's
#              key logs and finds CERTs and AUTH method 14 in each. Then
#              strongSwan's certificate, revoked by a CRL espresso loads,
#              is refused and counted (cert_revoked). Every ESP ICV is
#              checked by tshark with the key logs too.
#   fragcerts  fragmentation that comes from the certificates' size: WAN
#              MTU 576, espresso's fragment_size 576, charon's 0 (its IPv4
#              default, 576), RSA-4096 certificates (RSASSA-PSS) from an
#              RSA-4096 test CA on both sides; espresso initiates, then
#              strongSwan. Each run: tunnel up, ping, espresso counts
#              fragments, the capture shows IKE_AUTH fragmented by both
#              sides, every WAN datagram within 576 bytes and no IP
#              fragment. tshark reassembles the RFC 7383 fragments and
#              decrypts each IKE_AUTH (CERT, AUTH method 14, identities) and
#              every ESP frame with espresso's key logs.
#
# Everything it creates is removed on exit. Exit status 0: all checks passed.
set -euo pipefail

SCENARIO=${1:-matrix}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ESPRESSO_BIN:-$ROOT/target/release/espresso}
PY=/usr/bin/python3
ID=$$
NS_HA=ss-ha-$ID NS_GA=ss-ga-$ID NS_GB=ss-gb-$ID NS_HB=ss-hb-$ID
DIR=$(mktemp -d /tmp/espresso-strongswan.XXXXXX)
PIDS=()
FAILED=0
PSK=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
VICI=unix://$DIR/charon.vici
PING_PATTERN=e59e550ca11e
DEFAULT_PROPOSALS="aes128gcm16-prfsha256-ecp256/aes128gcm16 aes256gcm16-prfsha384-x25519/aes256gcm16 aes256gcm16-prfsha384-modp2048/aes256gcm16 aes128-sha256-modp2048/aes128-sha256"
PROPOSALS=${PROPOSALS:-$DEFAULT_PROPOSALS}
CHARON_PID=
GW_PID=
CAP_PID=

. "$ROOT/scripts/lib.sh"

cleanup() {
    set +e
    redirect_cleanup
    [ -n "$GW_PID" ] && kill -TERM "$GW_PID" 2>/dev/null
    [ -n "$CHARON_PID" ] && kill -TERM "$CHARON_PID" 2>/dev/null
    netns_cleanup
}
trap cleanup EXIT
# Killed (a timeout, Ctrl-C): clean up too; EXIT alone does not fire then.
trap 'exit 130' INT TERM


setup_network() {
    make_namespaces
    # gwA: espresso owns the ports; its kernel stays out of the way.
    in_ns $NS_GA sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    for l in lan0 wan0; do ip -n $NS_GA link set "$l" up; done
    ip -n $NS_GA link set wan0 address 02:00:00:00:a0:02
    ip -n $NS_GA link set lan0 address 02:00:00:00:a0:01
    # gwB: the kernel forwards, charon does IKE and (libipsec) ESP.
    ip -n $NS_GB link set wan0 address 02:00:00:00:b0:02
    ip -n $NS_GB addr add 192.0.2.2/24 dev wan0
    ip -n $NS_GB addr add 10.2.0.1/24 dev lan0
    for l in lan0 wan0; do ip -n $NS_GB link set "$l" up; done
    in_ns $NS_GB sysctl -qw net.ipv4.ip_forward=1
    # veth leaves checksums to "hardware"; espresso's af_packet ports would
    # see them unfinished. Have the senders' kernels compute them.
    in_ns $NS_GB ethtool -K wan0 tx off >/dev/null
    in_ns $NS_GB ethtool -K lan0 tx off >/dev/null
    setup_hosts_v4
}

# ------------------------------------------------------------------ charon

start_charon() {
    mkdir -p "$DIR/run"
    cat >"$DIR/strongswan.conf" <<EOF
charon {
  load_modular = no
  load = random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey constraints revocation kernel-libipsec kernel-netlink socket-default vici
  # RSA keys sign with RSASSA-PSS (the certs scenario).
  rsa_pss = yes
  plugins {
    vici {
      socket = $VICI
    }
  }
  # Short retransmissions so a lost espresso is noticed quickly.
  retransmit_tries = 3
  retransmit_timeout = 1
  ${CHARON_EXTRA:-}
  filelog {
    main {
      path = $DIR/charon.log
      default = 1
      ike = 2
      chd = 2
      cfg = 1
      knl = 1
      time_format = %T
      flush_line = yes
    }
    keys {
      path = $DIR/keys.log
      default = 0
      cfg = 1
      ike = 4
      chd = 4
      ike_name = yes
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
    ip netns exec $NS_GB env STRONGSWAN_CONF="$DIR/strongswan.conf" unshare --mount --propagation private -- \
        sh -c "mount --bind '$DIR/run' /run && exec /usr/lib/ipsec/charon" >"$DIR/charon.out" 2>&1 &
    CHARON_PID=$!
    PIDS+=("$CHARON_PID")
    for _ in $(seq 50); do [ -S "$DIR/charon.vici" ] && break; sleep 0.1; done
    [ -S "$DIR/charon.vici" ] || { cat "$DIR/charon.out" "$DIR/charon.log"; echo "charon did not start"; exit 1; }
    ok "charon $(/usr/lib/ipsec/charon --version 2>/dev/null | head -1 || true) up in $NS_GB (pid $CHARON_PID, vici $VICI)"
}

swan() { in_ns $NS_GB swanctl "$@" --uri "$VICI"; }

# load_conn IKE_PROPOSAL ESP_PROPOSAL
load_conn() {
    cat >"$DIR/swanctl.conf" <<EOF
connections {
  net {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = $1
    encap = yes
    dpd_delay = 0
    fragmentation = yes
    local {
      auth = psk
      id = gw-b.example
    }
    remote {
      auth = psk
      id = gw-a.example
    }
    children {
      net {
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = $2
      }
    }
  }
}
secrets {
  ike-espresso {
    id-a = gw-a.example
    id-b = gw-b.example
    secret = "$PSK"
  }
}
EOF
    swan --load-all --file "$DIR/swanctl.conf" >"$DIR/swanctl-load.log" 2>&1 || { cat "$DIR/swanctl-load.log"; fail "swanctl --load-all"; }
}

# ---------------------------------------------------------------- espresso

# write_espresso RUN START IKE ESP DPD
write_espresso() {
    local run=$1 start=$2 ike=$3 esp=$4 dpd=${5:-30s}
    cat >"$DIR/gw-a.toml" <<EOF
[dataplane]
workers = 1
memory_mb = 256
mbufs = 4095
[control]
socket = "$DIR/gw-a.sock"
log = "info"
[[interface]]
name = "lan"
device = "net_af_packet0,iface=lan0,framecnt=2048"
role = "lan"
addresses = ["10.1.0.1/24"]
mss_clamp = 1300
[[interface]]
name = "wan"
device = "net_af_packet1,iface=wan0,qdisc_bypass=0,framecnt=2048"
role = "wan"
addresses = ["192.0.2.1/24"]
${ESPRESSO_WAN_EXTRA:-}
[[route]]
prefix = "10.2.0.0/24"
via = "192.0.2.2"
interface = "wan"
[[neighbour]]
address = "192.0.2.2"
mac = "02:00:00:00:b0:02"
interface = "wan"
[[tunnel]]
name = "swan"
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.2"
mode = "tunnel"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.2.0.0/24"
  [tunnel.ike]
  local_id = "gw-a.example"
  remote_id = "gw-b.example"
  psk = "$PSK"
  proposals = ["$ike"]
  esp_proposals = ["$esp"]
  start_action = "$start"
  dpd_interval = "$dpd"
  keylog_dir = "$DIR/keylog/$run"
  ${ESPRESSO_IKE_EXTRA:-}
EOF
}

start_espresso() {
    "$BIN" check -c "$DIR/gw-a.toml" >/dev/null
    ip netns exec $NS_GA "$BIN" run -c "$DIR/gw-a.toml" >"$DIR/gw-a.out" 2>"$DIR/gw-a.log" &
    GW_PID=$!
    for _ in $(seq 100); do
        grep -q "espresso running" "$DIR/gw-a.log" 2>/dev/null && return 0
        kill -0 "$GW_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$DIR/gw-a.log"; echo "espresso did not start"; exit 1
}

stop_espresso() {
    kill -TERM "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=
    local before after
    before=$(awk '/^mempool.free_before/{print $2}' "$DIR/gw-a.out")
    after=$(awk '/^mempool.free_after/{print $2}' "$DIR/gw-a.out")
    [ -n "$before" ] && [ "$before" = "$after" ] || fail "espresso leaked mbufs ($before before, $after after)"
    cat "$DIR/gw-a.log" >>"$DIR/gw-a.all.log"
}

tunnels() { "$BIN" tunnels -c "$DIR/gw-a.toml"; }
stats() { "$BIN" stats -c "$DIR/gw-a.toml"; }
active_child() { tunnels | awk '/^  child .* active/{print $3" "$5}'; }

wait_up() {
    local i
    for i in $(seq 100); do
        active_child | grep -q . && swan --list-sas 2>/dev/null | grep -q INSTALLED && return 0
        sleep 0.1
    done
    fail "tunnel did not come up"; tail -15 "$DIR/gw-a.log"; tail -15 "$DIR/charon.log"
    return 1
}

ping_check() {
    local count=${1:-5} out
    if out=$(in_ns $NS_HA ping -c "$count" -i 0.2 -W 2 -p "$PING_PATTERN" 10.2.0.20 2>&1); then
        ok "ping hostA -> hostB: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
    else
        fail "ping hostA -> hostB"; echo "$out" | tail -2
    fi
}

# TCP: random data hostA -> hostB, SHA-256 compared on both ends.
transfer() {
    local mb=$1 sent got
    head -c $((mb * 1024 * 1024)) /dev/urandom >"$DIR/send.bin"
    in_ns $NS_HB $PY "$ROOT/scripts/tcp_sha.py" recv 5202 >"$DIR/recv.sha" 2>&1 &
    local rpid=$!; PIDS+=("$rpid")
    sleep 0.3
    sent=$(in_ns $NS_HA $PY "$ROOT/scripts/tcp_sha.py" send 10.2.0.20 5202 "$DIR/send.bin" 2>&1) || true
    wait "$rpid" 2>/dev/null || true
    got=$(cat "$DIR/recv.sha")
    if [ -n "$sent" ] && [ "$sent" = "$got" ]; then
        ok "TCP ${mb} MB hostA -> hostB: SHA-256 ${got#* } matches on both ends"
    else
        fail "TCP through the tunnel: sent '$sent', received '$got'"
    fi
}

# rekey_under_ping WHO: a Child SA rekey started by espresso or strongswan
# while hostA pings hostB 20 times a second.
rekey_under_ping() {
    local who=$1 before after out
    before=$(active_child)
    in_ns $NS_HA ping -c 60 -i 0.05 -W 2 10.2.0.20 >"$DIR/ping-rekey.log" 2>&1 &
    local ppid=$!; PIDS+=("$ppid")
    sleep 1
    if [ "$who" = espresso ]; then
        "$BIN" rekey -c "$DIR/gw-a.toml" swan >/dev/null || fail "espresso rekey"
    else
        swan --rekey --child net >/dev/null 2>&1 || fail "swanctl --rekey"
    fi
    wait "$ppid" || true
    after=$(active_child)
    out=$(grep -o '[0-9]* packets transmitted, [0-9]* received, [0-9.]*% packet loss' "$DIR/ping-rekey.log" || true)
    if [ -n "$after" ] && [ "$before" != "$after" ]; then ok "$who rekeyed the Child SA: espresso's SPIs (in out) $before -> $after"
    else fail "no Child SA rekey by $who (before '$before', after '$after')"; fi
    if echo "$out" | grep -q ' 0% packet loss'; then ok "continuous ping during the rekey: $out"
    else fail "ping during the $who rekey lost packets: $out"; fi
}

# terminate_check: swanctl --terminate removes the SAs from espresso's workers.
terminate_check() {
    swan --terminate --ike net >/dev/null 2>&1 || fail "swanctl --terminate"
    local i n
    for i in $(seq 30); do
        n=$(stats | grep -c '^sa\.' || true)
        [ "$n" = 0 ] && break
        sleep 0.1
    done
    if [ "$n" = 0 ] && tunnels | grep -q '^tunnel swan down'; then
        ok "swanctl --terminate: espresso's workers hold no SA, tunnel $(tunnels | head -1 | awk '{print $3, $8, $9}')"
    else
        fail "after swanctl --terminate espresso still has $n SA lines: $(tunnels | head -3 | tr '\n' ' ')"
    fi
}

# start_capture [NS IFACE...]: $DIR/wan.pcapng, by default of gwA's wan0.
start_capture() {
    local ns=${1:-$NS_GA} ifs="-i wan0" i
    [ $# -gt 1 ] && { ifs=""; for i in "${@:2}"; do ifs="$ifs -i $i"; done; }
    in_ns "$ns" bash -c "trap - INT; exec tshark -q -n $ifs -w '$DIR/wan.pcapng' 2>'$DIR/tshark.log'" &
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    for _ in $(seq 50); do grep -q "Capturing on" "$DIR/tshark.log" 2>/dev/null && break; sleep 0.1; done
}

stop_capture() {
    sleep 0.3
    pkill -INT -f "tshark -q -n .*-w $DIR/wan.pcapng" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
}

# One run: espresso (re)started with proposal IKE/ESP; WHO initiates.
run_one() {
    local run=$1 who=$2 ike=$3 esp=$4
    say "$ike / $esp: $who initiates"
    load_conn "$ike" "$esp"
    local start=listen
    [ "$who" = espresso ] && start=initiate
    write_espresso "$run" "$start" "$ike" "$esp"
    start_espresso
    [ "$who" = strongswan ] && { swan --initiate --child net --timeout 10 >"$DIR/initiate.log" 2>&1 || fail "swanctl --initiate: $(tail -2 "$DIR/initiate.log")"; }
    if wait_up; then
        ok "tunnel up: $(tunnels | awk '/^  ike/{print $7, $6}') / $(tunnels | awk '/ active/{print $6, $7}' | head -1)"
        local sw; sw=$(swan --list-sas 2>/dev/null | grep -E 'IKEv2|INSTALLED' | sed -E 's/^ +//' | tr -s ' ' | head -2 | tr '\n' ';' || true)
        ok "strongSwan: $sw"
        ping_check 5
        transfer "${TCP_MB:-2}"
        if [ "${REKEY:-1}" = 1 ]; then
            rekey_under_ping "$who"
        fi
        terminate_check
    fi
    stop_espresso
    swan --terminate --ike net --force >/dev/null 2>&1 || true
}

# Every key in espresso's key logs must be one charon derived as well.
compare_keys() {
    $PY - "$DIR/keys.log" "$DIR"/keylog/*/esp_sa "$DIR"/keylog/*/ikev2_decryption_table <<'EOF'
import re, sys
log = open(sys.argv[1]).read().splitlines()
swan = set()
i = 0
head = re.compile(r"(Sk_[a-z]{2} secret|(encryption|integrity) (initiator|responder) key) => (\d+) bytes")
dump = re.compile(r"\s\d+: ((?:[0-9A-F]{2} ){1,16})")
while i < len(log):
    m = head.search(log[i])
    if not m:
        i += 1
        continue
    n, hexs, i = int(m.group(4)), "", i + 1
    while i < len(log) and len(hexs) < 2 * n:
        d = dump.search(log[i])
        if not d:
            break
        hexs += d.group(1).replace(" ", "").lower()
        i += 1
    if n:
        swan.add(hexs[: 2 * n])
ours, missing = set(), []
for f in sys.argv[2:]:
    for line in open(f):
        cells = [c.strip('"') for c in line.strip().split(",")]
        if f.endswith("esp_sa"):
            keys = [cells[5], cells[7]]
        else:
            keys = [cells[2], cells[3], cells[5], cells[6]]
        for k in keys:
            k = k.lower().removeprefix("0x")
            if k:
                ours.add(k)
missing = [k for k in ours if k not in swan]
print(f"{len(ours)} keys exported by espresso, {len(swan)} logged by charon, {len(missing)} of espresso's not among charon's")
sys.exit(1 if missing or not ours else 0)
EOF
}

scenario_matrix() {
    say "network: hostA - gwA (espresso) - WAN - gwB (strongSwan, kernel-libipsec) - hostB, namespaces ss-*-$ID"
    setup_network
    start_charon
    start_capture
    local n=0 p ike esp
    for p in $PROPOSALS; do
        ike=${p%%/*} esp=${p#*/}
        n=$((n + 1)); run_one "$n" espresso "$ike" "$esp"
        n=$((n + 1)); run_one "$n" strongswan "$ike" "$esp"
    done
    stop_capture
    say "the IKE exchange of the first run, from espresso's log"
    sed -E 's/\x1b\[[0-9;]*m//g' "$DIR/gw-a.all.log" | grep -E 'IKE:' | sed -E 's/^[^ ]+ +//' | head -4 | sed 's/^/    /' || true
    say "WAN capture decrypted by tshark with espresso's key logs (all $n runs)"
    mkdir -p "$DIR/wireshark"
    cat "$DIR"/keylog/*/esp_sa >"$DIR/wireshark/esp_sa"
    cat "$DIR"/keylog/*/ikev2_decryption_table >"$DIR/wireshark/ikev2_decryption_table"
    local modes; modes=$(stat -c %a "$DIR"/keylog/*/* | sort -u | tr '\n' ' ')
    [ "$modes" = "600 " ] && ok "key log files are mode 600" || fail "key log modes: $modes"
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" 100 || true
    local spis auths
    spis=$(tshark -n -r "$DIR/wan.pcapng" -Y esp -T fields -e esp.spi 2>/dev/null | sort -u | wc -l)
    # Each run has an inbound and an outbound SA before and after its rekey.
    if [ "$spis" -ge $((4 * n)) ]; then ok "ESP on $spis SPIs (at least 4 per run)"; else fail "ESP on only $spis SPIs (want $((4 * n)))"; fi
    auths=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark tshark -n -r "$DIR/wan.pcapng" -Y 'isakmp.id.data.fqdn' -T fields -e isakmp.id.data.fqdn 2>/dev/null | wc -l)
    if [ "$auths" -ge $((2 * n)) ]; then ok "$auths IKE_AUTH messages decrypted (identities gw-a.example / gw-b.example readable)"
    else fail "only $auths IKE_AUTH messages decrypted (want $((2 * n)))"; fi
    local plain; plain=$(tshark -n -r "$DIR/wan.pcapng" -Y 'ip.src == 10.0.0.0/8 && !esp && !udp' 2>/dev/null | wc -l)
    [ "$plain" = 0 ] && ok "no unencrypted host traffic on the WAN" || fail "$plain unencrypted host packets on the WAN"
    say "espresso's keys against the keys charon logged (filelog, level 4)"
    local out
    if out=$(compare_keys 2>&1); then ok "$out"; else fail "$out"; fi
}

scenario_dpd() {
    say "network, charon, espresso (initiator, dpd_interval 2s)"
    setup_network
    start_charon
    local ike=aes128gcm16-prfsha256-ecp256 esp=aes128gcm16
    load_conn "$ike" "$esp"
    write_espresso 1 initiate "$ike" "$esp" 2s
    start_espresso
    wait_up || return 0
    ok "tunnel up; $(stats | grep -c '^sa\..*\.packets') SAs on espresso's worker"
    ping_check 3
    say "kill -9 charon"
    local t0=$SECONDS
    kill -9 "$CHARON_PID"; wait "$CHARON_PID" 2>/dev/null || true; CHARON_PID=
    local i n=1
    for i in $(seq 400); do
        n=$(stats | grep -c '^sa\.' || true)
        [ "$n" = 0 ] && break
        sleep 0.1
    done
    if [ "$n" = 0 ] && tunnels | grep -q 'last_down PeerDead'; then
        ok "dead peer detected after $((SECONDS - t0)) s: $(tunnels | head -1); no SA left on the worker"
        ok "espresso: $(stats | grep -E '^ike\.swan\.(retransmits|peers_dead)' | tr '\n' ' ')"
    else
        fail "peer death not noticed ($n SA lines): $(tunnels | tr '\n' ' ')"
    fi
    stop_espresso
}

# Frames carrying RFC 7383 Encrypted Fragments (SKF) in IKE_AUTH (exchange
# type 35) sent by SRC in capture FILE.
auth_fragments() {
    tshark -n -r "$1" -Y "isakmp.exchangetype == 35 && isakmp.frag.number && ip.src == $2" 2>/dev/null | wc -l
}

scenario_fragments() {
    local size=${FRAGMENT_SIZE:-192} swan_size=${SWAN_FRAGMENT_SIZE:-192}
    say "network with a WAN MTU of 576; IKE fragment_size $size (espresso), $swan_size (charon)"
    setup_network
    ip -n $NS_GA link set wan0 mtu 576
    ip -n $NS_GB link set wan0 mtu 576
    CHARON_EXTRA="fragment_size = $swan_size"
    start_charon
    ESPRESSO_WAN_EXTRA="mtu = 576"
    ESPRESSO_IKE_EXTRA="fragment_size = $size"
    local ike=aes128gcm16-prfsha256-ecp256 esp=aes128gcm16 n=0 who
    for who in espresso strongswan; do
        n=$((n + 1))
        say "$who initiates"
        load_conn "$ike" "$esp"
        local start=listen
        [ "$who" = espresso ] && start=initiate
        write_espresso "$n" "$start" "$ike" "$esp"
        # start_capture waits for tshark's "Capturing on": not the last run's.
        rm -f "$DIR/tshark.log"
        start_capture
        start_espresso
        [ "$who" = strongswan ] && { swan --initiate --child net --timeout 10 >"$DIR/initiate.log" 2>&1 || fail "swanctl --initiate: $(tail -2 "$DIR/initiate.log")"; }
        if wait_up; then
            ok "tunnel up: $(tunnels | awk '/^  ike/{print $7, $6}') / $(tunnels | awk '/ active/{print $6, $7}' | head -1)"
            ping_check 3
            local s sent got
            s=$(stats)
            sent=$(echo "$s" | awk '/^ike\.swan\.fragmented_messages /{print $2}')
            got=$(echo "$s" | awk '/^ike\.swan\.reassembled_messages /{print $2}')
            if [ "${sent:-0}" -ge 1 ] && [ "${got:-0}" -ge 1 ]; then
                ok "espresso: $(echo "$s" | grep -E '^ike\.swan\.(fragmented_messages|fragments_sent|fragments_received|reassembled_messages) ' | tr '\n' ' ')"
            else
                fail "espresso fragmented ${sent:-0} and reassembled ${got:-0} messages"
            fi
            local refused; refused=$(echo "$s" | awk '/^ike\.fragment_refusals\./{n += $2} END {print n + 0}')
            [ "$refused" = 0 ] && ok "no fragment refused" || fail "$refused fragments refused: $(echo "$s" | grep '^ike\.fragment_refusals\.' | grep -v ' 0$' | tr '\n' ' ')"
        fi
        stop_capture
        mv "$DIR/wan.pcapng" "$DIR/wan-$n.pcapng"
        local fa fb big
        fa=$(auth_fragments "$DIR/wan-$n.pcapng" 192.0.2.1)
        fb=$(auth_fragments "$DIR/wan-$n.pcapng" 192.0.2.2)
        if [ "$fa" -ge 2 ] && [ "$fb" -ge 2 ]; then
            ok "capture: IKE_AUTH in $fa fragments from espresso, $fb from strongSwan"
        else
            fail "capture: IKE_AUTH fragments: $fa from espresso, $fb from strongSwan (want at least 2 each)"
        fi
        big=$(tshark -n -r "$DIR/wan-$n.pcapng" -Y "isakmp.frag.number && ip.len > $size" 2>/dev/null | wc -l)
        [ "$big" = 0 ] && ok "every fragment's IP datagram within $size bytes" || fail "$big fragments above $size bytes"
        stop_espresso
        swan --terminate --ike net --force >/dev/null 2>&1 || true
    done
    say "WAN captures decrypted by tshark with espresso's key logs"
    wireshark_keys
    mergecap -w "$DIR/wan.pcapng" "$DIR"/wan-*.pcapng
    ike_decrypt_check "$DIR/wan.pcapng" $((2 * n)) 'isakmp.fragment.count >= 2' "reassembled from fragments"
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" $((6 * n)) || true
    local split joined
    split=$(grep -c 'splitting IKE message' "$DIR/charon.log" || true)
    joined=$(grep -c 'reassembled fragmented IKE message' "$DIR/charon.log" || true)
    if [ "$split" -ge 2 ] && [ "$joined" -ge 2 ]; then ok "charon split $split messages and reassembled $joined"
    else fail "charon split $split messages and reassembled $joined (want at least 2 each)"; fi
}

# ------------------------------------------------------ redirect (RFC 5685)
# The usual four namespaces plus gateway C (a second espresso) and hostC:
#
#   hostB 10.2.0.20 - gwB (charon) wan0 ==== wan0 gwA (espresso A, 192.0.2.1, redirect = "always")
#                                  wan1 ==== wan0 gwC (espresso C, 192.0.2.3) lan0 - hostC 10.1.0.10
#
# A and C are a farm: one identity (gw-a.example), one PSK, the same
# network behind them (10.1.0.0/24). charon reaches 192.0.2.3 by a host
# route on wan1.
NS_GC=ss-gc-$ID NS_HC=ss-hc-$ID
GC_PID=

redirect_cleanup() {
    [ -n "$GC_PID" ] && kill -TERM "$GC_PID" 2>/dev/null
    local ns p
    for ns in $NS_GC $NS_HC; do
        ip netns list 2>/dev/null | grep -qw "$ns" || continue
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    return 0
}

setup_redirect_network() {
    setup_network
    local ns
    for ns in $NS_GC $NS_HC; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip link add wan1 netns $NS_GB type veth peer name wan0 netns $NS_GC
    ip link add h0 netns $NS_HC type veth peer name lan0 netns $NS_GC
    in_ns $NS_GC sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n $NS_GC link set wan0 address 02:00:00:00:c0:02
    ip -n $NS_GC link set lan0 address 02:00:00:00:c0:01
    for l in lan0 wan0; do ip -n $NS_GC link set "$l" up; done
    ip -n $NS_GB link set wan1 address 02:00:00:00:b0:03
    ip -n $NS_GB link set wan1 up
    in_ns $NS_GB ethtool -K wan1 tx off >/dev/null
    ip -n $NS_GB route add 192.0.2.3/32 dev wan1 src 192.0.2.2
    ip -n $NS_HC link set h0 up
    in_ns $NS_HC ethtool -K h0 tx off >/dev/null
    ip -n $NS_HC addr add 10.1.0.10/24 dev h0
    ip -n $NS_HC route add default via 10.1.0.1
}

# write_farm_gw NAME ADDRESS CHARON_MAC EXTRA: a listening espresso of the
# farm at ADDRESS; EXTRA goes into its [tunnel.ike].
write_farm_gw() {
    local name=$1 me=$2 mac=$3 extra=$4
    cat >"$DIR/$name.toml" <<EOF
[dataplane]
workers = 1
memory_mb = 256
mbufs = 4095
[control]
socket = "$DIR/$name.sock"
log = "info"
[[interface]]
name = "lan"
device = "net_af_packet0,iface=lan0,framecnt=2048"
role = "lan"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "wan"
device = "net_af_packet1,iface=wan0,qdisc_bypass=0,framecnt=2048"
role = "wan"
addresses = ["$me/24"]
[[route]]
prefix = "10.2.0.0/24"
via = "192.0.2.2"
interface = "wan"
[[neighbour]]
address = "192.0.2.2"
mac = "$mac"
interface = "wan"
[[tunnel]]
name = "swan"
local_addrs = "$me"
remote_addrs = "192.0.2.2"
mode = "tunnel"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.2.0.0/24"
  [tunnel.ike]
  local_id = "gw-a.example"
  remote_id = "gw-b.example"
  psk = "$PSK"
  proposals = ["aes128gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes128gcm16"]
  start_action = "listen"
  keylog_dir = "$DIR/keylog/$name"
$extra
EOF
    "$BIN" check -c "$DIR/$name.toml" >/dev/null
}

# start_farm_gw NAME NAMESPACE: starts it, sets FARM_PID.
start_farm_gw() {
    local name=$1 ns=$2
    ip netns exec "$ns" "$BIN" run -c "$DIR/$name.toml" >"$DIR/$name.out" 2>"$DIR/$name.log" &
    FARM_PID=$!
    PIDS+=("$FARM_PID")
    for _ in $(seq 100); do
        grep -q "espresso running" "$DIR/$name.log" 2>/dev/null && return 0
        kill -0 "$FARM_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$DIR/$name.log"; echo "espresso $name did not start"; exit 1
}

# stop_farm_gw NAME PID: stops it and checks that it leaked no mbuf.
stop_farm_gw() {
    local name=$1 pid=$2 before after
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    before=$(awk '/^mempool.free_before/{print $2}' "$DIR/$name.out")
    after=$(awk '/^mempool.free_after/{print $2}' "$DIR/$name.out")
    [ -n "$before" ] && [ "$before" = "$after" ] || fail "espresso $name leaked mbufs ($before before, $after after)"
    cat "$DIR/$name.log" >>"$DIR/gw-a.all.log"
}

load_redirect_conn() {
    cat >"$DIR/swanctl.conf" <<EOF
connections {
  net {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-ecp256
    encap = yes
    dpd_delay = 0
    local {
      auth = psk
      id = gw-b.example
    }
    remote {
      auth = psk
      id = gw-a.example
    }
    children {
      net {
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = aes128gcm16
      }
    }
  }
}
secrets {
  ike-espresso {
    id-a = gw-a.example
    id-b = gw-b.example
    secret = "$PSK"
  }
}
EOF
    swan --load-all --file "$DIR/swanctl.conf" >"$DIR/swanctl-load.log" 2>&1 || { cat "$DIR/swanctl-load.log"; fail "swanctl --load-all"; }
}

# redirect_round HOW: A redirects in ike_sa_init or ike_auth (by its
# configuration), or (informational) serves charon and is then told to
# send its established clients to C (`espresso redirect`, RFC 5685 §5).
redirect_round() {
    local ex=$1 counter i sas="" c_up="" out line policy
    case $ex in
        ike_auth) counter=redirects_sent_auth ;;
        informational) counter=redirects_sent_informational ;;
        *) counter=redirects_sent_init ;;
    esac
    policy="  redirect = \"always\"
  redirect_to = [\"192.0.2.3\"]
  redirect_in = \"$ex\""
    [ "$ex" = informational ] && policy=""
    say "espresso A redirects in $ex; charon initiates towards A"
    write_farm_gw gw-a 192.0.2.1 02:00:00:00:b0:02 "$policy"
    write_farm_gw gw-c 192.0.2.3 02:00:00:00:b0:03 ""
    start_farm_gw gw-a "$NS_GA"; GW_PID=$FARM_PID
    start_farm_gw gw-c "$NS_GC"; GC_PID=$FARM_PID
    swan --initiate --child net --timeout 20 >"$DIR/initiate.log" 2>&1 || fail "swanctl --initiate: $(tail -2 "$DIR/initiate.log")"
    if [ "$ex" = informational ]; then
        if swan --list-sas 2>/dev/null | grep -q "@ 192.0.2.1" && "$BIN" tunnels -c "$DIR/gw-a.toml" | grep -q '^tunnel swan up'; then
            ok "charon is up with espresso A: $("$BIN" tunnels -c "$DIR/gw-a.toml" | head -1)"
        else
            fail "charon did not come up with espresso A: $("$BIN" tunnels -c "$DIR/gw-a.toml" | tr '\n' ' ')"
        fi
        out=$("$BIN" redirect -c "$DIR/gw-a.toml" swan 192.0.2.3 2>&1) && ok "espresso redirect swan 192.0.2.3: $out" || fail "espresso redirect: $out"
    fi
    for i in $(seq 100); do
        sas=$(swan --list-sas 2>/dev/null || true)
        c_up=$("$BIN" tunnels -c "$DIR/gw-c.toml" 2>/dev/null | awk '/^  child .* active/' || true)
        echo "$sas" | grep -q INSTALLED && [ -n "$c_up" ] && break
        sleep 0.1
    done
    if echo "$sas" | grep -q "@ 192.0.2.3" && echo "$sas" | grep -q INSTALLED; then
        ok "strongSwan: $(echo "$sas" | grep -E 'IKEv2|remote|INSTALLED' | sed -E 's/^ +//' | tr -s ' ' | head -4 | tr '\n' ';')"
    else
        fail "charon's SAs are not with 192.0.2.3: $(echo "$sas" | tr '\n' ' ')"
    fi
    if "$BIN" tunnels -c "$DIR/gw-c.toml" | grep -q '^tunnel swan up' && [ -n "$c_up" ]; then
        ok "espresso C: $("$BIN" tunnels -c "$DIR/gw-c.toml" | head -1); $(echo "$c_up" | head -1 | sed -E 's/^ +//')"
    else
        fail "espresso C has no active Child SA: $("$BIN" tunnels -c "$DIR/gw-c.toml" | tr '\n' ' ')"
    fi
    if out=$(in_ns $NS_HB ping -c 5 -i 0.2 -W 2 -p "$PING_PATTERN" 10.1.0.10 2>&1); then
        ok "ping hostB -> hostC (behind espresso C): $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
    else
        fail "ping hostB -> hostC"; echo "$out" | tail -2
    fi
    # After IKE_AUTH, charon deletes its authenticated IKE SA with A
    # (RFC 5685 §6); A keeps none either way.
    for i in $(seq 50); do
        "$BIN" tunnels -c "$DIR/gw-a.toml" | grep -q '^  ike' || break
        sleep 0.1
    done
    out=$("$BIN" stats -c "$DIR/gw-a.toml")
    if echo "$out" | grep -Eq "^ike\.swan\.$counter [1-9]" && ! echo "$out" | grep -q '^sa\.' &&
        ! "$BIN" tunnels -c "$DIR/gw-a.toml" | grep -q '^  ike'; then
        ok "espresso A counted the redirect and holds no SA: $(echo "$out" | grep -E "^ike\.swan\.(redirects_sent_[a-z]+|ike_sa_established|child_sa_established) " | tr '\n' ' ')"
    else
        fail "espresso A: $(echo "$out" | grep -E '^ike\.swan\.redirect|^sa\.' | tr '\n' ' ') $("$BIN" tunnels -c "$DIR/gw-a.toml" | tr '\n' ' ')"
    fi
    line=$(grep -iE 'redirect' "$DIR/charon.log" | tail -1 | sed -E 's/^[^ ]+ +//' || true)
    [ -n "$line" ] && ok "charon's log: $line"
    swan --terminate --ike net --force >/dev/null 2>&1 || true
    stop_farm_gw gw-a "$GW_PID"; GW_PID=
    stop_farm_gw gw-c "$GC_PID"; GC_PID=
    # Each start of a gateway begins its key log afresh: keep this round's.
    for i in gw-a gw-c; do [ -d "$DIR/keylog/$i" ] && mv "$DIR/keylog/$i" "$DIR/keylog/$i-$ex"; done
    true
}

scenario_redirect() {
    say "network: hostB - gwB (strongSwan client) - WAN - gwA (espresso A) / gwC (espresso C) - hostC, namespaces ss-*-$ID"
    setup_redirect_network
    start_charon
    load_redirect_conn
    # charon's side sees both gateways: wan0 to A, wan1 to C.
    start_capture $NS_GB wan0 wan1
    redirect_round ike_sa_init
    redirect_round informational
    stop_capture
    say "charon's WAN capture decrypted by tshark with espresso A's and C's key logs"
    wireshark_keys
    # IKE_AUTH with C after each redirect, and with A before the
    # INFORMATIONAL one.
    ike_decrypt_check "$DIR/wan.pcapng" 6
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" 20 || true
    # Not `redirect_round ike_auth`: charon 5.9.8 follows a redirect in the
    # IKE_AUTH response ("redirected to 192.0.2.3") and then aborts with
    # "free(): double free detected" while restarting the IKE SA towards
    # the new gateway, with or without MOBIKE or a vici initiator waiting.
    # The §6 path is covered by the engine and driver tests instead.
}

# ------------------------------------------------------------------- vip

# charon as a remote-access client of espresso: asks for a virtual IPv4.
load_conn_vip() {
    cat >"$DIR/swanctl.conf" <<EOF
connections {
  rw {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-ecp256
    encap = yes
    dpd_delay = 0
    vips = 0.0.0.0, ::
    local {
      auth = psk
      id = gw-b.example
    }
    remote {
      auth = psk
      id = gw-a.example
    }
    children {
      rw {
        remote_ts = 10.1.0.0/24, fd01::/64
        esp_proposals = aes128gcm16
      }
    }
  }
}
secrets {
  ike-espresso {
    id-a = gw-a.example
    id-b = gw-b.example
    secret = "$PSK"
  }
}
EOF
    swan --load-all --file "$DIR/swanctl.conf" >"$DIR/swanctl-load.log" 2>&1 || { cat "$DIR/swanctl-load.log"; fail "swanctl --load-all"; }
}

# espresso listening with a pool; the tunnel's remote side is the pool.
write_espresso_vip() {
    write_espresso 1 listen aes128gcm16-prfsha256-ecp256 aes128gcm16
    sed -i -e 's|^log = "info"|log = "info"\nstate_dir = "'"$DIR"'/state"|' \
        -e 's|remote_ts = "10.2.0.0/24"|remote_ts = "10.3.0.0/24"|' \
        -e 's|^  start_action = "listen"|  start_action = "listen"\n  pools = ["ra"]|' \
        -e 's|addresses = \["10.1.0.1/24"\]|addresses = ["10.1.0.1/24", "fd01::1/64"]|' \
        -e 's|^  \[tunnel.ike\]|  [[tunnel.policy]]\n  local_ts = "fd01::/64"\n  remote_ts = "fd03::/112"\n  [tunnel.ike]|' "$DIR/gw-a.toml"
    cat >>"$DIR/gw-a.toml" <<EOF
[[pool]]
name = "ra"
addrs = ["10.3.0.0/24", "fd03::/112"]
dns = ["10.1.0.53"]
subnets = ["10.1.0.0/24"]
EOF
}

vip_of_espresso() { tunnels | grep -o 'vip [0-9.]*' | awk '{print $2}' | head -1; }
gauge() { stats | awk -v k="$1" '$1 ~ k"$" {print $2; exit}'; }

# vip_connect: charon initiates; espresso's lease and charon's address agree.
vip_connect() {
    swan --initiate --child rw --timeout 10 >"$DIR/initiate.log" 2>&1 || fail "swanctl --initiate: $(tail -2 "$DIR/initiate.log")"
    wait_up || return 1
    local vip theirs
    vip=$(vip_of_espresso)
    theirs=$(in_ns $NS_GB ip -4 -o addr show | grep -o '10\.3\.0\.[0-9]*' | head -1)
    if [ -n "$vip" ] && [ "$vip" = "$theirs" ]; then
        ok "charon got virtual IP $vip from espresso's pool (installed in $NS_GB)"
    else
        fail "virtual IP: espresso says '$vip', charon installed '$theirs'"
    fi
    echo "$vip" >"$DIR/vip"
}

scenario_vip() {
    say "network, charon (client, vips = 0.0.0.0), espresso (listen, [[pool]] 10.3.0.0/24)"
    setup_network
    start_charon
    load_conn_vip
    write_espresso_vip
    start_capture
    start_espresso
    # hostA on IPv6 too, behind espresso.
    in_ns $NS_HA sysctl -qw net.ipv6.conf.h0.accept_ra=0
    ip -n $NS_HA -6 addr add fd01::10/64 dev h0 nodad
    ip -n $NS_HA -6 route add default via fd01::1
    vip_connect || return 0
    local vip out sent got vip6
    vip=$(cat "$DIR/vip")
    vip6=$(in_ns $NS_GB ip -6 -o addr show | grep -o 'fd03::[0-9a-f]*' | head -1)
    if [ -n "$vip6" ] && tunnels | grep -q "vip $vip,$vip6"; then
        ok "charon got IPv6 virtual IP $vip6 as well"
    else
        fail "IPv6 virtual IP: charon has '$vip6', espresso: $(tunnels | grep -o 'vip [^ ]*')"
    fi
    if out=$(in_ns $NS_GB ping -6 -c 5 -i 0.2 -W 2 -I "$vip6" fd01::10 2>&1); then
        ok "ping $vip6 -> hostA fd01::10: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
    else
        fail "ping from the IPv6 virtual IP to hostA"; echo "$out" | tail -2
    fi
    ok "espresso: $(tunnels | grep -E '^  (ike|child)' | tr -s ' ' | tr '\n' ';')"
    if out=$(in_ns $NS_GB ping -c 5 -i 0.2 -W 2 -I "$vip" 10.1.0.10 2>&1); then
        ok "ping $vip (charon's virtual IP) -> hostA: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
    else
        fail "ping from the virtual IP to hostA"; echo "$out" | tail -2
    fi
    head -c $((${TCP_MB:-2} * 1024 * 1024)) /dev/urandom >"$DIR/send.bin"
    in_ns $NS_HA $PY "$ROOT/scripts/tcp_sha.py" recv 5203 >"$DIR/recv.sha" 2>&1 &
    local rpid=$!; PIDS+=("$rpid")
    sleep 0.3
    sent=$(in_ns $NS_GB $PY "$ROOT/scripts/tcp_sha.py" send 10.1.0.10 5203 "$DIR/send.bin" 2>&1) || true
    wait "$rpid" 2>/dev/null || true
    got=$(cat "$DIR/recv.sha")
    if [ -n "$sent" ] && [ "$sent" = "$got" ]; then
        ok "TCP ${TCP_MB:-2} MB from $vip -> hostA: SHA-256 ${got#* } matches on both ends"
    else
        fail "TCP from the virtual IP: sent '$sent', received '$got'"
    fi
    # charon rekeys the Child SA (its TSi is now the virtual IP) and the
    # IKE SA (the lease follows it).
    local before after
    before=$(active_child)
    swan --rekey --child rw >/dev/null 2>&1 || fail "swanctl --rekey --child"
    sleep 1
    after=$(active_child)
    if [ -n "$after" ] && [ "$before" != "$after" ] && in_ns $NS_GB ping -c 3 -i 0.2 -W 2 -I "$vip" 10.1.0.10 >/dev/null 2>&1; then
        ok "charon rekeyed the Child SA ($before -> $after); ping from $vip passes"
    else
        fail "Child SA rekey by charon: '$before' -> '$after'"
    fi
    swan --rekey --ike rw >/dev/null 2>&1 || fail "swanctl --rekey --ike"
    sleep 1
    if [ "$(vip_of_espresso)" = "$vip" ] && [ "$(gauge pool_leases_online)" = 2 ] && in_ns $NS_GB ping -c 3 -i 0.2 -W 2 -I "$vip" 10.1.0.10 >/dev/null 2>&1; then
        ok "charon rekeyed the IKE SA: the new one still holds $vip (2 leases online); ping passes"
    else
        fail "after the IKE SA rekey: vip '$(vip_of_espresso)', online '$(gauge pool_leases_online)'"
    fi
    local f="$DIR/state/pool-ra.json"
    if [ "$(stat -c %a "$f" 2>/dev/null)" = 600 ] && grep -q "\"$vip\"" "$f"; then
        ok "lease persisted: $f (mode 600) holds $vip"
    else
        fail "lease file $f: $(stat -c %a "$f" 2>&1) $(cat "$f" 2>&1)"
    fi
    say "swanctl --terminate: the lease goes back to the pool"
    swan --terminate --ike rw >/dev/null 2>&1 || fail "swanctl --terminate"
    local i on off
    for i in $(seq 30); do
        on=$(gauge pool_leases_online); off=$(gauge pool_leases_offline)
        [ "$on" = 0 ] && break
        sleep 0.1
    done
    if [ "$on" = 0 ] && [ "$off" = 2 ]; then ok "leases released: $on online, $off (IPv4, IPv6) reserved for gw-b.example"
    else fail "after terminate: pool_leases_online '$on', offline '$off'"; fi
    say "charon reconnects"
    vip_connect || return 0
    if [ "$(cat "$DIR/vip")" = "$vip" ]; then ok "same virtual IP $vip again"
    else fail "reconnected with $(cat "$DIR/vip"), had $vip"; fi
    if in_ns $NS_GB ping -c 3 -i 0.2 -W 2 -I "$vip" 10.1.0.10 >/dev/null 2>&1; then ok "ping from $vip after the reconnect"
    else fail "ping after the reconnect"; fi
    ok "espresso: $(stats | grep -E '^ike\.swan\.(virtual_ips_assigned|cp_address_failures)' | tr '\n' ' ')"
    stop_capture
    say "WAN capture so far decrypted by tshark with espresso's key log"
    wireshark_keys
    # IKE_AUTH of the first connection and of the reconnection.
    ike_decrypt_check "$DIR/wan.pcapng" 4 'isakmp.cfg.type' "with their CP payload"
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" 20 || true
    say "espresso restarts: the lease is read back and held for its client"
    stop_espresso
    start_espresso
    if [ "$(gauge pool_leases_offline)" = 2 ] && grep -q "virtual IP leases restored" "$DIR/gw-a.log"; then
        ok "after the restart $vip and $vip6 are reserved for gw-b.example (2 leases restored)"
    else
        fail "after the restart: offline leases '$(gauge pool_leases_offline)'"
    fi
    swan --terminate --ike rw --force >/dev/null 2>&1 || true
    stop_espresso
}

# ------------------------------------------------------------ certificates

# make_ca [KT...]: a test CA (ECDSA P-256; RSA-4096 with CA_KEY=rsa4096)
# and, for each key type KT (default ecdsa ed25519 rsa; rsa4096 too), a
# certificate for gw-a.example (espresso) and gw-b.example (strongSwan).
# Keys are PKCS#8 PEM, 0600; they live and die with $DIR.
make_ca() {
    local c=$DIR/pki kts=${*:-ecdsa ed25519 rsa}
    mkdir -p "$c"; chmod 700 "$c"
    local cakey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    [ "${CA_KEY:-ecdsa}" = rsa4096 ] && cakey=(-newkey rsa:4096)
    openssl req -x509 "${cakey[@]}" -nodes -keyout "$c/ca.key" \
        -out "$c/ca.pem" -days 7 -subj "/O=Espresso test/CN=Espresso Test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    local kt gw
    for kt in $kts; do
        for gw in gw-a gw-b; do
            case $kt in
                ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$c/$gw-$kt.key" ;;
                ed25519) openssl genpkey -algorithm ED25519 -out "$c/$gw-$kt.key" ;;
                rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$c/$gw-$kt.key" 2>/dev/null ;;
                rsa4096) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$c/$gw-$kt.key" 2>/dev/null ;;
            esac
            chmod 600 "$c/$gw-$kt.key"
            openssl req -new -key "$c/$gw-$kt.key" -subj "/O=Espresso test/CN=$gw.example" -out "$c/$gw-$kt.csr"
            printf 'subjectAltName=DNS:%s.example\nkeyUsage=critical,digitalSignature\n' "$gw" >"$c/ext"
            openssl x509 -req -in "$c/$gw-$kt.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
                -days 7 -sha256 -extfile "$c/ext" -out "$c/$gw-$kt.pem" 2>/dev/null
        done
    done
    if [ ! -f "$c/gw-b-ecdsa.pem" ]; then
        ok "test CA ($(openssl x509 -noout -text -in "$c/ca.pem" | grep -o 'Public-Key: ([0-9]* bit)' | head -1)) made by $(openssl version | cut -d' ' -f1-2): certificates $(cd "$c" && ls gw-*.pem | tr '\n' ' ')($(wc -c <"$c/gw-a-${kts%% *}.pem") bytes PEM each)"
        return 0
    fi
    # A CRL revoking strongSwan's ECDSA certificate (openssl ca's database).
    : >"$c/index.txt"; echo 01 >"$c/crlnumber"
    printf '[ca]\ndefault_ca = test\n[test]\ndatabase = %s/index.txt\ncrlnumber = %s/crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n' "$c" "$c" >"$c/ca.cnf"
    openssl ca -config "$c/ca.cnf" -keyfile "$c/ca.key" -cert "$c/ca.pem" -revoke "$c/gw-b-ecdsa.pem" 2>/dev/null
    openssl ca -config "$c/ca.cnf" -keyfile "$c/ca.key" -cert "$c/ca.pem" -gencrl -out "$c/ca.crl" 2>/dev/null
    ok "test CA made by $(openssl version | cut -d' ' -f1-2): $(ls "$c"/gw-*.pem | wc -l) certificates (ECDSA P-256, Ed25519, RSA-2048), CRL revoking serial $(openssl x509 -noout -serial -in "$c/gw-b-ecdsa.pem" | cut -d= -f2)"
}

# load_conn_certs KT: strongSwan authenticates with its KT certificate and
# wants espresso's, both from the test CA (certificate paths absolute).
load_conn_certs() {
    local c=$DIR/pki
    cat >"$DIR/swanctl.conf" <<EOF
connections {
  net {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-ecp256
    encap = yes
    dpd_delay = 0
    local {
      auth = pubkey
      certs = $c/gw-b-$1.pem
      id = gw-b.example
    }
    remote {
      auth = pubkey
      cacerts = $c/ca.pem
      id = gw-a.example
    }
    children {
      net {
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = aes128gcm16
      }
    }
  }
}
EOF
    # swanctl --file loads private keys from private/ next to the file.
    mkdir -p "$DIR/private"; chmod 700 "$DIR/private"
    rm -f "$DIR"/private/*
    cp "$c/gw-b-$1.key" "$DIR/private/gw-b.key"
    swan --load-all --file "$DIR/swanctl.conf" >"$DIR/swanctl-load.log" 2>&1 || { cat "$DIR/swanctl-load.log"; fail "swanctl --load-all"; }
}

# write_espresso_certs RUN START KT [CRL]: espresso's configuration with
# its KT certificate instead of the PSK.
write_espresso_certs() {
    local c=$DIR/pki
    write_espresso "$1" "$2" aes128gcm16-prfsha256-ecp256 aes128gcm16
    {
        grep -v '^  psk = ' "$DIR/gw-a.toml"
        echo "  certificate = \"$c/gw-a-$3.pem\""
        echo "  private_key = \"$c/gw-a-$3.key\""
        echo "  ca_certificates = [\"$c/ca.pem\"]"
        [ -n "${4:-}" ] && echo "  crls = [\"$4\"]"
        true
    } >"$DIR/gw-a.toml.new"
    mv "$DIR/gw-a.toml.new" "$DIR/gw-a.toml"
}

scenario_certs() {
    say "network, charon, test CA"
    setup_network
    start_charon
    make_ca
    start_capture
    local n=0 kt who
    for kt in ${CERT_KEYS:-ecdsa ed25519 rsa}; do
        for who in espresso strongswan; do
            n=$((n + 1))
            say "$kt certificates: $who initiates"
            load_conn_certs "$kt"
            local start=listen
            [ "$who" = espresso ] && start=initiate
            write_espresso_certs "$n" "$start" "$kt"
            start_espresso
            [ "$who" = strongswan ] && { swan --initiate --child net --timeout 10 >"$DIR/initiate.log" 2>&1 || fail "swanctl --initiate: $(tail -2 "$DIR/initiate.log")"; }
            if wait_up; then
                ok "tunnel up: $(tunnels | awk '/^  ike/{print $7, $6}')"
                local sw; sw=$(swan --list-sas 2>/dev/null | grep -E 'IKEv2' | sed -E 's/^ +//' | tr -s ' ' | head -1 || true)
                ok "strongSwan: $sw"
                ping_check 3
                terminate_check
            fi
            stop_espresso
            swan --terminate --ike net --force >/dev/null 2>&1 || true
        done
    done
    say "strongSwan's ECDSA certificate revoked in espresso's CRL"
    load_conn_certs ecdsa
    write_espresso_certs "$((n + 1))" listen ecdsa "$DIR/pki/ca.crl"
    start_espresso
    if swan --initiate --child net --timeout 5 >"$DIR/initiate.log" 2>&1; then
        fail "strongSwan with a revoked certificate got a tunnel"
    else
        local revoked; revoked=$(stats | awk '/^ike\.swan\.cert_revoked /{print $2}')
        if [ "${revoked:-0}" -ge 1 ] && ! active_child | grep -q .; then
            ok "refused with AUTHENTICATION_FAILED ($(grep -c 'AUTHENTICATION_FAILED' "$DIR/charon.log") in charon's log), ike.swan.cert_revoked $revoked"
        else
            fail "revoked certificate not counted (cert_revoked '${revoked:-}')"
        fi
    fi
    stop_espresso
    stop_capture
    say "WAN capture: IKE decrypted by tshark with espresso's key logs"
    mkdir -p "$DIR/wireshark"
    cat "$DIR"/keylog/*/ikev2_decryption_table >"$DIR/wireshark/ikev2_decryption_table"
    cat "$DIR"/keylog/*/esp_sa >"$DIR/wireshark/esp_sa"
    local certs auths m14
    certs=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark tshark -n -r "$DIR/wan.pcapng" -Y 'isakmp.cert.encoding == 4' -T fields -e frame.number 2>/dev/null | wc -l)
    auths=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark tshark -n -r "$DIR/wan.pcapng" -Y 'isakmp.id.data.fqdn' -T fields -e frame.number 2>/dev/null | wc -l)
    m14=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark tshark -n -r "$DIR/wan.pcapng" -Y 'isakmp.auth.method == 14' -T fields -e frame.number 2>/dev/null | wc -l)
    if [ "$auths" -ge $((2 * n)) ] && [ "$certs" -ge $((2 * n)) ] && [ "$m14" -ge $((2 * n)) ]; then
        ok "decrypted: $auths IKE_AUTH messages with identities, $certs with an X.509 CERT, $m14 with AUTH method 14 (RFC 7427)"
    else
        fail "decrypted only $auths IKE_AUTH / $certs CERT / $m14 method-14 messages (want $((2 * n)) each)"
    fi
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" $((6 * n)) || true
}

# ------------------------------------------- decryption with espresso's key log

# wireshark_keys: a Wireshark profile in $DIR/wireshark holding every key
# espresso logged this session (its ikev2_decryption_table and esp_sa).
wireshark_keys() {
    mkdir -p "$DIR/wireshark"
    cat "$DIR"/keylog/*/ikev2_decryption_table >"$DIR/wireshark/ikev2_decryption_table" 2>/dev/null || true
    cat "$DIR"/keylog/*/esp_sa >"$DIR/wireshark/esp_sa" 2>/dev/null || true
}

# ike_decrypt_check PCAP MIN: tshark, with espresso's key log only, reads
# at least MIN IKE_AUTH messages: an identity payload (IDi/IDr) or AUTH
# is dissected inside the decrypted Encrypted payload. Fragmented
# IKE_AUTH messages (RFC 7383 SKF) count when tshark reassembled them.
# With FILTER, only frames that match it too count (WHAT says which).
ike_decrypt_check() {
    local pcap=$1 min=$2 filter=${3:-} what=${4:-} n
    n=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark tshark -n -r "$pcap" -Y "isakmp.exchangetype == 35 && (isakmp.id.type || isakmp.auth.method)${filter:+ && ($filter)}" 2>/dev/null | wc -l)
    if [ "$n" -ge "$min" ]; then ok "tshark decrypts $n IKE_AUTH messages${what:+ $what} with espresso's key log (IDi/IDr, AUTH readable)"
    else fail "tshark read only $n IKE_AUTH messages${what:+ $what} with espresso's key log (want $min)"; fi
}

# ------------------------------------ fragmentation with RSA-4096 certificates

# Frames from SRC in FILE with a WAN IP datagram above 576 bytes or an IP
# fragment (more fragments set or a fragment offset).
ip_too_big() { tshark -n -r "$1" -Y "ip.src == $2 && (ip.len > 576 || ip.flags.mf == 1 || ip.frag_offset > 0)" 2>/dev/null | wc -l; }

scenario_fragcerts() {
    say "network with a WAN MTU of 576; charon's fragment_size 0 (its IPv4 default, 576), espresso's 576; RSA-4096 test CA"
    setup_network
    ip -n $NS_GA link set wan0 mtu 576
    ip -n $NS_GB link set wan0 mtu 576
    CHARON_EXTRA="fragment_size = 0"
    start_charon
    CA_KEY=rsa4096 make_ca rsa4096
    ESPRESSO_WAN_EXTRA="mtu = 576"
    ESPRESSO_IKE_EXTRA="fragment_size = 576"
    local n=0 who
    for who in espresso strongswan; do
        n=$((n + 1))
        say "RSA-4096 certificates (RSASSA-PSS), MTU 576: $who initiates"
        load_conn_certs rsa4096
        local start=listen
        [ "$who" = espresso ] && start=initiate
        write_espresso_certs "$n" "$start" rsa4096
        rm -f "$DIR/tshark.log"
        start_capture
        start_espresso
        [ "$who" = strongswan ] && { swan --initiate --child net --timeout 10 >"$DIR/initiate.log" 2>&1 || fail "swanctl --initiate: $(tail -2 "$DIR/initiate.log")"; }
        if wait_up; then
            ok "tunnel up: $(tunnels | awk '/^  ike/{print $7, $6}') / $(tunnels | awk '/ active/{print $6, $7}' | head -1)"
            ping_check 3
            local s sent got refused
            s=$(stats)
            sent=$(echo "$s" | awk '/^ike\.swan\.fragmented_messages /{print $2}')
            got=$(echo "$s" | awk '/^ike\.swan\.reassembled_messages /{print $2}')
            if [ "${sent:-0}" -ge 1 ] && [ "${got:-0}" -ge 1 ]; then
                ok "espresso: $(echo "$s" | grep -E '^ike\.swan\.(fragmented_messages|fragments_sent|fragments_received|reassembled_messages) ' | tr '\n' ' ')"
            else
                fail "espresso fragmented ${sent:-0} and reassembled ${got:-0} messages"
            fi
            refused=$(echo "$s" | awk '/^ike\.fragment_refusals\./{n += $2} END {print n + 0}')
            [ "$refused" = 0 ] && ok "no fragment refused" || fail "$refused fragments refused: $(echo "$s" | grep '^ike\.fragment_refusals\.' | grep -v ' 0$' | tr '\n' ' ')"
            terminate_check
        fi
        stop_capture
        mv "$DIR/wan.pcapng" "$DIR/wan-$n.pcapng"
        local fa fb ba bb
        fa=$(auth_fragments "$DIR/wan-$n.pcapng" 192.0.2.1)
        fb=$(auth_fragments "$DIR/wan-$n.pcapng" 192.0.2.2)
        if [ "$fa" -ge 2 ] && [ "$fb" -ge 2 ]; then
            ok "capture: IKE_AUTH in $fa fragments from espresso, $fb from strongSwan (their certificates' size alone)"
        else
            fail "capture: IKE_AUTH fragments: $fa from espresso, $fb from strongSwan (want at least 2 each)"
        fi
        ba=$(ip_too_big "$DIR/wan-$n.pcapng" 192.0.2.1)
        bb=$(ip_too_big "$DIR/wan-$n.pcapng" 192.0.2.2)
        if [ "$ba" = 0 ] && [ "$bb" = 0 ]; then
            ok "every WAN datagram within 576 bytes, no IP fragment (largest IKE datagram $(tshark -n -r "$DIR/wan-$n.pcapng" -Y isakmp -T fields -e ip.len 2>/dev/null | sort -n | tail -1) bytes)"
        else
            fail "$ba datagrams from espresso and $bb from strongSwan above 576 bytes or IP-fragmented"
        fi
        stop_espresso
        swan --terminate --ike net --force >/dev/null 2>&1 || true
    done
    say "WAN captures decrypted by tshark with espresso's key logs"
    wireshark_keys
    mergecap -w "$DIR/wan.pcapng" "$DIR"/wan-*.pcapng
    # tshark (4.0) reassembles RFC 7383 fragments, then decrypts the whole
    # message: the CERTs, AUTH (method 14) and identities are readable.
    ike_decrypt_check "$DIR/wan.pcapng" $((2 * n)) \
        'isakmp.fragment.count >= 2 && isakmp.cert.encoding == 4 && isakmp.auth.method == 14' \
        "reassembled from fragments, each with its X.509 CERT and AUTH method 14,"
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" $((6 * n)) || true
}

command -v /usr/lib/ipsec/charon >/dev/null || { echo "strongSwan (strongswan-charon) is not installed" >&2; exit 2; }
case "$SCENARIO" in
    matrix) scenario_matrix ;;
    dpd) scenario_dpd ;;
    fragments) scenario_fragments ;;
    redirect) scenario_redirect ;;
    vip) scenario_vip ;;
    certs) scenario_certs ;;
    fragcerts) scenario_fragcerts ;;
    *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac

if [ $FAILED = 0 ]; then say "$SCENARIO: all checks passed"; else
    say "$SCENARIO: FAILED"
    [ "${KEEP:-0}" = 1 ] || { tail -25 "$DIR/gw-a.all.log" 2>/dev/null || tail -25 "$DIR/gw-a.log"; tail -25 "$DIR/charon.log"; }
fi
exit $FAILED
