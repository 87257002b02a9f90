"""ZeroMQ sockets as kinestream opens them: on loopback, bounded, optionally encrypted.

Where a socket may listen. The service binds (its angles output, and its
keypoint input with ``service.bind_input``) to the endpoints in the settings,
``tcp://127.0.0.1:...`` by default. An endpoint that would listen beyond this
machine (``tcp://*:5556``, ``tcp://0.0.0.0:...``, a LAN address) is refused
unless ``service.allow_remote = true``; and then a warning says so when CURVE
is off, because anyone on that network could read the angles or send frames.

Queues and sizes. Every socket has a high-water mark (``service.receive_queue``
/ ``send_queue`` messages): beyond it ZeroMQ drops, it never grows without
bound. The keypoint input also refuses, inside ZeroMQ, any message over
``INPUT_SIZE_FACTOR`` times ``service.max_message_bytes`` (the peer that sent
it is disconnected and reconnects); smaller oversize messages reach the decoder
and are counted there as ``oversize``.

CURVE (settings ``[curve]``). With ``enabled = true`` every link is encrypted
and both ends are authenticated:

- the service holds a key pair (``secret_key``, made by ``kinestream keys``)
  and admits only peers whose public key is a ``.key`` file in the
  ``authorized`` folder -- keypoint sources and angle subscribers alike; a
  peer without an authorized key gets no data and cannot send frames (its
  handshake is refused and counted in the status as ``refused``);
- a client (``kinestream replay``, ``scripts/subscriber.py``, an XR app)
  holds its own key pair (``secret_key``) and the service's public key
  (``server_key``), so it talks to the real service only.

The service is the CURVE server on both of its sockets whether it binds or
connects them; that is what lets it vet its keypoint sources.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

from kinestream.errors import InputError, ProtocolError, SettingsError
from kinestream.settings import CurveSettings, Settings

log = logging.getLogger("kinestream.live.transport")

INPUT_SIZE_FACTOR = 4  # ZeroMQ refuses input messages over this many times max_message_bytes
REFUSED_NAMES = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "key not authorized",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake broke the protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
}
REFUSED_EVENTS = sum(REFUSED_NAMES)  # the monitor events that mean a peer was turned away
# a link lost, or ZeroMQ (re)connecting it by itself
LINK_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECT_RETRIED
KEYS_HINT = "make key pairs with 'kinestream keys DIR --name NAME' (see the manual's 'Access', docs/manual/service.md)"


# ------------------------------------------------------------------ where sockets listen


def endpoint_host(endpoint: str) -> str | None:
    """The host part of a ``tcp://HOST:PORT`` endpoint; None for ipc:// and inproc://."""
    text = str(endpoint)
    if text.startswith(("ipc://", "inproc://")):
        return None
    if not text.startswith("tcp://") or ":" not in text[6:]:
        raise SettingsError(
            f"endpoint {endpoint!r} is not valid; give tcp://HOST:PORT, e.g. tcp://127.0.0.1:5556",
            key="endpoint",
            given=endpoint,
            valid="tcp://HOST:PORT",
        )
    host = text[6:].rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(endpoint: str) -> bool:
    """True when a socket bound to ``endpoint`` listens on this machine only."""
    host = endpoint_host(endpoint)
    if host is None or host == "localhost" or host in ("lo",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', an interface name or a host name: beyond this machine
        return False


def check_bind(endpoint: str, settings: Settings, what: str, plain: bool = False) -> None:
    """Refuse to listen beyond this machine unless ``settings.service.allow_remote``.

    Where it is allowed, warn when what crosses that network is readable by anyone on it: without CURVE
    (``settings.curve``), or always when ``plain`` (the web viewer's HTTP, which CURVE does not cover).
    """
    if is_loopback(endpoint):
        return
    if not settings.service.allow_remote:
        raise SettingsError(
            f"the {what} endpoint {endpoint} would listen beyond this machine; bind to "
            f"tcp://127.0.0.1:PORT, or set service.allow_remote = true in your config (with "
            f"[curve] enabled = true so that only your keys get in)",
            key="service.allow_remote",
            given=endpoint,
            valid="tcp://127.0.0.1:PORT",
        )
    if plain:
        log.warning(
            "the %s listens on %s in plain HTTP: anyone on that network can watch the pose (CURVE covers the "
            "ZeroMQ links, not the viewer); bind it to 127.0.0.1 unless that network is yours",
            what,
            endpoint.removeprefix("tcp://"),
        )
        return
    if not settings.curve.enabled:
        if "input" in what:
            raise SettingsError(
                f"the {what} endpoint {endpoint} would take frames from anyone on that network without CURVE; "
                f"turn [curve] on (enabled = true, with your keys): ZeroMQ holds a multipart message whole until "
                f"its last part, however many parts come, so any peer that can connect can grow the service's "
                f"memory without bound",
                key="curve.enabled",
                given=endpoint,
                valid="[curve] enabled = true",
            )
        log.warning("the %s listens on %s without CURVE: anyone on that network can read the angles", what, endpoint)


# ------------------------------------------------------------------ keys


def _key_file(curve: CurveSettings, key: str, role: str) -> Path:
    value = getattr(curve, key) or ""
    if not value:
        raise SettingsError(
            f"[curve] enabled = true but curve.{key} is empty; {role}. {KEYS_HINT}",
            key=f"curve.{key}",
            given=value,
            valid=role,
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise SettingsError(
            f"curve.{key} = {str(value)!r}: {path} does not exist; {KEYS_HINT}",
            key=f"curve.{key}",
            given=path,
            valid=KEYS_HINT,
        )
    return path


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key_secret`` file written by ``kinestream keys``."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"{path} is not a readable key pair ({exc}); {KEYS_HINT}", given=path, valid=KEYS_HINT
        ) from None
    if not secret:
        raise SettingsError(
            f"{path} holds a public key only; give the .key_secret file of the pair",
            given=path,
            valid="the .key_secret file of the pair",
        )
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o077:
        raise SettingsError(
            f"the secret key {path} can be read by others (mode {mode:o}); a secret key must be "
            f"its owner's only: chmod 600 {path}, or make a new pair with 'kinestream keys'",
            given=path,
            valid=f"chmod 600 {path}",
        )
    return public, secret


def load_public(path: str | Path) -> bytes:
    """The public key in a ``.key`` (or ``.key_secret``) file."""
    import zmq.auth

    try:
        return zmq.auth.load_certificate(str(path))[0]
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"{path} is not a readable public key ({exc}); {KEYS_HINT}", given=path, valid=KEYS_HINT
        ) from None


def make_keys(directory: str | Path, name: str, *, authorize: bool = False, force: bool = False) -> tuple[Path, Path]:
    """Write a CURVE key pair ``DIR/NAME.key`` (public, to hand out) and ``DIR/NAME.key_secret`` (private, mode 600).

    With ``authorize`` the public key is also copied into ``DIR/authorized/``, the folder the service reads to decide
    who may connect. Returns ``(public, secret)`` paths.
    """
    import zmq.auth

    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise InputError(
            f"key name {name!r} is not valid; give a plain name such as 'service' or 'camera1'",
            key="name",
            given=name,
            valid="a plain name",
        )
    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise InputError(
            f"{public} or {secret} already exists; give another --name, or --force to replace "
            f"the pair (every peer holding the old public key must get the new one)",
            key="name",
            given=name,
            valid="another --name, or --force",
        )
    directory.mkdir(parents=True, exist_ok=True)
    if force:
        for path in (public, secret):
            if path.is_symlink() or path.exists():
                path.unlink()  # the link itself, never its target
    public_z85, secret_z85 = zmq.curve_keypair()
    # the secret is born private: created exclusively with mode 600, never through a symlink
    _write_key(secret, _certificate(name, public_z85, secret_z85), 0o600)
    _write_key(public, _certificate(name, public_z85), 0o644)
    if authorize:
        folder = directory / "authorized"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(public, folder / public.name)
    return public, secret


def _certificate(name: str, public: bytes, secret: bytes | None = None) -> bytes:
    """A key file in ZeroMQ's certificate format (what ``zmq.auth.load_certificate`` reads)."""
    kind = "Secret" if secret is not None else "Public"
    lines = [
        f"#   ZeroMQ CURVE **{kind}** Certificate of {name!r}, made by kinestream keys",
        "#   Keep it to yourself: never hand it out nor change its permissions."
        if secret is not None
        else "#   Hand it to the peers that must recognise this one.",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return ("\n".join(lines) + "\n").encode("ascii")


def _write_key(path: Path, data: bytes, mode: int) -> None:
    import os

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        raise InputError(
            f"cannot create {path}: {exc.strerror}; remove what is there or give --force",
            given=path,
            valid="remove what is there or give --force",
        ) from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the service side


@dataclass
class Access:
    """The service's side of CURVE: its key pair and the authenticator that admits only the keys in ``authorized``.

    ``authorized`` is a folder of public ``.key`` files, read when the service starts.
    """

    public: bytes
    secret: bytes
    authorized: Path
    _auth: ThreadAuthenticator | None = None

    @classmethod
    def from_settings(cls, curve: CurveSettings) -> Access | None:
        """The service's access by the ``[curve]`` section ``curve``.

        None when CURVE is off; raises with what to do when it is on but incomplete.
        """
        if not curve.enabled:
            return None
        public, secret = load_secret(_key_file(curve, "secret_key", "the service needs its own key pair"))
        folder = _key_file(curve, "authorized", "name the folder of public keys allowed to connect")
        if not folder.is_dir() or not any(folder.glob("*.key")):
            raise SettingsError(
                f"curve.authorized = {str(folder)!r} holds no .key files, so nobody could "
                f"connect; copy the public keys of your sources and subscribers there "
                f"('kinestream keys DIR --name NAME --authorize' does it)",
                key="curve.authorized",
                given=folder,
                valid="a folder of .key files",
            )
        return cls(public, secret, folder)

    @property
    def peers(self) -> int:
        """The number of public keys in :attr:`authorized`."""
        return len(list(self.authorized.glob("*.key")))

    def start(self, ctx: zmq.Context) -> None:
        """Run the authenticator for every socket of ``ctx`` (and of contexts shadowing it)."""
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("kinestream.auth"))
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(self.authorized))

    def serve(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server (before it binds or connects)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        """Stop the authenticator, if it runs."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


# ------------------------------------------------------------------ the client side


def secure_client(sock: zmq.Socket, curve: CurveSettings) -> bool:
    """With CURVE on, make ``sock`` a client of the service (before it binds or connects); returns whether CURVE is on.

    ``curve`` is the ``[curve]`` section: its own key pair comes from ``secret_key``, the service's public key from
    ``server_key``.
    """
    if not curve.enabled:
        return False
    public, secret = load_secret(_key_file(curve, "secret_key", "a client needs its own key pair"))
    server = load_public(_key_file(curve, "server_key", "a client needs the service's public key"))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server
    return True


def client_settings(
    secret_key: str | None = None, server_key: str | None = None, settings: Settings | None = None
) -> Settings:
    """``settings`` (the defaults when None) with CURVE turned on when both key files are given (the flags win).

    A new Settings when the keys are given; ``settings`` itself is never changed.
    """
    settings = settings if settings is not None else Settings()
    if secret_key or server_key:
        if not (secret_key and server_key):
            raise SettingsError(
                "CURVE needs both --curve-key (your .key_secret) and --server-key (the service's .key)",
                key="--curve-key" if not secret_key else "--server-key",
                valid="both --curve-key and --server-key",
            )
        settings = settings.override(
            {"curve": {"enabled": True, "secret_key": str(secret_key), "server_key": str(server_key)}},
            "--curve-key and --server-key",
        )
    return settings


def open_input(ctx, settings: Settings, endpoint: str, access: Access | None = None):
    """The keypoint input: a SUB socket on ``keypoints`` with a bounded queue and a size limit.

    Connected to ``endpoint`` (bound with ``settings.service.bind_input``), a CURVE server when ``access`` is given.
    """
    svc = settings.service
    if svc.bind_input:  # checked before a socket exists: nothing to close when refused
        check_bind(endpoint, settings, "keypoint input")
        if access is None and not svc.allow_plain_input:
            raise SettingsError(
                f"service.bind_input without CURVE would take frames from any process that can connect to "
                f"{endpoint}: ZeroMQ holds a multipart message whole until its last part, however many parts "
                f"come, and gives each connection its own queue, so such a process can grow the service's "
                f"memory without bound; turn [curve] on (enabled = true, with your keys), or set "
                f"service.allow_plain_input = true if every process on this machine is yours",
                key="service.bind_input",
                given=endpoint,
                valid="[curve] enabled = true",
            )
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, int(svc.receive_queue))
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.MAXMSGSIZE, INPUT_SIZE_FACTOR * int(svc.max_message_bytes))
    sub.setsockopt(zmq.SUBSCRIBE, b"keypoints")
    if access is not None:
        access.serve(sub)
    try:
        if svc.bind_input:
            sub.bind(endpoint)
        else:
            if not is_loopback(endpoint) and access is None:
                log.warning(
                    "the keypoint input connects to %s without CURVE: anyone on that network path can "
                    "send keypoint frames; turn [curve] on",
                    endpoint,
                )
            sub.connect(endpoint)
    except zmq.ZMQError as exc:
        sub.close(0)
        raise ProtocolError(
            f"cannot open the keypoint input {endpoint}: {exc}; give --input tcp://HOST:PORT "
            f"(a free port when service.bind_input = true)",
            key="service.input",
            given=endpoint,
            valid="tcp://HOST:PORT",
        ) from None
    return sub


def open_output(
    ctx,
    endpoint: str,
    access: Access | None = None,
    *,
    send_queue: int,
    subscription_max_bytes: int,
    subscription_queue: int | None = None,
    connect: bool = False,
):
    """The angles output: an XPUB (a PUB that tells which topics are subscribed) with a bounded send queue.

    Bound to ``endpoint`` (KinestreamError when it is taken), a CURVE server when ``access`` is given; ``connect``: it
    connects to ``endpoint`` instead (a worker's output, to its parent's relay).

    What subscribers send an XPUB is subscriptions, a topic a few bytes long: a longer frame
    (``subscription_max_bytes``) makes ZeroMQ drop that peer's connection before it is buffered, and a peer that
    floods subscriptions waits on its queue (``subscription_queue`` of them).
    """
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 500)
    pub.setsockopt(zmq.SNDHWM, send_queue)
    pub.setsockopt(zmq.MAXMSGSIZE, subscription_max_bytes)
    if subscription_queue is not None:
        pub.setsockopt(zmq.RCVHWM, subscription_queue)
    if connect:
        pub.connect(endpoint)
        return pub
    if access is not None:
        access.serve(pub)
    try:
        pub.bind(endpoint)
    except zmq.ZMQError as exc:
        pub.close(0)
        raise ProtocolError(
            f"cannot bind the output socket to {endpoint}: {exc}; is another kinestream running? "
            "give --output ENDPOINT",
            key="service.output",
            given=endpoint,
            valid="a free endpoint",
        ) from None
    return pub
