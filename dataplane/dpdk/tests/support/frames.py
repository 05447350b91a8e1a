#!/usr/bin/python3
"""Kernel-side traffic for the forwarding tests: sends COUNT Ethernet frames
of mixed sizes (60..1514 bytes) out of interface TX and checks that each one
arrives, byte for byte and exactly once, on interface RX.

Flow control: at most WINDOW frames are in flight, so no queue in the path
(veth, af_packet rings) overflows. Prints one JSON line with the outcome and
exits 0 only if every frame arrived intact.
"""
import json
import os
import random
import select
import socket
import struct
import sys
import time

ETHERTYPE = 0x88B5  # IEEE 802 local experimental ethertype
WINDOW = 64


def frame(seq, size, rng):
    dst = b"\x02\x00\x00\x00\x00\x02"
    src = b"\x02\x00\x00\x00\x00\x01"
    hdr = dst + src + struct.pack("!HI", ETHERTYPE, seq)
    return hdr + rng.randbytes(size - len(hdr))


def main():
    tx_if, rx_if, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rng = random.Random(seed)
    sizes = [60, 64, 128, 512, 1024, 1400, 1514]
    frames = []
    for i in range(count):
        size = sizes[i % len(sizes)] if i % 3 else rng.randint(60, 1514)
        frames.append(frame(i, size, rng))

    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.bind((tx_if, 0))
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    rx.bind((rx_if, ETHERTYPE))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.setblocking(False)

    got = {}
    dup = bad = 0
    nxt = 0
    deadline = time.monotonic() + 120
    last_progress = time.monotonic()
    while len(got) < count and time.monotonic() < deadline:
        while nxt < count and nxt - len(got) < WINDOW:
            tx.send(frames[nxt])
            nxt += 1
        r, _, _ = select.select([rx], [], [], 0.5)
        if not r:
            if time.monotonic() - last_progress > 5:
                break  # stalled: frames lost
            continue
        while True:
            try:
                data = rx.recv(4096)
            except BlockingIOError:
                break
            if len(data) < 18 or struct.unpack("!H", data[12:14])[0] != ETHERTYPE:
                continue
            seq = struct.unpack("!I", data[14:18])[0]
            if seq >= count or data != frames[seq]:
                bad += 1
                continue
            if seq in got:
                dup += 1
                continue
            got[seq] = True
            last_progress = time.monotonic()
    missing = count - len(got)
    ok = missing == 0 and bad == 0 and dup == 0
    print(json.dumps({"sent": nxt, "received": len(got), "missing": missing,
                      "corrupt": bad, "duplicate": dup,
                      "bytes": sum(len(f) for f in frames), "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
