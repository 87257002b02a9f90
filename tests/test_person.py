"""One person served live (kinestream.live.person): their frames prepared at once, solved latest-wins, drained to the
last frame, recorded across a restart. No sockets: frames are handed over as the service hands them."""

from __future__ import annotations

import numpy as np
import pytest

from kinestream.config import load_config
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.live.metrics import Metrics
from kinestream.live.person import Person
from kinestream.live.protocol import KeypointFrame
from kinestream.live.sinks import RecorderSink
from kinestream.pipeline import Pipeline
from kinestream.synth import synthesize


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    syn = synthesize(tmp_path_factory.mktemp("person"), seconds=5.0, noise_mm=2.0, seed=3)
    return syn, read_trc(syn.keypoints_trc)


def person(trial, assets, tmp_path, **options):
    syn, table = trial
    pipeline = Pipeline(assets, load_config(), height=syn.height, mass=syn.mass)
    reports: list[tuple[str, str]] = []
    metrics = Metrics()
    who = Person("ana", pipeline, metrics, lambda reason, detail: reports.append((reason, detail)), **options)
    sink = RecorderSink(tmp_path / "SESSION.mot", pipeline.coordinates, pipeline.keypoints + pipeline.markers, 60.0)
    who.attach([sink])
    return who, metrics, reports, sink


def frames(table, start: int, stop: int, shift: float = 0.0):
    for k in range(start, stop):
        yield KeypointFrame(k, float(table.time[k]) + shift, list(table.names), table.xyz[k].astype(float))


def test_latest_wins_then_the_drain_solves_every_frame_left(trial, assets, tmp_path):
    """Frames that waited too long are skipped while a newer one waits (the newest is solved); at the end every
    frame still waiting, and those in the cleaner's look-ahead, are solved, none skipped."""
    _, table = trial
    who, metrics, reports, sink = person(trial, assets, tmp_path, latest_wins=True, max_lag_ns=0)
    for frame in frames(table, 0, 30):
        who.prepare(frame, recv_ns=0)  # arrived long ago: every waiting frame is late
    who.solve_waiting()
    assert metrics.frames_out == 1 and metrics.skipped > 0
    for frame in frames(table, 30, 60):
        who.prepare(frame, recv_ns=0)
    who.drain("the stream ended")
    sink.close()
    assert metrics.frames_out + metrics.skipped == 60 and not reports
    recorded = read_trc(tmp_path / "SESSION_markers.trc")
    assert recorded.n_frames == 60  # every prepared frame's markers, solved or skipped


def test_a_restart_solves_the_last_session_first_and_the_recording_goes_on(trial, assets, tmp_path):
    _, table = trial
    who, metrics, reports, sink = person(trial, assets, tmp_path, latest_wins=False)
    for frame in frames(table, 0, 60):
        who.prepare(frame, recv_ns=0)
    who.solve_waiting()
    first = metrics.frames_out
    who.restart(float(table.time[0]))  # the source starts over from its first time
    assert metrics.frames_out == first  # the look-ahead of the last session is forgotten, not solved
    for frame in frames(table, 0, 60):
        who.prepare(frame, recv_ns=0)
    who.drain("the stream ended")
    sink.close()
    motion = read_mot(tmp_path / "SESSION.mot")
    assert np.all(np.diff(motion.time) > 0) and not reports
    assert metrics.skipped == 0 and len(motion.time) == metrics.frames_out
