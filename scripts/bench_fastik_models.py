#!/usr/bin/env python
"""The fast IK solver against OpenSim's on the gait models labs use: per model and motion, the fraction of
frames whose cost (OpenSim's IK objective, evaluated the same way at both answers) is at or below OpenSim's
solver's, the worst cost ratio, and how far each solver's angles are from the converged minimum.

Models: OpenCap's LaiArnoldModified2017 and LaiUhlrich2022 with OpenCap's augmenter markers and IK setup,
OpenSim's Gait2354 (subject01) with its own markers and IK setup (coordinate tasks on), and Rajagopal2016 with
OpenCap's markers and setup. They are not carried in the repository (assets come from their publishers); put
them in KINESTREAM_LAB_MODELS (default ~/.cache/kinestream/lab-models), forces and geometry removed (IK uses
neither), under these names (Apache-2.0 both):

- LaiArnoldModified2017_poly_withArms_weldHand.osim: stanfordnmbl/opencap-core, opensimPipeline/Models/,
  commit d808e3fa2491573f3c870f164f1c4bd989eb24ba;
- LaiUhlrich2022.osim, LaiUhlrich2022_markers_augmenter.xml (opensimPipeline/Models/) and
  opencap_Setup_IK.xml (opensimPipeline/IK/Setup_IK.xml): opencap-core, commit
  d5a52589542e3329691bc26efef0a15b7d5cf38d;
- gait2354_subject01.osim (Models/Gait2354_Simbody/subject01_simbody.osim), gait2354_Setup_IK.xml
  (Pipelines/Gait2354_Simbody/subject01_Setup_IK.xml) and Rajagopal2016.osim (Models/Rajagopal/, its own
  markers removed): opensim-org/opensim-models, commit 20a888b9655e73fb84963d6e03eee3752cf6074b.

The tests in tests/test_fastik.py that use them are skipped, saying so, where the folder lacks them.

Motions: walking, squatting and a countermovement jump, driven by forward kinematics
(kinestream.synth.drive_model) with a fixed offset and noise on every marker, as augmented markers have.

    .venv/bin/python scripts/bench_fastik_models.py [--models lai_arnold,gait2354] [--moves walk,jump]
        [--force-fast] [--no-tasks]

OpenCap's IK setup has no coordinate tasks and the marker weights of kinestream's (Pose2Sim's LSTM setup),
so for the Lai models their own setup and kinestream's are one; Gait2354's has four (subtalar and mtp
angles held at 0, weight 1000), on by default here and off with --no-tasks.

"fast off" and "OS off": the largest distance (deg, any rotational coordinate the markers move) of each
solver's angles from the converged minimum, SciPy's least squares run to machine tolerance from the
better of the two answers (kinestream.fastik.converged_minimum).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from kinestream import solve
from kinestream.fastik import FastIK, converged_minimum
from kinestream.synth import MOVES, drive_model

DATA = Path(os.environ.get("KINESTREAM_LAB_MODELS", Path.home() / ".cache" / "kinestream" / "lab-models"))
OPENCAP_MARKERS = DATA / "LaiUhlrich2022_markers_augmenter.xml"
MODELS = {
    "lai_arnold": (DATA / "LaiArnoldModified2017_poly_withArms_weldHand.osim", OPENCAP_MARKERS, "opencap_Setup_IK.xml"),
    "lai_uhlrich": (DATA / "LaiUhlrich2022.osim", OPENCAP_MARKERS, "opencap_Setup_IK.xml"),
    "gait2354": (DATA / "gait2354_subject01.osim", None, "gait2354_Setup_IK.xml"),
    "rajagopal": (DATA / "Rajagopal2016.osim", OPENCAP_MARKERS, "opencap_Setup_IK.xml"),
}


def compare(key: str, move: str, seconds: float, seed: int, force: bool = False, tasks: bool = True) -> dict:
    path, marker_set, setup_name = MODELS[key]
    model, _ = solve.load_model(path, marker_set)
    setup = solve.read_ik_setup(DATA / setup_name, coordinate_tasks=tasks)
    names = [n for n in setup.marker_weights if model.getMarkerSet().contains(n)]
    _, table = drive_model(model, names, move, seconds=seconds, seed=seed)
    t0 = time.perf_counter()
    if force:  # the fast solver even where it refuses the model (to see why it does)
        fast = solve._solve_trial_fast(FastIK(model, setup, names, refuse=False), model, table, names, None)
    else:
        fast = solve.solve_trial(model, table, setup, solver="fast")
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = solve.solve_trial(model, table, setup, solver="opensim")
    t_ref = time.perf_counter() - t0
    ik = FastIK(model, setup, names, refuse=False)
    coords = solve.coordinate_names(model)
    rot = solve._rotational(model)

    def q_of(motion, i):
        v = np.array([motion.motion.get(n)[i] for n in coords])
        v[rot] = np.radians(v[rot])
        q = ik.neutral.copy()
        q[ik.qindex] = v
        return q

    cost_fast, cost_ref, off_fast, off_ref = [], [], [], []
    for i in range(table.n_frames):
        qf, qr = q_of(fast, i), q_of(ref, i)
        cf, cr = ik.cost(qf, table.xyz[i]), ik.cost(qr, table.xyz[i])
        best = converged_minimum(ik, table.xyz[i], qf if cf <= cr else qr)
        cost_fast.append(cf)
        cost_ref.append(cr)
        d = np.degrees(np.abs(qf - best)[ik.qindex][rot])
        off_fast.append(d.max())
        off_ref.append(np.degrees(np.abs(qr - best)[ik.qindex][rot]).max())
    ratio = np.array(cost_fast) / np.array(cost_ref)
    return {
        "model": key,
        "move": move,
        "frames": table.n_frames,
        "fast<=opensim": float(np.mean(ratio <= 1.0)),
        "worst_ratio": float(ratio.max()),
        "fast_off_deg": float(np.max(off_fast)),
        "opensim_off_deg": float(np.max(off_ref)),
        "ms_fast": 1000 * t_fast / table.n_frames,
        "ms_opensim": 1000 * t_ref / table.n_frames,
        "notes": fast.notes[:1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--moves", default=",".join(MOVES))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-tasks", action="store_true", help="the setup's coordinate tasks off, as kinestream runs IK by default"
    )
    parser.add_argument("--force-fast", action="store_true", help="the fast solver even on models it refuses")
    args = parser.parse_args()
    print(
        f"{'model':12} {'move':6} {'frames':>6} {'fast<=OS':>9} {'worst':>9} {'fast off':>9} {'OS off':>8} "
        f"{'ms fast':>8} {'ms OS':>7}"
    )
    for key in args.models.split(","):
        for move in args.moves.split(","):
            r = compare(key, move, args.seconds, args.seed, args.force_fast, not args.no_tasks)
            print(
                f"{r['model']:12} {r['move']:6} {r['frames']:6d} {r['fast<=opensim']:9.1%} {r['worst_ratio']:9.5f} "
                f"{r['fast_off_deg']:9.3f} {r['opensim_off_deg']:8.3f} {r['ms_fast']:8.1f} {r['ms_opensim']:7.1f}"
                + (f"  note: {r['notes'][0][:90]}" if r["notes"] else ""),
                flush=True,
            )


if __name__ == "__main__":
    main()
