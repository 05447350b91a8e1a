#!/usr/bin/python3
"""The scapy side of the lab's check of `espresso run` (product.rs): is
what the gateway sent what it should have sent?

Usage: product_check.py REQUEST OUTPUT_PCAP

REQUEST is tab-separated key=value lines, the first field the kind:

  case   direction (encrypt|decrypt), crypt, auth (scapy's names), udp
         (0|1), local and peer (the tunnel's outer addresses), host_mac
         (where every frame must go)
  sa     spi, enc_key, auth_key (hex): the gateway's SA with this SPI
  frame  spi, inner (hex): the plaintext IP packet of each input frame,
         in order

Encrypt: scapy (an independent ESP implementation) decrypts each frame of
the output with the SA its SPI names, from the expected outer addresses
(and UDP 4500 -> 4500 for ESP in UDP, RFC 3948); decrypt: the output
frames are the plaintext. Either way the inner packet must be the
expected one, its TTL one less (RFC 1812 section 5.3.1: the gateway
forwards it), with a header checksum scapy agrees with. Prints
"N frames ..." and exits 0, or prints the first problems and exits 1.
"""
import sys

from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

NAT_T_PORT = 4500


def fields(line):
    kind, *rest = line.rstrip("\n").split("\t")
    return kind, dict(f.split("=", 1) for f in rest)


def main():
    case, sas, frames = None, {}, []
    with open(sys.argv[1]) as f:
        for line in f:
            kind, v = fields(line)
            if kind == "case":
                case = v
            elif kind == "sa":
                sas[int(v["spi"])] = v
            elif kind == "frame":
                frames.append((int(v["spi"]), bytes.fromhex(v["inner"])))
    out = rdpcap(sys.argv[2])
    problems = []

    def bad(n, what):
        if len(problems) < 5:
            problems.append("frame %d: %s" % (n, what))

    udp = case["udp"] == "1"
    if len(out) != len(frames):
        problems.append("%d frames out, %d in" % (len(out), len(frames)))
    made = {}
    for n, (pkt, (spi, want)) in enumerate(zip(out, frames)):
        data = raw(pkt)
        eth = Ether(data)
        if eth.dst != case["host_mac"]:
            bad(n, "to %s, not %s" % (eth.dst, case["host_mac"]))
            continue
        if IP not in eth:
            bad(n, "not IPv4")
            continue
        outer = eth[IP]
        if case["direction"] == "encrypt":
            if (outer.src, outer.dst) != (case["local"], case["peer"]):
                bad(n, "outer %s -> %s" % (outer.src, outer.dst))
                continue
            if udp:
                if UDP not in outer or (outer[UDP].sport, outer[UDP].dport) != (NAT_T_PORT, NAT_T_PORT):
                    bad(n, "not ESP in UDP 4500 -> 4500")
                    continue
            elif outer.proto != 50:
                bad(n, "outer protocol %d, not ESP" % outer.proto)
                continue
            if ESP not in outer or outer[ESP].spi != spi:
                bad(n, "SPI %s, not %d" % (outer[ESP].spi if ESP in outer else None, spi))
                continue
            if spi not in made:
                sa = sas[spi]
                auth = None if case["auth"] == "NULL" else case["auth"]
                made[spi] = SecurityAssociation(
                    ESP,
                    spi=spi,
                    crypt_algo=case["crypt"],
                    crypt_key=bytes.fromhex(sa["enc_key"]),
                    auth_algo=auth,
                    auth_key=bytes.fromhex(sa["auth_key"]) if auth else None,
                    tunnel_header=IP(src=case["local"], dst=case["peer"]),
                    nat_t_header=UDP(sport=NAT_T_PORT, dport=NAT_T_PORT) if udp else None,
                )
            try:
                # The sequence numbers restart per SA with each run;
                # scapy has no replay window to trip over.
                inner = raw(made[spi].decrypt(IP(raw(outer)), verify=True))
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                bad(n, "scapy cannot decrypt it: %r" % e)
                continue
        else:
            inner = raw(outer)
        if len(inner) != len(want):
            bad(n, "inner length %d, not %d" % (len(inner), len(want)))
            continue
        if inner[8] != want[8] - 1:
            bad(n, "TTL %d, not %d" % (inner[8], want[8] - 1))
            continue
        # Everything but TTL and header checksum as generated; the
        # checksum as scapy computes it.
        if inner[:8] + inner[9:10] + inner[12:] != want[:8] + want[9:10] + want[12:]:
            bad(n, "inner packet differs: %s" % inner.hex())
            continue
        ip = IP(inner)
        given = ip.chksum
        del ip.chksum
        if IP(raw(ip)).chksum != given:
            bad(n, "wrong IPv4 header checksum")
    if problems:
        print("; ".join(problems))
        sys.exit(1)
    print("%d frames %s by scapy" % (
        len(frames), "decrypted and compared" if case["direction"] == "encrypt" else "compared"))


main()
