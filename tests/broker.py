"""A real mosquitto broker on a free loopback port, for tests; and waiting on conditions.

    from broker import Broker   # the `broker` fixture comes with conftest.py (pytest_plugins)
    from broker import until, wait_until   # wait for a condition, not for a fixed time

The binary is the Debian package's /usr/sbin/mosquitto. Without it a test
skips, except in CI (CI=true), where it fails: CI installs mosquitto.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

import pytest

MOSQUITTO = Path("/usr/sbin/mosquitto")
HOST = "127.0.0.1"
DEADLINE_S = 30.0  # how long a test waits for something that takes milliseconds on an idle machine
POLL_S = 0.01


def _missed(what, timeout: float) -> AssertionError:
    text = what() if callable(what) else what
    return AssertionError(f"waited {timeout:g} s for {text}")


def wait_until(condition, what, timeout: float = DEADLINE_S):
    """``condition()``'s first true value, polled every 10 ms; after ``timeout`` s an AssertionError
    saying what was awaited (``what``: a string, or a callable giving one, e.g. with the last state seen)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise _missed(what, timeout)
        time.sleep(POLL_S)
    return value


async def until(condition, what, timeout: float = DEADLINE_S):
    """:func:`wait_until` for a coroutine: the event loop runs between polls."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise _missed(what, timeout)
        await asyncio.sleep(POLL_S)
    return value


def require_mosquitto() -> Path:
    """The broker binary; skip the test without it (fail in CI)."""
    if os.access(MOSQUITTO, os.X_OK):
        return MOSQUITTO
    reason = f"{MOSQUITTO} is absent: install the broker with `apt-get install -y mosquitto`"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def accepts(port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on the loopback ``port`` now."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class Broker:
    """One mosquitto process on 127.0.0.1, anonymous access unless ``config`` (extra lines) says otherwise."""

    def __init__(self, config: str = "") -> None:
        self.binary = require_mosquitto()
        self.config = config
        self.port: int | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="kinestream-mosquitto-"))
        self.dir.chmod(0o755)  # mosquitto run as root reads some files after dropping to its own user
        self.log = self.dir / "mosquitto.log"
        self._proc: subprocess.Popen | None = None
        self._procs: list[subprocess.Popen] = []  # every process started, for the cleanup below
        self._cleanup = weakref.finalize(self, _cleanup, self._procs, self.dir)  # also at interpreter exit

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, port: int | None = None, timeout: float = DEADLINE_S) -> Broker:
        """Start on ``port`` (a free one by default) and wait until it accepts connections."""
        if self.running:
            raise RuntimeError(f"broker already running on {self.endpoint}")
        self.port = port or self.port or free_port()
        conf = self.dir / "mosquitto.conf"
        anonymous = "" if "allow_anonymous" in self.config else "allow_anonymous true\n"
        conf.write_text(f"listener {self.port} {HOST}\n{anonymous}persistence false\n{self.config}\n")
        conf.chmod(0o644)
        deadline = time.monotonic() + timeout
        while True:
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [str(self.binary), "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
                )
            self._procs[:] = [self._proc]
            while self._proc.poll() is None and time.monotonic() < deadline:
                if accepts(self.port):
                    return self
                time.sleep(0.01)
            if self._proc.poll() is None or time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {self.endpoint} within {timeout} s:\n{self.tail()}")
            time.sleep(0.05)  # exited, e.g. the port is still held by the last run: try again until the deadline

    def stop(self) -> None:
        """Stop the broker; its clients see the connection close."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)

    def restart(self) -> Broker:
        """Stop, then start again on the same port."""
        self.stop()
        return self.start(self.port)

    def received(self, suffix: str) -> int:
        """PUBLISH packets this broker (all its runs) received on topics ending in ``/suffix``, from its
        log; the broker must log them: ``Broker(config="log_type all")``."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(1 for line in text.splitlines() if "Received PUBLISH" in line and f"/{suffix}'," in line)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop the broker and remove its directory (done anyway when the Broker is collected)."""
        self.stop()
        self._cleanup()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cleanup(procs: list[subprocess.Popen], directory: Path) -> None:
    for proc in procs:
        _stop(proc)
    shutil.rmtree(directory, ignore_errors=True)


def tls_with_password(broker: Broker) -> Path:
    """Make ``broker`` (not yet started) a TLS listener that wants user 'coach', password 'squat'.

    Certificates from openssl (a test CA, a server certificate for 127.0.0.1),
    the password file from mosquitto_passwd; returns the CA file clients trust.
    """
    if None in (shutil.which("openssl"), shutil.which("mosquitto_passwd")):
        reason = "openssl and mosquitto_passwd are needed to set up a TLS broker with a password"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason} (CI must provide them: apt-get install -y openssl mosquitto)", pytrace=False)
        pytest.skip(reason)
    d = broker.dir

    def run(*args):
        subprocess.run(args, check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test CA")
    run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    )
    run("mosquitto_passwd", "-b", "-c", "passwd", "coach", "squat")
    for path in d.iterdir():
        path.chmod(0o644)
    broker.config = (
        f"allow_anonymous false\npassword_file {d}/passwd\n"
        f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
    )
    return d / "ca.crt"


@pytest.fixture
def broker():
    """A running mosquitto on a free loopback port, stopped after the test."""
    with Broker() as running:
        yield running.start()
