"""The records of vs-strongswan.sh, from iperf3's JSON and the counters the
script read.

  vs_record.py record RECORDS SYSTEM VERSION TCP.json UDP.json WAN0 WAN1 WAN2
                      UDP_LEN CPU_TICKS CLK_TCK GATEWAY_PROCS
      appends the system's record to RECORDS (one JSON object a line),
      prints its figures; exit status 1 when the traffic did not go
      through gwA (fewer WAN packets than TCP segments or UDP datagrams
      received).
  vs_record.py result RECORDS DATE TCP_S UDP_S UDP_LEN
      prints the whole result: every record and the Espresso / strongSwan
      ratios.
"""

import json
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def record(args):
    (records, name, version, tcp_f, udp_f, w0, w1, w2, udp_len, ticks, hz,
     procs) = args
    tcp, udp = load(tcp_f), load(udp_f)
    ts = tcp.get("end", {}).get("sum_sent", {})
    tr = tcp.get("end", {}).get("sum_received", {})
    us = udp.get("end", {}).get("sum_sent", {})
    ur = udp.get("end", {}).get("sum_received", {})
    secs = ur.get("seconds", 0)
    sent = us.get("packets", 0)
    lost = ur.get("lost_packets", 0)
    ipsec = name != "plain"
    r = {
        "system": name,
        "version": version,
        "esp": "aes128gcm16" if ipsec else None,
        "udp_encap": ipsec,
        "tcp_seconds": ts.get("seconds", 0),
        # The receiver's goodput.
        "tcp_gbps": tr.get("bits_per_second", 0) / 1e9,
        "tcp_retransmits": ts.get("retransmits", 0),
        # Packets gwA sent on the WAN during the run (ESP for IPsec).
        "tcp_wan_packets": int(w1) - int(w0),
        # CPU seconds both gateway processes used during the TCP run (none
        # for the kernel's forwarding, which runs in softirq context).
        "tcp_gateway_cpu_s": int(ticks) / int(hz) if int(procs) else None,
        "udp_payload_bytes": int(udp_len),
        "udp_seconds": secs,
        "udp_sent_packets": sent,
        "udp_lost_packets": lost,
        "udp_sent_pps": sent / secs if secs else 0,
        "udp_received_pps": (sent - lost) / secs if secs else 0,
        "udp_loss_percent": 100.0 * lost / sent if sent else 0,
        "udp_wan_packets": int(w2) - int(w1),
    }
    with open(records, "a") as f:
        f.write(json.dumps(r) + "\n")
    cpu = ""
    if r["tcp_gateway_cpu_s"] is not None:
        cpu = f", gateways on CPU {r['tcp_gateway_cpu_s']:.2f} s"
    print(f"    TCP {r['tcp_gbps']:.3f} Gbit/s, {r['tcp_retransmits']} retransmits, "
          f"{r['tcp_wan_packets']} packets out of gwA's WAN{cpu}")
    print(f"    UDP {r['udp_payload_bytes']} B: sent {r['udp_sent_pps'] / 1e3:.1f} kpps, "
          f"received {r['udp_received_pps'] / 1e3:.1f} kpps, loss "
          f"{r['udp_loss_percent']:.1f} %, {r['udp_wan_packets']} packets out of gwA's WAN")
    # Through gwA: at least one WAN packet per TCP segment the receiver got
    # (each at most 1500 bytes) and per UDP datagram received.
    received = r["tcp_gbps"] * 1e9 / 8 * r["tcp_seconds"]
    ok = r["tcp_gbps"] > 0 and r["tcp_wan_packets"] >= received / 1500
    ok = ok and sent - lost > 0 and r["udp_wan_packets"] >= sent - lost
    return 0 if ok else 1


def result(args):
    records, date, tcp_s, udp_s, udp_len = args
    with open(records) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    by = {r["system"]: r for r in recs}
    out = {
        "date": date,
        "topology": "hostA - gwA - WAN - gwB - hostB: veth pairs between network "
                    "namespaces on one machine",
        "tcp_seconds": float(tcp_s),
        "udp_seconds": float(udp_s),
        "udp_payload_bytes": int(udp_len),
        "systems": recs,
        "tcp_ratio": None,
        "udp_ratio": None,
    }
    e, s = by.get("espresso"), by.get("strongswan")
    if e and s:
        if s["tcp_gbps"] > 0:
            out["tcp_ratio"] = e["tcp_gbps"] / s["tcp_gbps"]
        if s["udp_received_pps"] > 0:
            out["udp_ratio"] = e["udp_received_pps"] / s["udp_received_pps"]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "record" and len(sys.argv) == 14:
        sys.exit(record(sys.argv[2:]))
    if cmd == "result" and len(sys.argv) == 7:
        sys.exit(result(sys.argv[2:]))
    sys.exit(__doc__)
