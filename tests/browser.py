"""Headless Chromium driven over the DevTools protocol on a pipe, for tests that load a page for real.

    with Chromium() as browser:
        page = browser.open("http://127.0.0.1:9090/")
        page.evaluate("document.title")
        png = page.screenshot()

The binary is Debian's /usr/bin/chromium (`apt-get install -y chromium`, which
scripts/test does). Without it a test skips, except in CI (CI=true), where it
fails. The protocol runs over ``--remote-debugging-pipe`` (Chromium reads
commands on its fd 3 and answers on fd 4, one JSON message per NUL-terminated
record), so no port and no websocket library are needed. WebGL comes from
SwiftShader, Chromium's CPU renderer: no GPU or display is needed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def require_chromium() -> Path:
    """The browser binary; skip the test without it (fail in CI, which installs it)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"{CHROMIUM} is absent: install the browser with `apt-get install -y chromium`"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason)


class Chromium:
    """One headless Chromium process and its DevTools pipe; :meth:`open` gives a :class:`Page`."""

    def __init__(self, width: int = 1600, height: int = 900):
        binary = require_chromium()
        self.profile = Path(tempfile.mkdtemp(prefix="kinestream-chromium-"))
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds() -> None:  # in the child: its fd 3 reads our commands, its fd 4 takes its answers
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4 first
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)  # inheritable: kept across exec
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [
                str(binary),
                "--headless=new",
                "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
                "--remote-debugging-pipe",
                "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,
            close_fds=False,  # the pipes themselves are close-on-exec; only the copies on 3 and 4 go through
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._buffer = b""
        self.events: list[dict] = []  # every event received, in order (method, params, sessionId)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        """One DevTools command; its result (a KeyError-free dict), or an AssertionError with its error."""
        self._next += 1
        msg: dict = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self._next:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float, what: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"no answer from Chromium to {what} (exit status {self.proc.poll()})")
            ready, _, _ = select.select([self._from_browser], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise AssertionError(f"Chromium closed its pipe while answering {what}")
                self._buffer += chunk
        record, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(record)

    def wait_event(self, method: str, session: str | None = None, timeout: float = 60.0) -> dict:
        """The first event ``method`` (of ``session``) received, waiting for it if none has come yet."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    return event
            self.events.append(self._read(deadline, f"waiting for {method}"))

    def open(self, url: str) -> Page:
        """A new tab at ``url``, loaded (its load event fired), its network requests recorded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self.send("Network.enable", session=session)
        self.send("Page.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5.0)
            except AssertionError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab of a :class:`Chromium`."""

    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        return result.get("result", {}).get("value")

    def screenshot(self) -> bytes:
        """What the page shows now, as PNG bytes."""
        data = self.browser.send("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        return base64.b64decode(data)

    def requested(self) -> list[str]:
        """The URLs this page has asked for so far (every request, answered or not)."""
        self.evaluate("0")  # take in the events received meanwhile
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events
            if e.get("sessionId") == self.session and e.get("method") == "Network.requestWillBeSent"
        ]
