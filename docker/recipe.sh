#!/usr/bin/env bash
# recipe.sh OUT: writes to OUT the workspace as the dependencies see it:
# Cargo.lock, the root and every member's Cargo.toml, and an empty stub at
# each of their targets' paths (lib, bin, build script, test, bench,
# example). Building OUT compiles every third-party crate and nothing of
# the workspace's own code, so docker/Dockerfile can cache that layer
# until a manifest or the lock file changes. Run from the workspace root.
set -euo pipefail
OUT=$1
ROOT=$PWD
rm -rf "$OUT"
mkdir -p "$OUT"
cp Cargo.toml Cargo.lock "$OUT/"
# Paths relative to the root; workspace members only (--no-deps).
cargo metadata --no-deps --offline --format-version 1 |
    jq -r --arg root "$ROOT/" '
        .packages[] |
        ("manifest " + (.manifest_path | ltrimstr($root))),
        (.targets[] | (if (.kind | index("lib") or index("rlib") or index("proc-macro")) then "lib " else "main " end)
            + (.src_path | ltrimstr($root)))' |
    while read -r kind path; do
        case $path in /*) echo "recipe.sh: $path is outside the workspace" >&2; exit 1 ;; esac
        mkdir -p "$OUT/$(dirname "$path")"
        case $kind in
            manifest) cp "$path" "$OUT/$path" ;;
            lib) : >"$OUT/$path" ;;
            main) echo 'fn main() {}' >"$OUT/$path" ;;
        esac
    done
