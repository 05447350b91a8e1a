#!/usr/bin/env bash
# Espresso as a concentrator: one responder template takes strongSwan 5.9
# road warriors (charon with kernel-libipsec, PSK) that sit behind one NAT
# and that it knows only by their IKE identities.
#
#   c1 198.51.100.11 alice@branches.example (10.9.1.1) ┐
#   c2 198.51.100.12 bob@branches.example   (10.9.2.1) ├ br0 [nat 192.0.2.2, masquerade] wan0 ==== wan0 [gwA espresso 192.0.2.1] lan0  10.1.0.10 hostA
#   c3 198.51.100.13 carol@branches.example (10.9.3.1) │
#   c4 198.51.100.14 dave@branches.example  (no secret)│
#   c5 198.51.100.15 C=DE, O=Example, CN=erin (10.8.5.1)┘
#
# Each client is a namespace with its own charon (private mount namespace
# for /run, its own vici socket) and its own inner address; espresso's
# template (remote_addrs = "%any", remote_id = "*@branches.example") has
# no PSK: each client proves the [[secret]] of its identity.
#
# Usage: strongswan-roadwarrior.sh roadwarrior
#   c1-c3 connect at once through the NAT (same outer address, ports the
#   NAT picks): espresso lists three peers of the template with their
#   identities, NAT-mapped ports and Child SAs narrowed to each client's
#   inner network; each client pings hostA and espresso decrypts its
#   requests on that client's own Child SA, and every client gets its
#   replies: each Child SA has its own return route (SPD entries from its
#   negotiated selectors, its own outbound SA); then each client fetches
#   a file from hostA over TCP at the same time and checks its SHA-256.
#   c4 presents an identity without a secret:
#   refused (AUTHENTICATION_FAILED), counted in `espresso stats`, no SA.
#   c5 presents a distinguished name: a second template on the same
#   address (remote_id = "C=DE, O=Example, CN=*") takes it at IKE_AUTH
#   (the first one made the IKE SA and hands it over), and c5's ping
#   makes the round trip through that template's own outbound slot.
#
# Usage: strongswan-roadwarrior.sh concentrator
#   The same network with certificates from a test CA (openssl at run
#   time) and virtual IPs: c1 ECDSA P-256, c2 RSA-2048 (RSASSA-PSS), c3
#   Ed25519 (subjectAltName e-mail identities) connect at once with
#   vips = 0.0.0.0 to a template (remote_auth pubkey, ca_certificates,
#   crls, pools = ["ra"]); each gets a distinct address from the pool
#   (espresso's peers and charon agree), pings hostA from it and fetches
#   a file over TCP (SHA-256 checked). c4's certificate is revoked by the
#   CRL (cert_revoked) and c5's identity (mallory@elsewhere.example) is
#   taken by no template (auth_refused_identity): both refused with
#   AUTHENTICATION_FAILED and counted. tshark decrypts the WAN capture's
#   IKE_AUTH (CERT, identities) and ESP (ICV, inner ICMP/TCP) with
#   espresso's key log.
#
# Everything it creates is removed on exit. Exit status 0: all checks passed.
set -euo pipefail

SCENARIO=${1:-roadwarrior}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ESPRESSO_BIN:-$ROOT/target/release/espresso}
ID=$$
# lib.sh's four roles: hostA, gwA (espresso), the NAT in gwB's place; no hostB.
NS_HA=ss-ha-$ID NS_GA=ss-ga-$ID NS_GB=ss-nat-$ID NS_HB=
CLIENTS="1 2 3 4 5"
DIR=$(mktemp -d /tmp/espresso-roadwarrior.XXXXXX)
PIDS=()
FAILED=0
GW_PID=
CAP_PID=
NAMES=(x alice bob carol dave erin)
# concentrator: c1 ECDSA P-256, c2 RSA-2048 (PSS), c3 Ed25519, c4 ECDSA
# revoked in espresso's CRL, c5 ECDSA from the CA with an identity no
# template takes.
KEYS=(x ecdsa rsa ed25519 ecdsa ecdsa)
id_of() {
    if [ "$SCENARIO" = concentrator ]; then
        if [ "$1" = 5 ]; then echo "mallory@elsewhere.example"; else echo "${NAMES[$1]}@branches.example"; fi
    elif [ "$1" = 5 ]; then echo "C=DE, O=Example, CN=erin"; else echo "${NAMES[$1]}@branches.example"; fi
}
inner_of() { if [ "$1" = 5 ]; then echo 10.8.5; else echo "10.9.$1"; fi; }

. "$ROOT/scripts/lib.sh"

cns() { echo "ss-c$1-$ID"; }

cleanup() {
    set +e
    [ -n "$GW_PID" ] && kill -TERM "$GW_PID" 2>/dev/null
    # charons and swanctl first by their pids (TERM), then whatever is
    # left in the clients' namespaces.
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for i in $CLIENTS; do
        local ns; ns=$(cns "$i")
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    netns_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
PSK1=$(secret) PSK2=$(secret) PSK3=$(secret) PSK4=$(secret) PSK5=$(secret)
psk_of() { eval "echo \$PSK$1"; }

setup_network() {
    netns_remove_stale
    for ns in $NS_HA $NS_GA $NS_GB; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip link add h0 netns $NS_HA type veth peer name lan0 netns $NS_GA
    ip link add wan0 netns $NS_GA type veth peer name wan0 netns $NS_GB
    # gwA: espresso owns the ports.
    in_ns $NS_GA sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    for l in lan0 wan0; do ip -n $NS_GA link set "$l" up; done
    ip -n $NS_GA link set wan0 address 02:00:00:00:a0:02
    ip -n $NS_GA link set lan0 address 02:00:00:00:a0:01
    # hostA behind espresso.
    ip -n $NS_HA link set h0 up
    in_ns $NS_HA ethtool -K h0 tx off >/dev/null
    ip -n $NS_HA addr add 10.1.0.10/24 dev h0
    ip -n $NS_HA route add default via 10.1.0.1
    # The NAT: wan0 192.0.2.2 towards espresso, br0 198.51.100.1 for the
    # clients, everything leaving wan0 masqueraded (nftables).
    ip -n $NS_GB link set wan0 address 02:00:00:00:b0:02
    ip -n $NS_GB addr add 192.0.2.2/24 dev wan0
    ip -n $NS_GB link add br0 type bridge
    ip -n $NS_GB addr add 198.51.100.1/24 dev br0
    for l in wan0 br0; do ip -n $NS_GB link set "$l" up; done
    in_ns $NS_GB ethtool -K wan0 tx off >/dev/null
    in_ns $NS_GB sysctl -qw net.ipv4.ip_forward=1
    in_ns $NS_GB nft -f - <<'EOF'
table ip nat {
  chain post {
    type nat hook postrouting priority srcnat;
    oifname "wan0" masquerade
  }
}
EOF
    for i in $CLIENTS; do
        local ns; ns=$(cns "$i")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip link add c0 netns "$ns" type veth peer name c$i netns $NS_GB
        ip -n $NS_GB link set c$i master br0 up
        ip -n "$ns" link set c0 up
        ip -n "$ns" addr add 198.51.100.1$i/24 dev c0
        ip -n "$ns" route add default via 198.51.100.1
        # The client's own inner address, inside its local_ts.
        ip -n "$ns" addr add "$(inner_of "$i").1/32" dev lo
        in_ns "$ns" ethtool -K c0 tx off >/dev/null
    done
    ok "namespaces: hostA, espresso, NAT (nftables masquerade), clients c1-c5 behind it"
}

start_charon() {
    local i=$1 ns d
    ns=$(cns "$i")
    d=$DIR/c$i
    mkdir -p "$d/run"
    cat >"$d/strongswan.conf" <<EOF
charon {
  load_modular = no
  load = random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey constraints revocation kernel-libipsec kernel-netlink socket-default vici
  rsa_pss = yes
  plugins {
    vici {
      socket = unix://$d/charon.vici
    }
  }
  retransmit_tries = 3
  retransmit_timeout = 1
  filelog {
    main {
      path = $d/charon.log
      default = 1
      ike = 2
      cfg = 1
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
    if [ "$SCENARIO" = concentrator ]; then conf_cert "$i"; else cat >"$d/swanctl.conf" <<EOF
connections {
  rw {
    version = 2
    local_addrs = 198.51.100.1$i
    remote_addrs = 192.0.2.1
    proposals = aes256gcm16-prfsha256-ecp256
    dpd_delay = 0
    local {
      auth = psk
      id = "$(id_of "$i")"
    }
    remote {
      auth = psk
      id = gw.example
    }
    children {
      rw {
        local_ts = $(inner_of "$i").0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = aes256gcm16
      }
    }
  }
}
secrets {
  ike-rw {
    id = "$(id_of "$i")"
    secret = "$(psk_of "$i")"
  }
}
EOF
    fi
    ip netns exec "$ns" env STRONGSWAN_CONF="$d/strongswan.conf" unshare --mount --propagation private -- \
        sh -c "mount --bind '$d/run' /run && exec /usr/lib/ipsec/charon" >"$d/charon.out" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 50); do [ -S "$d/charon.vici" ] && break; sleep 0.1; done
    [ -S "$d/charon.vici" ] || { cat "$d/charon.out" "$d/charon.log"; echo "charon c$i did not start"; exit 1; }
    in_ns "$ns" swanctl --load-all --file "$d/swanctl.conf" --uri "unix://$d/charon.vici" >"$d/load.log" 2>&1 ||
        { cat "$d/load.log"; fail "swanctl --load-all on c$i"; }
}

swan() { local i=$1; shift; in_ns "$(cns "$i")" swanctl "$@" --uri "unix://$DIR/c$i/charon.vici"; }

# gateway_base CONTROL_EXTRA: espresso's interfaces, route and neighbour
# (hostA's LAN, the WAN to the NAT), common to both scenarios; the
# caller appends its [[tunnel]].
gateway_base() {
    cat <<EOF
[dataplane]
workers = 1
memory_mb = 256
mbufs = 4095
[control]
socket = "$DIR/gw-a.sock"
log = "info"
$1
[[interface]]
name = "lan"
device = "net_af_packet0,iface=lan0,framecnt=2048"
role = "lan"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "wan"
device = "net_af_packet1,iface=wan0,qdisc_bypass=0,framecnt=2048"
role = "wan"
addresses = ["192.0.2.1/24"]
[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.2"
interface = "wan"
[[neighbour]]
address = "192.0.2.2"
mac = "02:00:00:00:b0:02"
interface = "wan"
EOF
}

write_espresso() {
    {
        gateway_base ""
        cat <<EOF
[[tunnel]]
name = "branches"
local_addrs = "192.0.2.1"
remote_addrs = "%any"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.9.0.0/16"
  [tunnel.ike]
  local_id = "gw.example"
  remote_id = "*@branches.example"
  proposals = ["aes256gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes256gcm16"]
[[tunnel]]
name = "dn"
local_addrs = "192.0.2.1"
remote_addrs = "%any"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.8.0.0/16"
  [tunnel.ike]
  local_id = "gw.example"
  remote_id = "C=DE, O=Example, CN=*"
  proposals = ["aes256gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes256gcm16"]
[[secret]]
id = "C=DE, O=Example, CN=erin"
psk = "$PSK5"
[[secret]]
id = "alice@branches.example"
psk = "$PSK1"
[[secret]]
id = "bob@branches.example"
psk = "$PSK2"
[[secret]]
id = "carol@branches.example"
psk = "$PSK3"
EOF
    } >"$DIR/gw-a.toml"
}

start_espresso() {
    "$BIN" check -c "$DIR/gw-a.toml" >"$DIR/check.out" 2>&1 || { cat "$DIR/check.out"; fail "espresso check"; exit 1; }
    ip netns exec $NS_GA "$BIN" run -c "$DIR/gw-a.toml" >"$DIR/gw-a.out" 2>"$DIR/gw-a.log" &
    GW_PID=$!
    for _ in $(seq 100); do
        grep -q "espresso running" "$DIR/gw-a.log" 2>/dev/null && return 0
        kill -0 "$GW_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$DIR/gw-a.log"; echo "espresso did not start"; exit 1
}

tunnels() { "$BIN" tunnels -c "$DIR/gw-a.toml"; }
stats() { "$BIN" stats -c "$DIR/gw-a.toml"; }

# tcp_transfers SRC: clients 1-3 each fetch 2 MB from hostA over TCP at
# the same time, from the address `SRC i` prints (its inner address or
# virtual IP); each SHA-256 is compared.
tcp_transfers() {
    local src=$1
    head -c 2000000 /dev/urandom >"$DIR/blob"
    local want
    want=$(sha256sum "$DIR/blob" | cut -d' ' -f1)
    in_ns "$NS_HA" /usr/bin/python3 - "$DIR/blob" >"$DIR/tcp-server.log" 2>&1 <<'PY' &
import socket, sys, threading
data = open(sys.argv[1], "rb").read()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.1.0.10", 5001)); s.listen(8); s.settimeout(30)
def serve(c):
    with c:
        c.sendall(data)
for _ in range(3):
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,)).start()
PY
    local server=$!
    sleep 0.5
    local pids=()
    for i in 1 2 3; do
        in_ns "$(cns "$i")" /usr/bin/python3 -c '
import hashlib, socket, sys
s = socket.create_connection(("10.1.0.10", 5001), timeout=20, source_address=(sys.argv[1], 0))
h = hashlib.sha256()
while True:
    b = s.recv(65536)
    if not b: break
    h.update(b)
print(h.hexdigest())
' "$($src "$i")" >"$DIR/c$i/tcp.sha" 2>"$DIR/c$i/tcp.err" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    wait "$server" 2>/dev/null || true
    for i in 1 2 3; do
        if [ "$(cat "$DIR/c$i/tcp.sha" 2>/dev/null)" = "$want" ]; then ok "c$i: 2 MB over TCP from hostA to $($src "$i"), SHA-256 matches"
        else fail "c$i: TCP transfer: got '$(cat "$DIR/c$i/tcp.sha" 2>/dev/null)' $(tail -1 "$DIR/c$i/tcp.err" 2>/dev/null)"; fi
    done
}

# The inner address of client i (the PSK scenario's).
inner_addr() { echo "$(inner_of "$1").1"; }

scenario_roadwarrior() {
    say "network"
    setup_network
    say "espresso (two templates on one address, secrets by identity) and five charons"
    write_espresso
    start_espresso
    for i in $CLIENTS; do start_charon "$i"; done
    ok "espresso and charons c1-c5 up"

    say "c1-c3 connect at once through the NAT"
    for i in 1 2 3; do swan "$i" --initiate --child rw >"$DIR/c$i/initiate.log" 2>&1 & PIDS+=("$!"); done
    local n=0
    for _ in $(seq 100); do
        n=$(tunnels | grep -c '^  peer ' || true)
        [ "$n" = 3 ] && break
        sleep 0.1
    done
    sleep 0.5
    tunnels | sed 's/^/    | /'
    if [ "$n" = 3 ]; then ok "espresso lists 3 peers of template branches"; else fail "espresso lists $n peers, expected 3"; fi
    local i ids peerline
    for i in 1 2 3; do
        peerline=$(tunnels | grep "^  peer ${NAMES[$i]}@branches.example " || true)
        if [ -n "$peerline" ] && echo "$peerline" | grep -q '192.0.2.2:'; then
            ok "c$i is a peer by its identity, behind the NAT: $peerline"
        else
            fail "no peer line for ${NAMES[$i]}@branches.example from 192.0.2.2"
        fi
        if swan "$i" --list-sas 2>/dev/null | grep -q INSTALLED; then ok "c$i: Child SA installed (charon)"
        else fail "c$i: no Child SA installed"; tail -5 "$DIR/c$i/charon.log"; fi
    done
    # Each client's Child SA is narrowed to its own inner network.
    local json
    json=$("$BIN" --json tunnels -c "$DIR/gw-a.toml")
    if echo "$json" | /usr/bin/python3 -c '
import json, sys
t = [t for t in json.load(sys.stdin) if t["name"] == "branches"][0]
ids = sorted(p["identity"] for p in t["peers"])
assert ids == ["alice@branches.example", "bob@branches.example", "carol@branches.example"], ids
assert all(len(p["child_sas"]) == 1 and p["auth"] == "psk" for p in t["peers"]), t["peers"]
ports = {p["ike_sa"]["remote"] for p in t["peers"]}
assert len(ports) == 3, ports
'; then ok "JSON: three identities, three NAT-mapped address:ports, one Child SA each, auth psk"
    else fail "JSON tunnels view: $json"; fi

    say "pings from each client to hostA"
    local out
    for i in 1 2 3; do
        out=$(in_ns "$(cns "$i")" ping -c 3 -i 0.2 -W 1 -I 10.9.$i.1 10.1.0.10 2>&1 || true)
        echo "    c$i: $(echo "$out" | grep -o '[0-9]* packets transmitted, [0-9]* received' || echo "$out" | tail -1)"
    done
    # espresso's inbound counters per peer Child SA: every client's
    # requests were decrypted on its own SA.
    json=$("$BIN" --json child-sas -c "$DIR/gw-a.toml")
    if echo "$json" | /usr/bin/python3 -c '
import json, sys
sas = [c for c in json.load(sys.stdin) if c["tunnel"] == "branches"]
got = [c.get("inbound", {}).get("packets", 0) for c in sas]
assert len(sas) == 3 and all(n >= 3 for n in got), got
print(" ".join(map(str, got)))
' >"$DIR/inbound.txt"; then ok "espresso decrypted each client's pings on its own Child SA (inbound packets: $(cat "$DIR/inbound.txt"))"
    else fail "inbound counters per Child SA: $json"; fi
    # Per-peer return routes: every client gets its own replies.
    for i in 1 2 3; do
        if out=$(in_ns "$(cns "$i")" ping -c 5 -i 0.2 -W 2 -I 10.9.$i.1 10.1.0.10 2>&1) \
            && echo "$out" | grep -q ' 0% packet loss'; then
            ok "round trip c$i -> hostA on its own return route: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
        else
            fail "round trip c$i -> hostA: $(echo "$out" | tail -2)"
        fi
    done
    json=$("$BIN" --json child-sas -c "$DIR/gw-a.toml")
    if echo "$json" | /usr/bin/python3 -c '
import json, sys
sas = [c for c in json.load(sys.stdin) if c["tunnel"] == "branches"]
got = [c.get("outbound", {}).get("packets", 0) for c in sas]
assert len(sas) == 3 and all(n >= 5 for n in got), got
print(" ".join(map(str, got)))
' >"$DIR/outbound.txt"; then ok "espresso encrypted replies on each client's own Child SA (outbound packets: $(cat "$DIR/outbound.txt"))"
    else fail "outbound counters per Child SA: $json"; fi

    say "a TCP transfer per client, at the same time, SHA-256 checked"
    tcp_transfers inner_addr

    say "c4 presents an identity with no secret"
    swan 4 --initiate --child rw >"$DIR/c4/initiate.log" 2>&1 || true
    sleep 0.5
    if grep -q 'AUTHENTICATION_FAILED' "$DIR/c4/initiate.log" "$DIR/c4/charon.log"; then ok "c4 got AUTHENTICATION_FAILED"
    else fail "c4 was not refused with AUTHENTICATION_FAILED"; tail -5 "$DIR/c4/initiate.log"; fi
    local refused
    refused=$(stats | awk '$1 == "ike.branches.auth_refused_unknown_identity" {print $2}')
    if [ "${refused:-0}" -ge 1 ] && ! tunnels | grep -q '^  peer dave@'; then
        ok "espresso stats: ike.branches.auth_refused_unknown_identity $refused; dave has no SA"
    else
        fail "refusal of dave not counted (${refused:-none}) or dave has an SA"; stats | grep auth_refused
    fi
    n=$(tunnels | grep -c '^  peer ' || true)
    [ "$n" = 3 ] && ok "the three peers stay" || fail "$n peers after the refusal"

    say "c5 presents a DN: the second template on the address takes it"
    swan 5 --initiate --child rw >"$DIR/c5/initiate.log" 2>&1 || true
    local dnpeer handoffs
    dnpeer=$(tunnels | awk '/^tunnel dn /{t=1; next} /^tunnel /{t=0} t && /^  peer /' || true)
    handoffs=$(stats | awk '$1 == "ike.branches.handoffs" {print $2}')
    if echo "$dnpeer" | grep -q 'peer C=DE, O=Example, CN=erin 192.0.2.2:' && [ "${handoffs:-0}" = 1 ]; then
        ok "template dn has the peer: $dnpeer (ike.branches.handoffs $handoffs)"
    else
        fail "no DN peer on template dn ('$dnpeer', handoffs ${handoffs:-none})"; tunnels | sed 's/^/    | /'
    fi
    if out=$(in_ns "$(cns 5)" ping -c 3 -i 0.2 -W 2 -I 10.8.5.1 10.1.0.10 2>&1); then
        ok "round trip c5 -> hostA through template dn: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
    else
        fail "ping c5 -> hostA: $(echo "$out" | tail -2)"
    fi
}

# ------------------------------------------------------------ concentrator

# make_ca: a test CA (ECDSA P-256, openssl at run time) and a certificate
# per client (subjectAltName e-mail = its identity) of its key type, one
# for espresso (gw.example), and a CRL revoking c4's. Keys PKCS#8 PEM, 0600.
make_ca() {
    local c=$DIR/pki i kt
    mkdir -p "$c"; chmod 700 "$c"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$c/ca.key" \
        -out "$c/ca.pem" -days 7 -subj "/O=Espresso test/CN=Espresso Test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    for i in gw $CLIENTS; do
        if [ "$i" = gw ]; then kt=ecdsa; else kt=${KEYS[$i]}; fi
        case $kt in
            ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$c/$i.key" ;;
            ed25519) openssl genpkey -algorithm ED25519 -out "$c/$i.key" ;;
            rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$c/$i.key" 2>/dev/null ;;
        esac
        chmod 600 "$c/$i.key"
        if [ "$i" = gw ]; then
            openssl req -new -key "$c/$i.key" -subj "/O=Espresso test/CN=gw.example" -out "$c/$i.csr"
            printf 'subjectAltName=DNS:gw.example\nkeyUsage=critical,digitalSignature\n' >"$c/ext"
        else
            openssl req -new -key "$c/$i.key" -subj "/O=Espresso test/CN=$(id_of "$i")" -out "$c/$i.csr"
            printf 'subjectAltName=email:%s\nkeyUsage=critical,digitalSignature\n' "$(id_of "$i")" >"$c/ext"
        fi
        openssl x509 -req -in "$c/$i.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
            -days 7 -sha256 -extfile "$c/ext" -out "$c/$i.pem" 2>/dev/null
    done
    : >"$c/index.txt"; echo 01 >"$c/crlnumber"
    printf '[ca]\ndefault_ca = test\n[test]\ndatabase = %s/index.txt\ncrlnumber = %s/crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n' "$c" "$c" >"$c/ca.cnf"
    openssl ca -config "$c/ca.cnf" -keyfile "$c/ca.key" -cert "$c/ca.pem" -revoke "$c/4.pem" 2>/dev/null
    openssl ca -config "$c/ca.cnf" -keyfile "$c/ca.key" -cert "$c/ca.pem" -gencrl -out "$c/ca.crl" 2>/dev/null
    ok "test CA ($(openssl version | cut -d' ' -f1-2)): c1 ECDSA P-256, c2 RSA-2048, c3 Ed25519, c4 ECDSA (revoked, serial $(openssl x509 -noout -serial -in "$c/4.pem" | cut -d= -f2)), c5 ECDSA mallory@elsewhere.example"
}

# conf_cert I: client I authenticates with its certificate, asks for a
# virtual IP and wants espresso's certificate from the test CA.
conf_cert() {
    local i=$1 d=$DIR/c$1 c=$DIR/pki
    cat >"$d/swanctl.conf" <<EOF
connections {
  rw {
    version = 2
    local_addrs = 198.51.100.1$i
    remote_addrs = 192.0.2.1
    proposals = aes256gcm16-prfsha256-ecp256
    dpd_delay = 0
    vips = 0.0.0.0
    local {
      auth = pubkey
      certs = $c/$i.pem
      id = "$(id_of "$i")"
    }
    remote {
      auth = pubkey
      cacerts = $c/ca.pem
      id = gw.example
    }
    children {
      rw {
        remote_ts = 10.1.0.0/24
        esp_proposals = aes256gcm16
      }
    }
  }
}
EOF
    # swanctl --file loads private keys from private/ next to the file.
    mkdir -p "$d/private"; chmod 700 "$d/private"
    cp "$c/$i.key" "$d/private/c$i.key"
}

write_espresso_concentrator() {
    local c=$DIR/pki
    {
        gateway_base "state_dir = \"$DIR/state\""
        cat <<EOF
[[tunnel]]
name = "roadwarriors"
local_addrs = "192.0.2.1"
remote_addrs = "%any"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.3.0.0/24"
  [tunnel.ike]
  local_id = "gw.example"
  remote_id = "*@branches.example"
  local_auth = "pubkey"
  remote_auth = "pubkey"
  certificate = "$c/gw.pem"
  private_key = "$c/gw.key"
  ca_certificates = ["$c/ca.pem"]
  crls = ["$c/ca.crl"]
  proposals = ["aes256gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes256gcm16"]
  keylog_dir = "$DIR/keylog"
  pools = ["ra"]
[[pool]]
name = "ra"
addrs = ["10.3.0.0/24"]
dns = ["10.1.0.53"]
EOF
    } >"$DIR/gw-a.toml"
}

# The virtual IP charon installed in client I's namespace (from the pool).
vip_in() { in_ns "$(cns "$1")" ip -4 -o addr show | grep -o '10\.3\.0\.[0-9]*' | head -1; }

scenario_concentrator() {
    say "network, test CA, capture on espresso's WAN"
    setup_network
    make_ca
    in_ns $NS_GA bash -c "trap - INT; exec tshark -q -n -i wan0 -w '$DIR/wan.pcapng' 2>'$DIR/tshark.log'" &
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    for _ in $(seq 50); do grep -q "Capturing on" "$DIR/tshark.log" 2>/dev/null && break; sleep 0.1; done
    say "espresso (template, certificates, CRL, [[pool]] 10.3.0.0/24) and five charons"
    write_espresso_concentrator
    start_espresso
    for i in $CLIENTS; do start_charon "$i"; done
    ok "espresso and charons c1-c5 up"

    say "c1 (ECDSA), c2 (RSA-PSS), c3 (Ed25519) connect at once through the NAT, vips = 0.0.0.0"
    for i in 1 2 3; do swan "$i" --initiate --child rw --timeout 15 >"$DIR/c$i/initiate.log" 2>&1 & PIDS+=("$!"); done
    local n=0
    for _ in $(seq 150); do
        n=$(tunnels | grep -c '^  peer ' || true)
        [ "$n" = 3 ] && break
        sleep 0.1
    done
    sleep 1
    tunnels | tee "$DIR/tunnels.txt" | sed 's/^/    | /'
    if [ "$n" = 3 ]; then ok "espresso lists 3 peers of template roadwarriors"; else fail "espresso lists $n peers, expected 3"; fi
    local i out vips=""
    for i in 1 2 3; do
        swan "$i" --list-sas >"$DIR/c$i/list-sas.txt" 2>&1 || true
        if grep -q INSTALLED "$DIR/c$i/list-sas.txt"; then ok "c$i: Child SA installed (charon)"
        else fail "c$i: no Child SA installed"; tail -5 "$DIR/c$i/charon.log"; fi
        local v; v=$(vip_in "$i")
        if [ -n "$v" ] && grep -q "$v/32" "$DIR/c$i/list-sas.txt"; then ok "c$i ($(id_of "$i"), ${KEYS[$i]}): virtual IP $v, in its Child SA's selectors"
        else fail "c$i: virtual IP '$v' not installed or not in its Child SA"; fi
        vips="$vips $v"
        echo "$i $v" >>"$DIR/vips.txt"
    done
    local json
    json=$("$BIN" --json tunnels -c "$DIR/gw-a.toml")
    if echo "$json" | /usr/bin/python3 -c '
import json, sys
want = dict(l.split() for l in open(sys.argv[1]) if len(l.split()) == 2)
t = [t for t in json.load(sys.stdin) if t["name"] == "roadwarriors"][0]
ids = sorted(p["identity"] for p in t["peers"])
assert ids == ["alice@branches.example", "bob@branches.example", "carol@branches.example"], ids
assert all(p["auth"] == "pubkey" and len(p["child_sas"]) == 1 for p in t["peers"]), t["peers"]
vs = {p["identity"].split("@")[0]: p["ike_sa"]["virtual_ips"] for p in t["peers"]}
assert all(len(v) == 1 for v in vs.values()), vs
flat = sorted(v[0] for v in vs.values())
assert len(set(flat)) == 3, vs
assert sorted(want.values()) == flat, (flat, want)
print(" ".join(f"{k} {v[0]}" for k, v in sorted(vs.items())))
' "$DIR/vips.txt" >"$DIR/espresso-vips.txt" 2>"$DIR/espresso-vips.err"; then
        ok "espresso: three identities by certificate, three distinct virtual IPs, the ones the charons installed: $(cat "$DIR/espresso-vips.txt")"
    else fail "JSON tunnels view (peers, vips): $(tail -1 "$DIR/espresso-vips.err") $json"; fi

    say "pings from each client's virtual IP to hostA"
    for i in 1 2 3; do
        local v; v=$(vip_in "$i")
        if out=$(in_ns "$(cns "$i")" ping -c 5 -i 0.2 -W 2 -I "$v" 10.1.0.10 2>&1) && echo "$out" | grep -q ' 0% packet loss'; then
            ok "round trip c$i ($v) -> hostA: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
        else
            fail "round trip c$i ($v) -> hostA: $(echo "$out" | tail -2 | tr '\n' ' ')"
        fi
    done

    say "a TCP transfer per client, at the same time, SHA-256 checked"
    tcp_transfers vip_in

    say "c4: certificate revoked in espresso's CRL"
    swan 4 --initiate --child rw --timeout 10 >"$DIR/c4/initiate.log" 2>&1 || true
    sleep 0.5
    local revoked
    revoked=$(stats | awk '$1 == "ike.roadwarriors.cert_revoked" {print $2}')
    if [ "${revoked:-0}" -ge 1 ] && ! tunnels | grep -q '^  peer dave@' && grep -q 'AUTHENTICATION_FAILED' "$DIR/c4/initiate.log" "$DIR/c4/charon.log"; then
        ok "c4 refused (AUTHENTICATION_FAILED), espresso stats: ike.roadwarriors.cert_revoked $revoked; dave has no SA"
    else
        fail "c4 (revoked): cert_revoked '${revoked:-none}', $(tunnels | grep -c '^  peer dave@' || true) SAs"; stats | grep -E 'cert_|auth_' || true
    fi
    say "c5: a certificate from the CA, an identity no template takes"
    swan 5 --initiate --child rw --timeout 10 >"$DIR/c5/initiate.log" 2>&1 || true
    sleep 0.5
    local unknown
    unknown=$(stats | awk '$1 == "ike.roadwarriors.auth_refused_identity" {print $2}')
    if [ "${unknown:-0}" -ge 1 ] && ! tunnels | grep -q '^  peer mallory@' && grep -q 'AUTHENTICATION_FAILED' "$DIR/c5/initiate.log" "$DIR/c5/charon.log"; then
        ok "c5 refused (AUTHENTICATION_FAILED), espresso stats: ike.roadwarriors.auth_refused_identity $unknown; mallory has no SA"
    else
        fail "c5 (unknown identity): auth_refused_identity '${unknown:-none}'"; stats | grep -E 'cert_|auth_' || true
    fi
    n=$(tunnels | grep -c '^  peer ' || true)
    [ "$n" = 3 ] && ok "the three peers stay" || fail "$n peers after the refusals"
    stats | grep -E 'roadwarriors\.(cert_|auth_)' >"$DIR/stats.txt" || true

    say "WAN capture: IKE and ESP decrypted by tshark with espresso's key log"
    sleep 0.3
    # A background job ignores SIGINT sent to it; tshark's own command line is unique by $DIR.
    pkill -INT -f "tshark -q -n -i wan0 -w $DIR/wan.pcapng" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    mkdir -p "$DIR/wireshark"
    cat "$DIR"/keylog/ikev2_decryption_table >"$DIR/wireshark/ikev2_decryption_table" 2>/dev/null || true
    cat "$DIR"/keylog/esp_sa >"$DIR/wireshark/esp_sa" 2>/dev/null || true
    local ts="tshark -n -r $DIR/wan.pcapng -o esp.enable_encryption_decode:TRUE -o tcp.desegment_tcp_streams:FALSE -T fields -e frame.number"
    esp_icv_check "$DIR/wan.pcapng" "$DIR/wireshark" 100 || true
    local certs ids icmp tcp plain
    certs=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark $ts -Y 'isakmp.cert.encoding == 4' 2>/dev/null | wc -l || true)
    ids=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark $ts -Y 'isakmp.id.type == 3' 2>/dev/null | wc -l || true)
    icmp=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark $ts -Y 'esp && icmp && ip.src == 10.3.0.0/24' 2>/dev/null | wc -l || true)
    tcp=$(WIRESHARK_CONFIG_DIR=$DIR/wireshark $ts -Y 'esp && tcp && ip.dst == 10.3.0.0/24' 2>/dev/null | wc -l || true)
    plain=$(tshark -n -r "$DIR/wan.pcapng" -Y '(ip.src == 10.0.0.0/8 || ip.dst == 10.0.0.0/8) && !esp && !udp' 2>/dev/null | wc -l || true)
    # Espresso logs the keys of the IKE SAs it establishes: the three
    # clients' IKE_AUTH (CERT, e-mail identity) and its answers (CERT).
    if [ "$certs" -ge 6 ] && [ "$ids" -ge 3 ]; then ok "IKE decrypted: $certs IKE_AUTH messages with an X.509 CERT, $ids with an RFC 822 identity"
    else fail "IKE decrypted: only $certs CERT / $ids RFC 822 identities (want 6 / 3)"; fi
    if [ "$icmp" -ge 15 ] && [ "$tcp" -ge 30 ]; then ok "ESP decrypted: $icmp ICMP packets from virtual IPs, $tcp TCP segments to virtual IPs"
    else fail "ESP decrypted: only $icmp ICMP / $tcp TCP inner packets"; fi
    [ "$plain" = 0 ] && ok "no unencrypted host traffic on the WAN" || fail "$plain unencrypted host packets on the WAN"
}

case "$SCENARIO" in
    roadwarrior) scenario_roadwarrior ;;
    concentrator) scenario_concentrator ;;
    *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac

if [ $FAILED = 0 ]; then say "$SCENARIO: all checks passed"; else
    say "$SCENARIO: FAILED"
    tail -20 "$DIR/gw-a.log"
    exit 1
fi
