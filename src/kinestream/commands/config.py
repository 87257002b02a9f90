"""``kinestream config``: every setting with its default and what it does (the package's default.toml)."""

from __future__ import annotations

import argparse
from importlib import resources

from kinestream.config import DEFAULT_FILE


def cmd_config(args, settings) -> None:
    print(resources.files("kinestream").joinpath(DEFAULT_FILE).read_text(encoding="utf-8"), end="")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``kinestream config`` on the command's subparsers."""
    p = subparsers.add_parser(
        "config", help="print every setting with its default; copy the ones to change into a file for --config"
    )
    p.set_defaults(func=cmd_config)
    return p
