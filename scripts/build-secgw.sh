#!/usr/bin/env bash
# Builds DPDK's ipsec-secgw example for the benchmark lab (make secgw):
# the lab's reference IPsec gateway, measured next to Espresso on the same
# pcaps and SAs (benches/lab/src/secgw.rs).
#
# Debian ships DPDK's libraries but not its example sources, so this
# fetches the source package of exactly the installed libdpdk-dev version
# (`apt-get source --download-only`, through a private sources list and
# lists directory: /etc/apt is left untouched), applies the one change the
# lab needs, builds it with the example's own Makefile (pkg-config libdpdk)
# and caches the binary under $SECGW_CACHE (default
# target/ipsec-secgw-<version>/). It rebuilds only when the binary is
# missing or libdpdk-dev's version changed. Nothing of DPDK's is committed.
#
# The one change: ipsec-secgw asks every port for RX checksum offload
# (`.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,` in port_conf.rxmode), which the
# software PMDs the lab runs on (net_pcap, net_null) do not have, so it
# refuses to start. The application never reads the RX checksum flags, so
# asking for no RX offload changes nothing it computes.
#
# Usage: scripts/build-secgw.sh [--print-path]
#   --print-path  print where the cached binary is (or would be) and exit.
set -euo pipefail

cd "$(dirname "$0")/.."
say() { echo "build-secgw: $*" >&2; }
die() { echo "build-secgw: error: $*" >&2; exit 1; }

version=$(dpkg-query -W -f='${Version}' libdpdk-dev 2>/dev/null) ||
	die "libdpdk-dev is not installed (make deps)"
[ -n "$version" ] || die "libdpdk-dev is not installed (make deps)"
# A path-safe form of the Debian version (an epoch's ':' would not be).
safe_version=${version//[:~]/_}
cache=${SECGW_CACHE:-target/ipsec-secgw-$safe_version}
bin=$cache/ipsec-secgw

if [ "${1:-}" = --print-path ]; then
	echo "$bin"
	exit 0
fi

if [ -x "$bin" ] && [ "$(cat "$cache/VERSION" 2>/dev/null)" = "$version" ]; then
	say "cached: $bin (DPDK $version)"
	exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found: this script fetches Debian's dpdk source package"
command -v pkg-config >/dev/null && pkg-config --exists libdpdk ||
	die "pkg-config does not find libdpdk (make deps)"

work=$(mktemp -d "${TMPDIR:-/tmp}/espresso-secgw.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "building ipsec-secgw for libdpdk-dev $version in $work"

# A private apt configuration: the system's sources with deb-src added,
# its own lists and caches. Nothing under /etc/apt or /var/lib/apt changes.
mkdir -p "$work/apt/sources.list.d" "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
: >"$work/apt/sources.list"
if [ -f /etc/apt/sources.list ]; then
	sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list >>"$work/apt/sources.list"
fi
for f in /etc/apt/sources.list.d/*.sources; do
	[ -e "$f" ] || continue
	sed 's/^Types:.*/Types: deb-src/' "$f" >"$work/apt/sources.list.d/$(basename "$f")"
done
for f in /etc/apt/sources.list.d/*.list; do
	[ -e "$f" ] || continue
	sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >"$work/apt/sources.list.d/$(basename "$f")"
done
apt_opts=(
	-o "Dir::Etc::SourceList=$work/apt/sources.list"
	-o "Dir::Etc::SourceParts=$work/apt/sources.list.d"
	-o "Dir::State::Lists=$work/apt/lists"
	-o "Dir::Cache=$work/apt/cache"
	-o "Dir::Cache::pkgcache="
	-o "Dir::Cache::srcpkgcache="
	-o "APT::Sandbox::User=root"
)
say "apt-get update (private deb-src lists)"
apt-get "${apt_opts[@]}" -qq update || die "apt-get update of the deb-src lists failed"
say "apt-get source --download-only dpdk=$version"
(cd "$work" && apt-get "${apt_opts[@]}" -qq source --download-only "dpdk=$version") ||
	die "no source package dpdk=$version in the configured Debian archives"

upstream=${version#*:}
upstream=${upstream%-*}
tarball=$work/dpdk_$upstream.orig.tar.xz
[ -f "$tarball" ] || die "expected $tarball; apt-get fetched: $(ls "$work")"
say "extracting examples/ipsec-secgw and examples/common from $(basename "$tarball")"
mkdir "$work/src"
tar -xJf "$tarball" -C "$work/src" --strip-components=1 --wildcards \
	'*/examples/ipsec-secgw/*' '*/examples/common/*' ||
	die "the tarball has no examples/ipsec-secgw"
app=$work/src/examples/ipsec-secgw

# The patch, refused loudly if the line is not there exactly once.
pattern='		.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,'
n=$(grep -cxF "$pattern" "$app/ipsec-secgw.c" || true)
[ "$n" = 1 ] || die "patch: expected the line '$pattern' (port_conf.rxmode) once in ipsec-secgw.c, found it $n times; DPDK $version needs the lab's patch updated"
sed -i 's|^\t\t\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,$|\t\t.offloads = 0, /* espresso lab: software PMDs have no RX checksum offload */|' "$app/ipsec-secgw.c"
grep -qF '.offloads = 0, /* espresso lab' "$app/ipsec-secgw.c" || die "patch did not apply"
say "patched: RX checksum offload no longer required"

say "make -C examples/ipsec-secgw"
make -s -C "$app" -j"$(nproc)" >"$work/make.log" 2>&1 || {
	tail -n 30 "$work/make.log" >&2
	die "building ipsec-secgw failed"
}
[ -x "$app/build/ipsec-secgw" ] || die "the build produced no build/ipsec-secgw"

mkdir -p "$cache"
install -m 0755 "$app/build/ipsec-secgw" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$version" >"$cache/VERSION"
say "built: $bin (DPDK $version, RX checksum offload patched out)"
