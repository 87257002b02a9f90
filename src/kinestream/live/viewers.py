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
ZeroMQ links, not Rerun's; a web viewer beyond loopback is warned about.

Who may read the web viewer. Both of its ports are kinestream's relays (threads
of this process): the page's files come from a Rerun process on a loopback
port, with a Content-Security-Policy that lets the page reach only the gRPC
port at the addresses served; the recording comes from Rerun's gRPC server on
a loopback port of its own. Rerun's server answers a CORS preflight from any
loopback origin and from rerun.io whatever it is told, so the gRPC relay
answers the browser itself: only the page's own origins may read, any other
web page gets a 403. Each relay serves :data:`MAX_CONNECTIONS` connections at
once (a 503 beyond), answers a request target that is not a plain path with a
400, and prints nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from kinestream.assets import home
from kinestream.errors import AssetError, SettingsError
from kinestream.live.transport import check_bind
from kinestream.settings import Settings

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
        raise AssetError(f"{INSTALL_HINT} ({exc})", given="rerun", valid=INSTALL_HINT) from None
    return rerun


def analytics_config_home() -> Path:
    """The folder Rerun processes kinestream starts read their config from (``XDG_CONFIG_HOME``).

    It holds ``rerun/analytics.json`` with analytics disabled, written here if absent or different.
    """
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
        raise AssetError(INSTALL_HINT, given="rerun_cli", valid=INSTALL_HINT)
    folder = Path(spec.origin).parent
    bundled = folder / "Rerun.app" / "Contents" / "MacOS" / "Rerun"
    path = bundled if sys.platform == "darwin" and bundled.exists() else folder / "rerun"
    if sys.platform.startswith("win"):
        path = path.with_suffix(".exe")
    if not path.exists():
        raise AssetError(
            f"rerun-sdk is installed but its viewer {path} is missing; reinstall it: {INSTALL_HINT}",
            given=path,
            valid=INSTALL_HINT,
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the system's pick)."""
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
    """The machine's address on its network (what a tablet types), or its host name."""
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
                raise AssetError(
                    f"the Rerun viewer exited (status {self.proc.returncode}): {self.tail()}",
                    given=self.proc.returncode,
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssetError(
                    f"the Rerun viewer did not listen on {self.ports} within {timeout:g} s",
                    given=self.ports,
                    valid=f"within {timeout:g} s",
                )
            time.sleep(0.05)

    def tail(self, lines: int = 8) -> str:
        """The last ``lines`` lines of the process's log, joined by `` | ``, for an error message."""
        if self.log_path is None or not self.log_path.exists():
            return "no output"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"

    def stop(self) -> None:
        """Stop the process: terminated, then killed when it has not ended within 5 s."""
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


def start_native(settings: Settings, log_dir: Path, port: int | None = None) -> RerunProcess:
    """Rerun's native viewer in a window of its own, its gRPC port on loopback. It needs a display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SettingsError(
            "no display for the native viewer (DISPLAY and WAYLAND_DISPLAY are unset); give --web to view it "
            "in a browser, or --save FILE.rrd to record it",
            key="DISPLAY",
            valid="--web or --save FILE.rrd",
        )
    port = port or free_port()
    log_path = log_dir / "rerun-viewer.log"
    proc = _start(
        ["--bind", "127.0.0.1", "--port", str(port), "--hide-welcome-screen", "--expect-data-soon"], log_path, True
    )
    out = RerunProcess(proc, f"rerun+http://127.0.0.1:{port}/proxy", log_path=log_path, ports=[("127.0.0.1", port)])
    out.wait_listening()
    return out


#: What the web viewer's page may load and reach: its own files and the gRPC relay with the data, at the
#: addresses kinestream serves (``{grpc}``: those, space-separated). The page Rerun serves also asks for Google's
#: fonts, GitHub's latest release, rerun.io's examples and, from the browser, Rerun's analytics (tel.rerun.io,
#: whatever the analytics config says): the browser refuses all of those, and any other gRPC server a ``?url=``
#: names.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self' {grpc}"
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate"}
MAX_CONNECTIONS = 32  # connections each of the web viewer's relays serves at once; beyond, a 503
IDLE_TIMEOUT_S = 30.0  # a connection that sends nothing this long is closed
MAX_REQUEST_BYTES = 1 << 16  # a gRPC-web request body (the page asks for the recording: a few bytes)
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n"
    b"Connection: close\r\n\r\nthe viewer is busy; try again in a while\n"
)
_GRPC_HEADERS = ("content-type", "accept", "x-grpc-web", "x-user-agent", "grpc-timeout", "grpc-accept-encoding")
_GRPC_EXPOSED = "grpc-status, grpc-message, grpc-status-details-bin, grpc-encoding"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def page_hosts(host: str) -> list[str]:
    """The host names a browser may reach the web viewer by, bound to ``host``.

    Loopback's, and the address it is served at beyond loopback (this machine's LAN address for ``0.0.0.0``/``::``).
    """
    hosts = ["127.0.0.1", "localhost"]
    if host in ("0.0.0.0", "::", "*", ""):
        hosts.append(_lan_address())
    elif host not in hosts:
        hosts.append(host)
    if host in ("::", "::1"):
        hosts.append("::1")
    return [_bracket(h) for h in dict.fromkeys(hosts)]


def _request_target_ok(path: str) -> bool:
    """A request target the relays pass on: a path ("/..."), printable ASCII without spaces."""
    return path.startswith("/") and all("!" <= c <= "~" for c in path)


class _Relay(BaseHTTPRequestHandler):
    """What both relays share: requests that are not a plain path get a 400, an error inside a 502, never a traceback.

    Nothing is printed (a library module does not print).
    """

    timeout = IDLE_TIMEOUT_S
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def log_message(self, format: str, *args) -> None:
        pass

    def handle_one_request(self) -> None:
        self._answered = False
        try:
            super().handle_one_request()
        except OSError:  # the client went away, or the idle timeout
            self.close_connection = True
        except Exception:
            self.close_connection = True
            if not self._answered:
                try:
                    self.send_error(502, "the viewer could not answer that request")
                except OSError:
                    pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    def _target_ok(self) -> bool:
        if _request_target_ok(self.path):
            return True
        self.send_error(400, "give a path: the request target must start with / and be printable ASCII")
        return False

    def _upstream(self, timeout: float | None):
        import http.client

        return http.client.HTTPConnection(*self.upstream, timeout=timeout)


class _Files(_Relay):
    """The page's files (GET and HEAD), relayed from a Rerun process on loopback, with :data:`CSP`."""

    csp = ""

    def do_GET(self) -> None:
        self._relay(body=True)

    def do_HEAD(self) -> None:
        self._relay(body=False)

    def do_POST(self) -> None:
        self.send_error(405, "the viewer's page is read with GET")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _relay(self, body: bool) -> None:
        import shutil

        if not self._target_ok():
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "accept-encoding", "range")}
        conn = self._upstream(30)
        try:
            conn.request(self.command, self.path, headers=headers)
            answer = conn.getresponse()
        except OSError:
            conn.close()
            self.send_error(502, "the Rerun web viewer's files are not reachable")
            return
        try:
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP and key.lower() != "content-security-policy":
                    self.send_header(key, value)
            self.send_header("Content-Security-Policy", self.csp)
            self.end_headers()
            if body:
                shutil.copyfileobj(answer, self.wfile, 1 << 16)
        finally:
            conn.close()


class _Grpc(_Relay):
    """The recording (gRPC-web), relayed to Rerun's gRPC server on a loopback port of its own.

    gRPC-web: POST, and the browser's CORS preflight OPTIONS. Rerun's server answers a preflight from any loopback
    origin and from rerun.io whatever it is told; this relay answers only the page's own origins, and refuses a request
    from any other (a web page the user happens to visit cannot read the pose).
    """

    origins: frozenset[str] = frozenset()

    def _origin(self) -> str | None:
        """The request's Origin when it is the page's, "" when it has none (not a browser); None: refused."""
        origin = self.headers.get("Origin")
        if origin is None:
            return ""
        if origin in self.origins:
            return origin
        self.send_error(403, "this origin may not read the recording; open the page kinestream serves")
        return None

    def do_OPTIONS(self) -> None:
        if not self._target_ok():
            return
        origin = self._origin()
        if origin is None:
            return
        if not origin:
            self.send_error(400, "a CORS preflight without an Origin")
            return
        asked = self.headers.get("Access-Control-Request-Headers", "")
        allowed = ", ".join(h.strip() for h in asked.split(",") if h.strip().lower() in _GRPC_HEADERS)
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", origin)
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        if allowed:
            self.send_header("Access-Control-Allow-Headers", allowed)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Vary", "Origin")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if not self._target_ok():
            return
        origin = self._origin()
        if origin is None:
            return
        if "Transfer-Encoding" in self.headers:
            self.send_error(411, "give the request's Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self.send_error(413 if length > 0 else 411, f"a request body of 0 to {MAX_REQUEST_BYTES} bytes")
            return
        request = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items() if k.lower() in _GRPC_HEADERS}
        conn = self._upstream(None)  # the recording streams as long as the page is open
        try:
            conn.request("POST", self.path, body=request, headers=headers)
            answer = conn.getresponse()
        except OSError:
            conn.close()
            self.send_error(502, "the viewer's recording is not reachable")
            return
        done = threading.Event()
        threading.Thread(target=self._watch, args=(conn, done), daemon=True).start()
        try:
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP and key.lower() != "vary" and not key.lower().startswith("access-control-"):
                    self.send_header(key, value)
            if origin:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Expose-Headers", _GRPC_EXPOSED)
                self.send_header("Vary", "Origin")
            self.end_headers()
            while chunk := answer.read1(1 << 16):  # as it comes: the live view is one long answer
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            done.set()
            conn.close()

    def _watch(self, conn, done: threading.Event) -> None:
        """Until the stream ends: when the page goes away (a closed tab, a reload), cut the stream from Rerun's server.

        So that an idle recording does not hold the connection and its thread for good.
        """
        import select

        while not done.is_set():
            try:
                ready, _, _ = select.select([self.connection], [], [], 1.0)
                if ready and not self.connection.recv(1 << 12):
                    break
            except (OSError, ValueError):
                break
        if not done.is_set() and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def do_GET(self) -> None:
        self.send_error(405, "the recording is read with gRPC-web (POST); open the viewer's page instead")

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_GET


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server that serves :data:`MAX_CONNECTIONS` connections at once and answers any beyond with a 503.

    It prints nothing when a request breaks.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.setblocking(False)
                try:
                    request.recv(1 << 16)  # what the client sent already: read, so that closing does not reset
                except OSError:
                    pass
                request.setblocking(True)
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        pass  # one request's trouble is its own: the handler answered it if it could


def _serve(host: str, port: int, handler, what: str, flag: str) -> _Server:
    """``handler`` served on ``host:port`` by a :class:`_Server` in a thread of this process."""
    try:
        server = _Server((host, port), handler)
    except OSError as exc:
        raise SettingsError(
            f"cannot serve the {what} on {host}:{port}: {exc}; give another {flag}",
            key=flag,
            given=port,
            valid="a free port",
        ) from None
    threading.Thread(target=server.serve_forever, name=f"kinestream-{what.replace(' ', '-')}", daemon=True).start()
    return server


@dataclass
class WebViewer:
    """Rerun's web viewer as kinestream serves it: the page, and the recording on a gRPC server in this process.

    The page comes from a Rerun process on a loopback port, relayed with a Content-Security-Policy; the recording's gRPC
    server is ``sink``.
    """

    url: str
    sink: object  # rerun.GrpcServerSink: give it to RecordingStream.set_sinks
    files: RerunProcess
    fronts: list[_Server]  # the page's relay and the recording's

    def stop(self) -> None:
        """Stop serving the page and the recording."""
        for front in self.fronts:
            front.shutdown()
            front.server_close()
        self.files.stop()


def start_web(
    settings: Settings, log_dir: Path, *, host: str = "127.0.0.1", web_port: int = 9090, grpc_port: int = 9876
) -> WebViewer:
    """Rerun's web viewer for a browser: the page on ``host:web_port``, the data on ``host:grpc_port``.

    On loopback, or beyond it under ``settings.service.allow_remote`` (then the page may be opened from another
    machine, a tablet on the gym floor, and reach the data from there).
    """
    import rerun as rr

    for port, what in ((web_port, "web viewer"), (grpc_port, "web viewer's gRPC")):
        if not 0 < port < 65536:
            raise SettingsError(
                f"the {what} port {port} is not valid; give 1 to 65535", key=what, given=port, valid=(1, 65535)
            )
    check_bind(f"tcp://{host}:{web_port}", settings, "web viewer", plain=True)  # both ports are on host
    if web_port == grpc_port:
        raise SettingsError(
            f"the web viewer and its gRPC server both ask for port {web_port}; give two ports",
            key="--grpc-port",
            given=web_port,
            valid="two different ports",
        )
    for port in (web_port, grpc_port):
        if _accepts(host, port):
            raise SettingsError(
                f"port {port} on {host} is taken (another viewer?); give --web-port/--grpc-port",
                key="--web-port/--grpc-port",
                given=port,
                valid="a free port",
            )
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
    hosts = page_hosts(host)
    fronts: list[_Server] = []
    try:
        # the recording: Rerun's gRPC server on a loopback port of its own, reached through kinestream's relay
        inner = free_port()
        sink = rr.GrpcServerSink(bind_ip="127.0.0.1", port=inner)
        grpc = type(
            "Grpc",
            (_Grpc,),
            {"upstream": ("127.0.0.1", inner), "origins": frozenset(f"http://{h}:{web_port}" for h in hosts)},
        )
        fronts.append(_serve(host, grpc_port, grpc, "web viewer's gRPC relay", "--grpc-port"))
        csp = CSP.format(grpc=" ".join(f"http://{h}:{grpc_port}" for h in hosts))
        page = type("Files", (_Files,), {"upstream": ("127.0.0.1", files_port), "csp": csp})
        fronts.append(_serve(host, web_port, page, "web viewer", "--web-port"))
    except BaseException:
        for front in fronts:
            front.shutdown()
            front.server_close()
        files.stop()
        raise
    shown = _bracket(_lan_address() if host in ("0.0.0.0", "::") else host)
    url = f"http://{shown}:{web_port}/?url={quote(f'rerun+http://{shown}:{grpc_port}/proxy', safe='')}"
    return WebViewer(url, sink, files, fronts)
