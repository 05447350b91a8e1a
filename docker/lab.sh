#!/usr/bin/env bash
# The compose lab end to end (`make compose-demo`, and the test in
# control/tests/compose.rs): builds the image, brings docker/compose.yaml
# up, waits for the IKE SA, checks the tunnel and tears everything down,
# also on failure.
#
#   hostA 10.1.0.10 -- [gwA] 198.51.100.1 == wan == 198.51.100.2 [gwB] -- 10.2.0.20 hostB
#
# Checks: IKE SA and Child SA up on both gateways; hostA pings hostB; gwA
# counts the pings encapsulated and gwB decapsulated; a tcpdump on gwB's
# WAN interface sees ESP and no ICMP in clear; both gateways stop cleanly
# on SIGTERM with every mbuf back in its pool.
#
# Environment:
#   ESPRESSO_BIN=PATH  package this binary (built on this Debian 12 host)
#                      instead of compiling in the image (docker/build.sh)
#   KEEP=1             leave the lab running (the printed command removes it)
# Exit status 0 means every check passed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ID=$$
PROJECT=espresso-lab-$ID
COMPOSE_FILE=$ROOT/docker/compose.yaml
DIR=$(mktemp -d /tmp/espresso-lab.XXXXXX)
FAILED=0
T0=$SECONDS

say() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAIL: %s\n' "$*"; FAILED=1; }

if command -v docker-compose >/dev/null; then COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
else echo "lab.sh: needs docker-compose or the docker compose plugin" >&2; exit 1; fi
dc() { "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
# A command in a lab container, without a terminal (`docker exec`: compose's
# own exec costs a second or more each).
declare -A CID
in_lab() { local svc=$1; shift; docker exec -i "${CID[$svc]}" "$@"; }

if [ -n "${ESPRESSO_BIN:-}" ]; then
    IMAGE=espresso:lab-$ID
    OWN_IMAGE=1
else
    IMAGE=${ESPRESSO_IMAGE:-espresso:latest}
    OWN_IMAGE=0
fi
export ESPRESSO_IMAGE=$IMAGE

cleanup() {
    set +e
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept: ${COMPOSE[*]} -p $PROJECT -f $COMPOSE_FILE down -v"
    else
        docker rm -f "$PROJECT-capture" >/dev/null 2>&1
        dc down -v --remove-orphans -t 5 >/dev/null 2>&1
        [ "$OWN_IMAGE" = 1 ] && docker image rm "$IMAGE" >/dev/null 2>&1
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
# Killed (a timeout, Ctrl-C): clean up too; EXIT alone does not fire then.
trap 'exit 130' INT TERM

# The lab's networks have fixed subnets: one lab at a time on a machine,
# and the networks of a run killed before its cleanup removed first.
exec 9>/tmp/espresso-compose-lab.lock
flock -w 900 9 || { echo "lab.sh: another compose lab holds /tmp/espresso-compose-lab.lock" >&2; exit 1; }
remove_stale() {
    local p pid
    for p in $( (docker ps -a --format '{{.Label "com.docker.compose.project"}}'
                 docker network ls --format '{{.Label "com.docker.compose.project"}}') | sort -u); do
        case $p in espresso-lab-*) ;; *) continue ;; esac
        pid=${p#espresso-lab-}
        [[ $pid =~ ^[0-9]+$ ]] && [ ! -d "/proc/$pid" ] || continue
        echo "removing the stale lab $p"
        "${COMPOSE[@]}" -p "$p" -f "$COMPOSE_FILE" down -v --remove-orphans -t 1 >/dev/null 2>&1 || true
    done
}
remove_stale
# Nor may a subnet of the lab be one this machine reaches already: its
# packets would go there.
for net in 10.1.0.0/24 10.2.0.0/24 198.51.100.0/24; do
    if ip -o route show to match "$net" | grep -qv '^default'; then
        echo "lab.sh: this machine already has a route for $net, which the lab uses:" >&2
        ip -o route show to match "$net" >&2
        exit 1
    fi
done

say "image $IMAGE"
t=$SECONDS
if [ -n "${ESPRESSO_BIN:-}" ]; then
    docker/build.sh --binary "$ESPRESSO_BIN"
else
    docker/build.sh
fi
BUILD_S=$((SECONDS - t))

say "lab $PROJECT: hostA - gwA - wan - gwB - hostB (docker/compose.yaml)"
t=$SECONDS
if ! dc up -d >"$DIR/up.log" 2>&1; then
    cat "$DIR/up.log"
    fail "docker-compose up"
    dc logs --no-color >"$DIR/logs.txt" 2>&1; tail -30 "$DIR/logs.txt"
    exit 1
fi
for svc in gwA gwB hostA hostB; do CID[$svc]=$(dc ps -q "$svc"); done
ok "containers up in $((SECONDS - t)) s"

CONF=/etc/espresso/espresso.toml
tunnels() { in_lab "gw$1" espresso tunnels -c "$CONF" 2>/dev/null; }
stats() { in_lab "gw$1" espresso stats -c "$CONF" 2>/dev/null; }
stat_of() { stats "$1" | awk -v k="$2" '$1 == k {print $2}' || true; }

say "IKEv2 (PSK): gwA initiates, gwB listens"
t=$SECONDS
up=0
for _ in $(seq 60); do
    if tunnels A | grep -q '^  child .* active' && tunnels B | grep -q '^  child .* active'; then up=1; break; fi
    sleep 0.5
done
if [ $up = 1 ]; then
    ok "IKE SA and Child SA up on both gateways within $((SECONDS - t + 1)) s"
    tunnels A | sed 's/^/    gwA | /'
else
    fail "the IKE tunnel did not come up in 30 s"
    dc logs --no-color gwA gwB 2>&1 | tail -40
    exit 1
fi

say "ping hostA -> hostB through the tunnel, captured on gwB's WAN interface"
# tcpdump in a container of its own in gwB's network namespace: it needs
# capabilities (setuid to its own user) that the gateway does without.
# gateway.sh wrote the interface names to /run/espresso/lab.env.
wan_if=$(in_lab gwB sh -c '. /run/espresso/lab.env && echo "$WAN_IF"')
docker run --rm --init --name "$PROJECT-capture" --network "container:${CID[gwB]}" \
    --cap-drop ALL --cap-add NET_RAW --cap-add SETUID --cap-add SETGID \
    --entrypoint timeout "$IMAGE" 8 tcpdump -i "$wan_if" -nn -p -l ip \
    >"$DIR/wan.txt" 2>"$DIR/tcpdump.err" &
CAP=$!
for _ in $(seq 50); do grep -q "listening on" "$DIR/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
enc0=$(stat_of A total.encapsulated); enc0=${enc0:-0}
if out=$(in_lab hostA ping -c 5 -i 0.2 -W 2 10.2.0.20 2>&1); then
    ok "ping 10.2.0.20: $(echo "$out" | grep -o '[0-9]* received, [0-9.]*% packet loss')"
else
    fail "ping 10.2.0.20"; echo "$out" | tail -3 | sed 's/^/    /'
fi
for _ in $(seq 100); do kill -0 "$CAP" 2>/dev/null || break; sleep 0.1; done
docker rm -f "$PROJECT-capture" >/dev/null 2>&1 || true
wait "$CAP" 2>/dev/null || true
esp=$(grep -c 'ESP(spi=' "$DIR/wan.txt" || true)
clear=$(grep -c 'ICMP echo' "$DIR/wan.txt" || true)
if [ "$esp" -ge 10 ]; then ok "the WAN carried $esp ESP packets (the 5 requests and 5 replies, and any keepalive)"
else fail "only $esp ESP packets on the WAN (want 10)"; head -20 "$DIR/wan.txt" | sed 's/^/    /'; fi
if [ "$clear" = 0 ]; then ok "no ICMP echo in clear on the WAN"
else fail "$clear ICMP echo packets in clear on the WAN"; grep 'ICMP echo' "$DIR/wan.txt" | head -5 | sed 's/^/    /'; fi
grep -m2 'ESP(spi=' "$DIR/wan.txt" | sed 's/^/    wan | /' || true

say "espresso stats"
enc=$(stat_of A total.encapsulated); dec=$(stat_of B total.decapsulated)
if [ $(( ${enc:-0} - enc0 )) -ge 5 ]; then ok "gwA encapsulated ${enc} packets (ESP, $(( enc - enc0 )) during the ping)"
else fail "gwA encapsulated ${enc:-none} packets (${enc0} before the ping; want 5 more)"; fi
if [ "${dec:-0}" -ge 5 ]; then ok "gwB decapsulated $dec packets"; else fail "gwB decapsulated ${dec:-none} packets"; fi
stats A | grep -E '^ike\.site\.(ike_sa|child_sa)_established |^total\.(encapsulated|decapsulated) ' | sed 's/^/    gwA | /' || true

say "stopping the gateways (SIGTERM)"
dc stop -t 10 gwA gwB >/dev/null 2>&1 || true
for g in gwA gwB; do
    logs=$(dc logs --no-color "$g" 2>&1)
    before=$(echo "$logs" | awk '$0 ~ /mempool.free_before/ {print $NF}' | tail -1)
    after=$(echo "$logs" | awk '$0 ~ /mempool.free_after/ {print $NF}' | tail -1)
    if [ -n "$before" ] && [ "$before" = "$after" ]; then ok "$g stopped cleanly, all $before mbufs back in the pool"
    else fail "$g: final counters free_before '$before', free_after '$after'"; echo "$logs" | tail -10 | sed 's/^/    /'; fi
done

say "summary"
echo "    image $IMAGE ($( [ -n "${ESPRESSO_BIN:-}" ] && echo "around $ESPRESSO_BIN" || echo "built by docker/Dockerfile")): ${BUILD_S} s"
echo "    lab: $((SECONDS - T0 - BUILD_S)) s; total $((SECONDS - T0)) s"
if [ $FAILED = 0 ]; then say "compose lab: all checks passed"; else say "compose lab: FAILED"; fi
exit $FAILED
