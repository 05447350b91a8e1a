#!/bin/bash
# gateway.sh SITE: an Espresso gateway of the lab (SITE a or b). Finds the
# container interfaces docker gave the gateway's addresses, takes them from
# the kernel (Espresso answers for them on its AF_PACKET ports), turns their
# offloads off, writes /etc/espresso/espresso.toml from /lab/gw-SITE.toml
# and runs Espresso in the foreground.
set -euo pipefail
site=$1
case $site in
    a) lan=10.1.0.1 wan=198.51.100.1 ;;
    b) lan=10.2.0.1 wan=198.51.100.2 ;;
    *) echo "gateway.sh: site a or b" >&2; exit 2 ;;
esac
dev_of() { ip -o -4 addr show | awk -v a="$1" '{split($4, p, "/"); if (p[1] == a) print $2}'; }
lan_if=$(dev_of $lan) wan_if=$(dev_of $wan)
[ -n "$lan_if" ] && [ -n "$wan_if" ] || { echo "gateway.sh: no interface with $lan or $wan" >&2; ip -o addr show >&2; exit 1; }
for dev in "$lan_if" "$wan_if"; do
    ip addr flush dev "$dev"
    # AF_PACKET must see every frame as it is on the wire: no receive
    # coalescing (GRO), no segmentation or checksum left to "hardware".
    ethtool -K "$dev" rx off tx off sg off tso off gso off gro off >/dev/null 2>&1 \
        || ethtool -K "$dev" tx off gro off >/dev/null
done
echo "gateway $site: lan $lan_if, wan $wan_if"
printf 'LAN_IF=%s\nWAN_IF=%s\n' "$lan_if" "$wan_if" >/run/espresso/lab.env
sed -e "s/@LAN_IF@/$lan_if/" -e "s/@WAN_IF@/$wan_if/" "/lab/gw-$site.toml" >/etc/espresso/espresso.toml
espresso check -c /etc/espresso/espresso.toml
exec espresso run -c /etc/espresso/espresso.toml
