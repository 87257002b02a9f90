"""Squat feedback: repetitions found in the joint angles as they arrive, with per-rep measures and cues.

A synchronous core (no I/O), called once per solved frame by the live service
and over every frame of a recorded .mot offline, so both give the same reps.

- :mod:`~kinestream.reps.counter`: :class:`RepCounter`, the streaming counter: what a rep is, sitting and
  sit-to-stand reps, how an excursion is judged and how the end of the stream closes a rep under way;
- :mod:`~kinestream.reps.detect`: :func:`detect_reps`, the reps of a recorded motion, by the same counter;
- :mod:`~kinestream.reps.rows`: a rep's frames as the counter keeps them, smoothed, and the bottom, seat-off
  and event taken from them;
- :mod:`~kinestream.reps.measures`: :func:`frame_measures`, the positions' measures (below parallel, knee valgus,
  trunk lean) of one frame;
- :mod:`~kinestream.reps.events`: :class:`RepEvent` and :class:`PartialRep` as reported, the cues
  (:func:`cues_for`, :data:`CUES`) and a set's summary;
- :mod:`~kinestream.reps.angles`: the joint angles the counter reads (:data:`KNEES`, :data:`HIPS`) and the kinds
  of rep (:data:`KINDS`).

Its settings are :class:`~kinestream.settings.RepSettings` and :class:`~kinestream.settings.CueSettings`.
"""

from kinestream.reps.angles import HIPS, KINDS, KNEES, MIN_RISE_S
from kinestream.reps.counter import RepCounter
from kinestream.reps.detect import detect_reps
from kinestream.reps.events import CUES, PartialRep, RepEvent, cues_for
from kinestream.reps.measures import frame_measures

# In reading order (angles, events, measures, the counter), which the reference page keeps.
__all__ = [
    "KNEES",
    "HIPS",
    "KINDS",
    "MIN_RISE_S",
    "CUES",
    "RepEvent",
    "PartialRep",
    "cues_for",
    "frame_measures",
    "RepCounter",
    "detect_reps",
]
