#!/usr/bin/env python3
"""Seeded network-fault relay between a tap device and a QEMU dgram netdev.

One side is a tap device (IFF_TAP | IFF_NO_PI, one Ethernet frame per read),
normally inside a network namespace the test created; the other is a unix
datagram socket that talks to QEMU's

    -netdev dgram,id=net0,local.type=unix,local.path=QEMU_SOCK,
            remote.type=unix,remote.path=RELAY_SOCK

(one Ethernet frame per datagram). Every frame in each direction gets a
decision from that direction's seeded random stream: lose it, corrupt one
byte of it, duplicate it, hold it back behind the next frame (reorder), and
how long to delay it. A frame's decision depends only on the seed, the
direction and the frame's index in that direction, never on timing or on
earlier outcomes (every frame draws the same number of random values), so
`--dry-run` shows exactly the decisions a run with the same seed makes.

Delays keep frames in order unless `--jitter-reorders` is given: reordering
then comes only from `--reorder`. An optional rate limit serialises frames at
that many kbit/s through a queue of at most `limit` frames (tail drop).

The relay logs its seed and settings on stderr at start, prints `relay: ready`
once the tap and the socket are open, and prints its counters as one line
`relay: counts {json}` when it ends: on SIGTERM or SIGINT, at end of stdin
with `--exit-on-stdin-eof`, or after `--max-seconds`. Replay a failure with
the same `--seed` and settings: the n-th frame of each direction gets the same
decision again (`--log-decisions N` logs them). Whether the whole run repeats
depends on the two ends sending the same frames in the same order, which
timing can change. `--pcap FILE` records the guest's side of the link (frames
as the guest sent them, frames as it received them); `tcp-gaps.py FILE` shows
where its TCP sender went quiet.

Frames QEMU cannot take yet (its socket queue is full: 10 datagrams) wait in
the relay; frames sent before QEMU's socket exists are lost and counted under
`send_errors`.

Fault specs (`--to-guest`, `--to-host`) are comma-separated key=value items
overriding the common options for one direction, for example
`loss=5,delay=20,jitter=10,reorder=10,dup=1,corrupt=0,rate=0,limit=256`.
"""

import argparse
import collections
import errno
import fcntl
import heapq
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
ETH_HEADER = 14
ETHERTYPE_IPV4 = 0x0800
MAX_FRAME = 65536
# Frames read from one source per wake-up before timed sends run again.
READ_BUDGET = 64
# Longest sleep between checks of the stop flag and the lifetime bound.
MAX_SLEEP_S = 0.2
DIRECTIONS = ("to-guest", "to-host")
# Random values each frame draws, whatever its fate (keeps streams aligned).
DRAWS_PER_FRAME = 7

SPEC_KEYS = {
    "loss": float,
    "delay": float,
    "jitter": float,
    "dup": float,
    "reorder": float,
    "corrupt": float,
    "rate": float,
    "limit": int,
    "hold": float,
}


def log(message):
    sys.stderr.write(f"relay: {message}\n")
    sys.stderr.flush()


class Params:
    """One direction's fault settings (percentages, milliseconds, kbit/s)."""

    def __init__(self, loss, delay, jitter, dup, reorder, corrupt, rate, limit, hold):
        self.loss = loss
        self.delay = delay
        self.jitter = jitter
        self.dup = dup
        self.reorder = reorder
        self.corrupt = corrupt
        self.rate = rate
        self.limit = limit
        self.hold = hold

    def override(self, spec):
        """A copy with `key=value,...` applied; ValueError on a bad item."""
        values = dict(vars(self))
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in SPEC_KEYS:
                raise ValueError(f"bad fault spec item {item!r} (keys: {', '.join(SPEC_KEYS)})")
            values[key] = SPEC_KEYS[key](value)
        params = Params(**values)
        params.check()
        return params

    def check(self):
        for key in ("loss", "dup", "reorder", "corrupt"):
            value = getattr(self, key)
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{key}={value}: a percentage 0..100")
        for key in ("delay", "jitter", "rate", "hold"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must not be negative")
        if self.limit < 1:
            raise ValueError("limit must be at least 1 frame")

    def describe(self):
        return (
            f"loss={self.loss:g}% delay={self.delay:g}ms jitter={self.jitter:g}ms "
            f"dup={self.dup:g}% reorder={self.reorder:g}% corrupt={self.corrupt:g}% "
            f"rate={self.rate:g}kbit/s limit={self.limit} hold={self.hold:g}ms"
        )


class Decision:
    """What happens to one frame. `corrupt_at` is a fraction of the frame's
    bytes after the Ethernet header (None: not corrupted); `corrupt_xor` the
    non-zero mask applied there."""

    __slots__ = ("index", "lose", "corrupt_at", "corrupt_xor", "dup", "reorder", "delay_ms")

    def __init__(self, index, lose, corrupt_at, corrupt_xor, dup, reorder, delay_ms):
        self.index = index
        self.lose = lose
        self.corrupt_at = corrupt_at
        self.corrupt_xor = corrupt_xor
        self.dup = dup
        self.reorder = reorder
        self.delay_ms = delay_ms

    def text(self):
        if self.lose:
            return f"{self.index} lose"
        parts = [f"{self.index} delay={self.delay_ms:.3f}ms"]
        if self.corrupt_at is not None:
            parts.append(f"corrupt@{self.corrupt_at:.6f}^0x{self.corrupt_xor:02x}")
        if self.dup:
            parts.append("dup")
        if self.reorder:
            parts.append("reorder")
        return " ".join(parts)


def stream(seed, direction):
    """The seeded random stream of one direction."""
    return random.Random(f"unikernel-relay:{seed}:{direction}")


def decide(rng, params, index):
    """The decision for frame `index`; draws exactly DRAWS_PER_FRAME values."""
    u_loss, u_corrupt, u_pos, u_xor, u_dup, u_reorder, u_jitter = (
        rng.random() for _ in range(DRAWS_PER_FRAME)
    )
    delay = params.delay + (2.0 * u_jitter - 1.0) * params.jitter
    return Decision(
        index=index,
        lose=u_loss * 100.0 < params.loss,
        corrupt_at=u_pos if u_corrupt * 100.0 < params.corrupt else None,
        corrupt_xor=1 + int(u_xor * 255.0) % 255,
        dup=u_dup * 100.0 < params.dup,
        reorder=u_reorder * 100.0 < params.reorder,
        delay_ms=max(0.0, delay),
    )


def corrupt(frame, decision):
    """Flip bits in one byte covered by an IPv4 or TCP/UDP checksum: only IPv4
    frames, only after the Ethernet header (a real NIC's CRC would catch the
    rest). Returns the frame and whether it changed."""
    if decision.corrupt_at is None or len(frame) <= ETH_HEADER:
        return frame, False
    if struct.unpack_from("!H", frame, 12)[0] != ETHERTYPE_IPV4:
        return frame, False
    # Only inside the IP packet: Ethernet padding after it (short frames such
    # as bare ACKs are padded to 60 bytes) is covered by no checksum.
    span = len(frame) - ETH_HEADER
    if len(frame) >= ETH_HEADER + 4:
        total_length = struct.unpack_from("!H", frame, ETH_HEADER + 2)[0]
        if 20 <= total_length < span:
            span = total_length
    offset = ETH_HEADER + min(span - 1, int(decision.corrupt_at * span))
    data = bytearray(frame)
    data[offset] ^= decision.corrupt_xor
    return bytes(data), True


def new_counts():
    return {
        "frames_in": 0,
        "bytes_in": 0,
        "lost": 0,
        "corrupted": 0,
        "corrupt_skipped": 0,
        "duplicated": 0,
        "reordered": 0,
        "tail_dropped": 0,
        "frames_out": 0,
        "bytes_out": 0,
        "send_errors": 0,
        "send_blocked": 0,
        "max_queue": 0,
    }


class Direction:
    def __init__(self, name, params, seed):
        self.name = name
        self.params = params
        self.rng = stream(seed, name)
        self.index = 0
        self.counts = new_counts()
        self.queued = 0
        self.last_departure = 0.0
        self.link_free = 0.0
        # (frames, deadline): a frame held back until the next one is scheduled.
        self.held = None
        # Frames due but not yet taken by the receiver, oldest first.
        self.outbox = collections.deque()


class Pcap:
    """The guest's view of the link in libpcap format: frames as the guest sent
    them (before any fault) and as it receives them (after the faults)."""

    def __init__(self, path):
        self.file = open(path, "wb")
        self.file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, MAX_FRAME, 1))

    def write(self, frame):
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1e6)
        self.file.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        self.file.write(frame)

    def close(self):
        self.file.close()


class Relay:
    def __init__(self, args, params):
        self.args = args
        self.dirs = {name: Direction(name, params[name], args.seed) for name in DIRECTIONS}
        self.heap = []
        self.seq = 0
        self.stop_reason = None
        self.tap_fd = None
        self.sock = None
        self.pcap = Pcap(args.pcap) if args.pcap else None
        self.connected = False
        # Send errors by direction and errno name.
        self.errors = {}

    # -- setup -------------------------------------------------------------

    def open(self):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        ifr = struct.pack("16sH22x", self.args.tap.encode(), IFF_TAP | IFF_NO_PI)
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError:
            os.close(fd)
            raise
        self.tap_fd = fd
        if os.path.exists(self.args.listen):
            os.unlink(self.args.listen)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.args.listen)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock = sock

    def close(self):
        if self.pcap is not None:
            self.pcap.close()
        if self.sock is not None:
            self.sock.close()
            try:
                os.unlink(self.args.listen)
            except OSError:
                pass
        if self.tap_fd is not None:
            os.close(self.tap_fd)

    # -- forwarding --------------------------------------------------------

    def schedule(self, d, at, frames):
        for frame in frames:
            self.seq += 1
            heapq.heappush(self.heap, (at, self.seq, d.name, frame))
            d.queued += 1
        d.counts["max_queue"] = max(d.counts["max_queue"], d.queued)

    def ingress(self, d, frame, now):
        p = d.params
        dec = decide(d.rng, p, d.index)
        if d.index < self.args.log_decisions:
            log(f"decision {d.name} {dec.text()}")
        d.index += 1
        c = d.counts
        c["frames_in"] += 1
        c["bytes_in"] += len(frame)
        if dec.lose:
            c["lost"] += 1
            return
        if d.queued >= p.limit:
            c["tail_dropped"] += 1
            return
        frame, changed = corrupt(frame, dec)
        if changed:
            c["corrupted"] += 1
        elif dec.corrupt_at is not None:
            c["corrupt_skipped"] += 1
        leave = now
        if p.rate > 0:
            leave = max(now, d.link_free) + len(frame) * 8.0 / (p.rate * 1000.0)
            d.link_free = leave
        at = leave + dec.delay_ms / 1000.0
        if not self.args.jitter_reorders:
            at = max(at, d.last_departure)
        frames = [frame, frame] if dec.dup else [frame]
        if dec.dup:
            c["duplicated"] += 1
        if dec.reorder and d.held is None:
            # Held back: goes right behind the next frame scheduled in this
            # direction, or at its own time plus `hold` if none comes.
            c["reordered"] += 1
            d.held = (frames, at + p.hold / 1000.0)
            return
        self.schedule(d, at, frames)
        d.last_departure = at
        if d.held is not None:
            held, _ = d.held
            d.held = None
            self.schedule(d, at, held)

    def release_held(self, now):
        for d in self.dirs.values():
            if d.held is not None and d.held[1] <= now:
                held, deadline = d.held
                d.held = None
                at = max(deadline, d.last_departure)
                self.schedule(d, at, held)
                d.last_departure = at

    def send_due(self, now):
        """Moves frames whose time has come to their direction's outbox, then
        sends from each outbox until the receiver pushes back. A full receive
        queue (QEMU's unix socket holds `net.unix.max_dgram_qlen` = 10
        datagrams) makes frames wait, as on a link with a queue; they count
        towards `limit` until sent."""
        while self.heap and self.heap[0][0] <= now:
            _, _, name, frame = heapq.heappop(self.heap)
            self.dirs[name].outbox.append(frame)
        for d in self.dirs.values():
            self.flush(d)

    def send_to_qemu(self, frame):
        """Connected, so that poll reports QEMU's full receive queue (an
        unconnected unix datagram socket always polls writable). QEMU's socket
        appears only when QEMU starts, and anew if it restarts."""
        if not self.connected:
            self.sock.connect(self.args.connect)
            self.connected = True
        try:
            self.sock.send(frame)
        except (ConnectionRefusedError, FileNotFoundError):
            self.connected = False
            raise

    def flush(self, d):
        while d.outbox:
            frame = d.outbox[0]
            try:
                if d.name == "to-guest":
                    self.send_to_qemu(frame)
                else:
                    os.write(self.tap_fd, frame)
            except BlockingIOError:
                d.counts["send_blocked"] += 1
                return
            except OSError as e:
                # QEMU not there yet or gone, a tap that is down: the frame is lost.
                d.outbox.popleft()
                d.queued -= 1
                d.counts["send_errors"] += 1
                why = f"{d.name} {errno.errorcode.get(e.errno, e.errno)}"
                self.errors[why] = self.errors.get(why, 0) + 1
                continue
            d.outbox.popleft()
            d.queued -= 1
            d.counts["frames_out"] += 1
            d.counts["bytes_out"] += len(frame)
            if d.name == "to-guest" and self.pcap is not None:
                self.pcap.write(frame)

    def next_wakeup(self, now):
        times = [self.heap[0][0]] if self.heap else []
        times.extend(d.held[1] for d in self.dirs.values() if d.held is not None)
        if not times:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.0, min(times) - now))

    def read_tap(self, now):
        d = self.dirs["to-guest"]
        for _ in range(READ_BUDGET):
            try:
                frame = os.read(self.tap_fd, MAX_FRAME)
            except BlockingIOError:
                return
            self.ingress(d, frame, now)

    def read_sock(self, now):
        d = self.dirs["to-host"]
        for _ in range(READ_BUDGET):
            try:
                frame = self.sock.recv(MAX_FRAME)
            except BlockingIOError:
                return
            if self.pcap is not None:
                self.pcap.write(frame)
            self.ingress(d, frame, now)

    def run(self):
        sel = selectors.DefaultSelector()
        interest = {"tap": selectors.EVENT_READ, "sock": selectors.EVENT_READ}
        sel.register(self.tap_fd, interest["tap"], "tap")
        sel.register(self.sock, interest["sock"], "sock")
        if self.args.exit_on_stdin_eof:
            sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        end = time.monotonic() + self.args.max_seconds
        while self.stop_reason is None:
            now = time.monotonic()
            if now >= end:
                self.stop_reason = f"max-seconds {self.args.max_seconds:g} reached"
                break
            for key, events in sel.select(self.next_wakeup(now)):
                now = time.monotonic()
                if not events & selectors.EVENT_READ:
                    continue
                if key.data == "tap":
                    self.read_tap(now)
                elif key.data == "sock":
                    self.read_sock(now)
                elif not os.read(sys.stdin.fileno(), 4096):
                    self.stop_reason = "end of stdin"
            now = time.monotonic()
            self.release_held(now)
            self.send_due(now)
            # Wait for room only where frames are waiting for it.
            for source, fileobj, direction in (
                ("sock", self.sock, "to-guest"),
                ("tap", self.tap_fd, "to-host"),
            ):
                want = selectors.EVENT_READ
                if self.dirs[direction].outbox:
                    want |= selectors.EVENT_WRITE
                if want != interest[source]:
                    sel.modify(fileobj, want, source)
                    interest[source] = want
        sel.close()

    def counts(self):
        return {
            "seed": self.args.seed,
            "stop": self.stop_reason,
            "to_guest": self.dirs["to-guest"].counts,
            "to_host": self.dirs["to-host"].counts,
            "send_errors": self.errors,
        }


def dry_run(args, params):
    """The first N decisions of each direction, one per line."""
    for name in DIRECTIONS:
        rng = stream(args.seed, name)
        for index in range(args.dry_run):
            print(f"{name} {decide(rng, params[name], index).text()}")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tap", default="tap0", help="tap device to open or create (default tap0)")
    parser.add_argument("--listen", help="unix datagram socket to bind (QEMU's remote.path)")
    parser.add_argument("--connect", help="QEMU's unix datagram socket (its local.path)")
    parser.add_argument("--seed", type=int, help="random seed (default: from os.urandom, logged)")
    parser.add_argument("--loss", type=float, default=0.0, help="percent of frames lost")
    parser.add_argument("--delay", type=float, default=0.0, help="delay in ms")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="uniform +/- jitter in ms (delays below 0 become 0)")
    parser.add_argument("--dup", type=float, default=0.0, help="percent of frames duplicated")
    parser.add_argument("--reorder", type=float, default=0.0,
                        help="percent of frames held back behind the next one")
    parser.add_argument("--corrupt", type=float, default=0.0,
                        help="percent of frames with one byte flipped (IPv4 frames only)")
    parser.add_argument("--rate", type=float, default=0.0, help="rate limit in kbit/s (0: none)")
    parser.add_argument("--limit", type=int, default=1000,
                        help="frames queued per direction before tail drop (default 1000)")
    parser.add_argument("--hold", type=float, default=50.0,
                        help="longest a reordered frame waits for a successor, ms (default 50)")
    parser.add_argument("--to-guest", default="", metavar="SPEC",
                        help="overrides for frames towards the guest")
    parser.add_argument("--to-host", default="", metavar="SPEC",
                        help="overrides for frames from the guest")
    parser.add_argument("--jitter-reorders", action="store_true",
                        help="let jitter reorder frames (default: delays keep order)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="end after this long (default 900)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="end when stdin closes (the owner went away)")
    parser.add_argument("--pcap", metavar="FILE",
                        help="record the guest's view of the link (what it sends, what it gets)")
    parser.add_argument("--log-decisions", type=int, default=0, metavar="N",
                        help="log the decisions for the first N frames of each direction "
                             "(the same lines as --dry-run, after `relay: decision `)")
    parser.add_argument("--dry-run", type=int, metavar="N",
                        help="print the first N decisions of each direction and exit")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(8), "little")
    base = Params(args.loss, args.delay, args.jitter, args.dup, args.reorder, args.corrupt,
                  args.rate, args.limit, args.hold)
    try:
        base.check()
        params = {"to-guest": base.override(args.to_guest), "to-host": base.override(args.to_host)}
    except ValueError as e:
        parser.error(str(e))
    if args.dry_run is None and (not args.listen or not args.connect):
        parser.error("--listen and --connect are required (or --dry-run)")
    if args.dry_run is not None and args.dry_run < 0:
        parser.error("--dry-run N needs N >= 0")
    if args.log_decisions < 0:
        parser.error("--log-decisions N needs N >= 0")
    if args.max_seconds <= 0:
        parser.error("--max-seconds must be positive")
    return args, params


def main(argv):
    args, params = parse_args(argv)
    if args.dry_run is not None:
        dry_run(args, params)
        return 0
    log(f"seed={args.seed} (replay with --seed {args.seed})")
    for name in DIRECTIONS:
        log(f"{name}: {params[name].describe()}")
    log(f"tap={args.tap} listen={args.listen} connect={args.connect} "
        f"jitter_reorders={args.jitter_reorders} max_seconds={args.max_seconds:g}")
    relay = Relay(args, params)

    def on_signal(signum, _frame):
        relay.stop_reason = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        relay.open()
    except OSError as e:
        log(f"cannot open tap {args.tap} or socket {args.listen}: {e}")
        relay.close()
        return 1
    log("ready")
    try:
        relay.run()
    finally:
        relay.close()
        log(f"stopped ({relay.stop_reason})")
        log(f"counts {json.dumps(relay.counts(), sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
