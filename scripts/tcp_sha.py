#!/usr/bin/python3
"""Moves a file over one TCP connection and prints its SHA-256, so that the
data that crossed a tunnel can be compared byte for byte (iperf3's -F cannot:
its server stops reading when the test ends, with data still in flight).

  tcp_sha.py recv PORT            accept one connection, read to EOF
  tcp_sha.py send HOST PORT FILE  send FILE, close
Both print "<bytes> <sha256>".
"""
import hashlib
import socket
import sys


def main():
    h = hashlib.sha256()
    n = 0
    if sys.argv[1] == "recv":
        fam = socket.AF_INET6
        srv = socket.socket(fam, socket.SOCK_STREAM)
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("::", int(sys.argv[2])))
        srv.listen(1)
        srv.settimeout(60)
        conn, _ = srv.accept()
        conn.settimeout(60)
        while True:
            b = conn.recv(1 << 16)
            if not b:
                break
            h.update(b)
            n += len(b)
    else:
        host, port, path = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        conn = socket.create_connection((host, port), timeout=60)
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 16)
                if not b:
                    break
                conn.sendall(b)
                h.update(b)
                n += len(b)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
        conn.close()
    print(n, h.hexdigest())


if __name__ == "__main__":
    main()
