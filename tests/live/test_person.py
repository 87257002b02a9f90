"""One person served live (kinestream.live.person): their frames prepared at once, solved latest-wins, drained to the
last frame, recorded across a restart. No sockets: frames are handed over as the service hands them."""

from __future__ import annotations

import numpy as np
import pytest

from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.live.metrics import Metrics
from kinestream.live.person import Person
from kinestream.live.protocol import KeypointFrame
from kinestream.live.sinks import RecorderSink
from kinestream.pipeline import Pipeline
from kinestream.settings import Settings


@pytest.fixture(scope="module")
def trial(synth_trial):
    syn = synth_trial(seconds=5.0, noise_mm=2.0, seed=3)
    return syn, read_trc(syn.keypoints_trc)


def person(trial, assets, tmp_path, **options):
    syn, table = trial
    pipeline = Pipeline(assets, Settings(), height=syn.height, mass=syn.mass)
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


def test_turns_are_fair_one_backlog_delays_another_by_one_solve_at_most(trial, assets, tmp_path):
    """Two people of the people table (kinestream.live.people): ana with 40 frames waiting, ben with 5. Each turn
    solves one frame of each in turn, so ben's k-th frame is out after at most k + 1 of ana's, not after all 40;
    a turn with no time left is one round; the frames of each come out in their own order."""
    from kinestream.live.calibrate import served_subject
    from kinestream.live.people import People
    from kinestream.live.sinks import Sink

    syn, table = trial
    settings = Settings().override({"service": {"latest_wins": False}})
    out: list[tuple[str, int]] = []

    class Order(Sink):
        def on_frame(self, solved):
            out.append((solved.subject, solved.result.tag.seq))

    reports: list[tuple[str, str]] = []
    default = served_subject(settings, assets, None, syn.mass, syn.height)
    people = People(settings, assets, default, "subject", Metrics(), lambda r, d: reports.append((r, d)))
    people.open([Order()])
    ana, ben = people.admit("ana", 0), people.admit("ben", 0)
    assert isinstance(ana, Person) and isinstance(ben, Person)
    for frame in frames(table, 0, 40):
        ana.prepare(frame, recv_ns=0)
    for frame in frames(table, 0, 5):
        ben.prepare(frame, recv_ns=0)
    waiting = ana.waiting, ben.waiting
    assert waiting[0] > 30 and waiting[1] >= 3  # (the cleaner may hold a frame or two back)
    people.solve_turn(0.0)  # no time left: one round, one frame each
    assert sorted(out) == [("ana", 0), ("ben", 0)]
    people.solve_turn(60.0)  # until none waits
    assert not people.waiting() and not reports
    bens = [k for k, (who, _) in enumerate(out) if who == "ben"]
    assert all(k <= 2 * i + 1 for i, k in enumerate(bens)), out[:12]
    for who in ("ana", "ben"):
        seqs = [seq for w, seq in out if w == who]
        assert seqs == sorted(seqs) and len(seqs) == dict(zip(("ana", "ben"), waiting, strict=True))[who]
    people.close()
