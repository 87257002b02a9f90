"""``kinestream view``: the body, the model and the angles in Rerun's viewer, live or from a recording.

    kinestream view [--endpoint tcp://127.0.0.1:5556]                      live, from a running service
    kinestream view SESSION.mot [--markers SESSION_markers.trc] [--model scaled.osim]   a recorded session
    kinestream view TRIAL.trc                                              keypoints of a trial
    ... [--web [--web-port 9090] [--grpc-port 9876] [--bind 127.0.0.1]] [--save FILE.rrd]

It shows in Rerun's native viewer by default; ``--web`` serves Rerun's web
viewer instead (on loopback unless ``service.allow_remote``); ``--save`` writes
a .rrd (alone, no display is needed). Rerun's usage analytics are off for this
process and every Rerun process it starts (:mod:`kinestream.live.viewers`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from pathlib import Path

from kinestream.assets import get_assets, home
from kinestream.commands.common import log_to_stderr, say
from kinestream.errors import InputError, SettingsError
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.live import stop_on_signals
from kinestream.settings import Settings


def _analytics_off() -> None:
    """Rerun's analytics off in this process before rerun is imported, and so in every Rerun process it starts."""
    from kinestream.live.viewers import rerun_env

    os.environ["XDG_CONFIG_HOME"] = rerun_env({})["XDG_CONFIG_HOME"]
    os.environ.pop("FORCE_RERUN_ANALYTICS", None)


WEB_DEFAULTS = {"web_port": 9090, "grpc_port": 9876, "bind": "127.0.0.1"}  # --web's, when not given
LIVE_NICE = 10  # the live viewer's scheduling priority below the service's (Unix nice; threads inherit it)


def _lower_priority() -> None:
    """Run this process at a lower CPU priority than the service.

    So do the threads and processes it starts from now on (Rerun's, the native viewer), so that a viewer on the
    service's machine takes the cores the service leaves.
    """
    try:
        os.nice(LIVE_NICE)
    except (AttributeError, OSError):  # not Unix, or not allowed: the viewer runs at the usual priority
        pass


def _source(args) -> str | None:
    """'mot', 'trc' or None (live), after checking what was given."""
    if args.source is None:
        if args.markers or args.model:
            raise SettingsError(
                "--markers and --model go with a recorded SESSION.mot; live, the service sends both",
                key="--markers" if args.markers else "--model",
                valid="a recorded SESSION.mot",
            )
        return None
    path = Path(args.source)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("mot", "trc"):
        raise InputError(
            f"{path} is neither a .mot nor a .trc; give SESSION.mot (a recorded session), TRIAL.trc (keypoints), "
            f"or nothing to view a running service",
            given=path,
            valid=["SESSION.mot", "TRIAL.trc"],
        )
    if not path.is_file():
        raise InputError(
            f"{path} does not exist; give a recorded SESSION.mot or TRIAL.trc",
            given=path,
            valid=["SESSION.mot", "TRIAL.trc"],
        )
    if kind == "trc" and (args.markers or args.model):
        raise SettingsError(
            "--markers and --model go with a SESSION.mot; a .trc is shown as it is",
            key="--markers" if args.markers else "--model",
            valid="a SESSION.mot",
        )
    for flag, value in (("--markers", args.markers), ("--model", args.model)):
        if value and not Path(value).is_file():
            raise InputError(f"{flag} {value} does not exist", key=flag, given=value, valid="an existing file")
    return kind


async def _until_signal(stop: asyncio.Event) -> None:
    stop_on_signals(stop)


def _progress(counts) -> None:
    published = counts.last_status.get("frames_out")
    say(
        f"view: {counts.angles} angle frames, {counts.pose} poses, {counts.reps} reps received "
        f"({counts.rejected} unreadable); the service has published {published} frames"
    )


async def _live(view, endpoint: str, settings: Settings) -> None:
    stop = asyncio.Event()
    await _until_signal(stop)
    await view.run(endpoint, settings, stop, on_status=_progress)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    await _until_signal(stop)
    await stop.wait()


def run_view(args, settings: Settings) -> None:
    """The ``view`` command."""
    from kinestream.live.transport import client_settings

    kind = _source(args)
    web_args = {key: getattr(args, key) for key in WEB_DEFAULTS}
    if not args.web and any(value is not None for value in web_args.values()):
        given = ", ".join(f"--{key.replace('_', '-')}" for key, value in web_args.items() if value is not None)
        raise SettingsError(
            f"{given}: only with --web (the web viewer); the native viewer picks its own port", key=given, valid="--web"
        )
    web_args = {key: default if web_args[key] is None else web_args[key] for key, default in WEB_DEFAULTS.items()}
    save = Path(args.save) if args.save else None
    if save is not None and save.suffix.lower() != ".rrd":
        raise SettingsError(
            f"--save {save}: a Rerun recording is a .rrd file; give FILE.rrd",
            key="--save",
            given=save,
            valid="FILE.rrd",
        )
    settings = client_settings(getattr(args, "curve_key", None), getattr(args, "server_key", None), settings)
    endpoint = args.endpoint or settings.service.output

    if kind is None:  # live, beside the service: on a busy machine the viewer waits, not the service
        _lower_priority()
    _analytics_off()
    from kinestream.live.viewers import require_rerun, start_native, start_web

    rr = require_rerun()
    from kinestream.live.view import APPLICATION_ID, LiveView, RerunLog, play_motion, play_trc

    motion = table = markers = None
    model = args.model
    if kind == "mot":
        motion = read_mot(args.source)
        marker_file = (
            Path(args.markers) if args.markers else Path(args.source).with_name(Path(args.source).stem + "_markers.trc")
        )
        if marker_file.is_file():
            markers = read_trc(marker_file)
        else:
            say(f"no {marker_file}: the keypoints and markers are not shown (give --markers FILE)")
        if model is None:
            model = get_assets(settings).generic_model
            say("no --model: the joint centres are the generic model's, unscaled (give the session's scaled .osim)")
    elif kind == "trc":
        table = read_trc(args.source)

    logs = home() / "view-logs"  # what the Rerun processes say, for the errors that quote it
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=uuid.uuid4())
    sinks = []
    web = None
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        sinks.append(rr.FileSink(str(save)))
    if args.web:
        log_to_stderr()  # the warning of a web viewer beyond loopback
        web = start_web(settings, logs, host=web_args["bind"], **{k: v for k, v in web_args.items() if k != "bind"})
        sinks.append(web.sink)
        say(f"the web viewer: {web.url}")
    if not sinks:
        native = start_native(settings, logs)
        sinks.append(rr.GrpcSink(native.grpc_url))
    try:
        rec.set_sinks(*sinks)
        log = RerunLog(rec)
        log.setup(live=kind is None)
        if kind is None:
            view = LiveView(log)
            say(f"viewing the service at {endpoint} (Ctrl-C to stop)")
            asyncio.run(_live(view, endpoint, settings))
            c = view.counts
            summary = f"{c.angles} angle frames, {c.pose} poses, {c.reps} reps, {c.status} statuses"
        elif kind == "mot":
            assert motion is not None and model is not None
            done = play_motion(log, motion, model=model, markers=markers)
            summary = f"{done['frames']} frames ({done['with_markers']} with markers), {done['reps']} reps"
        else:
            assert table is not None
            summary = f"{play_trc(log, table)} keypoint frames"
        rec.flush(timeout_sec=30.0)
        if web is not None and kind is not None:
            say(f"{summary} sent; the web viewer keeps serving until Ctrl-C")
            asyncio.run(_wait_for_signal())
    finally:
        rec.flush(timeout_sec=30.0)
        rec.disconnect()  # a .rrd gets its footer here
        if web is not None:
            web.stop()
    where = f" to {save}" if save is not None else ""
    print(f"viewed {summary}{where}")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; give 1 to 65535")
    return port


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``kinestream view`` on the command's subparsers."""
    p = subparsers.add_parser(
        "view", help="see the body, the model and the angles move (Rerun): live from a service, or a recording"
    )
    p.add_argument(
        "source",
        nargs="?",
        help="SESSION.mot (a recorded session) or TRIAL.trc (keypoints) to play back; none: live from a service",
    )
    p.add_argument("--endpoint", help="live: the service's output (default: config, tcp://127.0.0.1:5556)")
    p.add_argument("--markers", help="with SESSION.mot: keypoints and markers (default: SESSION_markers.trc beside it)")
    p.add_argument("--model", help="with SESSION.mot: the scaled .osim for the joint centres (default: generic model)")
    p.add_argument("--web", action="store_true", help="serve Rerun's web viewer (for a browser) instead of the native")
    p.add_argument("--web-port", type=_port, help=f"--web: the page's HTTP port (default {WEB_DEFAULTS['web_port']})")
    p.add_argument(
        "--grpc-port", type=_port, help=f"--web: the port the page reads from (default {WEB_DEFAULTS['grpc_port']})"
    )
    p.add_argument(
        "--bind",
        help="--web: the address to listen on (default 127.0.0.1; another needs service.allow_remote = true)",
    )
    p.add_argument("--save", metavar="FILE.rrd", help="write a Rerun recording (alone: no display needed)")
    p.add_argument("--curve-key", metavar="FILE", help="CURVE: this viewer's key pair (.key_secret); with --server-key")
    p.add_argument("--server-key", metavar="FILE", help="CURVE: the service's public key (.key)")
    p.set_defaults(func=run_view)
    return p
