"""What the commands share: messages to stderr, the subject's mass and height, paths that must exist."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kinestream.commands.terminal import PROMPTS, show
from kinestream.config import SOLVERS
from kinestream.errors import InputError
from kinestream.projects import subject_values
from kinestream.settings import Settings


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def subject_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--mass", type=float, required=required, help="subject mass in kg (default: config)")
    p.add_argument("--height", type=float, required=required, help="subject height in m (default: config)")


def subject(args, settings: Settings) -> tuple[float, float]:
    """(mass, height): --mass and --height, else [subject] (:func:`kinestream.projects.subject_values`)."""
    height, mass, _ = subject_values(None, args.height, args.mass, settings)
    return mass, height


def existing(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p} does not exist", key=what, given=p, valid="an existing file")
    return p


def log_to_stderr() -> None:
    """The live commands' log: kinestream's lines on stderr after ``kinestream: ``.

    What ``calibrate`` tells the person being calibrated is plain; other libraries' INFO records are prefixed too.
    """
    import logging

    show("kinestream", prefix="kinestream: ")
    show(PROMPTS)
    root = logging.getLogger()
    had = list(root.handlers)
    logging.basicConfig(level=logging.INFO, format="kinestream: %(message)s", stream=sys.stderr)
    for handler in root.handlers:
        if handler not in had:  # kinestream's own records are shown by the command's handler (terminal.Lines)
            handler.addFilter(lambda record: not record.name.startswith("kinestream"))


def ingest_args(p: argparse.ArgumentParser, settings: bool = True) -> None:
    """--up and --rotate: the axes of the keypoints read (over [ingest] in the settings, when ``settings``)."""
    default = "config [ingest], " if settings else ""
    p.add_argument(
        "--up",
        choices=("y", "z"),
        help=f"the keypoints' up axis: y (as OpenSim) or z (many camera systems; turned Y-up) (default: {default}y)",
    )
    p.add_argument(
        "--rotate",
        metavar="AXIS:DEG[,AXIS:DEG]",
        help=f"further turns about the model's axes after --up, in order, e.g. y:90 (default: {default}none)",
    )


def flag_settings(args, settings: Settings) -> Settings:
    """New settings with the flags that stand for settings: --solver in ``[ik]``, --up and --rotate in ``[ingest]``.

    The commands and stages read them there.

    A bad value is refused here, before any work.
    """
    changes: dict[str, dict] = {}
    if getattr(args, "solver", None):
        changes["ik"] = {"solver": args.solver}
    ingest = {key: getattr(args, key) for key in ("up", "rotate") if getattr(args, key, None) is not None}
    if ingest:
        changes["ingest"] = ingest
    return settings.override(changes) if changes else settings


def solver_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solver", choices=SOLVERS, help="IK solver: fast (default: config) or opensim, the reference")


def service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", help="keypoint source endpoint (default: config, tcp://127.0.0.1:5555)")
    subject_args(p)
