"""Squat feedback a coach can trust (issue 17): trunk lean and knee valgus checked against designed truth and
against the augmented markers' own geometry, seated starts, the end of the stream, and cues.

The measured figures print with ``pytest tests/reps/test_reps_cues.py -s``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import real_trial
from kinestream.centres import joint_centres
from kinestream.errors import SettingsError
from kinestream.files.mot import Motion
from kinestream.files.trc import read_trc
from kinestream.live.metrics import Metrics
from kinestream.offline import process
from kinestream.reps import (
    CUES,
    RepCounter,
    RepEvent,
    cues_for,
    detect_reps,
    frame_measures,
)
from kinestream.settings import CueSettings, Settings, load_settings
from kinestream.synth import synthesize

LEAN_TOL_DEG, VALGUS_TOL_CM = 3.0, 1.5  # the bounds on designed trunk lean and valgus
# Through the augmenter (synth keypoints in, the valgus of the IK's joint centres out) the worst rep is 1.64 cm
# off since the malleolus markers sit on the ankle joint (1.5 cm before): the shank now scales as the thigh
# does, where it came out 0.1 longer before. Measured against the lab's marker-based IK of a real jump the same change
# took the 18-DOF mean from 5.9 to 4.7 deg and subtalar from 12.2 to 4.6 deg; where synth and the lab disagree,
# the lab wins, and this bound is widened to 1.8 cm.
VALGUS_PIPELINE_TOL_CM = 1.8
# Through the whole pipeline (augmenter, scaling, IK) the trunk lean at the bottom of the synth squats comes out
# 3.0 to 7.0 deg below the truth (measured, offline and streaming alike; the most on the fast 0.4 s descent):
# at the bottom the IK tilts the pelvis some 18 deg too far back (+3.6 against the true -14.1 deg) and makes it up
# with lumbar flexion, which brings the hip joint centres forward under the shoulders; scaling also makes the
# pelvis 15 % too large. The IK's hip-to-shoulder line sits about 3.6 deg below the augmented markers' own line
# there, whereas on the real trials it follows that line within 2.8 deg (test below). The rep stage adds
# nothing: on the true angles it reports the designed lean within 0.2 deg. The bound here is that measured
# pipeline error, not the 3 deg.
PIPELINE_LEAN_TOL_DEG = 7.5


def _quiet(*_args) -> None:
    return None


def _marker_line_lean(table, i: int) -> float:
    """Trunk lean from the augmented markers themselves: their hip joint centres (RHJC/LHJC) to the midpoint of
    the acromion markers, from vertical in the sagittal plane of those hips, forward +. Written apart from
    kinestream.reps."""
    hip_r, hip_l = table.get("RHJC_study")[i], table.get("LHJC_study")[i]
    top = 0.5 * (table.get("r_shoulder_study")[i] + table.get("L_shoulder_study")[i])
    right = (hip_r - hip_l) * (1, 0, 1)
    right /= np.linalg.norm(right)
    forward = np.cross((0.0, 1.0, 0.0), right)
    line = top - 0.5 * (hip_r + hip_l)
    return math.degrees(math.atan2(line @ forward, line[1]))


def _marker_valgus(table, i: int, side: str) -> float:
    """Knee valgus (cm, medial +) from the augmented markers: the knee joint centre as the midpoint of the
    femoral epicondyle markers, the ankle as that of the malleoli, the hip as the HJC marker; seen from the front
    (2D, lateral and up), the knee's distance from the hip-ankle line."""
    s = "r" if side == "r" else "L"
    hip = table.get(f"{side.upper()}HJC_study")[i]
    knee = 0.5 * (table.get(f"{s}_knee_study")[i] + table.get(f"{s}_mknee_study")[i])
    ankle = 0.5 * (table.get(f"{s}_ankle_study")[i] + table.get(f"{s}_mankle_study")[i])
    right = (table.get("RHJC_study")[i] - table.get("LHJC_study")[i]) * (1, 0, 1)
    right /= np.linalg.norm(right)

    def flat(p):
        return np.array([p @ right, p[1]])

    h, k, a = flat(hip), flat(knee), flat(ankle)
    d = (a - h) / np.linalg.norm(a - h)
    lateral = np.array([-d[1], d[0]])
    if lateral[0] * (1 if side == "r" else -1) < 0:
        lateral = -lateral
    return float(-100.0 * (k - h) @ lateral)


def _process(path, tmp, **kwargs):
    return process(path, kwargs.pop("mass"), kwargs.pop("height"), tmp, load_settings(), plot=False, **kwargs)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    """Synth squats of designed form. "valgus0": a clean squat (lean 20, valgus 0, 100 deg, 1.2 s down), then one
    leaning 45 deg, a shallow one (75 deg) and a fast one (0.4 s down); "valgus+5": knees in 5 cm, leaning 45 deg
    and fast, then leaning 20; "valgus-5": knees out 5 cm; "asymmetric": the right knee 8 deg deeper."""
    root = tmp_path_factory.mktemp("designed")
    return {
        "valgus0": synthesize(
            root / "v0",
            seconds=14.3,
            depths=[100, 100, 75, 100],
            trunk_lean_deg=[20, 45, 20, 20],
            valgus_cm=0.0,
            descent_s=[1.2, 1.2, 1.2, 0.4],
            noise_mm=5.0,
            seed=3,
        ),
        "valgus+5": synthesize(
            root / "v5",
            seconds=8.2,
            depths=[100, 100],
            trunk_lean_deg=[45, 20],
            valgus_cm=5.0,
            descent_s=[0.4, 1.2],
            noise_mm=5.0,
            seed=4,
        ),
        "valgus-5": synthesize(root / "vm5", seconds=5.0, depths=[100], trunk_lean_deg=20, valgus_cm=-5.0, seed=5),
        "asymmetric": synthesize(root / "asym", seconds=5.0, depths=[100], trunk_lean_deg=20, asymmetry_deg=8.0),
    }


@pytest.fixture(scope="module")
def designed_truth(designed):
    """The rep counter on the true angles and the true joint centres of each designed trial."""
    return {name: detect_reps(syn.motion, joint_centres(None, syn.motion)) for name, syn in designed.items()}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real trials through the offline pipeline (and the sit-to-stand through the streaming one), with their
    augmented markers. Height 1.85 m as in test_pipeline."""
    out = {}
    for name in ("sit_to_stand", "drop_vertical_jump"):
        result = _process(real_trial(f"{name}.trc"), tmp_path_factory.mktemp(name), mass=75.0, height=1.85)
        out[name] = result
    out["sit_to_stand streaming"] = _process(
        real_trial("sit_to_stand.trc"),
        tmp_path_factory.mktemp("sts_stream"),
        mass=75.0,
        height=1.85,
        streaming=True,
        model=out["sit_to_stand"].scaled_model,
    )
    return out


# --------------------------------------------------------------------------- 1, 2: trunk lean and valgus


def test_designed_lean_and_valgus_are_reported_on_the_true_angles(designed, designed_truth):
    """The issue's numbers: designed trunk lean 20 and 45 deg, valgus 0, +5 and -5 cm, reported within 3 deg and
    1.5 cm (they come out within 0.2 deg and 0.05 cm: the rep stage reads the model's joint centres exactly)."""
    rows = []
    for name, syn in designed.items():
        events, _ = designed_truth[name]
        assert len(events) == len(syn.squats), name
        for e, squat in zip(events, syn.squats, strict=True):
            rows.append((name, squat.index + 1, e.trunk_lean_deg, e.knee_valgus_cm_r, e.knee_valgus_cm_l))
            # the synth's own measure (written apart) of the truth at the bottom, and the rep counter's
            assert e.trunk_lean_deg == pytest.approx(squat.trunk_lean_deg, abs=0.2), (name, squat.index)
            assert e.knee_valgus_cm_r == pytest.approx(squat.knee_valgus_cm_r, abs=0.05)
            assert e.knee_valgus_cm_l == pytest.approx(squat.knee_valgus_cm_l, abs=0.05)
    print("trial, squat, trunk lean deg, valgus r/l cm:", [(n, k, *(round(v, 2) for v in r)) for n, k, *r in rows])
    for name, lean, valgus in (
        ("valgus0", [20, 45, 20, 20], 0.0),
        ("valgus+5", [45, 20], 5.0),
        ("valgus-5", [20], -5.0),
    ):
        events, _ = designed_truth[name]
        for e, designed_lean in zip(events, lean, strict=True):
            assert abs(e.trunk_lean_deg - designed_lean) <= LEAN_TOL_DEG
        # valgus is designed at the bottom of the first squat; the others, as deep, have it within 0.5 cm
        first = events[0]
        assert abs(first.knee_valgus_cm_r - valgus) <= 0.05 and abs(first.knee_valgus_cm_l - valgus) <= 0.05
        for e in events:
            if abs(e.knee_peak - first.knee_peak) < 3:
                assert abs(e.knee_valgus_cm_r - valgus) <= VALGUS_TOL_CM, (name, e.index)
                assert abs(e.knee_valgus_cm_l - valgus) <= VALGUS_TOL_CM, (name, e.index)
    # the torso frame's angle keeps its own name, and is not the trunk lean: 6 to 16 deg more here
    events, _ = designed_truth["valgus0"]
    assert all(5 < e.torso_frame_lean_deg - e.trunk_lean_deg < 20 for e in events)


@pytest.mark.slow
def test_designed_lean_and_valgus_through_the_pipeline(designed, tmp_path_factory):
    """The same squats from their keypoints, through augmenter, scaling and IK, offline and streaming."""
    worst = {"lean": 0.0, "valgus": 0.0}
    for name in ("valgus0", "valgus+5", "valgus-5"):
        syn = designed[name]
        offline = _process(syn.keypoints_trc, tmp_path_factory.mktemp(name), mass=syn.mass, height=syn.height)
        streaming = _process(
            syn.keypoints_trc,
            tmp_path_factory.mktemp(name + "s"),
            mass=syn.mass,
            height=syn.height,
            streaming=True,
            model=offline.scaled_model,
        )
        for label, result in (("offline", offline), ("streaming", streaming)):
            events, _ = detect_reps(result.motion, joint_centres(offline.scaled_model, result.motion))
            assert len(events) == len(syn.squats), (name, label)
            lean = [e.trunk_lean_deg - s.trunk_lean_deg for e, s in zip(events, syn.squats, strict=True)]
            valgus = [
                v
                for e, s in zip(events, syn.squats, strict=True)
                for v in (e.knee_valgus_cm_r - s.knee_valgus_cm_r, e.knee_valgus_cm_l - s.knee_valgus_cm_l)
            ]
            print(
                f"{name} {label}: minus truth: trunk lean (deg) {np.round(lean, 2)}, "
                f"valgus r/l (cm) {np.round(valgus, 2)}"
            )
            worst["lean"] = max(worst["lean"], *np.abs(lean))
            worst["valgus"] = max(worst["valgus"], *np.abs(valgus))
            assert all(-PIPELINE_LEAN_TOL_DEG <= v <= 0.0 for v in lean), (name, label, lean)
            assert max(abs(v) for v in valgus) <= VALGUS_PIPELINE_TOL_CM, (name, label, valgus)
    print("worst through the pipeline:", {k: round(v, 2) for k, v in worst.items()})


def test_real_trials_trunk_lean_is_the_markers_hip_to_shoulder_line(real):
    """The model's mid hip to mid shoulder joint centre line against the augmented markers' own line (their hip
    joint centre markers to their acromion markers), at every frame and at each rep's bottom: within 3 deg."""
    for name, result in real.items():
        motion, markers = result.motion, read_trc(result.augmented_trc)
        assert np.allclose(markers.time, motion.time, atol=1e-5)
        centres = joint_centres(result.scaled_model, motion)
        events, _ = detect_reps(motion, centres)
        model = np.array([frame_measures({k: v[i] for k, v in centres.items()})[3] for i in range(len(motion.time))])
        lines = np.array([_marker_line_lean(markers, i) for i in range(len(motion.time))])
        gap = model - lines
        at_bottoms = [e.trunk_lean_deg - lines[int(np.argmin(np.abs(motion.time - e.bottom)))] for e in events]
        print(
            f"{name}: trunk lean minus the markers' line: mean {gap.mean():+.2f}, worst {np.abs(gap).max():.2f} deg "
            f"over {len(gap)} frames; at the {len(events)} bottoms {np.round(at_bottoms, 2)}; lean ranges "
            f"{model.min():.0f} to {model.max():.0f} deg"
        )
        assert np.abs(gap).max() <= LEAN_TOL_DEG, name
        assert max(abs(v) for v in at_bottoms) <= LEAN_TOL_DEG
        assert np.ptp(model) > 40  # the check covers upright to leaning well forward


def test_real_trials_valgus_is_the_markers_knee_geometry(real):
    """Sign and size of knee valgus against the augmented markers' own knee geometry (epicondyles, malleoli, hip
    joint centre markers), every frame: within 2.5 cm (2.1 cm at worst on the sit-to-stand, 1.6 cm before the
    malleolus markers were put on the ankle joint), and the same sign wherever either is over 2 cm. On these
    trials both say varus (knees outside the hip-ankle line), most when seated: the subject sits knees apart."""
    for name, result in real.items():
        motion, markers = result.motion, read_trc(result.augmented_trc)
        centres = joint_centres(result.scaled_model, motion)
        measures = np.array([frame_measures({k: v[i] for k, v in centres.items()}) for i in range(len(motion.time))])
        for side, col in (("r", 1), ("l", 2)):
            lines = np.array([_marker_valgus(markers, i, side) for i in range(len(motion.time))])
            gap = measures[:, col] - lines
            big = (np.abs(measures[:, col]) > 2) | (np.abs(lines) > 2)
            print(
                f"{name} {side}: valgus minus the markers' geometry: mean {gap.mean():+.2f}, worst "
                f"{np.abs(gap).max():.2f} cm; valgus from {measures[:, col].min():+.1f} to "
                f"{measures[:, col].max():+.1f}"
            )
            assert np.abs(gap).max() <= 2.5, (name, side)
            assert np.all(np.sign(measures[big, col]) == np.sign(lines[big])), (name, side)


# --------------------------------------------------------------------------- 3: seated starts


def test_real_sit_to_stand_five_stand_ups(real):
    """The subject starts seated, stands up five times (at about 0.6, 2.3, 3.95, 5.45 and 7.1 s the knees pass
    25 deg) and ends seated: five sit-to-stand reps, the first from the stream's first frame, and the last sitting
    down reported as incomplete (seated, no stand-up followed), offline and streaming."""
    standing = (0.8, 2.5, 4.1, 5.65, 7.3)  # counted by eye: the knees straightest (7-13 deg)
    for label in ("sit_to_stand", "sit_to_stand streaming"):
        motion = real[label].motion
        events, summary = detect_reps(motion, joint_centres(real["sit_to_stand"].scaled_model, motion))
        print(label, [(e.kind, round(e.start, 2), round(e.bottom, 2), round(e.end, 2), e.seated_s) for e in events])
        assert len(events) == 5 and summary["sit_to_stand"] == 5 and summary["reps"] == 5
        assert [e.kind for e in events] == ["sit_to_stand"] * 5
        assert events[0].start == motion.time[0] and events[0].descent_s is None  # none missed at the start
        for e, top, before in zip(events, standing, (0.0, *standing[:-1]), strict=True):
            assert before <= e.start < e.bottom < e.end < top  # each rep ends as its stand-up reaches standing
            assert 85 < e.knee_peak < 105 and e.complete and e.reason is None
            assert 0.2 < e.ascent_s < 0.6 and e.seated_s is not None and 0.2 < e.seated_s < 1.0
            assert e.trunk_lean_deg is not None and 35 < e.trunk_lean_deg < 60  # leaning forward to rise
        for e in events[1:]:
            assert e.descent_s is not None and 0.2 < e.descent_s < 0.6  # the sit-down before
        assert summary["incomplete"] == 1 and summary["seated"]  # none missed at the end either
        last = summary["incomplete_reps"][0]
        assert last["complete"] is False and last["kind"] == "sit_to_stand" and last["start"] > standing[-1]
        assert "seated" in last["reason"] and "no stand-up" in last["reason"]


def test_real_drop_vertical_jump_is_squats(real):
    events, summary = detect_reps(real["drop_vertical_jump"].motion)
    assert summary["reps"] == 3 and summary["sit_to_stand"] == 0 and summary["incomplete"] == 0


def _curve(t, knee, hip=None):
    """Motion of mean knee (and hip) flexion curves, both sides equal."""
    names, cols = ["knee_angle_r", "knee_angle_l"], [knee, knee]
    if hip is not None:
        names += ["hip_flexion_r", "hip_flexion_l"]
        cols += [hip, hip]
    return Motion(t, names, np.column_stack(cols))


def _bump(t, start, duration, low, high):
    """A smooth excursion from ``low`` to ``high`` and back (half a cosine period each way)."""
    u = np.clip((t - start) / duration, 0, 1)
    return (high - low) * 0.5 * (1 - np.cos(2 * np.pi * u))


def _sit(t, down_at, seated_s, low=5.0, seat=95.0, move_s=0.6):
    """Standing at ``low``, sitting down (move_s) at ``down_at``, seated ``seated_s``, standing up (move_s)."""
    down = np.clip((t - down_at) / move_s, 0, 1)
    up = np.clip((t - down_at - move_s - seated_s) / move_s, 0, 1)
    return low + (seat - low) * (0.5 - 0.5 * np.cos(np.pi * down)) * (0.5 + 0.5 * np.cos(np.pi * up))


T = np.arange(0, 20, 1 / 60)


def test_a_stream_that_starts_seated_counts_its_first_stand_up():
    knee = np.where(T < 1.0, 95.0, 5 + 90 * (0.5 + 0.5 * np.cos(np.pi * np.clip((T - 1.0) / 0.6, 0, 1))))
    events, summary = detect_reps(_curve(T, knee, 0.9 * knee))
    assert [e.kind for e in events] == ["sit_to_stand"] and events[0].start == 0.0
    e = events[0]
    assert e.bottom == pytest.approx(1.0, abs=0.1) and e.seated_s == pytest.approx(1.0, abs=0.1)
    assert e.descent_s is None and 0.2 < e.ascent_s < 0.6 and e.cues == ()
    # Hips straight (kneeling, not seated): no seated start, as before: the stream waits for standing.
    events, _ = detect_reps(_curve(T, knee, 0.0 * knee))
    assert events == []


def test_a_sit_held_mid_stream_then_a_set_of_short_sits():
    """Standing, a sit held 3 s (seated), then three sits of 0.5 s each (short: a set going on), then after a
    long stand a squat whose bottom is as still: it is a squat again."""
    knee = _sit(T, 1.0, 3.0)
    for k in range(3):
        knee = np.maximum(knee, _sit(T, 6.0 + 2.0 * k, 0.5))
    knee = np.maximum(knee, 5 + _bump(T, 17.0, 2.5, 0, 95))
    events, summary = detect_reps(_curve(T, knee, knee))
    assert [e.kind for e in events] == ["sit_to_stand"] * 4 + ["squat"]
    first = events[0]
    # descent: from 25 deg to within seated_still_deg of the seat; seated: from there to the seat-off
    assert first.descent_s == pytest.approx(0.32, abs=0.1) and first.seated_s == pytest.approx(3.2, abs=0.2)
    assert all(e.seated_s == pytest.approx(0.5, abs=0.25) for e in events[1:4])
    assert events[4].seated_s is None and summary["sit_to_stand"] == 4


def test_sitting_longer_than_max_rep_s_is_not_too_long():
    knee = _sit(T, 1.0, 14.0)
    events, summary = detect_reps(_curve(T, knee, knee))
    assert [e.kind for e in events] == ["sit_to_stand"] and summary["too_long"] == 0
    assert events[0].seated_s == pytest.approx(14.0, abs=0.3)


# --------------------------------------------------------------------------- 4: the end of the stream


@pytest.mark.parametrize("after_s", [0.0, 0.05, 0.1, 0.2])
def test_a_rep_ending_in_the_last_frames_is_reported(after_s):
    """A squat whose knees pass back through knee_start_deg ``after_s`` before the stream's last frame (0: on
    it, or just after it) is reported, by the frame that ends it or by finish()."""
    t = np.arange(0, 6, 1 / 60)
    knee = 5 + _bump(t, 1.0, 3.0, 0, 95)
    crossing = t[np.flatnonzero((knee[:-1] >= 25) & (knee[1:] < 25))[-1] + 1]
    keep = t <= crossing - 1 / 60 + after_s + 1e-9  # at 0: the last frame is the one before the crossing
    events, summary = detect_reps(_curve(t[keep], knee[keep]))
    assert len(events) == 1 and events[0].complete and summary["incomplete"] == 0
    closed = events[0].reason is not None
    assert closed == (after_s == 0.0)  # the last frame still above 25 deg: closed by the end of the stream
    if closed:
        assert "end of the stream" in events[0].reason and events[0].end == t[keep][-1]


@pytest.mark.parametrize(
    "cut, words",
    [
        (1.9, "on the way down"),
        (2.6, "at the bottom"),
        (3.2, "on the way up"),
    ],
)
def test_a_rep_cut_short_is_reported_incomplete_with_its_reason(cut, words):
    t = np.arange(0, cut, 1 / 60)
    knee = 5 + _bump(t, 1.0, 3.0, 0, 95)
    counter = RepCounter(None, ["knee_angle_r", "knee_angle_l"])
    assert all(counter.step(ti, [k, k]) is None for ti, k in zip(t, knee, strict=True))
    e = counter.finish()
    assert e is not None and not e.complete and words in e.reason and e.cues == ()
    assert e.index == 1 and counter.summary()["reps"] == 0 and counter.summary()["incomplete"] == 1
    assert counter.finish() is None  # once


def test_nothing_under_way_at_the_end_is_not_a_rep():
    counter = RepCounter(None, ["knee_angle_r", "knee_angle_l"])
    assert counter.finish() is None  # no frames
    for k, t in enumerate(np.arange(0, 1, 1 / 60)):
        counter.step(t, [5.0 + 23 * (k > 50), 5.0 + 23 * (k > 50)])  # standing, then 28: short of the hysteresis
    assert counter.finish() is None
    seated = RepCounter(None, ["knee_angle_r", "knee_angle_l"])
    for t in np.arange(0, 2, 1 / 60):
        seated.step(t, [95.0, 95.0])
    assert seated.seated and seated.finish() is None  # seated since the stream began: nothing was under way


# --------------------------------------------------------------------------- 5: cues


def test_each_cue_fires_on_its_designed_trigger_and_not_on_a_clean_rep(designed_truth):
    cues = {name: [e.cues for e in events] for name, (events, _) in designed_truth.items()}
    print("cues:", cues)
    assert cues["valgus0"] == [(), ("chest up",), ("go deeper",), ("control the descent",)]  # clean first
    assert cues["valgus+5"] == [("knees out", "chest up"), ("knees out",)]  # three fire in the first: two given
    assert cues["valgus-5"] == [()]  # knees out 5 cm is not a fault to cue
    assert cues["asymmetric"] == [("even it out",)]
    _, summary = designed_truth["valgus0"]
    assert summary["cues"] == {"chest up": 1, "go deeper": 1, "control the descent": 1}


def test_cue_rules_follow_their_settings(designed_truth):
    events, _ = designed_truth["valgus+5"]
    first = events[0]  # knees in 5 cm, leaning 45 deg, 0.28 s down
    assert cues_for(first) == ("knees out", "chest up")
    assert cues_for(first, CueSettings(max_per_rep=1)) == ("knees out",)
    assert cues_for(first, CueSettings(knees_out=False)) == ("chest up", "control the descent")
    assert cues_for(first, CueSettings(knees_out_cm=6.0, chest_up_deg=50.0)) == ("control the descent",)
    assert cues_for(first, CueSettings(enabled=False)) == ()
    sit = RepEvent(**{**first.__dict__, "kind": "sit_to_stand", "trunk_lean_deg": 55.0, "knee_peak": 80.0})
    assert cues_for(sit, CueSettings(knees_out=False)) == ("control the descent",)  # no chest up, no go deeper
    assert set(CUES) == {"knees out", "chest up", "go deeper", "control the descent", "even it out"}
    # the settings come from [cues], checked
    assert load_settings().cues == CueSettings() == Settings.from_config({}).cues
    assert Settings.from_config({"cues": {"chest_up_deg": 35}}).cues.chest_up_deg == 35
    for bad, key, given in (
        ({"max_per_rep": 3}, "cues.max_per_rep", 3),
        ({"knees_out": "yes"}, "cues.knees_out", "yes"),
        ({"chest_up_degs": 30}, "cues.chest_up_degs", "chest_up_degs"),
    ):
        with pytest.raises(SettingsError) as info:
            Settings.from_config({"cues": bad})
        assert (info.value.key, info.value.given) == (key, given)


def test_cues_travel_with_the_event_and_show_on_the_status_line(designed_truth):
    events, _ = designed_truth["valgus+5"]
    data = events[0].to_dict()
    assert data["cues"] == ["knees out", "chest up"] and data["kind"] == "squat" and data["complete"] is True
    metrics = Metrics()
    metrics.reps, metrics.last_rep = 1, data
    status = {**metrics.snapshot(), "filter_delay_ms": 17.0, "rejected": {}}
    assert status["last_rep_cues"] == ["knees out", "chest up"]
    assert status["last_rep_depth_deg"] == data["knee_peak"]
    assert metrics.line(status).endswith(f"reps 1, last {data['knee_peak']} deg: knees out, chest up")


@pytest.mark.slow
def test_cues_through_the_pipeline(designed, tmp_path_factory):
    """The cue trials from their keypoints (offline): which cues survive the pipeline's errors."""
    got = {}
    for name, syn in designed.items():
        result = _process(syn.keypoints_trc, tmp_path_factory.mktemp(name), mass=syn.mass, height=syn.height)
        events, _ = detect_reps(result.motion, joint_centres(result.scaled_model, result.motion))
        got[name] = [e.cues for e in events]
    print("cues through the pipeline:", got)
    assert got["valgus0"][0] == () and got["valgus-5"] == [()]  # no cue on a clean rep
    assert got["valgus0"][2] == ("go deeper",) and got["valgus0"][3] == ("control the descent",)
    assert [c[0] for c in got["valgus+5"]] == ["knees out", "knees out"]


def test_settings_of_seated_and_the_end_are_checked():
    assert Settings.from_config({"reps": {"seated_hold_s": 0.5}}).reps.seated_hold_s == 0.5
    for bad, words in (
        ({"seated_knee_deg": 20}, "seated_knee_deg=20 is not valid"),
        ({"seated_hold_s": 0}, "seated_hold_s=0 is not valid"),
        ({"end_margin_deg": 60}, "end_margin_deg=60 is not valid"),
        ({"sit_set_break_s": -1}, "sit_set_break_s=-1 is not valid"),
    ):
        with pytest.raises(SettingsError) as info:
            load_settings().override({"reps": bad})
        assert (info.value.key, info.value.given) == (f"reps.{words.split('=')[0]}", *bad.values())


def test_synth_form_arguments_are_checked(tmp_path):
    for kwargs in (
        {"trunk_lean_deg": 80},
        {"trunk_lean_deg": [20, 30, 40, 50, 60]},  # not one per squat
        {"valgus_cm": 9},
        {"valgus_cm": [1, 2]},
        {"descent_s": 0.1},
        {"asymmetry_deg": 12},
    ):
        with pytest.raises(SettingsError) as info:
            synthesize(tmp_path / "x", seconds=5.0, **kwargs)
        assert (info.value.key, info.value.given) == next(iter(kwargs.items()))
        assert not (tmp_path / "x").exists()


def test_designed_form_keeps_the_feet_planted(designed):
    """The stance turns the feet in or out for valgus; during the squats they stay where they stood."""
    for name, syn in designed.items():
        for marker in ("r_calc_study", "L_toe_study", "r_5meta_study", "L_5meta_study"):
            path = syn.markers.get(marker)
            assert np.linalg.norm(path - path[0], axis=1).max() < 1e-3, (name, marker)
    # feet turned in for knees in, out for knees out (the hips' rotation while standing, internal +)
    assert designed["valgus+5"].motion.get("hip_rotation_r")[0] > designed["valgus-5"].motion.get("hip_rotation_r")[0]


def test_synth_command_line_designs_lean_and_valgus(tmp_path, capsys):
    from kinestream.commands.main import main

    assert main(["synth", str(tmp_path / "s"), "--seconds", "5", "--trunk-lean", "30", "--valgus-cm", "-3"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "trunk lean 30.0 deg, knee valgus -3.0/-3.0 cm (R/L, medial +)" in out
    assert (tmp_path / "s" / "keypoints.trc").is_file()
    assert main(["synth", str(tmp_path / "t"), "--seconds", "5", "--valgus-cm", "20"]) == 2
    assert "valgus_cm=20.0 is not valid" in capsys.readouterr().err


def test_a_sit_of_a_minute_keeps_its_length_and_a_bounded_buffer():
    t = np.arange(0, 70, 1 / 60)
    knee = _sit(t, 1.0, 60.0)
    counter = RepCounter(None, ["knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l"])
    longest = 0
    for ti, k in zip(t, knee, strict=True):
        counter.step(ti, [k, k, k, k])
        longest = max(longest, len(counter._rows))
    assert len(counter.events) == 1 and counter.events[0].seated_s == pytest.approx(60.2, abs=0.3)
    assert longest <= 2 * counter.settings.max_rep_s * 60 + 2  # frames kept while seated: bounded
