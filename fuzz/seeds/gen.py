#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/seeds/<target>/ (run from anywhere).

views: real packets, several of them the known answers next to the wire
module (checked with tshark there). inbound and outbound: inputs in the
targets' own formats (see the module docs of fuzz_targets/*.rs), including
a real NULL-encryption ESP packet authenticated with the key the harness
derives for SA 5, so that the fuzzer starts past authentication.

Standard library only; the output is deterministic.

ike_message and ike_responder are not written here: their seeds are the
engine's own datagrams, written by
  IKE_FUZZ_SEEDS=fuzz/seeds cargo test -p espresso-control --lib \
      ike::sim -- --ignored
"""
import hashlib
import hmac
import ipaddress
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ipv4(src, dst, proto, payload, tos=0, options=b""):
    hl = 20 + len(options)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, tos, hl + len(payload), 0x4242,
                    0x4000, 64, proto, 0, ipaddress.ip_address(src).packed,
                    ipaddress.ip_address(dst).packed) + options
    c = 0xFFFF ^ csum(h)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def ipv6(src, dst, nh, payload, tclass=0):
    return struct.pack("!IHBB16s16s", 0x60000000 | tclass << 20, len(payload), nh, 64,
                       ipaddress.ip_address(src).packed,
                       ipaddress.ip_address(dst).packed) + payload


def pseudo(src, dst, proto, length):
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, length)
    return s + d + struct.pack("!IxxxB", length, proto)


def udp(src, dst, sport, dport, payload, checksum=True):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if checksum:
        c = 0xFFFF ^ csum(pseudo(src, dst, 17, len(seg)) + seg)
        seg = seg[:6] + struct.pack("!H", c or 0xFFFF) + seg[8:]
    return seg


def icmpv6(src, dst, body):
    c = 0xFFFF ^ csum(pseudo(src, dst, 58, len(body)) + body)
    return body[:2] + struct.pack("!H", c) + body[4:]


def trailer(n, block, nh):
    align = max(block, 4)
    pad = (align - (n + 2) % align) % align
    return bytes(range(1, pad + 1)) + bytes([pad, nh])


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


MAC_A, MAC_B = bytes.fromhex("525400123456"), bytes.fromhex("020000000001")
DNS = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")

# views: real packets.
udp4 = ipv4("10.0.0.1", "10.0.0.2", 17, udp("10.0.0.1", "10.0.0.2", 53000, 53, DNS))
write("views", "eth-arp-request", bytes.fromhex(
    "ffffffffffff525400123456080600010800060400015254001234560a000001000000000000c0a80101"))
write("views", "eth-vlan-ipv4-udp", MAC_B + MAC_A + bytes.fromhex("8100a0640800") + udp4)
write("views", "ipv4-udp-dns", udp4)
write("views", "ipv4-options-tcp-syn", ipv4("192.168.1.2", "192.168.1.1", 6, bytes.fromhex(
    "9c4001bb0000000100000000a002faf02bbe0000020405b40402080a000000010000000001030307"),
    options=b"\x01\x01\x01\x00"))
write("views", "tcp-syn-mss", bytes.fromhex(
    "9c4001bb0000000100000000a002faf02bbe0000020405b40402080a000000010000000001030307"))
write("views", "natt-esp", bytes.fromhex(
    "450000541c4640004011b80ec6336407cb0071091194119400409990"
    "c0ffee010000002a000102030405060708090a0b0c0d0e0f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"))
write("views", "ipv6-icmpv6-echo", bytes.fromhex(
    "6b812345" "0008" "3a" "40" "fe800000000000000000000000000001"
    "ff020000000000000000000000000001" "8000000000010001"))
ns = icmpv6("fe80::1", "ff02::1", bytes([135, 0, 0, 0, 0, 0, 0, 0])
            + ipaddress.ip_address("fe80::2").packed + bytes([1, 1]) + MAC_A)
write("views", "icmpv6-neighbor-solicit", ns)
write("views", "ipv6-hbh-frag-udp", ipv6("2001:db8::1", "2001:db8::2", 0,
      bytes([44, 0, 1, 4, 0, 0, 0, 0]) + bytes([17, 0, 0, 1, 0, 0, 0, 7])
      + udp("2001:db8::1", "2001:db8::2", 1, 2, b"x" * 8, checksum=False)))
write("views", "icmpv4-frag-needed", bytes.fromhex("0304000000000578") + udp4[:28])
write("views", "esp-trailer", b"\x45\x00\x00\x05" + trailer(4, 16, 4))

# outbound: [SA choice (low nibble) and start point (high nibble)] then
# the inner packet.
for sa in range(8):
    v4 = sa in (0, 2, 5, 6)  # the families of the SAs' payloads
    if v4:
        p = ipv4("10.1.0.10", "10.2.0.20", 17, udp("10.1.0.10", "10.2.0.20", 5000, 53, DNS))
    else:
        p = ipv6("fd01::10", "fd02::20", 17, udp("fd01::10", "fd02::20", 5000, 53, DNS))
    write("outbound", f"sa{sa}-udp", bytes([sa]) + p)
write("outbound", "sa3-ext-headers", bytes([3]) + ipv6("fd01::10", "fd02::20", 0,
      bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([17, 0, 1, 4, 0, 0, 0, 0])
      + udp("fd01::10", "fd02::20", 1, 53, b"q")))
write("outbound", "sa0-esn-wrap-tcp", bytes([0x10]) + ipv4("10.1.0.10", "10.2.0.20", 6, bytes.fromhex(
    "9c4001bb0000000100000000a002faf02bbe0000020405b40402080a000000010000000001030307")))

# inbound: [start] then operations; op byte % 3: 0 raw, 1 valid, 2 forged.
# valid: SA, kind, tos, len(2), body, sport(2) [, dport(2)], mutations.
for sa in range(8):
    write("inbound", f"valid-sa{sa}", bytes([0, 1, sa, 0, 0]) + struct.pack("!H", 4)
          + b"abcd" + struct.pack("!H", 5000) + bytes([0]))
# valid with IPv6 Destination Options / IPv4 options, twice, then replayed.
write("inbound", "valid-sa3-ext-twice", bytes([1, 1, 3, 4, 2, 0, 1, 7, 0, 0, 1, 3, 4, 2, 0, 1, 7, 0, 0]))
# forged: SA, seq(4), ESN choice, flags, nh, tos, IV, len(2), body.
for sa in range(8):
    iv_len = {0: 8, 1: 8, 2: 16, 6: 16, 7: 8}.get(sa, 0)
    write("inbound", f"forged-sa{sa}", bytes([0, 2, sa]) + struct.pack("!I", 7)
          + bytes([0, 2, 17, 0]) + bytes(iv_len) + struct.pack("!H", 6) + b"forged")
# raw: flags, len(2), bytes. A real UDP-encapsulated NULL/HMAC-SHA-384
# transport-mode packet for SA 5 (SPI 0x01000005, sequence 1), keyed as the
# harness keys SA 5: auth key byte i = 5 * 17 + 3 * i (mod 256).
key = bytes((5 * 17 + 3 * i) & 0xFF for i in range(48))
inner = udp("10.1.0.10", "10.2.0.20", 1000, 53, b"hello")
plain = inner + trailer(len(inner), 4, 17)
esp = struct.pack("!II", 0x01000005, 1) + plain
esp += hmac.new(key, esp, hashlib.sha384).digest()[:24]
pkt = ipv4("10.1.0.10", "10.2.0.20", 17, udp("10.1.0.10", "10.2.0.20", 4500, 4500, esp, checksum=False))
write("inbound", "raw-null-hmac-sa5", bytes([0, 0, 0]) + struct.pack("!H", len(pkt)) + pkt)
natt = bytes.fromhex(
    "450000541c4640004011b80ec6336407cb0071091194119400409990"
    "c0ffee010000002a000102030405060708090a0b0c0d0e0f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f")
write("inbound", "raw-natt-spi-sa0", bytes([0, 0, 0x07]) + struct.pack("!H", len(natt)) + natt)
ike = ipv4("192.0.2.2", "192.0.2.1", 17, udp("192.0.2.2", "192.0.2.1", 4500, 4500, bytes(4) + b"IKE"))
write("inbound", "raw-ike-on-4500", bytes([0, 0, 0]) + struct.pack("!H", len(ike)) + ike)

# spd: [count] then 17-byte policies: flags (bit 0 IPv6, bit 1 protocol,
# bits 2..4 priority), src word, src len, dst word, dst len, protocol,
# sport lo/hi, dport lo/hi; then 14-byte keys: flags, src, dst, proto,
# sport, dport.
def spd_policy(v6, proto, prio, src, slen, dst, dlen, sp, dp):
    flags = int(v6) | (2 if proto is not None else 0) | (prio << 2)
    return (bytes([flags]) + struct.pack("!I", src) + bytes([slen]) + struct.pack("!I", dst)
            + bytes([dlen, proto or 0]) + struct.pack("!HHHH", *sp, *dp))


def spd_key(v6, src, dst, proto, sport, dport):
    return bytes([int(v6)]) + struct.pack("!IIBHH", src, dst, proto, sport, dport)


ANY = (0, 0xFFFF)
site = [spd_policy(False, None, 3, 0x0A010000, 16, 0x0A020000, 16, ANY, ANY),
        spd_policy(False, 6, 1, 0x0A010000, 16, 0x0A020000, 16, (1024, 0xFFFF), (443, 443)),
        spd_policy(False, 17, 0, 0, 0, 0, 0, ANY, (500, 500)),
        spd_policy(False, None, 7, 0, 0, 0, 0, ANY, ANY),
        spd_policy(True, None, 2, 0x20010DB8, 32, 0x20010DB8, 48, ANY, (0, 1023))]
keys = [spd_key(False, 0x0A010203, 0x0A020304, 6, 40000, 443),
        spd_key(False, 0x0A010203, 0x0A020304, 6, 40000, 22),
        spd_key(False, 0xC0000201, 0xC0000202, 17, 500, 500),
        spd_key(True, 0x20010DB8, 0x20010DB8, 58, 0, 80)]
write("spd", "site-bypass-ike-v6", bytes([len(site)]) + b"".join(site) + b"".join(keys))
# Crossed classes: source-specific and destination-specific /24s in turn.
cross = [spd_policy(False, None, i % 8, 0x0A000000 | i << 8, 24, 0, 0, ANY, ANY) if i % 2 == 0
         else spd_policy(False, None, i % 8, 0, 0, 0x0A000000 | i << 8, 24, ANY, ANY)
         for i in range(31)]
write("spd", "crossed-24s", bytes([len(cross)]) + b"".join(cross)
      + spd_key(False, 0x0A000401, 0x0A000501, 1, 0, 0) + spd_key(False, 0x0A000601, 0x0A000101, 6, 1, 2))

# ike_fragments (see fuzz_targets/ike_fragments.rs): a Notify payload (status
# 40000, no data) cut into three fragments. Reassembly mode (first byte bit 7
# clear): records of message ID, number, total, length, content; out of order
# with a duplicate. Engine mode (bit 7 set): records of control byte (bit 0
# forges), message ID offset (1: ID 2, the one the responder expects),
# number, total, length, content; one forged copy.
notify = bytes([0, 0, 0, 8, 0, 0, 0x9C, 0x40])
pieces = [notify[0:3], notify[3:6], notify[6:8]]
write("ike_fragments", "reassemble-out-of-order", bytes([0x11]) + b"".join(
    bytes([1]) + struct.pack("!HH", n, 3) + bytes([len(pieces[n - 1])]) + pieces[n - 1]
    for n in [3, 1, 1, 2]))
write("ike_fragments", "engine-informational", bytes([0x91]) + b"".join(
    bytes([ctl, 1]) + struct.pack("!HH", n, 3) + bytes([len(pieces[n - 1])]) + pieces[n - 1]
    for ctl, n in [(0, 2), (1, 1), (0, 3), (0, 1)]))
