"""Shared fixtures: the real assets (fetched once), the real recorded trials, and synth trials made once."""

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


@pytest.fixture(scope="session")
def synth_trial(tmp_path_factory):
    """Synth trials made once a test session, by their arguments: ``synth_trial(seconds=6.0, noise_mm=5.0)``.

    Every test asking for the same arguments gets the same trial (a :class:`kinestream.synth.SynthResult`): its
    files and tables are read, never changed. A test that changes a trial makes its own with
    :func:`kinestream.synth.synthesize`.
    """
    from kinestream.synth import synthesize

    made = {}

    def make(**kwargs):
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
        if key not in made:
            made[key] = synthesize(tmp_path_factory.mktemp("synth"), **kwargs)
        return made[key]

    return make


@pytest.fixture(scope="session")
def athletes(synth_trial):
    """Three synth athletes of different sizes, noise and gaps (several people in one stream): (trial, table)
    each."""
    from kinestream.files.trc import read_trc

    out = []
    for k, scale in enumerate((1.0, 0.92, 1.08)):
        syn = synth_trial(seconds=6.0, noise_mm=4.0, gaps=2, scale=scale, seed=20 + k)
        out.append((syn, read_trc(syn.keypoints_trc)))
    return out
