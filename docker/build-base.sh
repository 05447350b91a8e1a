#!/usr/bin/env bash
# Makes the base images docker/Dockerfile needs on a Docker engine that
# cannot pull from a registry, from Debian's packages and this machine's
# Rust toolchain:
#
#   espresso-base:bookworm     Debian 12, a minimal root file system made by
#                              mmdebstrap (what debian:12-slim is: apt and
#                              the essential packages, no documentation)
#   espresso-builder:bookworm  that, plus the -dev packages the build needs
#                              and the Rust toolchain `rustc --print sysroot`
#                              names (the workspace needs Rust 1.88 or newer;
#                              Debian 12's rustc is 1.63)
#
# Usage: docker/build-base.sh [--force] [--base-only]
# Each image is made only when missing (--force: always); --base-only skips
# the builder (docker/build.sh --binary needs none). Takes a few minutes
# the first time (mostly apt downloads).
#
# With a registry none of this is needed: build with
#   --build-arg BASE=debian:12-slim --build-arg BUILDER=rust:1.88-bookworm
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-espresso-base:bookworm}
BUILDER_IMAGE=${BUILDER_IMAGE:-espresso-builder:bookworm}
SUITE=bookworm
FORCE=0 BASE_ONLY=0
for arg in "$@"; do
    case $arg in
        --force) FORCE=1 ;;
        --base-only) BASE_ONLY=1 ;;
        *) echo "usage: $0 [--force] [--base-only]" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# The -dev packages the build stage needs; the Dockerfile installs the same
# list when the builder lacks them (rust:*-bookworm images do).
DEV_PACKAGES=$(sed -n 's/^ARG DEV_PACKAGES="\(.*\)"$/\1/p' "$ROOT/docker/Dockerfile")
[ -n "$DEV_PACKAGES" ] || { echo "no DEV_PACKAGES in docker/Dockerfile" >&2; exit 1; }

have_image() { [ "$FORCE" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

WORK=$(mktemp -d /tmp/espresso-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if have_image "$BASE_IMAGE"; then
    echo "$BASE_IMAGE: present"
else
    command -v mmdebstrap >/dev/null || {
        echo "installing mmdebstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null 2>&1 \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null; }
    }
    echo "$BASE_IMAGE: mmdebstrap $SUITE"
    # As slim as debian:*-slim: no manual pages, documentation or
    # translations (copyright files stay), and no package lists.
    mmdebstrap --variant=apt --format=tar --quiet \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        "$SUITE" "$WORK/rootfs.tar"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$WORK/rootfs.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/rootfs.tar"
fi

if [ "$BASE_ONLY" = 1 ]; then
    :
elif have_image "$BUILDER_IMAGE"; then
    echo "$BUILDER_IMAGE: present"
else
    SYSROOT=$(rustc --print sysroot)
    CARGO_BIN=$(rustup which cargo 2>/dev/null || command -v cargo)
    echo "$BUILDER_IMAGE: $BASE_IMAGE + $(rustc --version) from $SYSROOT + the -dev packages"
    mkdir -p "$WORK/ctx/rust/bin"
    # The compiler and its libraries; not the documentation (share/, ~800 MB).
    cp -a "$SYSROOT/lib" "$WORK/ctx/rust/"
    cp -a "$SYSROOT/bin/rustc" "$SYSROOT/bin/rustdoc" "$WORK/ctx/rust/bin/"
    cp -L "$CARGO_BIN" "$WORK/ctx/rust/bin/cargo"
    cat >"$WORK/ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $DEV_PACKAGES \\
 && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo
RUN rustc --version && cargo --version
DOCKERFILE
    docker build -q -t "$BUILDER_IMAGE" "$WORK/ctx" >/dev/null
fi
