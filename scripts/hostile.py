#!/usr/bin/python3
"""Sends hostile traffic at a gateway's WAN port, N of each kind:
truncated ESP, ESP with a bad ICV, ESP for an unknown SPI, replays of real
ESP packets (from a capture), random bytes, oversized/lying IP headers and
NAT keepalives. Prints what it sent.

  hostile.py IFACE DST_MAC SRC_MAC SRC_IP DST_IP SPI REPLAY_PCAP N
"""
import os
import random
import sys

from scapy.all import IP, UDP, Ether, Raw, rdpcap, sendp  # noqa: E402


def main():
    iface, dst_mac, src_mac, src_ip, dst_ip = sys.argv[1:6]
    spi = int(sys.argv[6], 0)
    replay = rdpcap(sys.argv[7])
    n = int(sys.argv[8])
    rng = random.Random(4303)
    eth = Ether(dst=dst_mac, src=src_mac)
    nat_t = IP(src=src_ip, dst=dst_ip) / UDP(sport=4500, dport=4500)
    frames = {"truncated": [], "bad_icv": [], "unknown_spi": [], "replay": [],
              "random": [], "oversized": [], "keepalive": []}
    for i in range(n):
        esp = spi.to_bytes(4, "big") + (1000 + i).to_bytes(4, "big")
        frames["truncated"].append(eth / nat_t / Raw(esp + b"\x00" * 4))
        frames["bad_icv"].append(eth / nat_t / Raw(esp + os.urandom(8 + 64 + 16)))
        bad_spi = (0xDEAD0000 + i).to_bytes(4, "big") + esp[4:]
        frames["unknown_spi"].append(eth / nat_t / Raw(bad_spi + os.urandom(96)))
        frames["random"].append(Ether(dst=dst_mac, src=src_mac, type=0x0800) /
                                Raw(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1400)))))
        big = IP(src=src_ip, dst=dst_ip, len=9000) / UDP(sport=4500, dport=4500) / Raw(os.urandom(1000))
        frames["oversized"].append(eth / big)
        frames["keepalive"].append(eth / nat_t / Raw(b"\xff"))
    # Every captured ESP packet was already received: each resend is a replay.
    real = [p for p in replay if UDP in p and p[UDP].dport == 4500]
    for i in range(n):
        frames["replay"].append(real[i % len(real)])
    for kind, fs in frames.items():
        sendp(fs, iface=iface, verbose=False)
        print(f"sent {len(fs)} {kind}")


if __name__ == "__main__":
    main()
