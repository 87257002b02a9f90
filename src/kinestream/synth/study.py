"""A synthetic study: :func:`synthesize_study` writes several subjects' trials in ``batch``'s plain layout."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from kinestream.files.trc import write_trc
from kinestream.synth.squat import MIN_SECONDS
from kinestream.synth.trial import SynthResult, synthesize


def synthesize_study(
    root, subjects: int = 3, trials: int = 3, seconds: float = MIN_SECONDS, noise_mm: float = 2.0
) -> list[SynthResult]:
    """A small study in ``batch``'s plain layout; returns each subject's first trial (its truth: height, mass, scale).

    Per subject (each of another size) a static trial (the standing phase of a trial of theirs) and ``trials`` squat
    trials, and ``subjects.toml`` with each one's height and mass.
    """
    root = Path(root)
    firsts = []
    lines = ["# subjects of a synthetic study (kinestream synth)"]
    scratch = tempfile.TemporaryDirectory(prefix="kinestream-study-")  # synth's other files: not the study's
    for s in range(subjects):
        name = f"p{s + 1:02d}"
        size = 0.9 + 0.2 * s / max(1, subjects - 1)
        folder = root / name
        made = []
        for k in range(trials):
            syn = synthesize(
                Path(scratch.name) / f"{name}_{k}", seconds=seconds, noise_mm=noise_mm, scale=size, seed=100 * s + k
            )
            write_trc(folder / f"{name}_squat{k + 1}.trc", syn.keypoints)
            made.append(syn)
        first = made[0]
        t = first.keypoints.time
        still = (t >= first.standing[0]) & (t <= first.standing[1])
        i0, i1 = int(np.flatnonzero(still)[0]), int(np.flatnonzero(still)[-1]) + 1
        write_trc(folder / f"{name}_static.trc", first.keypoints.frames(i0, i1))
        lines += ["", "[[subject]]", f'name = "{name}"', f'pattern = "{name}/*.trc"']
        lines += [f"height = {first.height!r}", f"mass = {first.mass!r}"]
        firsts.append(first)
    (root / "subjects.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scratch.cleanup()
    return firsts
