"""The reps of a recorded motion (:func:`detect_reps`): the streaming counter fed every frame, then finished."""

from __future__ import annotations

import numpy as np

from kinestream.errors import InputError
from kinestream.files.mot import Motion, is_translation
from kinestream.reps.counter import RepCounter
from kinestream.reps.events import RepEvent
from kinestream.settings import CueSettings, RepSettings


def _translation(name: str) -> bool:
    """Metres, not degrees: the model's translations and the IK error column."""
    return is_translation(name) or name == "rmse_mm"


def detect_reps(
    motion: Motion,
    centres: dict | None = None,
    settings: RepSettings | None = None,
    cues: CueSettings | None = None,
) -> tuple[list[RepEvent], dict]:
    """Every rep of a recorded motion, by the streaming :class:`RepCounter` fed frame by frame.

    It is finished at the last frame: a rep the recording cuts short is closed out (counted, or in the summary's
    ``incomplete_reps`` with its reason).

    ``centres``: arrays (frames, 3) as :func:`joint_centres` returns, or None.
    Returns the events and the summary at the end of the motion.
    """
    counter = RepCounter(settings, motion.names, cues)
    values = np.asarray(motion.values, dtype=float)
    if not motion.in_degrees:
        values = values.copy()
        for j, name in enumerate(motion.names):
            if not _translation(name):
                values[:, j] = np.degrees(values[:, j])
    if centres is not None:
        centres = {k: np.asarray(v, dtype=float) for k, v in centres.items()}
        for k, v in centres.items():
            if v.shape != (len(motion.time), 3):
                raise InputError(
                    f"joint centre {k!r} has shape {v.shape}; it needs one point per frame ({len(motion.time)}, 3)",
                    key=k,
                    given=v.shape,
                    valid=(len(motion.time), 3),
                )
    for i, t in enumerate(motion.time):
        counter.step(float(t), values[i], None if centres is None else {k: v[i] for k, v in centres.items()})
    summary_before = counter.summary()
    counter.finish()
    summary = counter.summary()
    summary["in_rep"], summary["seated"] = summary_before["in_rep"], summary_before["seated"]  # as the recording ended
    return list(counter.events), summary
