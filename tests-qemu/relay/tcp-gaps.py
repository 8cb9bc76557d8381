#!/usr/bin/env python3
"""Where a guest's TCP sender went quiet, from a relay pcap (`relay.py --pcap`).

For every TCP flow the guest sends data on (it is the side whose MAC sends
from port 80 unless --port says otherwise), prints the longest pauses between
two of its data segments and what it sent after each pause (new data or a
retransmission, and of which sequence number), then all pauses in time order,
marked where the peer's cumulative ACK advanced before the next one. Pauses
that keep doubling although ACKs advance in between are a retransmission
timeout that progress does not reset.

The relay records the guest's side of the link: frames as the guest sent them
(before any fault) and as it received them (after the faults).
"""

import argparse
import struct
import sys

ETHERTYPE_IPV4 = 0x0800
IP_PROTO_TCP = 6


def frames(path):
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24 or struct.unpack("<I", header[:4])[0] != 0xA1B2C3D4:
            raise SystemExit(f"{path}: not a little-endian microsecond pcap")
        while True:
            record = f.read(16)
            if len(record) < 16:
                return
            sec, usec, incl, _ = struct.unpack("<IIII", record)
            yield sec + usec / 1e6, f.read(incl)


def segments(path):
    """(time, src_port, dst_port, seq, ack, payload_len, flags) of IPv4 TCP frames."""
    for t, frame in frames(path):
        if len(frame) < 54 or struct.unpack_from("!H", frame, 12)[0] != ETHERTYPE_IPV4:
            continue
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] != IP_PROTO_TCP:
            continue
        total = struct.unpack_from("!H", frame, 16)[0]
        tcp = 14 + ihl
        sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", frame, tcp)
        payload = total - ihl - (offset >> 4) * 4
        yield t, sport, dport, seq, ack, payload, flags


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pcap")
    parser.add_argument("--port", type=int, default=80, help="the guest's TCP port (default 80)")
    parser.add_argument("--top", type=int, default=10, help="pauses to show per flow (default 10)")
    parser.add_argument("--min", type=float, default=0.5, help="shortest pause shown, s (default 0.5)")
    args = parser.parse_args(argv)

    flows = {}
    start = None
    for t, sport, dport, seq, ack, payload, flags in segments(args.pcap):
        start = t if start is None else start
        if sport == args.port:
            f = flows.setdefault(dport, {"sent": [], "acks": [], "max_seq": None})
            if payload > 0:
                end = (seq + payload) & 0xFFFFFFFF
                new = f["max_seq"] is None or ((end - f["max_seq"]) & 0xFFFFFFFF) < 1 << 31
                if new:
                    f["max_seq"] = end
                f["sent"].append((t - start, seq, payload, new))
        elif dport == args.port and sport in flows and flags & 0x10:
            flows[sport]["acks"].append((t - start, ack))

    for port, f in sorted(flows.items()):
        sent = f["sent"]
        retransmitted = sum(1 for s in sent if not s[3])
        data = sum(s[2] for s in sent if s[3])
        print(f"flow :{args.port} -> :{port}: {len(sent)} data segments, {data} new bytes, "
              f"{retransmitted} retransmitted")
        pauses = []
        for before, after in zip(sent, sent[1:]):
            gap = after[0] - before[0]
            if gap >= args.min:
                pauses.append((gap, before[0], after))
        for gap, at, after in sorted(pauses, reverse=True)[: args.top]:
            kind = "new data" if after[3] else f"retransmission of seq {after[1]}"
            print(f"  {gap:7.3f} s quiet from {at:9.3f} s, then {kind}")
        # In time order; "+" marks a pause after which, before the next one,
        # the peer's cumulative ACK advanced (progress that should have
        # reset a backed-off retransmission timer).
        chain = []
        acks = f["acks"]
        for i, (gap, at, after) in enumerate(sorted(pauses, key=lambda p: p[1])):
            chain.append(f"{gap:.2f}")
            nxt = sorted(pauses, key=lambda p: p[1])[i + 1][1] if i + 1 < len(pauses) else None
            window = [a[1] for a in acks if after[0] <= a[0] and (nxt is None or a[0] <= nxt)]
            if len(set(window)) > 1:
                chain[-1] += "+"
        if chain:
            print(f"  pauses over {args.min:g} s in time order ('+': the ACK advanced before "
                  f"the next pause): {' '.join(chain)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
