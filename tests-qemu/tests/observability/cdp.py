#!/usr/bin/env python3
"""Headless Chromium driven over the DevTools protocol on a pipe, for
tests-qemu/tests/observability.rs. Standard library only.

Chromium is started with --remote-debugging-pipe (it reads commands on fd 3 and
writes replies and events on fd 4, each a JSON object ended by NUL), so there is
no debugging port and no websocket. One page target is opened and kept.

Commands, one JSON object per line on stdin; one JSON reply per line on stdout:
  {"cmd": "open", "url": U, "width": W, "height": H}   load U in a W x H viewport
  {"cmd": "eval", "expr": E}                           -> {"value": V} (awaited, by value)
  {"cmd": "screenshot", "path": P}                     PNG of the viewport -> {"bytes": N}
  {"cmd": "events"}                                    -> {"events": [...]}: every console
        message, exception and log entry so far: {"kind", "level", "text", "source", "url"}
  {"cmd": "quit"}
Every reply has "ok"; a failure is {"ok": false, "error": "..."}.

Usage: cdp.py CHROMIUM_BINARY USER_DATA_DIR [CHROMIUM_LOG]
"""
import base64
import fcntl
import json
import os
import subprocess
import sys
import threading
import time

COMMAND_TIMEOUT_S = 30
# The flags the tests require (offline, fresh profile, no sandbox as root).
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    "--remote-debugging-pipe",
]


class Browser:
    def __init__(self, binary, profile, log_path):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        # Above the fds the child will use, so the dup2s below cannot collide.
        high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)

        def child_fds():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            preexec_fn=child_fds, pass_fds=(3, 4, high_r, high_w))
        for fd in (to_child_r, from_child_w, high_r, high_w):
            os.close(fd)
        self.next_id = 0
        self.replies = {}
        self.events = []
        self.loaded = 0
        self.cond = threading.Condition()
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method, session=True)

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self._dispatch(json.loads(raw))
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _dispatch(self, msg):
        with self.cond:
            if "id" in msg:
                self.replies[msg["id"]] = msg
            else:
                self._event(msg.get("method"), msg.get("params", {}))
            self.cond.notify_all()

    def _event(self, method, p):
        if method == "Page.loadEventFired":
            self.loaded += 1
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.events.append({"kind": "console", "level": p.get("type"), "text": text,
                                "source": "console-api", "url": ""})
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "")
            self.events.append({"kind": "exception", "level": "error", "text": text,
                                "source": "javascript", "url": d.get("url", "")})
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            self.events.append({"kind": "log", "level": e.get("level"), "text": e.get("text", ""),
                                "source": e.get("source", ""), "url": e.get("url", "")})

    def call(self, method, params=None, session=False):
        with self.cond:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        with self.cond:
            while mid not in self.replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise RuntimeError(f"{method}: no reply ({'browser gone' if self.closed else 'timeout'})")
                self.cond.wait(left)
            reply = self.replies.pop(mid)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url, width, height):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=True)
        with self.cond:
            before = self.loaded
        self.call("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        with self.cond:
            while self.loaded == before:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{url}: no load event")
                self.cond.wait(left)

    def eval(self, expr):
        r = self.call("Runtime.evaluate",
                      {"expression": expr, "returnByValue": True, "awaitPromise": True},
                      session=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"eval {expr!r}: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def screenshot(self, path):
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"},
                                          session=True)["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    def quit(self):
        try:
            self.call("Browser.close")
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    browser = Browser(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    try:
        for line in sys.stdin:
            req = json.loads(line)
            cmd = req.get("cmd")
            try:
                if cmd == "open":
                    browser.open(req["url"], req.get("width", 1280), req.get("height", 1000))
                    reply = {}
                elif cmd == "eval":
                    reply = {"value": browser.eval(req["expr"])}
                elif cmd == "screenshot":
                    reply = {"bytes": browser.screenshot(req["path"])}
                elif cmd == "events":
                    with browser.cond:
                        reply = {"events": list(browser.events)}
                elif cmd == "quit":
                    break
                else:
                    raise RuntimeError(f"unknown command {cmd!r}")
                reply["ok"] = True
            except Exception as e:  # reported to the test, which fails with it
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(reply), flush=True)
    finally:
        browser.quit()
        print(json.dumps({"ok": True, "quit": True}), flush=True)


if __name__ == "__main__":
    main()
