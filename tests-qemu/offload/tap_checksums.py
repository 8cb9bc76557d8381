"""Checks the TCP checksums of frames a guest sends into a tap, as the host
would complete them when forwarding (a local receiver trusts a partial
checksum and never looks). A frame the kernel marks as not ready
(CHECKSUM_PARTIAL, seen as TP_STATUS_CSUMNOTREADY) must carry the folded IPv4
pseudo-header sum for its whole TCP length; any other frame must verify.

usage: tap_checksums.py IFACE FRAMES SECONDS   (run inside the namespace)
Prints `ready` once capturing, then one JSON line of counts (frames longer than
1514 bytes, i.e. TSO frames, are also counted in over_mtu). Ends after FRAMES
TCP frames, after SECONDS, or 2 s after the last TCP frame, whichever comes
first. Python 3.11 stdlib only."""
import json, socket, struct, sys, time

iface, want_frames, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
SOL_PACKET, PACKET_AUXDATA, CSUMNOTREADY = 263, 8, 1 << 3
IDLE_END_S = 2.0
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((iface, 0))
s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
s.settimeout(0.2)


def fold(total):
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def sum16(data):
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


counts = {"partial_ok": 0, "partial_bad": 0, "full_ok": 0, "full_bad": 0, "over_mtu": 0}
print("ready", flush=True)
end = time.monotonic() + seconds
last = None
while time.monotonic() < end and sum(counts.values()) - counts["over_mtu"] < want_frames:
    if last is not None and time.monotonic() - last > IDLE_END_S:
        break
    try:
        data, anc, _, addr = s.recvmsg(70000, socket.CMSG_SPACE(32))
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(data) < 34 + 20:
        continue
    ihl = (data[14] & 0x0F) * 4
    if data[23] != 6:
        continue
    last = time.monotonic()
    status = 0
    for level, kind, payload in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA:
            status = struct.unpack("I", payload[:4])[0]
    ip, tcp = data[14:14 + ihl], data[14 + ihl:]
    if len(data) > 1514:
        counts["over_mtu"] += 1
    pseudo = sum16(ip[12:20]) + 6 + len(tcp)
    if status & CSUMNOTREADY:
        ok = struct.unpack("!H", tcp[16:18])[0] == fold(pseudo)
        counts["partial_ok" if ok else "partial_bad"] += 1
    else:
        ok = fold(pseudo + sum16(tcp)) == 0xFFFF
        counts["full_ok" if ok else "full_bad"] += 1
print(json.dumps(counts), flush=True)
