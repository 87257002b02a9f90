"""The ``kinestream`` command.

    kinestream assets                      fetch the augmenter and model (once)
    kinestream synth OUT_DIR               ground-truth squat trial (keypoints, markers, angles)
    kinestream augment TRIAL.trc ...       keypoints -> keypoints + 43 anatomical markers
    kinestream scale AUGMENTED.trc ...     generic model -> subject's model (static pose)
    kinestream ik AUGMENTED.trc ...        markers -> joint angles (.mot)
    kinestream process TRIAL.trc ...       all four steps, with a plot (or FOLDER: batch, in this process)
    kinestream batch STUDY                 every trial of a study, on Dask (local or a cluster)
    kinestream serve ...                   the live service (ZeroMQ in, ZeroMQ/MQTT out, .mot recording)
    kinestream calibrate ...               scale the model from a still pose in the live stream
    kinestream replay TRIAL.trc            publish a recorded trial as a live keypoint stream
    kinestream recover FILE                repair a recording cut short
    kinestream reps SESSION.mot            squat reps of a recording: table and plot
    kinestream keys DIR --name NAME        CURVE key pairs for encrypted, authenticated links
    kinestream config                      every setting with its default
    kinestream demo                        the live service on an embedded squat session
    kinestream view [SESSION.mot|TRIAL.trc] the body, the model and the angles in Rerun's viewer

A problem with the input prints one line, ``kinestream: error: ...``, and
exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from kinestream.commands import batch, config, demo, live, recover, replay, reps, trial, view
from kinestream.commands.common import flag_settings, ingest_args, service_args, solver_arg, subject_args
from kinestream.commands.terminal import showing_log
from kinestream.errors import KinestreamError
from kinestream.settings import load_settings

CONFIG_HELP = "TOML file of settings merged over the defaults (kinestream config prints them)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinestream", description="3D body keypoints to OpenSim joint angles.")
    parser.add_argument("--config", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("assets", help="download and verify the augmenter and model (pose2sim wheel)")
    p.add_argument("--wheel", help="install from a wheel file you downloaded yourself")
    p.set_defaults(func=trial.cmd_assets)

    p = sub.add_parser("synth", help="write a ground-truth squat trial made by forward kinematics")
    p.add_argument("out_dir")
    p.add_argument("--fs", type=float, default=60.0, help="frame rate in Hz (default 60)")
    p.add_argument("--seconds", type=float, default=12.0, help="trial length (default 12)")
    p.add_argument("--noise-mm", type=float, default=0.0, help="Gaussian noise on the keypoints, mm (default 0)")
    p.add_argument("--gaps", type=int, default=0, help="number of short keypoint gaps (default 0)")
    p.add_argument("--scale", type=float, default=1.0, help="subject size relative to the generic model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--trunk-lean",
        type=float,
        metavar="DEG",
        help="trunk lean at the bottom of every squat (hip-to-shoulder line from vertical, 0 to 70 deg)",
    )
    p.add_argument(
        "--valgus-cm",
        type=float,
        metavar="CM",
        help="knee valgus at the bottom, both knees (cm; + knees in, - knees out; -8 to 8): the feet turn in or out",
    )
    p.add_argument("--descent-s", type=float, metavar="S", help="time from standing to the bottom (0.3 to 1.2 s)")
    p.add_argument("--asymmetry-deg", type=float, metavar="DEG", help="right minus left knee flexion at the bottom")
    p.set_defaults(func=trial.cmd_synth)

    p = sub.add_parser("augment", help="predict the 43 anatomical markers from keypoints")
    p.add_argument("trial", help="keypoints .trc (OpenPose names; m or mm)")
    subject_args(p)
    p.add_argument("--out", help="augmented .trc (default: TRIAL_augmented.trc)")
    p.add_argument("--floor-offset", action="store_true", help="shift so the lowest marker sits 1 cm above y=0")
    p.add_argument("--no-clean", action="store_true", help="skip gap filling and filtering")
    ingest_args(p)
    p.set_defaults(func=trial.cmd_augment)

    p = sub.add_parser("scale", help="scale the generic model from a static pose")
    p.add_argument("markers", help="augmented .trc")
    subject_args(p)
    p.add_argument("--static", help="static window START:END in seconds, or 'auto' (default)")
    p.add_argument("--out", help="scaled .osim (default: MARKERS_scaled.osim)")
    p.set_defaults(func=trial.cmd_scale)

    p = sub.add_parser("ik", help="inverse kinematics to a .mot file")
    p.add_argument("markers", help="augmented .trc")
    p.add_argument("--model", required=True, help="scaled .osim (an OpenCap model works too)")
    p.add_argument("--setup", help="IK setup .xml with marker weights (default: OpenCap's)")
    p.add_argument("--out", help=".mot output (default: MARKERS.mot)")
    solver_arg(p)
    p.set_defaults(func=trial.cmd_ik)

    p = sub.add_parser("process", help="clean, augment, scale and IK a recorded trial, or every trial of a folder")
    p.add_argument(
        "trial",
        help="keypoints .trc, or a folder, processed as 'batch' does but in this process: a Pose2Sim project or "
        "session (Config.toml, pose-3d/*.trc), an OpenCap session (sessionMetadata.yaml, MarkerData/*.trc), or "
        ".trc files with a subjects.toml",
    )
    subject_args(p)
    p.add_argument(
        "--static",
        help="static window START:END in seconds (within the static trial, if one), or 'auto' (default)",
    )
    p.add_argument(
        "--static-trial",
        metavar="STATIC.trc",
        help="scale the model from this separate static trial (keypoints, cleaned and augmented as the trial)",
    )
    ingest_args(p)
    p.add_argument("--out", help="output folder (default: out/TRIAL; a folder's: out/FOLDER, as batch's)")
    p.add_argument("--truth", help="true coordinates .mot (from synth): plotted dashed, RMS errors printed")
    p.add_argument(
        "--streaming",
        action="store_true",
        help="run the live service's frame-by-frame cores (low-lag filter, stateful augmenter, "
        "frame-wise IK) instead of the offline ones",
    )
    p.add_argument("--model", help="an already scaled .osim: skip the scale step")
    p.add_argument("--force", action="store_true", help="FOLDER: process every trial again, done before or not")
    solver_arg(p)
    p.set_defaults(func=trial.cmd_process)

    p = sub.add_parser("serve", help="the live service: keypoints in over ZeroMQ, angles out on ZeroMQ/MQTT")
    service_args(p)
    p.add_argument("--output", help="angles PUB endpoint to bind (default: config, tcp://127.0.0.1:5556)")
    p.add_argument("--mqtt", help="MQTT broker HOST:PORT (default: config; none)")
    p.add_argument("--record", help="record the session to this .mot (markers beside it as _markers.trc)")
    p.add_argument("--model", help="scaled .osim (default: the generic model, unscaled)")
    p.add_argument("--calibrate", action="store_true", help="calibrate from the stream first, then serve")
    p.add_argument(
        "--people",
        help="whom to serve (default: config, everyone): subject ids 'ana,ben', or a share 'K/N' of everyone, "
        "so that N serve processes on one source serve everyone between them",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="serve the people in N worker processes behind the one output, each person in one of them "
        "(default: one process serves everyone)",
    )
    p.add_argument("--calibration-out", help="where --calibrate writes the model (default out/calibration/)")
    solver_arg(p)
    p.set_defaults(func=live.cmd_serve)

    p = sub.add_parser("calibrate", help="scale the model from a still, upright pose in the live stream")
    service_args(p)
    p.add_argument("--out", required=True, help="scaled .osim to write (the subject's JSON goes beside it)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)")
    p.set_defaults(func=live.cmd_calibrate)

    p = sub.add_parser("demo", help="the live service on an embedded synthetic squat session")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the squat session (default 12)")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed (default 1.0: real time)")
    p.add_argument(
        "--view",
        nargs="?",
        const="native",
        metavar="web|FILE.rrd",
        help="watch it in kinestream view: the native viewer; 'web' for the web viewer, FILE.rrd to record it",
    )
    p.set_defaults(func=demo.cmd_demo)

    p = sub.add_parser("keys", help="make a CURVE key pair (the service's, a source's or a subscriber's)")
    p.add_argument("dir", help="folder for NAME.key (public, to hand out) and NAME.key_secret (keep private)")
    p.add_argument("--name", required=True, help="whose keys: 'service', 'camera1', 'headset', ...")
    p.add_argument(
        "--authorize",
        action="store_true",
        help="also copy the public key into DIR/authorized/, the folder the service admits",
    )
    p.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    p.set_defaults(func=live.cmd_keys)

    replay.add_parser(sub)
    reps.add_parser(sub)
    batch.add_parser(sub)
    view.add_parser(sub)
    for command in sub.choices.values():  # `kinestream serve --config F` reads as well as `kinestream --config F serve`
        command.add_argument(
            "--config",
            default=argparse.SUPPRESS,
            help=CONFIG_HELP,
        )
    recover.add_parser(sub)
    config.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = flag_settings(args, load_settings(args.config))
        with showing_log():  # what the library logs, printed as the commands always printed it
            args.func(args, settings)
    except KinestreamError as exc:
        print(f"kinestream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinestream: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
