"""Holes a review found in the live path, each closed and held closed: time attacks, recordings that must never
be overwritten, a task that dies, secrets and exposure, and settings that must be valid."""

import asyncio
import os
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
import zmq.asyncio

from broker import free_port, until
from kinestream.errors import InputError, RecordingError, SettingsError
from kinestream.files.mot import read_mot
from kinestream.files.record import MotRecorder, TrcRecorder, set_aside
from kinestream.files.trc import read_trc
from kinestream.live.messages import decode_status, encode_status
from kinestream.live.protocol import MAX_COUNT, FrameDecoder, Rejected, encode_keypoints
from kinestream.live.service import Service
from kinestream.settings import Settings, load_settings
from streamed import streaming_motion

BODY = np.random.default_rng(1).normal([0.0, 1.0, 0.0], 0.2, (25, 3)).astype(np.float32)


def frame(t, seq=0, subject=None):
    return encode_keypoints(seq, t, BODY, subject=subject)


def raw_time_frame(t):
    """A frame whose time is whatever msgpack can carry (an integer near 2**63, say)."""
    return msgpack.packb({"v": 1, "seq": 0, "t": t, "layout": "BODY_25", "xyz": BODY.tobytes()})


# --------------------------------------------------------------------------- time


def test_implausible_times_are_refused_by_their_own_reason():
    decoder = FrameDecoder()
    decoder.decode(frame(10.0))
    for payload in (
        frame(2.0**48),
        frame(2.0**48 + 0.0625),
        frame(1e300),
        frame(-1e300),
        raw_time_frame(2**63 - 1),
        raw_time_frame(-(2**63)),
        frame(2.0**52),
    ):
        with pytest.raises(Rejected) as rejected:
            decoder.decode(payload)
        assert rejected.value.reason == "time_implausible"
    assert decoder.counts["time_implausible"] == 7
    assert decoder.decode(frame(10.0 + 1 / 60)).t == pytest.approx(10.0 + 1 / 60)  # the session goes on
    assert FrameDecoder().decode(frame(1.8e9)).t == 1.8e9  # unix time in seconds is a valid clock


def test_a_jump_ahead_is_refused_until_the_new_clock_holds():
    decoder = FrameDecoder(max_jump_s=3600.0, restart_after=30)
    decoder.decode(frame(5.0))
    just_under = decoder.decode(frame(5.0 + 3600.0))  # exactly the bound: taken
    assert not just_under.restarted
    with pytest.raises(Rejected) as rejected:
        decoder.decode(frame(3605.0 + 3600.001))  # just over
    assert rejected.value.reason == "time_jump"
    for k in range(28):  # the new clock, frame after frame
        with pytest.raises(Rejected):
            decoder.decode(frame(9000.0 + k / 60))
    restarted = decoder.decode(frame(9000.0 + 28 / 60))  # the 30th in a row: a restarted source
    assert restarted.restarted and decoder.counts["time_jump"] == 29


def test_throwaway_subjects_never_evict_the_served_clock():
    """The decoder keeps 64 clocks; 64 other subjects used to push out the served one, whose next frame then
    went back in time unchecked (found by the hostile generator)."""
    decoder = FrameDecoder(max_subjects=64)
    decoder.decode(frame(100.0, subject="ana"))
    decoder.keep("ana")
    for k in range(200):
        decoder.decode(frame(50.0 + k, subject=f"throwaway{k}"))
    with pytest.raises(Rejected) as rejected:
        decoder.decode(frame(99.5, subject="ana"))
    assert rejected.value.reason == "time_backwards"


def test_no_stage_loops_on_the_size_of_a_time_step(assets):
    """Two frames 1/16 s apart at 2**48 s, where adding 1/60 s to a time changes nothing: both return at once."""
    from kinestream.pipeline import FrameProcessor

    processor = FrameProcessor(assets, Settings(), 1.75, 70.0)
    names = processor.keypoints
    xyz = np.random.default_rng(2).normal([0.0, 1.0, 0.0], 0.2, (len(names), 3))
    t0 = time.monotonic()
    for t in (2.0**48, 2.0**48 + 0.0625, 2.0**48 + 0.125, 1e300):
        processor.step(names, xyz, t)
    assert time.monotonic() - t0 < 5.0


def test_missed_frames_stop_at_a_count_the_status_carries():
    """seq jumps of 2**64 - 1, again and again, would make ``missed`` more than msgpack holds; it saturates."""
    decoder = FrameDecoder()
    for k in range(3):  # the source's counter runs to the top of msgpack's integers and starts over
        decoder.decode(frame(10.0 * k, seq=0))
        decoder.decode(frame(10.0 * k + 5.0, seq=2**64 - 1))
    assert decoder.missed == MAX_COUNT
    status = decode_status(encode_status({"missed_frames": decoder.missed}))
    assert status["missed_frames"] == MAX_COUNT


def test_onnx_is_at_least_the_release_that_keeps_external_data_in_the_model_s_folder():
    """onnx before 1.16 follows paths out of the model's folder when it loads external data."""
    import tomllib

    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    onnx = next(Requirement(d) for d in deps if Requirement(d).name == "onnx")
    assert not onnx.specifier.contains("1.15.9") and onnx.specifier.contains("1.16.0")


# --------------------------------------------------------------------------- recordings


def test_a_recording_never_overwrites_and_never_follows_a_symlink(tmp_path):
    mot, trc = tmp_path / "session.mot", tmp_path / "session_markers.trc"
    mot.write_text("a crashed session's angles\n")
    target = tmp_path / "precious.txt"
    target.write_text("not to be touched\n")
    trc.symlink_to(target)
    with pytest.raises(RecordingError) as info:
        MotRecorder(mot, ["knee_angle_r"])
    assert info.value.given == mot
    moved = set_aside(mot, trc)
    assert [(old.name, new.name) for old, new in moved] == [
        ("session.mot", "session.1.mot"),
        ("session_markers.trc", "session_markers.1.trc"),
    ]
    assert (tmp_path / "session.1.mot").read_text() == "a crashed session's angles\n"
    assert (tmp_path / "session_markers.1.trc").is_symlink() and target.read_text() == "not to be touched\n"
    rec = MotRecorder(mot, ["knee_angle_r"])
    rec.write(0.0, [10.0])
    rec.close()
    TrcRecorder(trc, ["RHip"], 60.0).close()
    assert not trc.is_symlink() and target.read_text() == "not to be touched\n"
    mot.write_text("second crash\n")
    assert [new.name for _, new in set_aside(mot, trc)] == ["session.2.mot", "session_markers.2.trc"]


def test_set_aside_refuses_a_recording_a_recorder_holds(tmp_path):
    """The lock that recover honours: a live recording is not moved from under its recorder."""
    mot = tmp_path / "session.mot"
    with MotRecorder(mot, ["knee_angle_r"], fsync=False) as rec:
        rec.write(0.0, [10.0])
        rec.flush()
        with pytest.raises(RecordingError) as info:
            set_aside(mot)
        assert info.value.given == mot
        assert sorted(p.name for p in tmp_path.iterdir()) == ["session.mot"]
    assert [new.name for _, new in set_aside(mot)] == ["session.1.mot"]
    assert read_mot(tmp_path / "session.1.mot").values.tolist() == [[10.0]]


def test_the_angles_plot_and_the_c3d_are_never_written_through_a_symlink(tmp_path):
    """A link planted at a recording's _angles.png, or at the .c3d's temporary name as it used to be
    (.NAME.PID.partial.c3d), gets nothing: each file is written under a new name of its own, then renamed."""
    import os

    from kinestream.files.c3d import write_c3d
    from kinestream.files.mot import Motion
    from kinestream.files.trc import MarkerTable
    from kinestream.plots import plot_angles

    target = tmp_path / "precious.txt"
    target.write_text("not to be touched\n")
    target.chmod(0o600)
    png = tmp_path / "session_angles.png"
    png.symlink_to(target)
    names = ["hip_flexion_r", "knee_angle_r", "ankle_angle_r", "pelvis_tilt"]
    plot_angles(Motion(np.arange(10) / 60, names, np.ones((10, 4))), png, title="session")
    c3d = tmp_path / "session_markers.c3d"
    (tmp_path / f".session_markers.{os.getpid()}.partial.c3d").symlink_to(target)
    write_c3d(c3d, MarkerTable(["a"], np.zeros((3, 1, 3)), np.arange(3) / 60, 60.0))
    assert target.read_text() == "not to be touched\n" and (target.stat().st_mode & 0o777) == 0o600
    assert not png.is_symlink() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not c3d.is_symlink() and c3d.stat().st_size > 0 and (c3d.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temporary file left
        f".session_markers.{os.getpid()}.partial.c3d",
        "precious.txt",
        "session_angles.png",
        "session_markers.c3d",
    ]


_RACER = """
import os, sys, time
from pathlib import Path
from kinestream.errors import KinestreamError
from kinestream.files.record import MotRecorder, set_aside

folder, me, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
while not (folder / "go").exists():  # every racer starts at once
    time.sleep(0.001)
mot, trc = folder / "session.mot", folder / "session_markers.trc"
for k in range(rounds):
    try:
        set_aside(mot, trc)
        rec = MotRecorder(mot, ["who"], fsync=False, background=False)
    except KinestreamError:
        continue  # another racer's session is there right now: this one records nothing
    rec.write(0.0, [me * 1000 + k])
    rec.close()
    print(me * 1000 + k, flush=True)
"""


def test_racing_set_asides_never_destroy_a_recording(tmp_path):
    """Processes that set aside and record at one path at once, as two `serve --record` starting together:
    every recording any of them made, and the crashed one that was there first, survives under its own name."""
    import subprocess
    import sys

    (tmp_path / "session.mot").write_text("a crashed session's angles\n")
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(tmp_path), str(k + 1), "150"], stdout=subprocess.PIPE, text=True
        )
        for k in range(4)
    ]
    (tmp_path / "go").touch()
    recorded = sorted(int(v) for r in racers for v in r.communicate(timeout=600)[0].split())
    assert [r.returncode for r in racers] == [0] * 4
    kept = [p for p in tmp_path.iterdir() if p.suffix == ".mot"]
    texts = [p.read_text() for p in kept]
    assert texts.count("a crashed session's angles\n") == 1
    found = sorted(int(read_mot(p).values[0, 0]) for p, text in zip(kept, texts, strict=True) if "endheader" in text)
    assert found == recorded and len(recorded) > 0


# --------------------------------------------------------------------------- the service under time attacks


@pytest.fixture(scope="module")
def session(synth_trial):
    return synth_trial(seconds=5.0, noise_mm=5.0, gaps=2, seed=21)


async def serve(settings, session, record, feed, expect_in):
    src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    service = Service(
        settings, input_endpoint=src, output_endpoint=out, record=record, mass=session.mass, height=session.height
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(service.run(stop, ready))
    await ready.wait()
    await feed(src, service)
    m = service.metrics
    await until(
        lambda: m.frames_in >= expect_in and m.frames_out + m.skipped == m.frames_in,
        lambda: f"every frame answered: {m.frames_in} in, {m.frames_out} out, {m.skipped} skipped",
    )
    stop.set()
    return await serving, service


def test_time_attacks_then_a_real_session_equals_offline(session, tmp_path):
    """Huge times, a jump ahead, 64 throwaway subjects and a 900 Hz burst; then a trial replayed as usual: it is
    answered in full, the recording goes on from its own last row, and the angles equal process --streaming."""
    from kinestream.live.replay import replay

    table = read_trc(session.keypoints_trc)
    record = tmp_path / "attacked.mot"

    async def feed(src, service):
        ctx = zmq.asyncio.Context()
        pub = ctx.socket(zmq.PUB)
        pub.bind(src)
        for _ in range(600):  # until the service hears the first frame (30 s at most)
            if service.metrics.frames_in:
                break
            await pub.send_multipart([b"keypoints", frame(1000.0)])
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the service heard no frame in 30 s")
        attacks = [
            frame(2.0**48),
            frame(2.0**48 + 0.0625),
            frame(1e300),
            raw_time_frame(2**63 - 1),
            frame(1000.0 + 7200.0),
        ]
        attacks += [frame(1000.5 + k / 1000, subject=f"throwaway{k}") for k in range(64)]
        attacks += [frame(1001.0 + k / 900) for k in range(16)]  # a burst at 900 Hz ...
        attacks += [frame(1002.0 + k / 60) for k in range(60)]  # ... then 60 Hz
        for payload in attacks:
            await pub.send_multipart([b"keypoints", payload])
        # every attack taken (77 frames in, the first included; 69 refused) before the socket goes
        await until(
            lambda: service.metrics.frames_in >= 77 and sum(service.status()["rejected"].values()) >= 69,
            lambda: f"the attacks taken: {service.metrics.frames_in} in, {service.status()['rejected']}",
        )
        pub.close(0)
        ctx.term()
        await replay(table, src, rate=1.0, wait_subscriber=10.0)

    # the throwaway subjects are refused (too_many_people): the clock test
    settings = Settings().override({"service": {"max_people": 1}})
    final, service = asyncio.run(serve(settings, session, record, feed, 77 + table.n_frames))
    rejected = final["rejected"]
    assert rejected["time_implausible"] == 4 and rejected["time_jump"] == 1 and rejected["too_many_people"] == 64
    assert final["resets"] == 1  # the trial starting at t = 0 is a new session
    assert final["frames_out"] + final["skipped"] == final["frames_in"] >= table.n_frames
    assert "stage_error" not in rejected
    recorded = read_mot(record)
    assert recorded.time[-table.n_frames] > recorded.time[-table.n_frames - 1]
    assert np.all(np.diff(recorded.time) > 0)  # one recording, on in time after the restart
    offline = streaming_motion(session.keypoints_trc, session.mass, session.height, tmp_path / "offline")
    live = recorded.values[-table.n_frames :]
    assert live.shape == offline.values.shape
    worst = float(np.nanmax(np.abs(live[:, :-1] - offline.values[:, :-1])))
    print(f"\nafter the attacks: live vs process --streaming, worst coordinate {worst:.2e}")
    assert worst < 1e-6


# --------------------------------------------------------------------------- supervision


def test_a_task_that_keeps_dying_is_restarted_then_stops_the_service_unhealthy(session):
    """Fault injected: the status task is replaced by one that raises at once. It is restarted three times,
    shown in the status, and the fourth death stops the service, unhealthy (serve then exits with status 1)."""

    async def main():
        service = Service(
            Settings(),
            input_endpoint=f"tcp://127.0.0.1:{free_port()}",
            output_endpoint=f"tcp://127.0.0.1:{free_port()}",
            mass=session.mass,
            height=session.height,
        )

        async def broken(stop):
            raise RuntimeError("injected")

        service._status = broken
        return await asyncio.wait_for(service.run(), 60)

    final = asyncio.run(main())
    assert final["healthy"] is False
    assert "injected" in final["tasks"]["status"] and "restarted 4 times" in final["tasks"]["status"]


# --------------------------------------------------------------------------- secrets and exposure


def test_keys_are_born_private_and_a_readable_secret_is_refused(tmp_path):
    from kinestream.live.transport import load_secret, make_keys

    public, secret = make_keys(tmp_path, "service")
    assert os.stat(secret).st_mode & 0o777 == 0o600 and os.stat(public).st_mode & 0o777 == 0o644
    assert load_secret(secret)[0]
    os.chmod(secret, 0o640)
    with pytest.raises(SettingsError) as info:
        load_secret(secret)
    assert (info.value.given, info.value.valid) == (secret, f"chmod 600 {secret}")
    (tmp_path / "camera.key_secret").symlink_to(tmp_path / "nowhere")  # dangling: never followed
    with pytest.raises(InputError) as info:
        make_keys(tmp_path, "camera")
    assert info.value.given == tmp_path / "camera.key_secret"
    assert not (tmp_path / "nowhere").exists()


def test_a_password_without_tls_is_refused(session):
    settings = Settings().override({"mqtt": {"password": "squat"}})
    kwargs = dict(
        input_endpoint="tcp://127.0.0.1:1", output_endpoint=f"tcp://127.0.0.1:{free_port()}", mqtt="127.0.0.1:1883"
    )
    with pytest.raises(SettingsError) as info:
        Service(settings, **kwargs)
    assert info.value.key == "mqtt.tls" and "allow_plaintext_password" in info.value.valid
    Service(settings.override({"mqtt": {"allow_plaintext_password": True}}), **kwargs)  # said so: taken


def test_replay_stays_on_loopback_unless_allowed(session):
    from kinestream.live.replay import replay

    with pytest.raises(SettingsError) as info:
        asyncio.run(replay(session.keypoints_trc, f"tcp://0.0.0.0:{free_port()}", wait_subscriber=0))
    assert info.value.key == "service.allow_remote" and info.value.given.startswith("tcp://0.0.0.0:")


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "text, words",
    [
        ("[clean]\ncutoff = 8\n", "unknown setting [clean] cutoff (did you mean cutoff_hz?)"),
        ("[clen]\ncutoff_hz = 8\n", "unknown section [clen]"),
        ("[service]\nreceive_queue = 0\n", "[service] receive_queue = 0 is not valid; give a whole number from 1"),
        ('[ik]\nsolver = "quick"\n', '[ik] solver = \'quick\' is not valid; give one of "fast", "opensim"'),
        ('[clean]\ncutoff_hz = "fast"\n', 'give "auto" or a number from 0.1 to 100'),
        ("[mqtt]\nqos = 1.5\n", "[mqtt] qos = 1.5 is not valid"),
        ('[service]\nlatest_wins = "yes"\n', "give true or false"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path, text, words):
    import subprocess
    import sys

    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as error:
        load_settings(path)
    assert words in str(error.value)  # the command line's one line, as the user reads it
    assert error.value.key.split(".")[0] in text
    run = subprocess.run(
        [sys.executable, "-m", "kinestream", "--config", str(path), "assets"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and words in run.stderr


def test_the_built_in_defaults_are_the_shipped_file_and_the_schema_knows_every_key():
    """The package's default.toml is the one source: configs/default.toml is that file, the schema's keys are
    its keys (plus the optional ones), every rule names a key it has, and every default is valid."""
    import tomllib

    from kinestream.config import DEFAULTS, OPTIONAL, RULES, SCHEMA, validate

    with open(Path(__file__).resolve().parents[2] / "configs" / "default.toml", "rb") as fh:
        assert tomllib.load(fh) == DEFAULTS == load_settings().to_config()
    validate(DEFAULTS)
    keys = {(s, k) for s in DEFAULTS for k in DEFAULTS[s]}
    optional = {("clean", "reinit_after_frames")}  # no default: derived from the frame rate when unset
    assert {(s, k) for s in OPTIONAL for k in OPTIONAL[s]} == optional
    assert {(s, k) for s in SCHEMA for k in SCHEMA[s]} == keys | optional
    assert {(s, k) for s in RULES for k in RULES[s]} <= keys  # a rule for a setting that no longer exists
    assert SCHEMA["clean"]["cutoff_hz"] == RULES["clean"]["cutoff_hz"] and SCHEMA["mqtt"]["tls"] == (bool, None)
