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
#   certs      certificate authentication (RFC 7427 signatures, CERT and
#              CERTREQ) with a test CA made at run time by openssl: for
#              ECDSA P-256, Ed25519 and RSA-2048 (RSASSA-PSS) certificates
#              on both sides, espresso initiates, then strongSwan does;
#              ping passes; tshark decrypts every IKE_AUTH with espresso's
#              key logs and finds CERTs and AUTH method 14 in each. Then
#              strongSwan's certificate, revoked by a CRL espresso loads,
#              is refused and counted (cert_revoked).
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

start_capture() {
    in_ns $NS_GA bash -c "trap - INT; exec tshark -q -n -i wan0 -w '$DIR/wan.pcapng' 2>'$DIR/tshark.log'" &
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

# ------------------------------------------------------------ certificates

# make_ca: a test CA (ECDSA P-256) and, for each key type, a certificate
# for gw-a.example (espresso) and gw-b.example (strongSwan). Keys are
# PKCS#8 PEM, 0600; they live and die with $DIR.
make_ca() {
    local c=$DIR/pki
    mkdir -p "$c"; chmod 700 "$c"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$c/ca.key" \
        -out "$c/ca.pem" -days 7 -subj "/O=Espresso test/CN=Espresso Test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    local kt gw
    for kt in ecdsa ed25519 rsa; do
        for gw in gw-a gw-b; do
            case $kt in
                ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$c/$gw-$kt.key" ;;
                ed25519) openssl genpkey -algorithm ED25519 -out "$c/$gw-$kt.key" ;;
                rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$c/$gw-$kt.key" 2>/dev/null ;;
            esac
            chmod 600 "$c/$gw-$kt.key"
            openssl req -new -key "$c/$gw-$kt.key" -subj "/O=Espresso test/CN=$gw.example" -out "$c/$gw-$kt.csr"
            printf 'subjectAltName=DNS:%s.example\nkeyUsage=critical,digitalSignature\n' "$gw" >"$c/ext"
            openssl x509 -req -in "$c/$gw-$kt.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
                -days 7 -sha256 -extfile "$c/ext" -out "$c/$gw-$kt.pem" 2>/dev/null
        done
    done
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
}

command -v /usr/lib/ipsec/charon >/dev/null || { echo "strongSwan (strongswan-charon) is not installed" >&2; exit 2; }
case "$SCENARIO" in
    matrix) scenario_matrix ;;
    dpd) scenario_dpd ;;
    certs) scenario_certs ;;
    *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac

if [ $FAILED = 0 ]; then say "$SCENARIO: all checks passed"; else
    say "$SCENARIO: FAILED"
    [ "${KEEP:-0}" = 1 ] || { tail -25 "$DIR/gw-a.all.log" 2>/dev/null || tail -25 "$DIR/gw-a.log"; tail -25 "$DIR/charon.log"; }
fi
exit $FAILED
