#!/usr/bin/python3
"""Verify the ICV of chosen ESP frames of a capture, independently of tshark.

Usage: esp_icv.py PCAP ESP_SA FRAME_NUMBER...

ESP_SA is Wireshark's `esp_sa` table (the file the tests write for tshark):
"IPv4","src","dst","0xSPI","<encryption>","0xKEY","<authentication>","0xKEY".
Each frame (1-based, as tshark numbers them) is ESP over IPv4 or IPv6, plain
(protocol 50) or in UDP (RFC 3948). Its ICV is recomputed with Python's
`cryptography` (AES-GCM, RFC 4106; ChaCha20-Poly1305, RFC 7634; HMAC-SHA-2,
RFC 4868); sequence numbers are 32-bit (no ESN).

Why: tshark checks the ICV only after it has dissected the decrypted
payload, so an exception in an inner dissector (TCP reassembly of a
retransmission, for one) leaves a frame with neither `esp.icv_good` nor
`esp.icv_bad`. Those frames are checked here instead of being counted as
failures or ignored.

Prints one line per frame and exits 0 when every frame's ICV is correct.
"""

import csv
import hashlib
import hmac
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from scapy.utils import PcapNgReader, PcapReader

HMACS = {"SHA-256": (hashlib.sha256, 16), "SHA-384": (hashlib.sha384, 24), "SHA-512": (hashlib.sha512, 32)}


def load_sas(path):
    sas = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 8:
                continue
            _, src, dst, spi, enc, ekey, auth, akey = row[:8]
            sas[(src, dst, int(spi, 16))] = (enc, bytes.fromhex(ekey[2:]), auth, bytes.fromhex(akey[2:]) if akey else b"")
    return sas


def esp_of(frame):
    """(src, dst, esp bytes) of an Ethernet frame, or None."""
    if len(frame) < 14:
        return None
    etype = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if etype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0xF) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        src, dst, proto = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20])), ip[9]
        body = ip[ihl:total]
    elif etype == 0x86DD and len(ip) >= 40:
        import ipaddress

        plen = struct.unpack("!H", ip[4:6])[0]
        src, dst, proto = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40])), ip[6]
        body = ip[40 : 40 + plen]
    else:
        return None
    if proto == 17 and len(body) >= 12:
        body = body[8:]
        if body[:4] == b"\0\0\0\0":
            return None  # IKE (non-ESP marker)
    elif proto != 50:
        return None
    return src, dst, body


def verify(esp, sa):
    enc, ekey, auth, akey = sa
    header = esp[:8]
    if "GCM" in enc or "ChaCha20" in enc:
        aead = AESGCM(ekey[:-4]) if "GCM" in enc else ChaCha20Poly1305(ekey[:-4])
        try:
            aead.decrypt(ekey[-4:] + esp[8:16], esp[16:], header)
            return True
        except InvalidTag:
            return False
    for name, (digest, icv_len) in HMACS.items():
        if name in auth:
            want = hmac.new(akey, esp[:-icv_len], digest).digest()[:icv_len]
            return hmac.compare_digest(want, esp[-icv_len:])
    raise ValueError(f"unsupported SA: {enc} / {auth}")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pcap, sa_file, wanted = sys.argv[1], sys.argv[2], {int(n) for n in sys.argv[3:]}
    sas = load_sas(sa_file)
    reader = PcapNgReader if pcap.endswith(".pcapng") else PcapReader
    ok = bad = 0
    for n, pkt in enumerate(reader(pcap), start=1):
        if n not in wanted:
            continue
        wanted.discard(n)
        found = esp_of(bytes(pkt))
        if not found:
            print(f"frame {n}: not ESP")
            bad += 1
            continue
        src, dst, esp = found
        spi = struct.unpack("!I", esp[:4])[0]
        sa = sas.get((src, dst, spi))
        if sa is None:
            print(f"frame {n}: no key for {src} -> {dst} spi {spi:#010x}")
            bad += 1
        elif verify(esp, sa):
            print(f"frame {n}: {src} -> {dst} spi {spi:#010x} seq {struct.unpack('!I', esp[4:8])[0]}: ICV correct")
            ok += 1
        else:
            print(f"frame {n}: {src} -> {dst} spi {spi:#010x} seq {struct.unpack('!I', esp[4:8])[0]}: ICV WRONG")
            bad += 1
    for n in sorted(wanted):
        print(f"frame {n}: not in the capture")
        bad += 1
    sys.exit(0 if bad == 0 else 1)


if __name__ == "__main__":
    main()
