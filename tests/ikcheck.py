"""What an IK solver promises, checked the same way for any two: OpenSim's objective at both answers, and
each answer's distance from the converged minimum (SciPy's least squares to machine tolerance).

Nothing here asserts where OpenSim's own solver happens to stop: it stops short of the minimum by an amount
that depends on the model, the frame and the machine."""

from __future__ import annotations

import numpy as np

from kinestream import solve
from kinestream.fastik import FastIK, converged_minimum


def q_of(ik: FastIK, model, motion, i: int) -> np.ndarray:
    """Frame i of a motion (degrees / metres) as Simbody's q."""
    names = solve.coordinate_names(model)
    rot = solve._rotational(model)
    values = np.array([motion.get(n)[i] for n in names])
    values[rot] = np.radians(values[rot])
    q = ik.neutral.copy()
    q[ik.qindex] = values
    return q


def check(model, setup, names: list[str], xyz: np.ndarray, motion, reference) -> dict:
    """Per frame: the cost of ``motion`` and of ``reference`` (OpenSim's objective, evaluated alike), and the
    largest distance (deg) of each from the converged minimum next to the lower of the two, over the
    rotational coordinates the frame's markers move (the others cost nothing wherever they are)."""
    ik = FastIK(model, setup, names, refuse=False)
    rot = solve._rotational(model)
    out: dict[str, list] = {"cost": [], "reference_cost": [], "off": [], "reference_off": []}
    for i in range(xyz.shape[0]):
        q, qr = q_of(ik, model, motion, i), q_of(ik, model, reference, i)
        c, cr = ik.cost(q, xyz[i]), ik.cost(qr, xyz[i])
        best = converged_minimum(ik, xyz[i], q if c <= cr else qr)
        moved = np.abs(ik._jacobian_at()).sum(axis=0)[ik.qindex] > 1e-12
        k = rot & moved
        out["cost"].append(c)
        out["reference_cost"].append(cr)
        out["off"].append(float(np.degrees(np.abs(q - best)[ik.qindex][k]).max()))
        out["reference_off"].append(float(np.degrees(np.abs(qr - best)[ik.qindex][k]).max()))
    return {key: np.array(v) for key, v in out.items()}


def summary(result: dict) -> str:
    ratio = result["cost"] / result["reference_cost"]
    return (
        f"cost / OpenSim's: at or below on {np.mean(ratio <= 1.0):.1%} of frames, worst {ratio.max():.6f}; "
        f"from the converged minimum: {result['off'].max():.4f} deg (OpenSim's {result['reference_off'].max():.3f})"
    )
