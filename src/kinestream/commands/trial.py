"""The offline commands on a recorded trial: assets, synth, augment, scale, ik, process."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kinestream import assets, checks
from kinestream.assets import get_assets
from kinestream.commands.batch import report
from kinestream.commands.common import existing, say, subject
from kinestream.commands.terminal import show
from kinestream.errors import InputError, KinestreamError, SettingsError
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc, write_trc
from kinestream.projects import subject_values
from kinestream.settings import Settings


def cmd_assets(args, settings: Settings) -> None:

    if args.wheel:
        where = assets.install_wheel(args.wheel)
    else:
        where = assets.fetch()
    a = assets.get_assets(settings)
    print(f"assets ready in {where}")
    for name, path in vars(a).items():
        print(f"  {name:20s} {path}")


def cmd_synth(args, settings: Settings) -> None:
    from kinestream.synth import synthesize

    show("kinestream.synth", None)  # its stages are not shown: the files written are, at the end
    result = synthesize(
        args.out_dir,
        fs=args.fs,
        seconds=args.seconds,
        noise_mm=args.noise_mm,
        gaps=args.gaps,
        scale=args.scale,
        seed=args.seed,
        trunk_lean_deg=args.trunk_lean,
        valgus_cm=args.valgus_cm,
        descent_s=args.descent_s,
        asymmetry_deg=args.asymmetry_deg,
    )
    print(
        f"synthetic subject: height {result.height:.3f} m, mass {result.mass:.1f} kg, "
        f"standing {result.standing[0]:.2f}-{result.standing[1]:.2f} s, {len(result.squats)} squats"
    )
    for s in result.squats:
        print(
            f"  squat {s.index + 1}: bottom at {s.bottom:.2f} s, knee {s.knee_angle_r:.0f}/{s.knee_angle_l:.0f} deg "
            f"(R/L), trunk lean {s.trunk_lean_deg:.1f} deg, knee valgus {s.knee_valgus_cm_r:+.1f}/"
            f"{s.knee_valgus_cm_l:+.1f} cm (R/L, medial +), descent {s.descent_s:.2f} s"
        )
    for p in (result.keypoints_trc, result.markers_trc, result.coords_mot):
        print(f"wrote {p}")


def cmd_augment(args, settings: Settings) -> None:
    from kinestream.offline import clean_and_augment, load_keypoints, read_notes

    mass, height = subject(args, settings)
    table = load_keypoints(existing(args.trial, "trial"), settings.ingest)
    notes = read_notes(table, settings.ingest)
    out, more = clean_and_augment(
        table,
        height,
        mass,
        get_assets(settings),
        settings,
        clean_first=not args.no_clean,
        floor_offset=args.floor_offset or None,
    )
    for note in notes + more:
        say(note)
    out_path = Path(args.out) if args.out else Path(args.trial).with_name(Path(args.trial).stem + "_augmented.trc")
    print(f"wrote {write_trc(out_path, out)}")


def cmd_scale(args, settings: Settings) -> None:
    from kinestream.scale import scale_model

    mass, height = subject(args, settings)
    markers = read_trc(existing(args.markers, "marker file"))
    out = Path(args.out) if args.out else Path(args.markers).with_name(Path(args.markers).stem + "_scaled.osim")
    assets = get_assets(settings)
    result = scale_model(markers, mass, height, out, assets, settings.scale, static=args.static)
    for m in result.messages:
        say(m)
    print(f"marker error after scaling: {result.rmse_mm:.1f} mm RMS (max {result.max_error_mm:.1f} mm)")
    print(f"wrote {result.model_path}")


def cmd_ik(args, settings: Settings) -> None:
    import numpy as np

    from kinestream.offline import run_ik, write_angles

    markers = read_trc(existing(args.markers, "marker file"))
    model = existing(args.model, "model")
    assets = get_assets(settings)
    setup = Path(args.setup) if args.setup else assets.ik_setup
    result = run_ik(model, markers, setup, settings, marker_set=assets.marker_set)
    for n in result.notes:
        say(n)
    out = Path(args.out) if args.out else Path(args.markers).with_suffix(".mot")
    _, note = write_angles(out, result.motion)
    if note:
        say(note)
    print(f"IK marker error: mean {np.nanmean(result.rmse_mm):.1f} mm RMS over {markers.n_frames} frames")
    print(f"wrote {out}")


def cmd_process(args, settings: Settings) -> None:
    from kinestream.offline import process

    if Path(args.trial).is_dir():
        return process_folder(args, settings)
    height, mass, notes = subject_values(None, args.height, args.mass, settings)
    trial = existing(args.trial, "trial")
    if args.out:
        out_dir = Path(args.out)
    else:  # out/<stem>/ must stay inside out/: a trial named '...trc' has the stem '..'
        try:
            out_dir = Path("out") / checks.path_segment(f"trial {trial}: its output folder name", trial.stem)
        except KinestreamError as exc:
            raise exc.reworded(f"{exc}; give --out, or rename the file") from None
    static = args.static or None  # None: the settings' [scale] static
    static_trial = existing(args.static_trial, "static trial") if args.static_trial else None
    truth = None
    if args.truth:
        truth = read_mot(args.truth)
    result = process(
        trial,
        mass,
        height,
        out_dir,
        settings,
        static=static,
        plot=settings.output.plot,
        truth=truth,
        streaming=args.streaming,
        model=args.model,
        static_trial=static_trial,
    )
    print("\n".join([*notes, result.summary()]))  # where the height and mass came from, then the results


def process_folder(args, settings: Settings) -> None:
    """``process FOLDER``: ``batch`` on the folder, run in this process (:class:`kinestream.batch.InProcess`).

    The folder is a Pose2Sim or OpenCap project or session, or .trc files with a subjects.toml. The subject
    comes from its files (the command line over them, they over the settings); the model is scaled once from
    its static trial when it has one (--static-trial gives another, --model skips scaling). The outputs are
    batch's: OUT/<subject>/<trial>/, summary.csv, and a manifest that skips trials already done.
    """
    # the stages (scipy, OpenSim) are loaded when a trial is processed, not for `kinestream --help`
    from kinestream.batch import describe, find_study, run_batch

    if args.truth:
        raise SettingsError(
            "--truth holds one trial's true angles; give that trial's .trc, not a folder",
            key="--truth",
            given=args.truth,
            valid="one trial's .trc, not a folder",
        )
    if args.static:  # new settings with the window: the one the folder's trials and static trial are scaled from
        settings = settings.override({"scale": {"static": args.static}})
    study = find_study(args.trial, settings, height=args.height, mass=args.mass)
    if study.unplanned:  # one folder: what keeps a subject from being processed is refused up front, as one line
        subject, trial, reason = study.unplanned[0]
        raise InputError(reason, key="subject", given=subject)
    notes = []
    if args.model and args.static_trial:
        notes.append(f"--model {args.model} is used: the static trial {args.static_trial} is not needed")
    if args.model or args.static_trial:  # every subject's, over the folder's own static trial
        model = existing(args.model, "model") if args.model else None
        static = existing(args.static_trial, "static trial") if model is None else None
        flag = "--model" if model else "--static-trial"
        notes += [f"{s.name}: {flag} is used, not {s.static.name}" for s in study.subjects if s.static is not None]
        study.subjects = [replace(s, model=model, static=static) for s in study.subjects]
    for line in describe(study) + notes:
        say(line)
    out = Path(args.out) if args.out else Path("out") / Path(args.trial).resolve().name
    rows = run_batch(study, out, settings, force=args.force, streaming=args.streaming)
    report(rows, out, settings)
