"""Wall time of a study: `kinestream process` trial by trial against `kinestream batch --workers N`.

    .venv/bin/python scripts/bench_batch.py [--subjects 3] [--trials 8] [--seconds 8] [--workers 2]

Makes a synth study (each subject of another size, a static trial each and
TRIALS squat trials of SECONDS), then in one run times:

- serial: `kinestream process TRIAL --static-trial STATIC --height H --mass M`, one
  command after the other, as a lab's script would call it;
- batch: `kinestream batch STUDY --workers N`, cold (cluster start-up included).

It prints both, their ratio (target: batch at most 0.45 of serial with 2
workers), the per-trial cost in a warm worker against a `process` command, and
trials per minute per core, to project to a bigger node.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINESTREAM = [sys.executable, "-m", "kinestream"]


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(KINESTREAM + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=3)
    p.add_argument("--trials", type=int, default=8, help="squat trials per subject (default 8: 24 trials)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each trial (default 8)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    from kinestream.synth import synthesize_study

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        study = Path(tmp) / "study"
        synthesize_study(study, args.subjects, args.trials, seconds=args.seconds)
        subjects = tomllib.loads((study / "subjects.toml").read_text())["subject"]
        n = args.subjects * args.trials
        print(f"study: {args.subjects} subjects x {args.trials} trials of {args.seconds:g} s = {n} trials")

        serial, per_trial = 0.0, []
        for s in subjects:
            folder = study / s["name"]
            for trial in sorted(folder.glob("*_squat*.trc")):
                took = run(
                    ["process", str(trial), "--static-trial", str(folder / f"{s['name']}_static.trc"),
                     "--height", str(s["height"]), "--mass", str(s["mass"]),
                     "--out", str(Path(tmp) / "serial" / trial.stem)]
                )  # fmt: skip
                serial += took
                per_trial.append(took)
        print(f"serial process commands: {serial:.1f} s ({statistics.median(per_trial):.2f} s a trial, median)")

        out = Path(tmp) / "batch"
        batch = run(["batch", str(study), "--workers", str(args.workers), "--out", str(out)])
        with open(out / "summary.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        done = sum(r["status"] == "done" for r in rows)
        warm = statistics.median(float(r["seconds"]) for r in rows if r["status"] == "done")
        print(f"batch --workers {args.workers}: {batch:.1f} s, {done}/{len(rows)} trials done (cold start included)")
        print(f"ratio batch/serial: {batch / serial:.2f} (target <= 0.45)")
        print(
            f"per trial: {warm:.2f} s in a warm worker (median, process with the subject's model) against "
            f"{statistics.median(per_trial):.2f} s for a process command (import, scale, augment, IK, plot)"
        )
        cores = args.workers
        print(
            f"throughput: {n / batch * 60 / cores:.1f} trials per minute per core in batch "
            f"({60 / warm:.1f} once warm); a 64-core node: about {60 / warm * 64:.0f} trials per minute"
        )


if __name__ == "__main__":
    main()
