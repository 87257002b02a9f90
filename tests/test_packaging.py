"""The built wheel works outside the repository: it carries default.toml and the example subscriber, and its
commands run from another folder with nothing of the checkout on the path."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from broker import free_port

pytestmark = pytest.mark.slow  # builds and installs the wheel, then runs the demo from it (about 30 s)

ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(out: Path) -> Path:
    """The wheel of the checkout; built without network when this environment has setuptools 77 or later (the
    test extra brings it), else in pip's isolated build environment, which fetches it from the index."""
    try:
        offline = int(importlib.metadata.version("setuptools").split(".")[0]) >= 77
    except importlib.metadata.PackageNotFoundError:
        offline = False
    isolation = ["--no-build-isolation"] if offline else []
    cmd = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation, "-q", "-w", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("kinestream-*.whl")
    return wheel


def test_the_wheel_runs_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path / "wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("kinestream/default.toml", "kinestream/api.py", "kinestream/examples/subscriber.py"):
        assert name in names, name
    assert not {n for n in names if n.startswith(("tests/", "scripts/", "configs/"))}

    site = tmp_path / "site"  # the wheel alone; its dependencies are this interpreter's
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # not src/: only what the wheel installed

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, (args, done.stderr)
        return done

    where = run(sys.executable, "-c", "import kinestream.api, kinestream; print(kinestream.__file__)").stdout
    assert Path(where.strip()).is_relative_to(site)
    defaults = (ROOT / "src" / "kinestream" / "default.toml").read_text(encoding="utf-8")
    assert run(sys.executable, "-m", "kinestream", "config").stdout == defaults
    assert run(str(site / "bin" / "kinestream"), "config").stdout == defaults  # the console script
    assert "--seconds" in run(sys.executable, "-m", "kinestream", "demo", "--help").stdout
    assert "zmq" in run(sys.executable, "-m", "kinestream.examples.subscriber", "--help").stdout

    # the demo itself, on free ports, its files in the folder it runs from
    config = elsewhere / "ports.toml"
    config.write_text(f'[service]\ninput = "tcp://127.0.0.1:{free_port()}"\noutput = "tcp://127.0.0.1:{free_port()}"\n')
    run(
        sys.executable,
        "-m",
        "kinestream",
        "--config",
        str(config),
        "demo",
        "--seconds",
        "5",
        "--rate",
        "2",
        timeout=300,
    )
    out = elsewhere / "out" / "demo"
    for name in ("session.mot", "session_markers.trc", "session_markers.c3d", "session_angles.png"):
        assert (out / name).is_file(), name
