"""``kinestream reps``: the reps of a recorded .mot as a table (or JSON lines), and a plot."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from kinestream.assets import get_assets
from kinestream.centres import joint_centres
from kinestream.errors import InputError
from kinestream.files.mot import read_mot
from kinestream.plots import plot_reps
from kinestream.reps import KNEES, RepEvent, detect_reps
from kinestream.settings import Settings, load_settings


def _fmt(value, spec: str, none: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


TABLE_HEADER = (
    "rep   start  bottom     end  down    up   knee  knee_r knee_l  hip_r  hip_l  deep  below_par  "
    "asym  valgus_r valgus_l  lean  kind       cues"
)


TABLE_UNITS = (
    "        (s)     (s)     (s)   (s)   (s)  (deg)   (deg)  (deg)  (deg)  (deg)       (hip-knee)  "
    "(deg)  (cm,med+) (cm,med+) (deg)"
)
KIND = {"squat": "squat", "sit_to_stand": "sit-stand"}


def format_rep(e: RepEvent) -> str:
    """One line of the rep table."""
    below = "-" if e.below_parallel is None else f"{'yes' if e.below_parallel else 'no'} {e.hip_above_knee_cm:+.0f}cm"
    return (
        f"{e.index:3d} {e.start:7.2f} {e.bottom:7.2f} {e.end:7.2f} {_fmt(e.descent_s, '5.2f'):>5} {e.ascent_s:5.2f} "
        f"{e.knee_peak:6.1f}  {e.knee_peak_r:6.1f} {e.knee_peak_l:6.1f} {_fmt(e.hip_peak_r, '6.1f'):>6} "
        f"{_fmt(e.hip_peak_l, '6.1f'):>6}  {'yes' if e.deep_enough else 'no':>4}  {below:>9}  "
        f"{e.knee_asymmetry_deg:+5.1f}  {_fmt(e.knee_valgus_cm_r, '+8.1f'):>8} "
        f"{_fmt(e.knee_valgus_cm_l, '+8.1f'):>8} {_fmt(e.trunk_lean_deg, '5.1f'):>5}  "
        f"{KIND.get(e.kind, e.kind):9}  {', '.join(e.cues) or '-'}"
    )


def format_summary(summary: dict) -> str:
    s = summary
    lines = [
        f"{s['reps']} reps ({s['deep_enough']} deep enough"
        + (f", {s['below_parallel']} below parallel" if s["below_parallel"] is not None else "")
        + f"), {s['partial']} partial, {s['too_short'] + s['too_long']} rejected (too short/long)"
        + (f"; {s['sit_to_stand']} of the reps sit-to-stand (from seated)" if s["sit_to_stand"] else "")
    ]
    if s["reps"]:
        lines.append(
            f"depth: mean {s['depth_mean_deg']:.1f} deg knee flexion (min {s['depth_min_deg']:.1f}, "
            f"max {s['depth_max_deg']:.1f}); tempo: {s['rep_s_mean']:.2f} s a rep "
            f"({_fmt(s['descent_s_mean'], '.2f')} s down, {s['ascent_s_mean']:.2f} s up); "
            f"knee asymmetry (R-L) {s['knee_asymmetry_mean_deg']:+.1f} deg"
        )
    if s["cues"]:
        lines.append("cues: " + ", ".join(f"{cue} {n}x" for cue, n in s["cues"].items()))
    for p in s["partials"]:
        lines.append(f"partial rep {p['start']:.2f}-{p['end']:.2f} s: knee flexion peaked at {p['knee_peak']:.1f} deg")
    for e in s["incomplete_reps"]:
        lines.append(f"rep {e['index']} incomplete ({e['start']:.2f} s on, not counted): {e['reason']}")
    return "\n".join(lines)


def run_reps(args, settings: Settings | None = None) -> tuple[list[RepEvent], dict]:
    """The ``reps`` command: table (or JSON lines) of the reps of a .mot, and a plot."""
    if settings is None:
        settings = load_settings(getattr(args, "config", None))
    reps = settings.reps
    path = Path(args.mot)
    if not path.is_file():
        raise InputError(
            f"motion file {path} does not exist; give the .mot of a session (from 'kinestream "
            f"process', 'ik' or 'serve --record')",
            given=path,
            valid="the .mot of a session",
        )
    motion = read_mot(path)
    if len(motion.time) == 0:
        raise InputError(f"{path} holds no frames", given=path, valid="at least one frame")
    missing = [k for k in KNEES if k not in motion]
    if missing:
        raise InputError(
            f"{path} has no {' or '.join(missing)} column; the rep counter needs both knee angles "
            f"(a .mot from 'kinestream process', 'ik' or 'serve --record')",
            given=missing,
            valid=list(KNEES),
        )
    if args.model:
        model = args.model
    else:
        model = get_assets(settings).generic_model
        print(
            "note: joint centres from the generic model, unscaled (give --model scaled.osim for the subject's)",
            file=sys.stderr,
        )
    centres = joint_centres(model, motion)
    events, summary = detect_reps(motion, centres, reps, settings.cues)
    if args.json:
        for e in events:
            print(e.to_json())
        print(json.dumps({"summary": summary}, separators=(",", ":")))
    else:
        print(
            f"{path.name}: knee flexion through {reps.knee_start_deg:g} deg starts and ends a rep; "
            f"a rep needs {reps.min_depth_deg:g} deg, deep enough at {reps.deep_knee_deg:g} deg"
        )
        if events:
            print(TABLE_HEADER)
            print(TABLE_UNITS)
            for e in events:
                print(format_rep(e))
        print(format_summary(summary))
    plot = settings.output.plot and not getattr(args, "no_plot", False)
    if plot:
        out = Path(args.out) if args.out else path.with_name(path.stem + "_reps.png")
        plot_reps(motion, events, out, settings=reps, partials=summary["partials"], title=path.stem)
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return events, summary


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``kinestream reps`` on the command's subparsers."""
    p = subparsers.add_parser("reps", help="count squat reps in a .mot and measure each (depth, tempo, form)")
    p.add_argument("mot", help="joint angles .mot (from process, ik or serve --record)")
    p.add_argument("--model", help="scaled .osim for the joint centres (default: the generic model, unscaled)")
    p.add_argument("--json", action="store_true", help="one JSON object per rep per line, then the summary")
    p.add_argument("--out", help="plot .png (default: SESSION_reps.png beside the .mot)")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    p.set_defaults(func=run_reps)
    return p
