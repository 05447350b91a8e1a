#!/usr/bin/env bash
# Makes the Espresso image, ESPRESSO_IMAGE (default espresso:latest).
#
#   docker/build.sh                 docker/Dockerfile: compiles `espresso`
#                                   (release) in the build stage
#   docker/build.sh --binary PATH   the same runtime stage around a binary
#                                   built on this Debian 12 host (no
#                                   compile; docker/Dockerfile.prebuilt)
#
# BASE and BUILDER name the base images; by default the local ones that
# docker/build-base.sh makes from Debian's packages when they are missing.
# The crates come from this host's `cargo vendor` (a container here cannot
# verify crates.io's TLS certificate), passed to the build as the image
# espresso-vendor:<hash of Cargo.lock>; VENDOR=0 lets the build fetch them
# itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${ESPRESSO_IMAGE:-espresso:latest}
BASE=${BASE:-espresso-base:bookworm}
BUILDER=${BUILDER:-espresso-builder:bookworm}
BINARY=
if [ "${1:-}" = --binary ]; then
    BINARY=${2:?--binary needs a path}
    [ -x "$BINARY" ] || { echo "build.sh: $BINARY is not an executable" >&2; exit 1; }
fi

# The classic builder (this engine has no BuildKit client); quiet unless
# VERBOSE=1, the output kept for a failure.
LOG=$(mktemp /tmp/espresso-build.XXXXXX)
trap 'rm -f "$LOG"' EXIT
build() {
    local t0=$SECONDS
    if [ "${VERBOSE:-0}" = 1 ]; then
        DOCKER_BUILDKIT=0 docker build "$@" 2>&1 | tee "$LOG"
    elif ! DOCKER_BUILDKIT=0 docker build "$@" >"$LOG" 2>&1; then
        tail -40 "$LOG" >&2
        echo "build.sh: docker build $* failed" >&2
        return 1
    fi
    echo "    built in $((SECONDS - t0)) s"
}

if [ -n "$BINARY" ]; then
    [ "$BASE" = espresso-base:bookworm ] && "$ROOT/docker/build-base.sh" --base-only
    echo "runtime base (docker/Dockerfile --target runtime-base, FROM $BASE)"
    EMPTY=$(mktemp -d /tmp/espresso-ctx.XXXXXX)
    trap 'rm -f "$LOG"; rm -rf "$EMPTY"' EXIT
    build -f "$ROOT/docker/Dockerfile" --target runtime-base --build-arg BASE="$BASE" \
        -t espresso-runtime-base:local "$EMPTY"
    cp "$BINARY" "$EMPTY/espresso"
    echo "$IMAGE: runtime base + $BINARY"
    build -f "$ROOT/docker/Dockerfile.prebuilt" -t "$IMAGE" "$EMPTY"
    exit 0
fi

if [ "$BASE" = espresso-base:bookworm ] || [ "$BUILDER" = espresso-builder:bookworm ]; then
    "$ROOT/docker/build-base.sh"
fi
VENDOR_ARG=()
if [ "${VENDOR:-1}" = 1 ]; then
    # One vendor image per Cargo.lock: made again only when it changes.
    VTAG=espresso-vendor:$(sha256sum "$ROOT/Cargo.lock" | cut -c1-16)
    if docker image inspect "$VTAG" >/dev/null 2>&1; then
        echo "crates: $VTAG (Cargo.lock unchanged)"
    else
        VDIR=$ROOT/target/docker-vendor
        echo "crates: cargo vendor (Cargo.lock) -> $VTAG"
        rm -rf "$VDIR"
        mkdir -p "$VDIR"
        (cd "$ROOT" && cargo vendor --locked --versioned-dirs --quiet "$VDIR/vendor" >/dev/null)
        printf 'FROM %s\nCOPY vendor /vendor\n' "$BASE" >"$VDIR/Dockerfile"
        build -t "$VTAG" "$VDIR"
        rm -rf "$VDIR"
        # The images for earlier lock files.
        docker image ls --format '{{.Repository}}:{{.Tag}}' espresso-vendor |
            grep -vxF "$VTAG" | xargs -r docker image rm >/dev/null 2>&1 || true
    fi
    VENDOR_ARG=(--build-arg VENDOR="$VTAG")
fi
echo "$IMAGE: docker/Dockerfile (BASE=$BASE, BUILDER=$BUILDER)"
build -f "$ROOT/docker/Dockerfile" --build-arg BASE="$BASE" --build-arg BUILDER="$BUILDER" \
    "${VENDOR_ARG[@]}" -t "$IMAGE" "$ROOT"
