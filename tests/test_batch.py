"""kinestream batch: a synth study on a real Dask LocalCluster of worker processes, against process trial by trial.

The Dask cluster is real (two worker processes on loopback, as `kinestream batch --workers 2` makes); the
worker killed in the fault test is killed with SIGKILL, as a crashed node would be.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import signal
import threading
from dataclasses import replace

import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from kinestream.batch import find_study, run_batch, write_summary
from kinestream.commands.main import main
from kinestream.errors import InputError
from kinestream.offline import process
from kinestream.settings import Settings, load_settings
from kinestream.synth import synthesize_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    synthesize_study(root, subjects=3, trials=3)
    return root


@pytest.fixture(scope="module")
def client():
    """Two worker processes on loopback, on TLS with temporary certificates (as `kinestream batch` makes them)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, security=True
        ) as c,
        Client(c) as client,
    ):
        yield client


def tls_files(client, folder) -> list[str]:
    """`--tls-ca-file CA --tls-cert CERT --tls-key KEY` for a client of the fixture's cluster, as PEM files."""
    folder.mkdir(exist_ok=True)
    security = client.security
    args = []
    for flag, pem in (
        ("--tls-ca-file", security.tls_ca_file),
        ("--tls-cert", security.tls_client_cert),
        ("--tls-key", security.tls_client_key),
    ):
        path = folder / (flag.rsplit("-", 1)[-1] + ".pem")
        path.write_text(pem)
        path.chmod(0o600)
        args += [flag, str(path)]
    return args


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_a_study_equals_process_trial_by_trial_and_a_second_run_skips_it(study, client, tmp_path):
    settings = load_settings()
    found = find_study(study, settings)
    assert [(s.name, len(s.trials), s.static.name) for s in found.subjects] == [
        (f"p0{k}", 3, f"p0{k}_static.trc") for k in (1, 2, 3)
    ]
    heights = [s.height for s in found.subjects]
    assert heights == sorted(heights) and heights[-1] / heights[0] > 1.2  # three sizes of subject

    out = tmp_path / "out"
    rows = run_batch(found, out, settings, client)
    csv_path, png = write_summary(out, rows)
    assert png is not None and png.stat().st_size > 10_000
    table = read_rows(csv_path)
    assert len(table) == 9 and {r["status"] for r in table} == {"done"}
    assert all(95 < float(r["peak_knee_flexion_deg"]) < 115 and r["reps"] == "1" for r in table)

    for subject in found.subjects:  # every output equals what process gives with the subject's static trial
        for trial in subject.trials:
            ref = tmp_path / "ref" / trial.stem
            process(trial, subject.mass, subject.height, ref, settings, static_trial=subject.static)
            got = out / subject.name / trial.stem
            for name in (f"{trial.stem}.mot", f"{trial.stem}_augmented.trc"):
                assert (got / name).read_bytes() == (ref / name).read_bytes(), f"{subject.name}/{name}"
        model = f"{subject.static.stem}_scaled.osim"
        assert (out / subject.name / "_static" / model).read_bytes() == (ref / model).read_bytes()

    # process FOLDER: the same batch in this process, no Dask (one subject here): the same files, the same rows
    one = replace(found, subjects=found.subjects[:1])
    here = run_batch(one, tmp_path / "here", settings)
    assert [{**r, "seconds": 0, "output": 0} for r in here] == [{**r, "seconds": 0, "output": 0} for r in rows[:3]]
    made = sorted(p.relative_to(out) for p in (out / "p01").rglob("*") if p.is_file() and p.suffix != ".png")
    assert len(made) == 3 * 3 + 2  # a trial's .mot, augmented .trc and .c3d; the static trial's .trc and model
    for rel in made:
        assert (tmp_path / "here" / rel).read_bytes() == (out / rel).read_bytes(), rel

    again = run_batch(find_study(study, settings), out, settings, client)
    assert [r["status"] for r in again] == ["skipped"] * 9
    assert [r["ik_rms_mm"] for r in again] == [r["ik_rms_mm"] for r in rows]

    changed = settings.override({"ik": {"arms": False}})  # other settings: every trial is done again
    assert {r["status"] for r in run_batch(find_study(study, changed), out, changed, client)} == {"done"}


@pytest.mark.slow
def test_a_worker_killed_mid_trial_and_a_bad_trial_leave_the_batch_whole(study, client, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(study, root)
    bad = root / "p02" / "p02_squat9.trc"  # a file with too few keypoints: one failed row, the rest done
    lines = (root / "p02" / "p02_squat1.trc").read_text().splitlines()
    bad.write_text("\n".join(lines[:3] + ["Frame#\tTime\tNose", "\t\tX1\tY1\tZ1", "1\t0.0\t0\t1.6\t0"]) + "\n")
    settings = load_settings()
    pids = client.run(os.getpid)
    killed: list[str] = []
    lock = threading.Lock()

    class KillABusyWorker(logging.Handler):
        """At the batch's count after its first trial finishes, a worker busy with another is killed."""

        def emit(self, record):
            with lock:
                if killed or getattr(record, "task", None) != "batch" or record.progress[0] < 1:
                    return
                busy = [w for w, tasks in client.processing().items() if any("trial-" in str(t) for t in tasks)]
                if busy:
                    killed.append(busy[0])
                    os.kill(pids[busy[0]], signal.SIGKILL)  # mid-trial: the scheduler hands its trial to the other

    counts = logging.getLogger("kinestream.progress")
    level, handler = counts.level, KillABusyWorker()
    counts.setLevel(logging.DEBUG)
    counts.addHandler(handler)
    try:
        rows = run_batch(find_study(root, settings), tmp_path / "out", settings, client)
    finally:
        counts.removeHandler(handler)
        counts.setLevel(level)
    assert killed, "no worker was busy with a trial after the first finished"
    by_trial = {(r["subject"], r["trial"]): r for r in rows}
    assert len(rows) == len(by_trial) == 10
    assert by_trial[("p02", "p02_squat9")]["status"] == "failed"
    assert "lacks keypoints" in by_trial[("p02", "p02_squat9")]["reason"]
    assert [r["status"] for k, r in by_trial.items() if k[1] != "p02_squat9"] == ["done"] * 9
    for subject, trial in by_trial:
        if trial != "p02_squat9":
            mots = list((tmp_path / "out" / subject / trial).glob("*.mot"))
            assert [m.name for m in mots] == [f"{trial}.mot"]  # done once: one output, complete
    client.wait_for_workers(2, timeout=120)  # the nanny starts the killed worker again, for the next test


def test_the_batch_counts_on_the_progress_logger_and_logs_each_failure(tmp_path, study, caplog):
    """One channel: the batch's counts go to kinestream.progress as one task's records, the counts in words as its
    stage (what the command line draws as a bar), and each failed trial to the log with its reason as it fails."""
    root = tmp_path / "study"
    (root / "p01").mkdir(parents=True)
    lines = (study / "p01" / "p01_squat1.trc").read_text().splitlines()
    for k in (1, 2):  # files with too few keypoints: they fail as they are read
        (root / "p01" / f"p01_squat{k}.trc").write_text(
            "\n".join(lines[:3] + ["Frame#\tTime\tNose", "\t\tX1\tY1\tZ1", "1\t0.0\t0\t1.6\t0"]) + "\n"
        )
    (root / "subjects.toml").write_text('[[subject]]\nname = "p01"\npattern = "p01/*.trc"\nheight = 1.75\nmass = 60\n')
    caplog.set_level(logging.DEBUG, logger="kinestream.progress")
    rows = run_batch(find_study(root), tmp_path / "out", Settings())
    assert [r["status"] for r in rows] == ["failed", "failed"]
    counts = [r for r in caplog.records if getattr(r, "task", None) == "batch"]
    assert counts[0].progress == (0, 2) and not counts[0].closed
    assert [r.progress for r in counts[1:-1]] == [(1, 2), (2, 2)]
    assert counts[-1].closed and counts[-1].stage == "done 0, failed 2, skipped 0, remaining 0"
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "kinestream.batch"]
    assert len(failed) == 2 and all(m.startswith("failed: p01/p01_squat") and "lacks" in m for m in failed)


def test_pose2sim_study_takes_each_level_s_config(tmp_path, study):
    """Session / participant / trial folders, each level's Config.toml overriding the one above."""
    trc = next((study / "p01").glob("p01_squat1.trc")).read_text()
    static = (study / "p01" / "p01_static.trc").read_text()
    root = tmp_path / "session"
    for participant, trials in {"P1": ["static", "squats_1", "squats_2"], "P2": ["squats_1"]}.items():
        for trial in trials:
            pose3d = root / participant / trial / "pose-3d"
            pose3d.mkdir(parents=True)
            (pose3d / f"{trial}.trc").write_text(static if trial == "static" else trc)
    (root / "Config.toml").write_text("[project]\nparticipant_height = 1.70\nparticipant_mass = 70.0\n")
    (root / "P1" / "Config.toml").write_text("[project]\nparticipant_height = 1.81\n")
    (root / "P2" / "squats_1" / "Config.toml").write_text("[project]\nparticipant_mass = 82.5\n")
    found = find_study(root, load_settings())
    assert found.kind == "Pose2Sim"
    p1, p2 = found.subjects
    assert (p1.name, p1.height, p1.mass, p1.static.parent.parent.name) == ("P1", 1.81, 70.0, "static")
    assert [t.parent.parent.name for t in p1.trials] == ["squats_1", "squats_2"]
    assert (p2.name, p2.height, p2.mass, p2.static) == ("P2", 1.70, 82.5, None)
    assert any("1.81 m from" in n and "P1/Config.toml" in n for n in p1.notes)


def test_plain_study_needs_each_subject_s_height_and_mass(tmp_path, study):
    root = tmp_path / "plain"
    shutil.copytree(study / "p01", root / "p01")
    (root / "loose.trc").write_text((study / "p01" / "p01_squat1.trc").read_text())
    (root / "subjects.toml").write_text('[[subject]]\nname = "p01"\npattern = "p01/*.trc"\nmass = 60\n')
    with pytest.raises(InputError) as info:
        find_study(root)
    assert info.value.given == ["height"] and info.value.key.endswith("[[subject]] #1")
    (root / "subjects.toml").write_text('[[subject]]\nname = "p01"\npattern = "p01/*.trc"\nheight = 175\nmass = 60\n')
    found = find_study(root)
    assert found.subjects == [] and len(found.unplanned) == 4  # its static trial and three squat trials
    assert "looks like centimetres" in found.unplanned[0][2]
    assert any("loose.trc" in n for n in found.notes)


def test_the_command_says_what_a_folder_lacks(tmp_path, capsys):
    assert main(["batch", str(tmp_path), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no study kinestream knows" in err


@pytest.mark.slow
def test_the_command_runs_on_an_existing_scheduler(study, client, tmp_path, capsys):
    """`kinestream batch --scheduler ADDRESS`: the cluster is someone else's; the command only submits."""
    root = tmp_path / "one"
    shutil.copytree(study / "p01", root / "p01")
    shutil.copy(study / "subjects.toml", root / "subjects.toml")  # p02 and p03 match nothing here: a note
    out = tmp_path / "out"
    address = client.scheduler.address
    assert address.startswith("tls://")
    args = ["batch", str(root), "--out", str(out), "--scheduler", address, *tls_files(client, tmp_path / "tls")]
    assert main(args) == 0
    said = capsys.readouterr()
    assert "3 done, 0 skipped (unchanged), 0 failed of 3" in said.out
    assert "p02" in said.err and "no .trc matches" in said.err
    assert [r["status"] for r in read_rows(out / "summary.csv")] == ["done"] * 3
    assert main(args) == 0 and "0 done, 3 skipped" in capsys.readouterr().out
    assert len(client.scheduler_info()["workers"]) == 2  # the cluster outlives the command


def test_opencap_downloads_are_one_subject_each(tmp_path, study):
    trc = (study / "p01" / "p01_squat1.trc").read_text()
    for session, height, mass in (("ana", 1.62, 58.0), ("ben", 1.91, 90.5)):
        marker_data = tmp_path / "downloads" / session / "MarkerData"
        marker_data.mkdir(parents=True)
        for trial in ("neutral", "squats1", "squats2"):
            (marker_data / f"{trial}.trc").write_text(trc)
        (marker_data.parent / "sessionMetadata.yaml").write_text(
            f"subjectID: {session}\nheight_m: {height}\nmass_kg: {mass}\nsex: \n"
        )
    found = find_study(tmp_path / "downloads", load_settings())
    assert found.kind == "OpenCap"
    assert [(s.name, s.height, s.mass, s.static.name, [t.name for t in s.trials]) for s in found.subjects] == [
        ("ana", 1.62, 58.0, "neutral.trc", ["squats1.trc", "squats2.trc"]),
        ("ben", 1.91, 90.5, "neutral.trc", ["squats1.trc", "squats2.trc"]),
    ]


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/kinestream-escaped", "..", "", "p01/sub", "a\\b"])
def test_a_subject_name_is_one_folder_name_or_refused(tmp_path, study, capsys, name):
    """subjects.toml's name becomes OUT/<name>/: a path or '..' would write outside --out, over what is there."""
    root = tmp_path / "plain"
    shutil.copytree(study / "p01", root / "p01")
    quoted = name.replace("\\", "\\\\")
    (root / "subjects.toml").write_text(
        f'[[subject]]\nname = "{quoted}"\npattern = "p01/*.trc"\nheight = 1.75\nmass = 60\n'
    )
    with pytest.raises(InputError) as info:
        find_study(root)
    assert info.value.key.endswith("#1 name") and info.value.given == name
    out = tmp_path / "deep" / "er" / "out"
    assert main(["batch", str(root), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "subjects.toml [[subject]] #1 name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]  # nothing written anywhere


def test_a_trial_named_dot_dot_is_a_failed_row_and_nothing_leaves_out(tmp_path, study):
    """A trial file '...trc' has the stem '..': OUT/<subject>/../ is OUT itself; it is refused with the reason."""
    from distributed import Client, LocalCluster

    root = tmp_path / "plain"
    (root / "p01").mkdir(parents=True)
    shutil.copy(study / "p01" / "p01_squat1.trc", root / "p01" / "...trc")
    (root / "subjects.toml").write_text('[[subject]]\nname = "p01"\npattern = "p01/*.trc"\nheight = 1.75\nmass = 60\n')
    out = tmp_path / "out"
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        rows = run_batch(find_study(root), out, load_settings(), client)
        assert not client.who_has()  # refused before any task: nothing ran
    assert [(r["subject"], r["trial"], r["status"]) for r in rows] == [("p01", "..", "failed")]
    assert "output folder name '..' is not valid" in rows[0]["reason"] and "...trc" in rows[0]["reason"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plain"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_process_folder_refuses_a_trial_whose_name_leaves_the_output_folder(tmp_path, study, capsys):
    """process FOLDER is batch in this process: the trial is a failed row with its reason, nothing is written
    outside OUT."""
    session = tmp_path / "session"
    (session / "MarkerData").mkdir(parents=True)
    shutil.copy(study / "p01" / "p01_squat1.trc", session / "MarkerData" / "...trc")
    (session / "sessionMetadata.yaml").write_text("height_m: 1.75\nmass_kg: 60\n")
    out = tmp_path / "a" / "out"
    assert main(["process", str(session), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "output folder name '..' is not valid" in err and "...trc" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "session"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "summary.csv", "summary.png"]
    assert [(r["trial"], r["status"]) for r in read_rows(out / "summary.csv")] == [("..", "failed")]


def test_summary_cells_a_spreadsheet_would_run_are_text(tmp_path):
    """OWASP's advice on CSV injection: a cell starting with = + - @, a tab or a carriage return gets a quote."""
    hostile = ['=HYPERLINK("http://x","p")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]
    rows = [
        {"subject": text, "trial": "t1", "status": "failed", "reason": text, "peak_knee_flexion_deg": -12.5}
        for text in hostile
    ] + [{"subject": "p01", "trial": "squat-1", "status": "done", "reason": "", "peak_knee_flexion_deg": 101.0}]
    csv_path, png = write_summary(tmp_path, rows, plot=False)
    table = read_rows(csv_path)
    assert png is None and len(table) == len(rows)
    assert [(r["subject"], r["reason"]) for r in table[:-1]] == [("'" + t, "'" + t) for t in hostile]
    assert [r["peak_knee_flexion_deg"] for r in table] == ["-12.5"] * len(hostile) + ["101.0"]  # numbers stay
    assert (table[-1]["subject"], table[-1]["trial"]) == ("p01", "squat-1")


_WORKER = """
import sys, time
from pathlib import Path
from kinestream import assets

go = Path(sys.argv[1])
while not go.exists():  # every worker starts at once, on a cache with nothing in it
    time.sleep(0.001)
root = assets.fetch()
for _ in range(500):  # read what the others may still be installing around it
    for name in assets._FILES.values():
        assert (root / name).stat().st_size > 0, name
    assert (root / "augmenter/v0.3_lower/model.onnx").read_bytes()[:2]
print(root)
"""


def test_workers_fetching_on_a_fresh_cache_at_once_all_find_the_assets(tmp_path):
    """Several processes call fetch together on an empty cache, as batch workers did: one downloads and installs
    under the cache's lock, the others wait for it; none fails, none sees a file go missing."""
    import subprocess
    import sys

    env = {**os.environ, "KINESTREAM_HOME": str(tmp_path / "home")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path / "go")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    (tmp_path / "go").touch()
    said = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0] * 6, [err[-2000:] for _, err in said]
    from kinestream.assets import WHEEL_VERSION

    assert {out.strip() for out, _ in said} == {str(tmp_path / "home" / f"pose2sim-{WHEEL_VERSION}")}
    left = sorted(p.name for p in (tmp_path / "home").iterdir() if p.name != ".lock")
    assert left == [f"pose2sim-{WHEEL_VERSION}"]  # no staging folder left behind


def test_process_file_refuses_a_default_output_folder_that_leaves_out(tmp_path, study, capsys, monkeypatch):
    """`process ...trc` without --out writes to out/<stem>/: with the stem '..' that is the folder above out/."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(study / "p01" / "p01_squat1.trc", tmp_path / "...trc")
    assert main(["process", "...trc", "--height", "1.75", "--mass", "60"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output folder name '..' is not valid" in err and "--out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["...trc"]


# ---------------------------------------------------------------- who may use the cluster, what it is told


def test_the_local_cluster_is_on_tls_and_lets_no_other_client_in(tmp_path):
    """The command's LocalCluster speaks TLS with certificates of its own: a plain TCP client, a TLS client
    without certificates and one with certificates of another authority all fail to connect."""
    import argparse

    from distributed import Client, Security

    from kinestream.commands.batch import _client

    args = argparse.Namespace(
        scheduler=None, workers=1, tls_ca_file=None, tls_cert=None, tls_key=None, insecure_scheduler=False
    )
    with _client(args) as ours:
        address = ours.scheduler.address
        assert address.startswith("tls://127.0.0.1:"), address
        assert ours.submit(sum, [1, 2]).result(timeout=60) == 3  # its own client works
        port = address.rsplit(":", 1)[1]
        for target, security in (
            (f"tcp://127.0.0.1:{port}", None),
            (address, None),
            (address, Security.temporary()),
        ):
            with pytest.raises((OSError, ValueError, TypeError)):
                with Client(target, security=security, timeout=5):
                    pass


def test_a_plain_tcp_scheduler_is_refused_unless_allowed(tmp_path, study, capsys):
    """`--scheduler tcp://...` is refused in one line that says how to go on (TLS files, or
    --insecure-scheduler), before any connection; with --insecure-scheduler the command uses it."""
    from distributed import LocalCluster

    root = tmp_path / "plain"
    (root / "p01").mkdir(parents=True)
    shutil.copy(study / "p01" / "p01_squat1.trc", root / "p01" / "...trc")  # refused before any task
    (root / "subjects.toml").write_text('[[subject]]\nname = "p01"\npattern = "p01/*.trc"\nheight = 1.75\nmass = 60\n')
    out = tmp_path / "out"
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        for given in (address, address.removeprefix("tcp://")):
            assert main(["batch", str(root), "--out", str(out), "--scheduler", given]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1, err
            assert (
                "is plain TCP" in err and "tls://" in err and "--tls-ca-file" in err and "--insecure-scheduler" in err
            )
        assert main(["batch", str(root), "--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", str(out / "x")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "needs --tls-cert, --tls-key" in err
        code = main(["batch", str(root), "--out", str(out), "--scheduler", address, "--insecure-scheduler"])
        said = capsys.readouterr()
        assert code == 2 and f"scheduler {address}" in said.err and "1 failed of 1" in said.out  # it ran there
        assert "--insecure-scheduler:" in said.err


class _Received(WorkerPlugin):
    """A worker plugin that keeps what each task a worker runs was sent, pickled."""

    name = "kinestream-received"

    def setup(self, worker) -> None:
        self.worker = worker
        self.received: list[bytes] = []

    def transition(self, key, start, finish, **kwargs) -> None:
        import cloudpickle

        task = self.worker.state.tasks.get(key)
        if finish == "executing" and task is not None:
            self.received.append(cloudpickle.dumps(task.run_spec))


def test_workers_receive_no_mqtt_password_nor_curve_keys(study, client, tmp_path):
    """The settings a task carries to a worker hold what processing needs: no [mqtt] password, no [curve]
    key paths, no [service]."""
    root = tmp_path / "one"
    (root / "p01").mkdir(parents=True)
    for name in ("p01_static.trc", "p01_squat1.trc"):
        shutil.copy(study / "p01" / name, root / "p01" / name)
    (root / "subjects.toml").write_text('[[subject]]\nname = "p01"\npattern = "p01/*.trc"\nheight = 1.75\nmass = 70\n')
    settings = load_settings()
    secrets = {
        "mqtt": {"password": "mqtt-password-7Qz", "username": "mqtt-user-7Qz"},
        "curve": {"secret_key": "/keys/service.key_secret-7Qz", "server_key": "/keys/service.key-7Qz"},
        "service": {"output": "tcp://127.0.0.1:5999"},
    }
    settings = settings.override(secrets)
    client.register_plugin(_Received(), name=_Received.name)
    try:
        rows = run_batch(find_study(root, settings), tmp_path / "out", settings, client)
        assert [r["status"] for r in rows] == ["done"]
        received = [
            b
            for got in client.run(lambda dask_worker: dask_worker.plugins[_Received.name].received).values()
            for b in got
        ]
    finally:
        client.unregister_worker_plugin(_Received.name)
    assert len(received) == 2  # the subject's scaling and its trial
    assert all(b"p01_squat1" in b or b"p01_static" in b for b in received)
    for values in secrets.values():
        for value in values.values():
            assert all(value.encode() not in b for b in received), value
