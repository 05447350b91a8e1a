#!/usr/bin/env python3
"""Issue #17's signature-cost figure from the `ike_auth` criterion bench:
per algorithm, one IKE SA's sign + verify through Espresso's certificate
path against aws-lc-rs's bare operations on the same core, as ratios of
the medians of one run (absolute times move from machine to machine).

`bare` signs and verifies the AUTH octets; `bare+ca` adds the one
signature any chain validation must check (the CA's on the leaf): the
target is cert-path <= 1.10 x bare+ca.

Usage: ike_auth_summary.py CRITERION_DIR OUT.md
Prints the table and writes it, with the run's date, machine and commit,
to OUT.md. Exit status 1 when an algorithm misses the target.
"""
import json
import os
import platform
import subprocess
import sys
import time

ALGS = ["ecdsa-p256", "ecdsa-p384", "rsa2048-pss", "ed25519"]
KINDS = ["cert-path", "bare", "bare+ca"]
TARGET = 1.10


def median_ns(root, alg, kind):
    # criterion writes "ike-auth/<alg>/<kind>" as the directory
    # ike-auth/<alg>_<kind> (slashes replaced); older versions nest.
    for d in (f"{alg}_{kind}", os.path.join(alg, kind)):
        p = os.path.join(root, d, "new", "estimates.json")
        if os.path.exists(p):
            with open(p) as f:
                return json.load(f)["median"]["point_estimate"]
    sys.exit(f"no criterion estimate for {alg}/{kind} under {root}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, out = sys.argv[1], sys.argv[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    rows, missed = [], []
    for alg in ALGS:
        t = {k: median_ns(root, alg, k) for k in KINDS}
        ratio = t["cert-path"] / t["bare+ca"]
        if ratio > TARGET:
            missed.append(alg)
        rows.append(f"| {alg} | {t['cert-path'] / 1e3:.0f} | {t['bare'] / 1e3:.0f} | "
                    f"{t['bare+ca'] / 1e3:.0f} | {t['cert-path'] / t['bare']:.2f} | {ratio:.2f} |")
    head = (f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores "
            f"{cpu_model()}, commit {commit}, `cargo bench -p espresso-benches --bench ike_auth`\n\n"
            "| algorithm | cert path µs | bare µs | bare+CA µs | cert/bare | cert/(bare+CA) |\n"
            "|---|---|---|---|---|---|\n")
    table = head + "\n".join(rows) + "\n"
    table += (f"\nTarget: cert/(bare+CA) <= {TARGET:.2f}: "
              + ("met for every algorithm" if not missed else "missed for " + ", ".join(missed))
              + " (medians of one run, sign + verify per IKE SA).\n")
    print(table)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        f.write("# IKE signature authentication cost\n\n" + table)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
