"""Shared fixtures: the real assets (fetched once) and the real recorded trials."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("broker",)  # the `broker` fixture: a real mosquitto on a free loopback port

DATA = Path(__file__).resolve().parent / "data"  # the real recorded trials, carried with the tests (NOTICE)


@pytest.fixture(scope="session")
def assets():
    from kinestream.assets import get_assets

    return get_assets()


def real_trial(name: str) -> Path:
    """A real recorded trial from tests/data (a missing one is a broken checkout, not a skip)."""
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the real trials are part of the repository (tests/data)")
    return path
