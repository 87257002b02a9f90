"""``kinestream recover FILE [FILE ...]``: repair recordings a killed session left behind."""

from __future__ import annotations

import argparse
import sys

from kinestream.errors import KinestreamError, RecordingError
from kinestream.files.record import recover


def cmd_recover(args, settings) -> None:
    failed = 0
    for name in args.files:
        try:
            print(recover(name).describe(), flush=True)
        except KinestreamError as exc:
            failed += 1
            print(f"kinestream: error: {exc}", file=sys.stderr, flush=True)
    if failed:
        raise RecordingError(
            f"{failed} of {len(args.files)} files could not be recovered (see above)", given=failed, valid=0
        )


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``recover`` on the ``kinestream`` command's subparsers."""
    p = subparsers.add_parser(
        "recover",
        help="repair .mot/.trc recordings left by a killed session (partial last row, row count)",
        description="Drop a cut-off last row and set the header's row count to the complete rows, so that "
        "OpenSim loads the file. A complete file is left untouched.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".mot or .trc file written by the session recorder")
    p.set_defaults(func=cmd_recover)
    return p
