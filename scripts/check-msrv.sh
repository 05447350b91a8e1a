#!/usr/bin/env bash
# The declared rust-version (Cargo.toml's [workspace.package]) must be at
# least every dependency's own rust-version, as the lockfile resolves them:
# a dependency that declares a newer one would not build with ours. Our own
# code is held to it by clippy's `incompatible_msrv` lint (`make lint`),
# which reads the same field; together they stand in for a build with that
# toolchain where only a newer one is installed.
# Prints the dependencies that set the floor; exit 1 if one is above it.
set -euo pipefail
cd "$(dirname "$0")/.."
check=$(cat <<'PY'
import json, sys

def ver(s):
    parts = [int(p) for p in s.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
ws = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in ws}
if len(ours) != 1 or None in ours:
    sys.exit(f"error: workspace members declare rust-version {sorted(map(str, ours))}, want one value")
msrv = ours.pop()
deps = [p for p in meta["packages"] if p["id"] not in ws and p.get("rust_version")]
top = max(ver(p["rust_version"]) for p in deps)
at_top = ", ".join(f"{p['name']} {p['version']}" for p in deps if ver(p["rust_version"]) == top)
print(f"declared rust-version: {msrv}")
print(f"highest among {len(deps)} dependencies that declare one: {'.'.join(map(str, top))} ({at_top})")
newer = [p for p in deps if ver(p["rust_version"]) > ver(msrv)]
for p in newer:
    print(f"error: {p['name']} {p['version']} needs Rust {p['rust_version']}, above {msrv}")
if newer:
    sys.exit(1)
print("ok: no dependency needs a newer Rust")
PY
)
# Only the host's dependencies: offline, `cargo metadata` would otherwise
# need every platform's crates (Windows ones too) downloaded, which no
# build here fetches.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --locked --offline --filter-platform "$host" | /usr/bin/python3 -c "$check"
