"""The ``kinestream`` command.

    kinestream assets                      fetch the augmenter and model (once)
    kinestream synth OUT_DIR               ground-truth squat trial (keypoints, markers, angles)
    kinestream augment TRIAL.trc ...       keypoints -> keypoints + 43 anatomical markers
    kinestream scale AUGMENTED.trc ...     generic model -> subject's model (static pose)
    kinestream ik AUGMENTED.trc ...        markers -> joint angles (.mot)
    kinestream process TRIAL.trc ...       all four steps, with a plot
    kinestream serve ...                   the live service (ZeroMQ in, ZeroMQ/MQTT out, .mot recording)
    kinestream calibrate ...               scale the model from a still pose in the live stream
    kinestream replay TRIAL.trc            publish a recorded trial as a live keypoint stream
    kinestream recover FILE                repair a recording cut short
    kinestream demo                        the live service on an embedded squat session

A problem with the input prints one line, ``kinestream: error: ...``, and
exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kinestream.errors import KinestreamError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _subject_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--mass", type=float, required=required, help="subject mass in kg (default: config)")
    p.add_argument("--height", type=float, required=required, help="subject height in m (default: config)")


def _subject(args, config) -> tuple[float, float]:
    mass = args.mass if args.mass is not None else float(config["subject"]["mass"])
    height = args.height if args.height is not None else float(config["subject"]["height"])
    from kinestream.augment import check_subject

    check_subject(height, mass)
    return mass, height


def _existing(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise KinestreamError(f"{what} {p} does not exist")
    return p


def cmd_assets(args, config) -> None:
    from kinestream import assets

    if args.wheel:
        where = assets.install_wheel(args.wheel)
    else:
        where = assets.fetch(progress=_log)
    a = assets.get_assets(config, progress=_log)
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
    from kinestream.files.trc import write_trc
    from kinestream.offline import augment_keypoints, clean_keypoints, describe_clean, load_keypoints

    mass, height = _subject(args, config)
    table = load_keypoints(_existing(args.trial, "trial"))
    if not args.no_clean:
        cleaned, report = clean_keypoints(table, config)
        _log(describe_clean(report, table))
        table = cleaned
    floor = args.floor_offset or bool(config["augment"].get("floor_offset", False))
    out, report = augment_keypoints(table, height, mass, get_assets(config, progress=_log), floor)
    _log(report.describe())
    out_path = Path(args.out) if args.out else Path(args.trial).with_name(Path(args.trial).stem + "_augmented.trc")
    print(f"wrote {write_trc(out_path, out)}")


def cmd_scale(args, config) -> None:
    from kinestream.assets import get_assets
    from kinestream.files.trc import read_trc
    from kinestream.offline import parse_static
    from kinestream.scale import scale_model

    mass, height = _subject(args, config)
    markers = read_trc(_existing(args.markers, "marker file"))
    sc = config["scale"]
    out = Path(args.out) if args.out else Path(args.markers).with_name(Path(args.markers).stem + "_scaled.osim")
    result = scale_model(
        markers,
        mass,
        height,
        out,
        get_assets(config, progress=_log),
        static=parse_static(args.static or sc.get("static", "auto")),
        thresholds_mm=tuple(sc["still_threshold_mm"]),
        windows_s=tuple(sc["still_window_s"]),
    )
    for m in result.messages:
        _log(m)
    print(f"marker error after scaling: {result.rmse_mm:.1f} mm RMS (max {result.max_error_mm:.1f} mm)")
    print(f"wrote {result.model_path}")


def cmd_ik(args, config) -> None:
    import numpy as np

    from kinestream.assets import get_assets
    from kinestream.files.trc import read_trc
    from kinestream.offline import run_ik, write_angles

    markers = read_trc(_existing(args.markers, "marker file"))
    model = _existing(args.model, "model")
    assets = get_assets(config, progress=_log)
    setup = Path(args.setup) if args.setup else assets.ik_setup
    result = run_ik(model, markers, setup, config, marker_set=assets.marker_set)
    for n in result.notes:
        _log(n)
    out = Path(args.out) if args.out else Path(args.markers).with_suffix(".mot")
    _, note = write_angles(out, result.motion)
    if note:
        _log(note)
    print(f"IK marker error: mean {np.nanmean(result.rmse_mm):.1f} mm RMS over {markers.n_frames} frames")
    print(f"wrote {out}")


def cmd_process(args, config) -> None:
    from kinestream.offline import process

    mass, height = _subject(args, config)
    trial = _existing(args.trial, "trial")
    out_dir = Path(args.out) if args.out else Path("out") / trial.stem
    static = args.static or config["scale"].get("static", "auto")
    truth = None
    if args.truth:
        from kinestream.files.mot import read_mot

        truth = read_mot(args.truth)
    result = process(
        trial,
        mass,
        height,
        out_dir,
        config,
        static=static,
        plot=bool(config["output"].get("plot", True)),
        log=_log,
        truth=truth,
        streaming=args.streaming,
        model=args.model,
    )
    print(result.summary())


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="kinestream: %(message)s", stream=sys.stderr)


def _solver_arg(p: argparse.ArgumentParser) -> None:
    from kinestream.solve import SOLVERS

    p.add_argument("--solver", choices=SOLVERS, help="IK solver: fast (default: config) or opensim, the reference")


def _service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", help="keypoint source endpoint (default: config, tcp://127.0.0.1:5555)")
    _subject_args(p)


async def _serve(args, config, say=_log):
    from kinestream.commands.terminal import status_printer
    from kinestream.live.calibrate import calibrate
    from kinestream.live.service import Service

    svc = config["service"]
    model = args.model
    if getattr(args, "calibrate", False):
        mass, height = _subject(args, config)
        out = Path(args.calibration_out or "out/calibration/scaled.osim")
        model = await calibrate(
            config, input_endpoint=args.input or svc["input"], mass=mass, height=height, out_model=out, say=say
        )
    service = Service(
        config,
        input_endpoint=args.input or svc["input"],
        output_endpoint=args.output or svc["output"],
        mqtt=args.mqtt or config["mqtt"].get("broker") or None,
        record=args.record,
        model=model,
        mass=args.mass,
        height=args.height,
        status_out=status_printer(),
    )
    final = await service.run()
    print(file=sys.stderr)
    return service, final


def _finish_recording(record, truth=None) -> None:
    if not record:
        return
    from kinestream.files.mot import read_mot
    from kinestream.plots import plot_angles

    record = Path(record)
    if record.is_file():
        motion = read_mot(record)
        if len(motion.time):
            png = plot_angles(motion, record.with_name(record.stem + "_angles.png"), title=record.stem, truth=truth)
            print(f"wrote {record} ({len(motion.time)} frames) and {png}")


def cmd_serve(args, config) -> None:
    import asyncio
    import json

    _logging()
    service, final = asyncio.run(_serve(args, config))
    print(json.dumps(final))
    _finish_recording(args.record)
    if not final.get("healthy", True):
        print(
            "kinestream: error: the service stopped itself: a task kept failing (see the log above); exit "
            "status 1 so that a supervisor starts it again",
            file=sys.stderr,
        )
        sys.exit(1)


def cmd_calibrate(args, config) -> None:
    import asyncio

    from kinestream.live.calibrate import calibrate

    _logging()
    mass, height = _subject(args, config)
    asyncio.run(
        calibrate(
            config,
            input_endpoint=args.input or config["service"]["input"],
            mass=mass,
            height=height,
            out_model=args.out,
            timeout_s=args.timeout,
            say=print,
        )
    )


def cmd_demo(args, config) -> None:
    from kinestream.commands.demo import run_demo

    _logging()
    run_demo(config, Path(args.out), seconds=args.seconds, rate=args.rate)


def cmd_keys(args, config) -> None:
    from kinestream.live.transport import make_keys

    public, secret = make_keys(args.dir, args.name, authorize=args.authorize, force=args.force)
    print(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it here)")
    if args.authorize:
        print(f"authorized: {Path(args.dir) / 'authorized' / public.name} (the service reads this folder at start)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinestream", description="3D body keypoints to OpenSim joint angles.")
    parser.add_argument("--config", help="TOML file merged over configs/default.toml")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("assets", help="download and verify the augmenter and model (pose2sim wheel)")
    p.add_argument("--wheel", help="install from a wheel file you downloaded yourself")
    p.set_defaults(func=cmd_assets)

    p = sub.add_parser("synth", help="write a ground-truth squat trial made by forward kinematics")
    p.add_argument("out_dir")
    p.add_argument("--fs", type=float, default=60.0, help="frame rate in Hz (default 60)")
    p.add_argument("--seconds", type=float, default=12.0, help="trial length (default 12)")
    p.add_argument("--noise-mm", type=float, default=0.0, help="Gaussian noise on the keypoints, mm (default 0)")
    p.add_argument("--gaps", type=int, default=0, help="number of short keypoint gaps (default 0)")
    p.add_argument("--scale", type=float, default=1.0, help="subject size relative to the generic model")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("augment", help="predict the 43 anatomical markers from keypoints")
    p.add_argument("trial", help="keypoints .trc (OpenPose names; m or mm)")
    _subject_args(p)
    p.add_argument("--out", help="augmented .trc (default: TRIAL_augmented.trc)")
    p.add_argument("--floor-offset", action="store_true", help="shift so the lowest marker sits 1 cm above y=0")
    p.add_argument("--no-clean", action="store_true", help="skip gap filling and filtering")
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("scale", help="scale the generic model from a static pose")
    p.add_argument("markers", help="augmented .trc")
    _subject_args(p)
    p.add_argument("--static", help="static window START:END in seconds, or 'auto' (default)")
    p.add_argument("--out", help="scaled .osim (default: MARKERS_scaled.osim)")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("ik", help="inverse kinematics to a .mot file")
    p.add_argument("markers", help="augmented .trc")
    p.add_argument("--model", required=True, help="scaled .osim (an OpenCap model works too)")
    p.add_argument("--setup", help="IK setup .xml with marker weights (default: OpenCap's)")
    p.add_argument("--out", help=".mot output (default: MARKERS.mot)")
    _solver_arg(p)
    p.set_defaults(func=cmd_ik)

    p = sub.add_parser("process", help="clean, augment, scale and IK a recorded trial")
    p.add_argument("trial", help="keypoints .trc")
    _subject_args(p)
    p.add_argument("--static", help="static window START:END in seconds, or 'auto' (default)")
    p.add_argument("--out", help="output folder (default: out/TRIAL)")
    p.add_argument("--truth", help="true coordinates .mot (from synth): plotted dashed, RMS errors printed")
    p.add_argument(
        "--streaming",
        action="store_true",
        help="run the live service's frame-by-frame cores (low-lag filter, stateful augmenter, "
        "frame-wise IK) instead of the offline ones",
    )
    p.add_argument("--model", help="an already scaled .osim: skip the scale step")
    _solver_arg(p)
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("serve", help="the live service: keypoints in over ZeroMQ, angles out on ZeroMQ/MQTT")
    _service_args(p)
    p.add_argument("--output", help="angles PUB endpoint to bind (default: config, tcp://127.0.0.1:5556)")
    p.add_argument("--mqtt", help="MQTT broker HOST:PORT (default: config; none)")
    p.add_argument("--record", help="record the session to this .mot (markers beside it as _markers.trc)")
    p.add_argument("--model", help="scaled .osim (default: the generic model, unscaled)")
    p.add_argument("--calibrate", action="store_true", help="calibrate from the stream first, then serve")
    p.add_argument("--calibration-out", help="where --calibrate writes the model (default out/calibration/)")
    _solver_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("calibrate", help="scale the model from a still, upright pose in the live stream")
    _service_args(p)
    p.add_argument("--out", required=True, help="scaled .osim to write (the subject's JSON goes beside it)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("demo", help="the live service on an embedded synthetic squat session")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the squat session (default 12)")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed (default 1.0: real time)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("keys", help="make a CURVE key pair (the service's, a source's or a subscriber's)")
    p.add_argument("dir", help="folder for NAME.key (public, to hand out) and NAME.key_secret (keep private)")
    p.add_argument("--name", required=True, help="whose keys: 'service', 'camera1', 'headset', ...")
    p.add_argument(
        "--authorize",
        action="store_true",
        help="also copy the public key into DIR/authorized/, the folder the service admits",
    )
    p.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    p.set_defaults(func=cmd_keys)

    from kinestream.files.record import add_recover_parser
    from kinestream.live.replay import add_replay_parser
    from kinestream.reps import add_reps_parser

    add_replay_parser(sub)
    add_reps_parser(sub)
    for command in sub.choices.values():  # `kinestream serve --config F` reads as well as `kinestream --config F serve`
        command.add_argument("--config", default=argparse.SUPPRESS, help="TOML file merged over configs/default.toml")
    add_recover_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from kinestream.config import load_config

        config = load_config(args.config)
        if getattr(args, "solver", None):
            config["ik"]["solver"] = args.solver
        args.func(args, config)
    except KinestreamError as exc:
        print(f"kinestream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinestream: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
