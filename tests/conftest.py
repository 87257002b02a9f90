"""Shared fixtures: the real assets (fetched once) and the real recorded trials."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def assets():
    from kinestream.assets import get_assets

    return get_assets()


def real_trial(name: str) -> Path:
    """A recorded trial beside the project; the test skips when ../shared is absent."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real recorded trials live in ../shared/data beside the project")
    return path
