#!/usr/bin/python3
"""Checks what ipsec-secgw sent in a lab case's correctness run
(benches/lab/src/secgw.rs), independently of both Espresso and DPDK: ESP
is decrypted with scapy's own implementation (scapy.layers.ipsec, with
python3-cryptography), as dataplane/tests/support/scapy_esp.py does for
Espresso's output.

Usage: secgw_check.py REQUEST

REQUEST holds tab-separated key=value fields: a first line

  direction (encrypt|decrypt), crypt, auth (scapy's names), reference
  (pcap of the plaintext frames: the input of an encrypt run, the original
  packets of a decrypt run), output (secgw's tx_pcap), local, peer (the
  tunnel's outer addresses, ours first), mac (the destination MAC every
  output frame must carry), sample (how many output frames to check in
  full, a fixed pseudo-random choice; every frame is counted)

then one line per SA: spi, enc (hex, salt included for AEADs), auth (hex),
src, dst (the inner addresses of the SA's flow, as they travel through the
tunnel in this run's direction).

Checks: secgw sent as many frames as the reference holds; each checked
frame goes to `mac`; for encrypt it is ESP from `local` to `peer` (outer
IPv4 header checksum valid) whose SPI is the SA of its inner flow and which
scapy decrypts; the inner (decrypt: the plaintext) packet is the
reference packet with the same addresses, IP ID and length, byte for byte except
the TTL, which must be decremented by the same amount (0 or 1) in every
frame, and the header checksum, which must be valid. Prints one line:
`ok: ...` or `failed: ...` (exit status 0 or 1).
"""
import random
import struct
import sys

from scapy.layers.inet import IP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.utils import checksum


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def frames(path):
    """The frames of a classic little- or big-endian pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    check(len(data) >= 24, "%s: not a pcap file" % path)
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        e = ">"
    else:
        raise CheckFailed("%s: bad pcap magic %#x" % (path, magic))
    off = 24
    out = []
    while off + 16 <= len(data):
        incl = struct.unpack(e + "I", data[off + 8 : off + 12])[0]
        out.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return out


def ip_key(ip):
    """(src, dst, id, length) of a raw IPv4 header: the lab's IP IDs wrap
    in pcaps of more than 65,536 frames; two of its packets with the same
    four are the same packet."""
    return ip[12:16], ip[16:20], ip[4:6], ip[2:4]


def without_ttl_and_checksum(ip):
    return ip[:8] + b"\0" + ip[9:10] + b"\0\0" + ip[12:]


def main():
    with open(sys.argv[1]) as f:
        lines = [dict(x.split("=", 1) for x in l.rstrip("\n").split("\t")) for l in f if l.strip()]
    req, sas = lines[0], lines[1:]
    direction = req["direction"]
    mac = bytes.fromhex(req["mac"].replace(":", ""))
    local, peer = req["local"], req["peer"]
    by_spi = {}
    flow_spi = {}
    for sa in sas:
        spi = int(sa["spi"])
        by_spi[spi] = sa
        flow_spi[(IP_bytes(sa["src"]), IP_bytes(sa["dst"]))] = spi
    reference = {}
    for fr in frames(req["reference"]):
        ip = fr[14:]
        reference[ip_key(ip)] = ip
    n_ref = len(frames(req["reference"]))
    out = frames(req["output"])
    check(len(out) == n_ref, "secgw sent %d frames for %d in" % (len(out), n_ref))
    # A fixed pseudo-random sample: an even stride could fall in step with
    # the flows (the IMIX period is 12) and check one SA only.
    picked = sorted(random.Random(1).sample(range(len(out)), min(len(out), max(1, int(req["sample"])))))
    ttl_deltas = set()
    checked = 0
    sa_cache = {}
    spis_seen = set()
    for n in picked:
        fr = out[n]
        check(fr[:6] == mac, "frame %d: destination MAC %s, not %s" % (n, fr[:6].hex(":"), req["mac"]))
        check(fr[12:14] == b"\x08\x00", "frame %d: not IPv4" % n)
        ip = fr[14:]
        if direction == "encrypt":
            outer = IP(ip)
            check(checksum(ip[: (ip[0] & 15) * 4]) == 0, "frame %d: bad outer IPv4 checksum" % n)
            check((outer.src, outer.dst) == (local, peer), "frame %d: outer %s -> %s" % (n, outer.src, outer.dst))
            check(outer.proto == 50, "frame %d: outer protocol %d, not ESP" % (n, outer.proto))
            spi = outer[ESP].spi
            check(spi in by_spi, "frame %d: unknown SPI %#x" % (n, spi))
            spis_seen.add(spi)
            sa = sa_cache.get(spi)
            if sa is None:
                s = by_spi[spi]
                sa = SecurityAssociation(
                    ESP,
                    spi=spi,
                    crypt_algo=req["crypt"],
                    crypt_key=bytes.fromhex(s["enc"]),
                    auth_algo=None if req["auth"] == "NULL" else req["auth"],
                    auth_key=bytes.fromhex(s["auth"]) if s["auth"] else None,
                    tunnel_header=IP(src=local, dst=peer),
                )
                sa_cache[spi] = sa
            try:
                inner = bytes(sa.decrypt(outer))
            except Exception as e:  # scapy raises IPSecIntegrityError and others
                raise CheckFailed("frame %d (SPI %#x): scapy cannot decrypt it: %s" % (n, spi, e))
            key = ip_key(inner)
            check(flow_spi.get(key[:2]) == spi, "frame %d: flow %s carried by SPI %#x" % (n, IP(inner).summary(), spi))
        else:
            inner = ip
        key = ip_key(inner)
        want = reference.get(key)
        check(want is not None, "frame %d: a packet that was not sent: %s" % (n, IP(inner).summary()))
        check(checksum(inner[: (inner[0] & 15) * 4]) == 0, "frame %d: bad inner IPv4 checksum" % n)
        check(
            without_ttl_and_checksum(inner) == without_ttl_and_checksum(want),
            "frame %d: inner packet differs from the original beyond TTL and checksum" % n,
        )
        ttl_deltas.add(want[8] - inner[8])
        checked += 1
    check(len(ttl_deltas) == 1 and ttl_deltas <= {0, 1}, "TTL changed by %s" % sorted(ttl_deltas))
    what = "decrypted by scapy and " if direction == "encrypt" else ""
    print(
        "ok: %d of %d frames forwarded; %d checked (%sequal to the originals, TTL -%d)%s"
        % (
            len(out),
            n_ref,
            checked,
            what,
            ttl_deltas.pop(),
            ", %d SPIs" % len(spis_seen) if direction == "encrypt" else "",
        )
    )


def IP_bytes(a):
    return bytes(int(x) for x in a.split("."))


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print("failed: %s" % e)
        sys.exit(1)
