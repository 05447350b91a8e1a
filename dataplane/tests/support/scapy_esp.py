#!/usr/bin/python3
"""The scapy side of tests/scapy_interop.rs: an independent ESP
implementation (scapy.layers.ipsec.SecurityAssociation, Debian's
python3-scapy with python3-cryptography) decrypts Espresso's ESP packets and
encrypts packets for Espresso to decrypt.

Usage: scapy_esp.py REQUEST REPLY

Both files are lines of tab-separated key=value fields; the first field is
the record kind. REQUEST:

  case   id, crypt, auth, enc_key_e2s, auth_key_e2s, enc_key_s2e,
         auth_key_s2e (hex; e2s: Espresso to scapy), mode (tunnel|transport),
         outer (4|6), udp (0|1), esn (0|1), espresso, scapy (the two
         outer/transport addresses), spi_e2s, spi_s2e
  e2s    case, n, seq (64-bit), inner (hex), esp (hex): Espresso encrypted
         `inner` as `esp`; decrypt it.
  s2e    case, n, seq, inner: encrypt `inner` for Espresso.

REPLY, one line per e2s/s2e request line:

  e2s    case, n, plain (hex) or error, tags
  s2e    case, n, esp (hex) or error, tags

`tags` names every place where this script does something scapy 2.5.0
cannot do itself (the Rust side checks that the set is exactly the
expected one, so a workaround cannot spread silently):

  esn-icv       ESN with a non-AEAD integrity algorithm. RFC 4303 §2.2.1
                and §3.3.2.2: the high 32 bits of the ESN are appended to
                the data the ICV covers (they are not sent). scapy's
                AuthAlgo.sign()/verify() only do that for AH and ignore
                `esn` for ESP, so this script computes or checks the HMAC
                over (SPI .. Next Header) || seq_hi itself (with
                cryptography's HMAC) and lets scapy do everything else
                (padding, CBC/NULL, framing, tunnel/transport handling).
  strip-udp     Transport mode, IPv6, UDP encapsulation, decrypting. scapy's
                _decrypt_esp sets `nh` on the UDP layer and leaves the UDP
                header in the result (IPv6 / UDP(4500) / inner payload), so
                this script removes the 8-octet UDP header (Next Header 50
                in the IPv6 or last extension header, payload length - 8)
                before handing the packet to scapy.
  udp4-length   UDP encapsulation over IPv4, encrypting. scapy builds and
                re-parses the IPv4 and UDP headers before appending ESP, so
                the UDP length it writes is 8 (the header alone) instead of
                8 + the ESP packet (so a receiver that believes it sees an
                empty datagram); this script writes 8 + the ESP packet's
                length (the checksum stays 0, as RFC 3948 §2.1 allows).
  udp6-ext-nh   Transport mode, IPv6 with extension headers (here a
                Hop-by-Hop header), UDP encapsulation, encrypting. scapy
                sets the last extension header's Next Header to 50 (ESP)
                and then inserts the UDP header after it, so the packet
                says ESP where the UDP header is; this script writes 17.
  udp6-checksum UDP encapsulation over IPv6, encrypting. scapy always writes
                a zero UDP checksum in nat_t_header, which RFC 8200 §8.1
                forbids over IPv6; this script has scapy recompute it, so
                Espresso receives what a compliant IPv6 sender emits.

scapy's sequence-number arguments treat 0 as "not given" (`seq_num or
self.seq_num`, `esn or self.esn`), so every packet gets its own
SecurityAssociation constructed with seq_num=low and esn=high, which is
taken as is. scapy has no replay window, so it cannot infer the ESN high
bits: it is told them (Espresso infers them from its window).

Besides decrypting, the script checks with scapy what it can about
Espresso's outer headers (IPv4 header checksum, UDP ports, length and
checksum: zero over IPv4 per RFC 3948 §2.1, correct and non-zero over
IPv6), the SPI and the low sequence number, and that every original packet
is well formed (scapy recomputes the same lengths and checksums).
"""
import functools
import hashlib
import hmac
import struct
import sys

from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.utils import checksum

HASHES = {
    "SHA2-256-128": (hashlib.sha256, 16),
    "SHA2-384-192": (hashlib.sha384, 24),
    "SHA2-512-256": (hashlib.sha512, 32),
}
NAT_T_PORT = 4500


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def parse_fields(line):
    kind, *fields = line.rstrip("\n").split("\t")
    return kind, dict(f.split("=", 1) for f in fields)


def ip_class(data):
    check(len(data) > 0, "empty packet")
    version = data[0] >> 4
    check(version in (4, 6), "IP version %d" % version)
    return IP if version == 4 else IPv6


def is_aead(case):
    return case["auth"] == "NULL"


@functools.lru_cache(maxsize=None)
def check_well_formed(data, what):
    """scapy recomputes the same lengths and checksums for `data` (cached:
    CBC packets of several backends share their original)."""
    pkt = ip_class(data)(data)
    if IP in pkt:
        del pkt[IP].chksum
        del pkt[IP].len
    if IPv6 in pkt:
        del pkt[IPv6].plen
    if UDP in pkt:
        del pkt[UDP].chksum
        del pkt[UDP].len
    rebuilt = raw(pkt)
    check(rebuilt == data, "%s is not well formed per scapy: %s != %s"
          % (what, data.hex(), rebuilt.hex()))


def make_sa(case, direction, seq):
    """A scapy SA for one packet of `direction` (e2s or s2e) at sequence
    number `seq`."""
    outbound_from_scapy = direction == "s2e"
    spi = int(case["spi_" + direction])
    tunnel = None
    if case["mode"] == "tunnel":
        outer = IP if case["outer"] == "4" else IPv6
        if outbound_from_scapy:
            tunnel = outer(src=case["scapy"], dst=case["espresso"])
        else:
            tunnel = outer(src=case["espresso"], dst=case["scapy"])
    nat_t = None
    if case["udp"] == "1":
        nat_t = UDP(sport=NAT_T_PORT, dport=NAT_T_PORT)
    auth = None if is_aead(case) else case["auth"]
    return SecurityAssociation(
        ESP,
        spi=spi,
        seq_num=seq & 0xFFFFFFFF,
        crypt_algo=case["crypt"],
        crypt_key=bytes.fromhex(case["enc_key_" + direction]),
        auth_algo=auth,
        auth_key=bytes.fromhex(case["auth_key_" + direction]) if auth else None,
        tunnel_header=tunnel,
        nat_t_header=nat_t,
        esn_en=case["esn"] == "1",
        esn=seq >> 32,
    )


def esn_icv(case, direction, esp_without_icv, seq):
    """RFC 4303 §3.3.2.2: the ICV over the ESP packet and seq_hi."""
    digest, icv_len = HASHES[case["auth"]]
    key = bytes.fromhex(case["auth_key_" + direction])
    mac = hmac.new(key, digestmod=digest)
    mac.update(esp_without_icv + struct.pack("!L", seq >> 32))
    return mac.digest()[:icv_len]


def check_outer(case, data, seq):
    """What scapy can tell about Espresso's outer headers."""
    cls = ip_class(data)
    v4 = cls is IP
    check(v4 == (case["outer"] == "4"), "outer family")
    pkt = cls(data)
    if v4:
        check(checksum(data[:pkt.ihl * 4]) == 0, "outer IPv4 header checksum")
        check(pkt.len == len(data), "outer IPv4 total length")
    else:
        check(pkt.plen == len(data) - 40, "outer IPv6 payload length")
    if case["mode"] == "tunnel":
        check(pkt.src == case["espresso"] and pkt.dst == case["scapy"],
              "outer addresses %s -> %s" % (pkt.src, pkt.dst))
    if case["udp"] == "1":
        check(UDP in pkt, "no UDP header")
        udp = pkt[UDP]
        check(udp.sport == NAT_T_PORT and udp.dport == NAT_T_PORT,
              "UDP ports %d -> %d" % (udp.sport, udp.dport))
        check(udp.len == len(raw(udp)), "UDP length")
        if v4:
            check(udp.chksum == 0, "UDP checksum over IPv4 is %#x, not 0"
                  % udp.chksum)
        else:
            datagram = raw(udp)
            check(udp.chksum != 0 and in6_chksum(17, udp, datagram) == 0,
                  "UDP checksum over IPv6 %#x does not verify" % udp.chksum)
    else:
        check(UDP not in pkt, "unexpected UDP encapsulation")
    check(ESP in pkt, "no ESP header")
    esp = pkt[ESP]
    check(esp.spi == int(case["spi_e2s"]), "SPI %#x" % esp.spi)
    check(esp.seq == seq & 0xFFFFFFFF, "sequence number %#x" % esp.seq)
    return pkt


IPV6_EXT_HEADERS = (0, 43, 60)  # Hop-by-Hop, Routing, Destination Options


def ipv6_upper_layer(data):
    """(offset of the Next Header byte that names the upper layer, offset
    of the upper layer) after the extension headers scapy can insert ESP
    behind."""
    nh_at, at = 6, 40
    while data[nh_at] in IPV6_EXT_HEADERS:
        nh_at, at = at, at + (data[at + 1] + 1) * 8
    return nh_at, at


def strip_udp_v6(data):
    """IPv6 [/ ext] / UDP / ESP -> IPv6 [/ ext] / ESP (see `strip-udp`)."""
    nh_at, at = ipv6_upper_layer(data)
    check(data[nh_at] == 17, "expected UDP after the IPv6 headers")
    out = bytearray(data[:at] + data[at + 8:])
    out[nh_at] = 50
    out[4:6] = struct.pack("!H", len(out) - 40)
    return bytes(out)


def decrypt_from_espresso(case, req):
    """Espresso -> scapy: returns (plaintext, tags)."""
    seq = int(req["seq"])
    data = bytes.fromhex(req["esp"])
    inner = bytes.fromhex(req["inner"])
    check_well_formed(inner, "original packet")
    check_outer(case, data, seq)
    tags = []
    if case["mode"] == "transport" and case["udp"] == "1" and case["outer"] == "6":
        data = strip_udp_v6(data)
        tags.append("strip-udp")
    pkt = ip_class(data)(data)
    sa = make_sa(case, "e2s", seq)
    verify = True
    if case["esn"] == "1" and not is_aead(case):
        esp = raw(pkt[ESP])
        icv_len = HASHES[case["auth"]][1]
        want = esn_icv(case, "e2s", esp[:-icv_len], seq)
        check(hmac.compare_digest(esp[-icv_len:], want),
              "ICV with ESN high bits does not verify")
        check(pkt[ESP].spi == sa.spi, "SPI")
        verify = False
        tags.append("esn-icv")
    plain = raw(sa.decrypt(pkt, verify=verify))
    return plain, tags


def encrypt_for_espresso(case, req):
    """scapy -> Espresso: returns (ESP packet, tags)."""
    seq = int(req["seq"])
    inner = bytes.fromhex(req["inner"])
    check_well_formed(inner, "original packet")
    sa = make_sa(case, "s2e", seq)
    pkt = sa.encrypt(ip_class(inner)(inner))
    data = raw(pkt)
    tags = []
    if case["esn"] == "1" and not is_aead(case):
        icv_len = HASHES[case["auth"]][1]
        esp = raw(pkt[ESP])
        check(data.endswith(esp), "ESP is not the last layer")
        data = data[:-icv_len] + esn_icv(case, "s2e", esp[:-icv_len], seq)
        tags.append("esn-icv")
    if case["udp"] == "1" and case["outer"] == "4":
        ihl = (data[0] & 0x0F) * 4
        (udp_len,) = struct.unpack("!H", data[ihl + 4:ihl + 6])
        check(udp_len == 8, "scapy now writes the UDP length")
        fixed = struct.pack("!H", len(data) - ihl)
        data = data[:ihl + 4] + fixed + data[ihl + 6:]
        tags.append("udp4-length")
    if case["mode"] == "transport" and case["udp"] == "1" and case["outer"] == "6":
        nh_at, at = ipv6_upper_layer(data)
        if nh_at != 6:
            check(data[nh_at] == 50, "scapy now names UDP after extension headers")
            data = data[:nh_at] + b"\x11" + data[nh_at + 1:]
            tags.append("udp6-ext-nh")
    if case["udp"] == "1" and case["outer"] == "6":
        again = IPv6(data)
        check(again[UDP].chksum == 0, "scapy now fills the IPv6 UDP checksum")
        del again[UDP].chksum
        data = raw(again)
        tags.append("udp6-checksum")
    return data, tags


def clean(text):
    return " ".join(str(text).split())


def main(request_path, reply_path):
    cases = {}
    out = []
    with open(request_path) as f:
        for line in f:
            kind, fields = parse_fields(line)
            if kind == "case":
                cases[fields["id"]] = fields
                continue
            case = cases[fields["case"]]
            if kind == "e2s":
                work, key = decrypt_from_espresso, "plain"
            elif kind == "s2e":
                work, key = encrypt_for_espresso, "esp"
            else:
                raise ValueError("unknown record %r" % kind)
            head = "%s\tcase=%s\tn=%s" % (kind, fields["case"], fields["n"])
            try:
                result, tags = work(case, fields)
                out.append("%s\t%s=%s\ttags=%s"
                           % (head, key, result.hex(), ",".join(tags)))
            except Exception as e:  # reported per packet, never swallowed
                out.append("%s\terror=%s: %s\ttags="
                           % (head, type(e).__name__, clean(e)))
    with open(reply_path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
