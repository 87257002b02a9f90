"""Where ``kinestream view`` shows: Rerun's native viewer, its web viewer, a recording file.

rerun-sdk is an optional dependency (``kinestream[view]``, its wheel carries
the viewer, about 170 MB): :func:`require_rerun` says how to install it.

Privacy. Rerun's viewer and CLI send anonymous usage analytics unless its
analytics config (``$XDG_CONFIG_HOME/rerun/analytics.json``, what ``rerun
analytics disable`` writes) says ``analytics_enabled: false``; Rerun 0.41 has
no environment variable that turns them off (``FORCE_RERUN_ANALYTICS`` turns
them on). Every Rerun process kinestream starts runs with :func:`rerun_env`:
``XDG_CONFIG_HOME`` points at kinestream's own folder, whose
``rerun/analytics.json`` has analytics disabled, and ``FORCE_RERUN_ANALYTICS``
is removed. The user's own Rerun settings are left as they are.

Where it listens. The native viewer's gRPC port and the web viewer's HTTP and
gRPC ports bind to loopback, or to the host given when ``service.allow_remote``
allows it (:func:`~kinestream.live.transport.check_bind`, the service's rule).
What the viewer shows crosses that network unencrypted: CURVE covers the
ZeroMQ links, not Rerun's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from kinestream.errors import KinestreamError

RERUN_VERSION = "0.41.0"  # the rerun-sdk the view extra pins
INSTALL_HINT = (
    "the viewer needs rerun-sdk, an optional dependency (its wheel carries the viewer, about 170 MB): "
    "pip install 'kinestream[view]' (in this repository: .venv/bin/pip install -e '.[view]')"
)
START_TIMEOUT_S = 30.0  # how long a Rerun process may take to listen


def require_rerun():
    """The ``rerun`` module, or a KinestreamError saying how to install it."""
    try:
        import rerun
    except ImportError as exc:
        raise KinestreamError(f"{INSTALL_HINT} ({exc})") from None
    return rerun


def analytics_config_home() -> Path:
    """The folder Rerun processes kinestream starts read their config from (``XDG_CONFIG_HOME``): it holds
    ``rerun/analytics.json`` with analytics disabled, written here if absent or different."""
    from kinestream.assets import home

    root = home() / "rerun-config"
    path = root / "rerun" / "analytics.json"
    wanted = {
        "analytics_enabled": False,
        "analytics_id": "kinestream-analytics-off",
        "metadata": {},
        "config_file_path": str(path),
        "data_dir_path": str(root / "analytics-data"),
    }
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = None
    if current != wanted:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"analytics.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(wanted))
        tmp.replace(path)  # atomic: a Rerun process starting meanwhile reads the old file or the new one
    return root


def rerun_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a Rerun process: ``base`` (default: this process's) with Rerun's analytics off."""
    env = dict(os.environ if base is None else base)
    env["XDG_CONFIG_HOME"] = str(analytics_config_home())
    env.pop("FORCE_RERUN_ANALYTICS", None)
    return env


def rerun_binary() -> Path:
    """The Rerun CLI and viewer executable that rerun-sdk ships (package ``rerun_cli``)."""
    spec = importlib.util.find_spec("rerun_cli")
    if spec is None or spec.origin is None:
        raise KinestreamError(INSTALL_HINT)
    folder = Path(spec.origin).parent
    bundled = folder / "Rerun.app" / "Contents" / "MacOS" / "Rerun"
    path = bundled if sys.platform == "darwin" and bundled.exists() else folder / "rerun"
    if sys.platform.startswith("win"):
        path = path.with_suffix(".exe")
    if not path.exists():
        raise KinestreamError(f"rerun-sdk is installed but its viewer {path} is missing; reinstall it: {INSTALL_HINT}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "", "*") else "::1" if host == "::" else host
    try:
        with socket.create_connection((target, port), timeout=0.2):
            return True
    except OSError:
        return False


def _lan_address() -> str:
    """This machine's address on its network (what a tablet types), or its host name."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # a documentation address: nothing is sent, the route picks the address
            return sock.getsockname()[0]
    except OSError:
        return socket.gethostname()


@dataclass
class RerunProcess:
    """A Rerun process kinestream started: the native viewer, or the web viewer with its gRPC server."""

    proc: subprocess.Popen
    grpc_url: str  # where the SDK sends the recording (rerun+http://.../proxy)
    web_url: str | None = None  # what a browser opens
    log_path: Path | None = None
    ports: list[tuple[str, int]] = field(default_factory=list)

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once every port accepts connections; a KinestreamError with Rerun's own words if it exits."""
        deadline = time.monotonic() + timeout
        while not all(_accepts(h, p) for h, p in self.ports):
            if self.proc.poll() is not None:
                raise KinestreamError(f"the Rerun viewer exited (status {self.proc.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise KinestreamError(f"the Rerun viewer did not listen on {self.ports} within {timeout:g} s")
            time.sleep(0.05)

    def tail(self, lines: int = 8) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "no output"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(args: list[str], log_path: Path, detach: bool) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [str(rerun_binary()), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=rerun_env(),
            start_new_session=detach,  # a native window outlives `kinestream view`; the user closes it
        )


def start_native(config: dict, log_dir: Path, port: int | None = None) -> RerunProcess:
    """Rerun's native viewer in a window of its own, its gRPC port on loopback. It needs a display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise KinestreamError(
            "no display for the native viewer (DISPLAY and WAYLAND_DISPLAY are unset); give --web to view it "
            "in a browser, or --save FILE.rrd to record it"
        )
    port = port or free_port()
    log_path = log_dir / "rerun-viewer.log"
    proc = _start(
        ["--bind", "127.0.0.1", "--port", str(port), "--hide-welcome-screen", "--expect-data-soon"], log_path, True
    )
    out = RerunProcess(proc, f"rerun+http://127.0.0.1:{port}/proxy", log_path=log_path, ports=[("127.0.0.1", port)])
    out.wait_listening()
    return out


#: What the web viewer's page may load and reach: its own files and the gRPC server with the data. The page
#: Rerun serves also asks for Google's fonts, GitHub's latest release, rerun.io's examples and, from the browser,
#: Rerun's analytics (tel.rerun.io, whatever the analytics config says): the browser refuses all of those.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self' http://*:{grpc_port} http://localhost:{grpc_port}"
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate"}


def _front(host: str, port: int, upstream: str, csp: str):
    """An HTTP server on ``host:port`` (in a thread of this process) that relays GET and HEAD to ``upstream``
    and adds ``csp`` as the page's Content-Security-Policy."""
    import shutil
    import threading
    import urllib.error
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Relay(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._relay(body=True)

        def do_HEAD(self) -> None:
            self._relay(body=False)

        def _relay(self, body: bool) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "accept-encoding", "range")}
            request = urllib.request.Request(upstream + self.path, headers=headers, method=self.command)
            try:
                answer = urllib.request.urlopen(request, timeout=30)
            except urllib.error.HTTPError as exc:
                answer = exc
            except OSError:
                self.send_error(502, "the Rerun web viewer's files are not reachable")
                return
            with answer:
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP and key.lower() != "content-security-policy":
                        self.send_header(key, value)
                self.send_header("Content-Security-Policy", csp)
                self.end_headers()
                if body:
                    try:
                        shutil.copyfileobj(answer, self.wfile, 1 << 16)
                    except OSError:  # the browser went away
                        pass

        def log_message(self, format: str, *args) -> None:  # a library module does not print
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = Server((host, port), Relay)
    except OSError as exc:
        raise KinestreamError(f"cannot serve the web viewer on {host}:{port}: {exc}; give another --web-port") from None
    threading.Thread(target=server.serve_forever, name="kinestream-web-viewer", daemon=True).start()
    return server


@dataclass
class WebViewer:
    """Rerun's web viewer as kinestream serves it: the page (from a Rerun process on a loopback port, relayed
    with a Content-Security-Policy), and the recording on a gRPC server in this process (``sink``)."""

    url: str
    sink: object  # rerun.GrpcServerSink: give it to RecordingStream.set_sinks
    files: RerunProcess
    front: object

    def stop(self) -> None:
        self.front.shutdown()  # type: ignore[attr-defined]
        self.front.server_close()  # type: ignore[attr-defined]
        self.files.stop()


def start_web(
    config: dict, log_dir: Path, *, host: str = "127.0.0.1", web_port: int = 9090, grpc_port: int = 9876
) -> WebViewer:
    """Rerun's web viewer for a browser: the page on ``host:web_port``, the data on ``host:grpc_port``. On
    loopback, or beyond it under ``service.allow_remote`` (then the page may be opened from another machine,
    a tablet on the gym floor, and reach the data from there)."""
    import rerun as rr

    from kinestream.live.transport import check_bind, is_loopback

    for port, what in ((web_port, "web viewer"), (grpc_port, "web viewer's gRPC")):
        if not 0 < port < 65536:
            raise KinestreamError(f"the {what} port {port} is not valid; give 1 to 65535")
        check_bind(f"tcp://{host}:{port}", config, what)
    if web_port == grpc_port:
        raise KinestreamError(f"the web viewer and its gRPC server both ask for port {web_port}; give two ports")
    for port in (web_port, grpc_port):
        if _accepts(host, port):
            raise KinestreamError(f"port {port} on {host} is taken (another viewer?); give --web-port/--grpc-port")
    remote = not is_loopback(f"tcp://{host}:{web_port}")
    # the page's files: a Rerun process on loopback (its own gRPC server stays unused)
    files_port, unused_grpc = free_port(), free_port()
    args = ["--serve-web", "--bind", "127.0.0.1", "--port", str(unused_grpc), "--web-viewer-port", str(files_port)]
    log_path = log_dir / "rerun-web.log"
    files = RerunProcess(
        _start(args, log_path, False),
        f"rerun+http://127.0.0.1:{unused_grpc}/proxy",
        log_path=log_path,
        ports=[("127.0.0.1", files_port), ("127.0.0.1", unused_grpc)],
    )
    files.wait_listening()
    try:
        sink = rr.GrpcServerSink(
            bind_ip=host, port=grpc_port, cors_allow_origin=[f"http://*:{web_port}"] if remote else None
        )
        front = _front(host, web_port, f"http://127.0.0.1:{files_port}", CSP.format(grpc_port=grpc_port))
    except BaseException:
        files.stop()
        raise
    shown = _lan_address() if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{web_port}/?url={quote(f'rerun+http://{shown}:{grpc_port}/proxy', safe='')}"
    return WebViewer(url, sink, files, front)
