"""``kinestream replay TRIAL.trc``: publish a recorded trial as a live keypoint source."""

from __future__ import annotations

import argparse
import asyncio
import sys

from kinestream.commands.common import ingest_args
from kinestream.commands.terminal import showing_log
from kinestream.errors import KinestreamError
from kinestream.files.trc import read_trc
from kinestream.ingest import describe_orientation, orient, orientation
from kinestream.live import stop_on_signals
from kinestream.live.settings import REPLAY_ENDPOINT, parse_rate
from kinestream.settings import Settings


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_replay(args, settings: Settings | None = None) -> int:
    """The ``replay`` command: runs :func:`replay` until the trial ends (or, with --loop, until Ctrl-C / SIGTERM).

    Ctrl-C and SIGTERM stop it cleanly. --up/--rotate turn the trial before it is sent (the settings' [ingest] are the
    service's: they describe what it receives). ``settings``: CURVE's keys (``[curve]``, the flags over them) and
    whether the replay may bind beyond this machine (``service.allow_remote``); None: the defaults.
    """
    # the live path (ZeroMQ) is loaded when a replay runs, not for `kinestream --help`
    from kinestream.live.replay import replay
    from kinestream.live.transport import client_settings

    trial = args.trial
    up, rotate = getattr(args, "up", None) or "y", getattr(args, "rotate", None) or ""
    turn = orientation(up, rotate)
    if turn is not None:
        trial = orient(read_trc(args.trial), turn)
        _log(f"replay: {describe_orientation(up, rotate)} before they are sent")

    async def main() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop)
        return await replay(
            trial,
            args.endpoint,
            rate=args.rate,
            loop=args.loop,
            subject=args.subject,
            wait_subscriber=args.wait_subscriber,
            stop_event=stop,
            send_names=getattr(args, "send_names", False),
            settings=client_settings(getattr(args, "curve_key", None), getattr(args, "server_key", None), settings),
        )

    with showing_log():  # what the replay does, on stderr, also when this runs without kinestream's main
        sent = asyncio.run(main())
    print(f"sent {sent} frames of {args.trial} to {args.endpoint}")
    return sent


def _rate_arg(text: str) -> float:
    try:
        return parse_rate(text)
    except KinestreamError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; give seconds >= 0 (0: do not wait, inf: no limit)")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``kinestream replay`` on the command's subparsers."""
    p = subparsers.add_parser("replay", help="publish a recorded trial as a live keypoint source (ZeroMQ)")
    p.add_argument("trial", help="keypoints .trc (OpenPose names; m or mm)")
    p.add_argument(
        "--rate",
        type=_rate_arg,
        default=1.0,
        help="speed factor: 1 = the trial's own frame rate, 2 = twice as fast; 'max' sends back to back (default 1)",
    )
    p.add_argument("--loop", action="store_true", help="start over at the end, time still increasing, until Ctrl-C")
    p.add_argument(
        "--endpoint",
        default=REPLAY_ENDPOINT,
        help=f"ZeroMQ endpoint the replay binds; the service connects to it (default {REPLAY_ENDPOINT})",
    )
    p.add_argument("--subject", help="subject id sent with every frame (default: none)")
    p.add_argument(
        "--wait-subscriber",
        type=_seconds_arg,
        default=1.0,
        metavar="S",
        help="wait up to S seconds for a subscriber before the first frame (default 1; 0: no wait, "
        "inf: until one comes)",
    )
    p.add_argument(
        "--send-names",
        action="store_true",
        help="send keypoint names with every frame even when the BODY_25 layout would do",
    )
    p.add_argument(
        "--curve-key",
        metavar="FILE",
        help="CURVE: this source's key pair (.key_secret); with --server-key (default: config [curve])",
    )
    p.add_argument("--server-key", metavar="FILE", help="CURVE: the service's public key (.key)")
    ingest_args(p, settings=False)
    p.set_defaults(func=run_replay)
    return p
