"""The offline commands on a recorded trial: assets, synth, augment, scale, ik, process."""

from __future__ import annotations

from pathlib import Path

from kinestream.commands.common import existing, headless_plots, say, subject


def cmd_assets(args, config) -> None:
    from kinestream import assets

    if args.wheel:
        where = assets.install_wheel(args.wheel)
    else:
        where = assets.fetch(progress=say)
    a = assets.get_assets(config, progress=say)
    print(f"assets ready in {where}")
    for name, path in vars(a).items():
        print(f"  {name:20s} {path}")


def cmd_synth(args, config) -> None:
    from kinestream.synth import synthesize

    result = synthesize(
        args.out_dir,
        fs=args.fs,
        seconds=args.seconds,
        noise_mm=args.noise_mm,
        gaps=args.gaps,
        scale=args.scale,
        seed=args.seed,
    )
    print(
        f"synthetic subject: height {result.height:.3f} m, mass {result.mass:.1f} kg, "
        f"standing {result.standing[0]:.2f}-{result.standing[1]:.2f} s, {len(result.squats)} squats"
    )
    for p in (result.keypoints_trc, result.markers_trc, result.coords_mot):
        print(f"wrote {p}")


def cmd_augment(args, config) -> None:
    from kinestream.assets import get_assets
    from kinestream.augment import Augmenter, AugmentSettings, augment_table
    from kinestream.clean import CleanSettings
    from kinestream.files.trc import write_trc
    from kinestream.offline import describe_clean, load_keypoints

    mass, height = subject(args, config)
    table = load_keypoints(existing(args.trial, "trial"))
    if not args.no_clean:
        cleaned, report = CleanSettings.from_config(config).offline(table)
        say(describe_clean(report, table))
        table = cleaned
    floor = args.floor_offset or AugmentSettings.from_config(config).floor_offset
    augmenter = Augmenter.from_assets(get_assets(config, progress=say))
    out, report = augment_table(table, augmenter, height, mass, apply_floor_offset=floor)
    say(report.describe())
    out_path = Path(args.out) if args.out else Path(args.trial).with_name(Path(args.trial).stem + "_augmented.trc")
    print(f"wrote {write_trc(out_path, out)}")


def cmd_scale(args, config) -> None:
    from kinestream.assets import get_assets
    from kinestream.files.trc import read_trc
    from kinestream.scale import ScaleSettings

    mass, height = subject(args, config)
    markers = read_trc(existing(args.markers, "marker file"))
    out = Path(args.out) if args.out else Path(args.markers).with_name(Path(args.markers).stem + "_scaled.osim")
    assets = get_assets(config, progress=say)
    result = ScaleSettings.from_config(config).scale(markers, mass, height, out, assets, static=args.static)
    for m in result.messages:
        say(m)
    print(f"marker error after scaling: {result.rmse_mm:.1f} mm RMS (max {result.max_error_mm:.1f} mm)")
    print(f"wrote {result.model_path}")


def cmd_ik(args, config) -> None:
    import numpy as np

    from kinestream.assets import get_assets
    from kinestream.files.trc import read_trc
    from kinestream.offline import run_ik, write_angles

    markers = read_trc(existing(args.markers, "marker file"))
    model = existing(args.model, "model")
    assets = get_assets(config, progress=say)
    setup = Path(args.setup) if args.setup else assets.ik_setup
    result = run_ik(model, markers, setup, config, marker_set=assets.marker_set)
    for n in result.notes:
        say(n)
    out = Path(args.out) if args.out else Path(args.markers).with_suffix(".mot")
    _, note = write_angles(out, result.motion)
    if note:
        say(note)
    print(f"IK marker error: mean {np.nanmean(result.rmse_mm):.1f} mm RMS over {markers.n_frames} frames")
    print(f"wrote {out}")


def cmd_process(args, config) -> None:
    from kinestream.offline import process
    from kinestream.scale import ScaleSettings

    mass, height = subject(args, config)
    trial = existing(args.trial, "trial")
    out_dir = Path(args.out) if args.out else Path("out") / trial.stem
    static = args.static or ScaleSettings.from_config(config).static
    truth = None
    if args.truth:
        from kinestream.files.mot import read_mot

        truth = read_mot(args.truth)
    headless_plots()
    result = process(
        trial,
        mass,
        height,
        out_dir,
        config,
        static=static,
        plot=bool(config["output"].get("plot", True)),
        log=say,
        truth=truth,
        streaming=args.streaming,
        model=args.model,
    )
    print(result.summary())
