"""Angle curves as pictures: what a coach or clinician looks at first.

Each plot function returns a matplotlib Figure (shown inline when it is the
last value of a notebook cell) and, given a ``path``, also saves it there as
an image. The figure is a :class:`matplotlib.figure.Figure` made without
pyplot: it needs no backend (a batch worker's threads, a machine without a
display draw it the same), pyplot never holds it, so a notebook shows it once
and a loop making hundreds of plots keeps none in memory, and the library
leaves pyplot's backend to its caller.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kinestream.files.mot import Motion

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110  # of the saved images

PANELS = [
    ("Hip flexion", ["hip_flexion_r", "hip_flexion_l"]),
    ("Knee flexion", ["knee_angle_r", "knee_angle_l"]),
    ("Ankle dorsiflexion", ["ankle_angle_r", "ankle_angle_l"]),
    ("Pelvis", ["pelvis_tilt", "pelvis_list", "pelvis_rotation"]),
]


def _figure(**kwargs) -> Figure:
    """A new figure, not pyplot's (see the module notes)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` (its folder made; the format from the suffix, e.g. .png) and return the path.

    The image is written to a new file of its own in the same folder (mkstemp) and renamed to ``path``: a
    symlink at ``path`` is replaced, never written through, and a failed save leaves any earlier image.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fig.savefig(fh, dpi=DPI, format=path.suffix[1:].lower() or None)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def plot_angles(motion: Motion, path: str | Path | None = None, title: str = "", truth: Motion | None = None) -> Figure:
    """Hip, knee, ankle and pelvis angles over time (degrees), one panel each; saved to ``path`` when given.

    With ``truth``, the true curves are drawn dashed for comparison.
    """
    fig = _figure(figsize=(10, 9), layout="tight")
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    for ax, (label, names) in zip(axes, PANELS, strict=False):
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
    if path is not None:
        save_figure(fig, path)
    return fig


def peak(motion: Motion, name: str) -> float:
    """The largest value of the column ``name`` of ``motion``; NaN when it has no such column."""
    return float(np.nanmax(motion.get(name))) if name in motion else float("nan")


def plot_reps(
    motion: Motion, events, path: str | Path | None = None, settings=None, partials=(), title: str = ""
) -> Figure:
    """Knee flexion over time, both sides, with the reps found in it; saved to ``path`` when given.

    Each rep's window is shaded green, its bottom marked and its depth (peak
    knee flexion, mean of both knees) written beside it; partial reps (too
    shallow to count) are shaded grey and hatched. ``events`` are
    :class:`kinestream.reps.RepEvent`; ``partials`` dicts with ``start``,
    ``end``, ``bottom`` and ``knee_peak`` (as in the rep summary); with
    ``settings`` (:class:`kinestream.reps.RepSettings`) the thresholds are
    drawn dotted.
    """
    events = list(events)
    fig = _figure(figsize=(11, 4.8), layout="tight")
    ax = fig.subplots()
    colours = {"knee_angle_r": "tab:red", "knee_angle_l": "tab:blue"}
    for name, colour in colours.items():
        if name in motion:
            ax.plot(motion.time, motion.get(name), lw=1.3, color=colour, label=name)
    top = max(
        [float(np.nanmax(motion.get(n))) for n in colours if n in motion and np.isfinite(motion.get(n)).any()] or [90.0]
    )
    if settings is not None:
        for level, label in (
            (settings.knee_start_deg, "start/end"),
            (settings.min_depth_deg, "min depth"),
            (settings.deep_knee_deg, "deep"),
        ):
            ax.axhline(level, color="0.4", ls=":", lw=0.9)
            ax.text(motion.time[0], level, f" {label} {level:g}", va="bottom", ha="left", fontsize=7, color="0.3")
    for k, e in enumerate(events):
        ax.axvspan(e.start, e.end, color="tab:green", alpha=0.12, lw=0, label="rep" if k == 0 else None)
        ax.plot([e.bottom], [e.knee_peak], "v", color="black", ms=6)
        mark = ", ".join(m for m, on in (("deep", e.deep_enough), ("below parallel", e.below_parallel)) if on)
        ax.annotate(
            f"#{e.index} {e.knee_peak:.1f}\u00b0" + (f"\n{mark}" if mark else ""),
            (e.bottom, e.knee_peak),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    for k, p in enumerate(partials):
        ax.axvspan(
            p["start"],
            p["end"],
            facecolor="0.6",
            alpha=0.25,
            hatch="//",
            edgecolor="0.45",
            lw=0,
            label="partial (not a rep)" if k == 0 else None,
        )
        ax.annotate(
            f"partial {p['knee_peak']:.1f}\u00b0",
            (p["bottom"], p["knee_peak"]),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color="0.3",
        )
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), top + 25)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("knee flexion (deg)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    n_partial = len(partials)
    ax.set_title(f"{title + ': ' if title else ''}{len(events)} reps" + (f", {n_partial} partial" if n_partial else ""))
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_study(rows: list[dict], path: str | Path | None = None) -> Figure:
    """Peak knee flexion of every trial, grouped by subject (``batch``'s summary.png), from summary rows.

    Failed trials as crosses at the axis; saved to ``path`` when given.
    """
    subjects = list(dict.fromkeys(str(r["subject"]) for r in rows))
    fig = _figure(figsize=(max(6.0, 1.2 * len(subjects) + 2), 4.5), layout="tight")
    ax = fig.subplots()
    for k, subject in enumerate(subjects):
        mine = [r for r in rows if str(r["subject"]) == subject]
        peaks = [float(r["peak_knee_flexion_deg"]) for r in mine if r["peak_knee_flexion_deg"] not in ("", None)]
        failed = sum(1 for r in mine if r["status"] == "failed")
        jitter = np.linspace(-0.15, 0.15, len(peaks)) if len(peaks) > 1 else np.zeros(len(peaks))
        ax.plot(k + jitter, peaks, "o", color="C0", alpha=0.8)
        if peaks:
            ax.hlines(np.mean(peaks), k - 0.25, k + 0.25, color="C1")
        if failed:
            ax.plot([k] * failed, [0.0] * failed, "x", color="C3", markersize=9)
    ax.set_xticks(range(len(subjects)), subjects, rotation=30 if len(subjects) > 6 else 0, ha="right")
    ax.set_xlim(-0.6, len(subjects) - 0.4)
    ax.set_ylabel("peak knee flexion (deg)")
    ax.set_title("peak knee flexion per trial (line: the subject's mean; x: a failed trial)")
    ax.grid(axis="y", alpha=0.3)
    if path is not None:
        save_figure(fig, path)
    return fig
