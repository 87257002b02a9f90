"""One person's pipeline (kinestream.pipeline): the frame path of serve, process --streaming and calibrate, with
what each frame gives as a value."""

from __future__ import annotations

import numpy as np
import pytest

from kinestream.files.trc import read_trc
from kinestream.offline import stream_augment, stream_ik
from kinestream.pipeline import FrameProcessor, Pipeline, Prepared
from kinestream.settings import load_settings
from kinestream.synth import synthesize


@pytest.fixture(scope="module")
def squats(synth_trial):
    return synth_trial(seconds=9.0, noise_mm=3.0, gaps=2, seed=11, squats=2)


def test_step_by_step_is_process_streaming_bit_for_bit(squats, assets):
    """Pipeline.step on each frame, then the look-ahead flushed and solved: the angles of ``process --streaming``
    (stream_augment, then stream_ik) to the last bit, each frame back with its own tag."""
    settings = load_settings()
    table = read_trc(squats.keypoints_trc)
    augmented, _ = stream_augment(table, squats.height, squats.mass, assets, settings)
    reference = stream_ik(assets.generic_model, augmented, assets.ik_setup, settings, marker_set=assets.marker_set)

    pipeline: Pipeline[int] = Pipeline(assets, settings, height=squats.height, mass=squats.mass)
    q = np.full((table.n_frames, len(pipeline.coordinates)), np.nan)
    wire = table.xyz.astype(np.float32).astype(float)  # as the wire protocol carries them
    for i in range(table.n_frames):
        taken, result = pipeline.step(list(table.names), wire[i], float(table.time[i]), i)
        assert (result is None) == (taken.prepared is None)
        if result is not None:
            assert result.tag == taken.prepared.tag and result.t == table.time[result.tag]
            q[result.tag] = result.q
    for taken in pipeline.flush():
        assert taken.prepared is not None
        q[taken.prepared.tag] = pipeline.solve(taken.prepared).q
    expected = reference.motion.values[:, :-1]  # the last column is rmse_mm
    assert reference.motion.names[:-1] == pipeline.coordinates
    assert np.isfinite(q).all() and np.array_equal(q, expected)


def test_notes_drops_and_reps_come_back_as_values(squats, assets):
    """A stream at 120 Hz into a pipeline that assumed 60 Hz says so in the step that redesigned the filter; a
    frame whose time is not after the last is a drop of the step that released it; the squats come back as rep
    events on the frames that ended them, and finish() closes the set."""
    settings = load_settings()
    table = read_trc(squats.keypoints_trc)
    pipeline: Pipeline[int] = Pipeline(assets, settings, height=squats.height, mass=squats.mass, rate=60.0)
    notes, dropped, reps = [], 0, []
    names = list(table.names)
    times = table.time / 2.0  # the same frames at 120 Hz
    for i in range(table.n_frames):
        t = float(times[i - 1] if i == 200 else times[i])  # frame 200 comes with frame 199's time
        taken, result = pipeline.step(names, table.xyz[i], t, i)
        notes += taken.notes
        dropped += taken.dropped
        if result is not None and result.rep.event is not None:
            reps.append(result.rep)
            assert result.rep.summary is not None and result.rep.summary["reps"] == len(
                [r for r in reps if r.event is not None and r.event.complete]
            )
    for taken in pipeline.flush():
        dropped += taken.dropped
        if taken.prepared is not None:
            result = pipeline.solve(taken.prepared)
            assert result.rep.error is None
    pipeline.finish()
    assert notes == ["the stream runs at 120 Hz, not 60 Hz: filter redesigned"], notes
    assert dropped == 1
    assert [r.event.complete for r in reps if r.event is not None].count(True) == 2
    assert len(pipeline.rep_events()) == 2


def test_the_floor_offset_is_given_not_set(squats, assets):
    """A calibrated subject's floor offset moves every marker up by it, from the first frame; the keypoints are
    left as they are."""
    settings = load_settings()
    table = read_trc(squats.keypoints_trc).frames(0, 60)
    plain = FrameProcessor(assets, settings, squats.height, squats.mass)
    lifted = FrameProcessor(assets, settings, squats.height, squats.mass, floor_offset=0.05)
    got: list[tuple[Prepared[int], Prepared[int]]] = []
    for i in range(table.n_frames):
        a = plain.step(list(table.names), table.xyz[i], float(table.time[i]), i).prepared
        b = lifted.step(list(table.names), table.xyz[i], float(table.time[i]), i).prepared
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            got.append((a, b))
    assert got
    for a, b in got:
        assert np.array_equal(a.keypoints, b.keypoints)
        assert np.allclose(b.markers - a.markers, [0.0, 0.05, 0.0], atol=1e-12, rtol=0)


def test_body_poses_come_with_a_frame_when_asked(squats, assets):
    """``solve(prepared, bodies=True)``: every body's pose in ground beside the angles, in ``Pipeline.bodies``'
    order; its positions are the joint centres' bodies' origins, and asking changes no angle."""
    from kinestream.centres import CENTRE_BODIES

    settings = load_settings()
    table = read_trc(squats.keypoints_trc)
    with_bodies: Pipeline[int] = Pipeline(assets, settings, height=squats.height, mass=squats.mass)
    without: Pipeline[int] = Pipeline(assets, settings, height=squats.height, mass=squats.mass)
    assert with_bodies.bodies[0] == "pelvis" and "femur_r" in with_bodies.bodies and "hand_l" in with_bodies.bodies
    solved = 0
    for i in range(table.n_frames):
        taken = with_bodies.prepare(list(table.names), table.xyz[i], float(table.time[i]), i)
        other = without.prepare(list(table.names), table.xyz[i], float(table.time[i]), i)
        if taken.prepared is None:
            continue
        asked = i % 2 == 0
        result = with_bodies.solve(taken.prepared, bodies=asked)
        plain = without.solve(other.prepared)
        assert np.array_equal(result.q, plain.q, equal_nan=True)
        if not asked or not result.ok:
            assert result.bodies is None
            continue
        solved += 1
        assert result.bodies.shape == (len(with_bodies.bodies), 7)
        for k, body in enumerate(CENTRE_BODIES.values()):
            assert np.allclose(result.bodies[with_bodies.bodies.index(body), :3], result.centres[k], atol=1e-12)
        assert np.allclose(np.linalg.norm(result.bodies[:, 3:], axis=1), 1.0)
    assert solved > 100


def test_a_pipeline_sharing_a_model_gives_the_numbers_of_its_own(squats, assets, tmp_path):
    """A newcomer's pipeline made on a template (the model loaded once, what the fast solver learned of it kept)
    solves in a state of its own: with the template solving someone else between each of its frames, it gives
    a pipeline of its own's angles to the last bit, and it was made without loading the model."""
    settings = load_settings()
    other = synthesize(tmp_path / "other", seconds=6.0, noise_mm=3.0, seed=12, scale=1.1)
    own: Pipeline[int] = Pipeline(assets, settings, height=squats.height, mass=squats.mass)
    template: Pipeline[int] = Pipeline(assets, settings, height=other.height, mass=other.mass)
    shared: Pipeline[int] = Pipeline(assets, settings, height=squats.height, mass=squats.mass, template=template)
    mine, theirs = read_trc(squats.keypoints_trc), read_trc(other.keypoints_trc)
    assert shared.solve_stage.ik.model is template.solve_stage.ik.model  # one model loaded for both
    assert shared.solve_stage.ik.state is not template.solve_stage.ik.state
    alone, beside = [], []
    for i in range(theirs.n_frames):
        t = float(mine.time[i])
        _, a = own.step(list(mine.names), mine.xyz[i], t, i)
        template.step(list(theirs.names), theirs.xyz[i], float(theirs.time[i]), i)
        _, b = shared.step(list(mine.names), mine.xyz[i], t, i)
        if a is not None:
            alone.append(a.q)
            beside.append(b.q)
    assert len(alone) > 300 and np.isfinite(alone).all()
    assert np.array_equal(np.array(alone), np.array(beside))
