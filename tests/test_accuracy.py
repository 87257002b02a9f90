"""kinestream.accuracy, the field's comparison against marker-based IK, on synthetic motions whose errors are known;
and scripts/bench_accuracy.py on the real drop jump when its truth is at hand.

What a broken comparison would do here (each checked by breaking a copy of accuracy.py, not the file):

- the difference taken the wrong way round (reference - estimate): the bias of the constant offset comes out -c,
  not +c (test_a_constant_offset_is_all_bias). RMSE alone is blind to that sign; the bias is not.
- the clock offset applied the wrong way (the estimate sampled at reference time - offset): the shift found is
  -0.15 s (test_a_clock_shift_is_found_and_undone), and the RMSE far from 0.
- degrees() not converting (or converting translations too): a radian reference gives RMSEs of tens of degrees
  (test_radians_are_converted_translations_are_not), and pelvis_ty would grow 57-fold.
- the alias lost: lumbar_extension lands in ``missing`` and its 3 deg are not measured (test_pose2sim_lumbar_names).
- a missing DOF counted as 0 in the means: mean18 is 6/18, not 6/17 (test_a_missing_dof_is_listed_and_left_out).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kinestream.accuracy import DOFS, GROUPS, LOWER_LIMB, compare, degrees
from kinestream.files.mot import Motion, read_mot, write_mot

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_accuracy.py"
SHIFT = 0.15  # estimate time = lab time + SHIFT, as the drop jump's


def curve(dof: str, t: np.ndarray) -> np.ndarray:
    """A smooth, distinct curve (deg) for each DOF on the lab's clock. The knees get two bumps of different
    height (a drop and a jump), so that knee flexion correlates best at one shift only."""
    t = np.asarray(t, dtype=float)
    if dof.startswith("knee_angle"):
        side = 0.02 if dof.endswith("_l") else 0.0
        return 90 * np.exp(-(((t - 1.8 - side) / 0.18) ** 2)) + 40 * np.exp(-(((t - 2.6) / 0.12) ** 2)) + 5
    k = DOFS.index(dof) + 1
    return 10 * (1 + k % 3) * np.sin(2 * np.pi * (0.4 + 0.1 * k) * t + k) + 2 * k - 15


def motion(t: np.ndarray, dofs=DOFS, shift: float = 0.0, in_degrees: bool = True, names: dict | None = None) -> Motion:
    """The curves at times ``t`` of a recording whose clock reads lab time + ``shift``; with a pelvis translation
    (metres, never converted); ``names`` renames columns (a model's own names)."""
    columns = list(dofs) + ["pelvis_ty"]
    values = np.column_stack([curve(d, t - shift) for d in dofs] + [0.9 + 0.1 * np.sin(t)])
    if not in_degrees:
        values[:, : len(dofs)] = np.radians(values[:, : len(dofs)])
    return Motion(np.asarray(t, dtype=float), [(names or {}).get(c, c) for c in columns], values, in_degrees)


LAB = np.round(np.arange(1.55, 2.83 + 1e-9, 0.01), 6)  # 100 Hz, the span of the drop jump's lab recording
VIDEO = np.arange(301) / 60.0  # 60 Hz, 5 s, the keypoints' clock


def test_a_motion_against_itself_is_zero():
    m = motion(LAB)
    c = compare(m, m)
    assert abs(c.offset_s) < 1e-9
    assert c.frames == len(LAB) and c.missing == []
    assert set(c.rmse) == set(DOFS)
    for dof in DOFS:
        assert c.rmse[dof] < 1e-9 and c.rmse_centred[dof] < 1e-9 and abs(c.bias[dof]) < 1e-9, dof
    assert all(abs(v) < 1e-9 for v in c.row().values())


def test_a_constant_offset_is_all_bias():
    reference = motion(LAB)
    estimate = motion(LAB)
    k = estimate.names.index("hip_flexion_r")
    estimate.values[:, k] += 4.5  # the estimate reads 4.5 deg more flexion: the neutral pose, not the motion
    c = compare(estimate, reference)
    assert abs(c.offset_s) < 1e-9
    assert c.rmse["hip_flexion_r"] == pytest.approx(4.5, abs=1e-9)
    assert c.bias["hip_flexion_r"] == pytest.approx(4.5, abs=1e-9)  # estimate - reference: a sign error fails here
    assert c.rmse_centred["hip_flexion_r"] < 1e-9
    others = [d for d in DOFS if d != "hip_flexion_r"]
    assert max(c.rmse[d] for d in others) < 1e-9 and max(c.rmse_centred[d] for d in others) < 1e-9
    row = c.row()
    assert row["mean18"] == pytest.approx(4.5 / 18) and row["mean18_centred"] < 1e-9
    assert row["lower_limb"] == pytest.approx(4.5 / 12)
    assert row["hip"] == pytest.approx(4.5 / 6) and row["knee"] < 1e-9


def test_a_clock_shift_is_found_and_undone():
    """The lab at 100 Hz on its clock, the estimate at 60 Hz on one that reads 0.15 s more."""
    reference = motion(LAB)
    estimate = motion(VIDEO, shift=SHIFT)
    c = compare(estimate, reference)
    assert abs(c.offset_s - SHIFT) <= 0.001 + 1e-9, c.offset_s  # within one step of the search (a 60 Hz frame: 17 ms)
    assert c.missing == [] and c.frames == len(LAB)
    # what is left is linear interpolation between 60 Hz frames (0.09 deg at the knee's sharp peak)
    assert max(c.rmse.values()) < 0.15, c.rmse
    assert c.mean() < 0.05
    # told the true shift, the comparison gives the same
    told = compare(estimate, reference, offset_s=SHIFT)
    assert told.offset_s == SHIFT
    assert max(told.rmse.values()) < 0.15
    # the wrong way round is far off: the shift matters
    assert compare(estimate, reference, offset_s=-SHIFT).mean() > 5


def test_radians_are_converted_translations_are_not(tmp_path):
    """The truth file says inDegrees=no: its rotations are radians, read as such; its translations stay metres."""
    path = write_mot(tmp_path / "lab.mot", motion(LAB, in_degrees=False))
    assert "inDegrees=no" in path.read_text()
    reference = read_mot(path)
    assert reference.in_degrees is False
    assert np.nanmax(np.abs(reference.get("knee_angle_r"))) < 2  # radians as written
    converted = degrees(reference)
    assert converted.in_degrees is True
    np.testing.assert_allclose(converted.get("knee_angle_r"), curve("knee_angle_r", LAB), atol=1e-5)
    np.testing.assert_array_equal(converted.get("pelvis_ty"), reference.get("pelvis_ty"))  # metres
    c = compare(motion(VIDEO, shift=SHIFT), reference)
    assert abs(c.offset_s - SHIFT) <= 0.001 + 1e-9
    assert max(c.rmse.values()) < 0.15, c.rmse  # unconverted, the RMSEs would be tens of degrees
    # an estimate in radians is converted as well, and degrees() leaves a motion in degrees alone
    assert compare(motion(LAB, in_degrees=False), motion(LAB)).mean() < 1e-6
    m = motion(LAB)
    assert degrees(m) is m


def test_pose2sim_lumbar_names():
    """Pose2Sim's model names the lumbar joint L5_S1_*: the same axes and signs, matched to OpenCap's lumbar_*."""
    names = {
        "lumbar_extension": "L5_S1_Flex_Ext",
        "lumbar_bending": "L5_S1_Lat_Bending",
        "lumbar_rotation": "L5_S1_axial_rotation",
    }
    estimate = motion(VIDEO, shift=SHIFT, names=names)
    assert "L5_S1_Flex_Ext" in estimate and "lumbar_extension" not in estimate
    for k, (dof, offset) in enumerate(zip(names, (3.0, -2.0, 1.0), strict=True)):
        estimate.values[:, estimate.names.index(names[dof])] += offset
        assert dof in DOFS[-3:], k
    c = compare(estimate, motion(LAB), offset_s=SHIFT)
    assert c.missing == []
    assert c.bias["lumbar_extension"] == pytest.approx(3.0, abs=0.05)  # each onto its own axis, sign kept
    assert c.bias["lumbar_bending"] == pytest.approx(-2.0, abs=0.05)
    assert c.bias["lumbar_rotation"] == pytest.approx(1.0, abs=0.05)
    assert c.group("lumbar", centred=True) < 0.1


def test_a_missing_dof_is_listed_and_left_out():
    reference = motion(LAB)
    estimate = motion(LAB, dofs=[d for d in DOFS if d != "subtalar_angle_r"])
    estimate.values[:, estimate.names.index("hip_flexion_r")] += 6.0
    c = compare(estimate, reference)
    assert c.missing == ["subtalar_angle_r"]
    assert "subtalar_angle_r" not in c.rmse and "subtalar_angle_r" not in c.rmse_centred
    row = c.row()
    assert row["mean18"] == pytest.approx(6.0 / 17)  # over the 17 both have, not 18 with a zero
    assert row["lower_limb"] == pytest.approx(6.0 / 11)
    assert row["subtalar"] < 1e-9  # the left one only
    # a DOF the reference lacks is missing too; a DOF with no common frames as well
    c = compare(motion(LAB), motion(LAB, dofs=[d for d in DOFS if d != "pelvis_list"]))
    assert c.missing == ["pelvis_list"]
    late = motion(LAB)
    late.values[:, late.names.index("ankle_angle_l")] = np.nan
    assert "ankle_angle_l" in compare(late, motion(LAB), offset_s=0.0).missing
    assert set(GROUPS["knee"]) <= set(LOWER_LIMB)


# --------------------------------------------------------------------------- the benchmark script


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def test_bench_accuracy_without_its_truth_says_so_in_one_line():
    done = run_script("--truth", "/nonexistent/drop_vertical_jump_mocap_ik.mot")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert "skipped" in lines[0] and "/nonexistent/drop_vertical_jump_mocap_ik.mot" in lines[0]
    assert "licence" in lines[0] and "never kept in the repository" in lines[0]


@pytest.mark.slow
def test_bench_accuracy_offline_against_a_truth_of_its_own(tmp_path):
    """The script end to end on the real drop jump, against a reference made from kinestream's own offline angles:
    re-timed onto a 100 Hz clock that reads 0.15 s behind, in radians and OpenSim's lumbar names, as the lab's
    file is. The script must find that offset and a near-zero error (interpolation between 60 Hz frames only).
    The lab's own file stays outside the repository, so this is what a fresh clone can check."""
    from conftest import real_trial
    from kinestream.accuracy import column, sample
    from kinestream.offline import process
    from kinestream.settings import load_settings

    own = process(
        real_trial("drop_vertical_jump.trc"),
        78.2,
        1.96,
        tmp_path / "own",
        load_settings(),
        plot=False,
    ).motion
    values = np.column_stack([np.radians(sample(own, column(own, d), LAB + SHIFT)) for d in DOFS])
    truth = write_mot(tmp_path / "truth.mot", Motion(LAB, list(DOFS), values, in_degrees=False))
    done = run_script("--paths", "offline", "--truth", str(truth), "--out", str(tmp_path / "bench"))
    assert done.returncode == 0, done.stderr[-3000:]
    row = re.search(r"^default / offline\s+(-?\d+\.\d+)\s+(\d+\.\d)\s+(\d+\.\d)\s", done.stdout, re.M)
    assert row, done.stdout
    offset, mean18, centred = map(float, row.groups())
    assert abs(offset - SHIFT) <= 0.002
    assert mean18 <= 0.3 and centred <= mean18, (mean18, centred)
    assert "knee_angle_r" in done.stdout  # the per DOF table
