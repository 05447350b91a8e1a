#!/bin/sh
# host.sh ADDRESS GATEWAY: a lab host. Its traffic goes through the Espresso
# gateway at GATEWAY, never through the docker bridge's address.
set -eu
addr=$1 gw=$2
dev=$(ip -o -4 addr show | awk -v a="$addr" '{split($4, p, "/"); if (p[1] == a) print $2}')
[ -n "$dev" ] || { echo "host.sh: no interface has $addr" >&2; exit 1; }
# veth leaves TCP/UDP checksums to "hardware" (CHECKSUM_PARTIAL), which an
# AF_PACKET reader such as DPDK's net_af_packet would see unfinished: have
# this kernel compute them.
ethtool -K "$dev" tx off >/dev/null
ip route replace default via "$gw" dev "$dev"
echo "host $addr on $dev, default route via $gw"
exec sleep infinity
