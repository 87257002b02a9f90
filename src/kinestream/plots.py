"""Angle curves as pictures: what a coach or clinician looks at first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .mot import Motion

PANELS = [
    ("Hip flexion", ["hip_flexion_r", "hip_flexion_l"]),
    ("Knee flexion", ["knee_angle_r", "knee_angle_l"]),
    ("Ankle dorsiflexion", ["ankle_angle_r", "ankle_angle_l"]),
    ("Pelvis", ["pelvis_tilt", "pelvis_list", "pelvis_rotation"]),
]


def plot_angles(motion: Motion, path: str | Path, title: str = "", truth: Motion | None = None) -> Path:
    """Hip, knee, ankle and pelvis angles over time (degrees), one panel each.

    With ``truth``, the true curves are drawn dashed for comparison.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(10, 9), sharex=True)
    for ax, (label, names) in zip(axes, PANELS):
        for name in names:
            if name not in motion:
                continue
            (line,) = ax.plot(motion.time, motion.get(name), lw=1.4, label=name)
            if truth is not None and name in truth:
                ax.plot(truth.time, truth.get(name), "--", lw=1.0, color=line.get_color(), alpha=0.7)
        ax.set_ylabel(f"{label}\n(deg)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, ncol=3)
    axes[-1].set_xlabel("time (s)")
    if title:
        axes[0].set_title(title + (" (dashed: truth)" if truth is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def peak(motion: Motion, name: str) -> float:
    return float(np.nanmax(motion.get(name))) if name in motion else float("nan")
