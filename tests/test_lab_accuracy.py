"""The drop jump against marker-based motion capture of the same jump (OpenCap's lab validation, subject 2).

The truth, ``../shared/data/drop_vertical_jump_mocap_ik.mot``, comes without a licence and so stays out of
the repository: these tests read it beside the checkout, as CI and developers have it, and skip, saying so,
where it is absent. They guard the figures the accuracy work reached (scripts/bench_accuracy.py prints them
all) with a margin for other machines' floating point, not tuned to one run: before the malleolus markers
were put on the ankle joint centre, the 18-DOF mean was 5.9 deg and subtalar 12.2 deg, and both asserts
below failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import real_trial
from kinestream import accuracy
from kinestream.config import load_config
from kinestream.files.mot import read_mot
from kinestream.offline import process

TRUTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "drop_vertical_jump_mocap_ik.mot"
HEIGHT, MASS = 1.96, 78.2  # the person of the study's subject 2


@pytest.fixture(scope="module")
def truth():
    if not TRUTH.is_file():
        pytest.skip(f"{TRUTH} is absent: the lab's joint angles are read beside the checkout, never copied into it")
    return read_mot(TRUTH)


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    out = tmp_path_factory.mktemp("jump")
    return process(
        real_trial("drop_vertical_jump.trc"), MASS, HEIGHT, out, load_config(), plot=False, log=lambda *_: None
    )


def test_drop_jump_offline_against_the_lab(truth, offline):
    result = accuracy.compare(offline.motion, truth)
    assert result.offset_s == pytest.approx(0.15, abs=0.02)  # the README's offset: the right jump, aligned
    assert not result.missing
    assert result.mean() <= 5.0  # 4.7 measured; 5.9 before
    assert result.group("subtalar") <= 6.0  # 4.6 measured; 12.2 before (rolled to its -20 deg limit)
    assert result.group("pelvis") <= 3.2  # 2.7 measured; 3.05 before
    assert result.group("knee") <= 5.0  # 4.4 measured (3.5 before: the one group the change costs)


def test_drop_jump_streaming_is_within_half_a_degree_of_offline(truth, offline, tmp_path):
    """The frame-wise cores of the live service, on the offline run's scaled model."""
    streaming = process(
        real_trial("drop_vertical_jump.trc"),
        MASS,
        HEIGHT,
        tmp_path,
        load_config(),
        plot=False,
        log=lambda *_: None,
        streaming=True,
        model=offline.scaled_model,
    )
    off = accuracy.compare(offline.motion, truth).mean()
    live = accuracy.compare(streaming.motion, truth).mean()
    assert abs(live - off) <= 0.5
