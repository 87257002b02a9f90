"""The live commands: serve, calibrate, keys."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

from kinestream.commands.common import log_to_stderr, subject
from kinestream.commands.terminal import PROMPTS, show, status_printer, workers_line
from kinestream.errors import KinestreamError
from kinestream.files.c3d import trc_to_c3d
from kinestream.files.mot import read_mot
from kinestream.live import STOP_SIGNALS
from kinestream.plots import plot_angles
from kinestream.settings import Settings


async def _serve(args, settings: Settings):
    from kinestream.live.calibrate import calibrate
    from kinestream.live.service import Service

    if getattr(args, "people", None) is not None:  # --people: new settings with that share
        settings = settings.override({"service": {"people": args.people}})
    svc = settings.service
    model, calibrating = args.model, None
    if getattr(args, "calibrate", False):
        mass, height = subject(args, settings)
        out = Path(args.calibration_out or "out/calibration/scaled.osim")
        model = await calibrate(
            settings, input_endpoint=args.input or svc.input, mass=mass, height=height, out_model=out
        )
        settings, calibrating = _calibrate_the_rest(settings, model)
    service = Service(
        settings,
        input_endpoint=args.input or svc.input,
        output_endpoint=args.output or svc.output,
        mqtt=args.mqtt or settings.mqtt.broker or None,
        record=args.record,
        model=model,
        mass=args.mass,
        height=args.height,
        status_out=status_printer(),
        calibrate=calibrating,
    )
    final = await service.run()
    print(file=sys.stderr)
    return service, final


def _calibrate_the_rest(settings: Settings, model: Path) -> tuple[Settings, Path]:
    """The settings and the calibration folder for everyone after the first person serve --calibrate calibrated.

    That person keeps ``model`` (new settings with a ``[people]`` entry when they named themselves); everyone
    else new is calibrated from their own still pose (the folder their models go to, beside it:
    <folder>/<subject>/scaled.osim).
    """
    from kinestream.live.calibrate import load_subject

    whose = load_subject(model).get("subject")
    if whose:
        settings = settings.override({"people": {whose: {"model": str(model)}}}, "serve --calibrate")
    return settings, Path(model).parent


def recording_c3d(record, settings: Settings, markers=None) -> Path | None:
    """After a session: the recorded markers (RECORD_markers.trc, or ``markers``) as RECORD_markers.c3d.

    Only when [output] c3d is on (``settings.output.c3d``).

    Read back from the .trc, frames put on an even time grid (live time stamps jitter); a recording the
    format cannot hold gets one line on stderr and no .c3d. The .mot and .trc are only read.
    """
    markers = Path(markers) if markers else Path(record).with_name(Path(record).stem + "_markers.trc")
    if not settings.output.c3d or not markers.is_file():
        return None
    try:
        path, note = trc_to_c3d(markers)
    except KinestreamError as exc:
        print(f"kinestream: no .c3d of {markers} (the .mot and .trc are complete): {exc}", file=sys.stderr)
        return None
    print(f"wrote {path}" + (f": {note}" if note else ""))
    return path


def _finish_recording(record, settings: Settings, truth=None, markers=None) -> None:
    """A recording's angle plot and .c3d (``markers``: its _markers.trc, when not beside it by name)."""
    if not record:
        return

    record = Path(record)
    if record.is_file():
        motion = read_mot(record)
        if len(motion.time):
            png = record.with_name(record.stem + "_angles.png")
            plot_angles(motion, png, title=record.stem, truth=truth)
            print(f"wrote {record} ({len(motion.time)} frames) and {png}")
    recording_c3d(record, settings, markers)


def _finish_recordings(service, settings: Settings) -> None:
    """Every recording of the session: one per person (the default person's is the --record file itself)."""
    for mot, markers in service.recordings():
        _finish_recording(mot, settings, markers=markers)


def run_worker(k: int, n: int, args, settings: Settings, inputs: list[str], output: str, model, calibrating) -> None:
    """Worker k of ``serve --workers n``: a service serving whoever the parent's router sends it.

    It listens on the parent-private ipc endpoints (``inputs[k]`` in, ``output`` the relay's); its recordings are
    finished as serve finishes them. The first worker has the default person (frames without a subject). Exit status 1
    when it stopped itself.
    """
    import asyncio
    import json

    from kinestream.live.service import Service

    logging.basicConfig(level=logging.INFO, format=f"kinestream worker {k}/{n}: %(message)s", stream=sys.stderr)
    # Stopping is asked for twice: by SIGTERM (or Ctrl-C) to the whole process group, then by the parent. Outside
    # the service's run (starting, winding down) a signal only notes it, so the second never cuts a worker short.
    asked = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: asked.set())
    private = {"service": {"people": "", "bind_input": False}, "curve": {"enabled": False}}
    settings = settings.override(private, "a worker")  # the router chose whom it sends; the links are private ipc
    service = Service(
        settings,
        input_endpoint=inputs[k],
        output_endpoint=output,
        output_connect=True,
        worker=f"{k}/{n}",
        default_person=k == 0,
        mqtt=args.mqtt or settings.mqtt.broker or None,
        record=args.record,
        model=model,
        mass=args.mass,
        height=args.height,
        calibrate=calibrating,
    )

    async def serve() -> dict:
        stop = asyncio.Event()
        # run() takes the signals before its first await: a stop asked for before then is seen here, after it
        asyncio.get_running_loop().call_soon(lambda: stop.set() if asked.is_set() else None)
        return await service.run(stop)

    final = asyncio.run(serve())
    print(json.dumps(final), flush=True)
    _finish_recordings(service, settings)
    sys.exit(0 if final.get("healthy", True) else 1)


def _serve_workers(args, settings: Settings) -> None:
    """``serve --workers N``: N worker processes (:func:`run_worker`) behind the parent's input and output.

    They run until Ctrl-C or SIGTERM; a worker that ends is started again. Exit status 1 when one kept ending.
    """
    import asyncio
    import json

    from kinestream.live.calibrate import calibrate
    from kinestream.live.workers import Front, Workers, check_workers

    n = check_workers(args.workers)
    show(PROMPTS, "stdout")  # what --calibrate tells the person, as the calibrate command tells it
    if getattr(args, "people", None) is not None:  # the parent's router serves that share, the workers whom it sends
        settings = settings.override({"service": {"people": args.people}})
    svc = settings.service
    input_endpoint = args.input or svc.input
    model, calibrating = args.model, None
    if getattr(args, "calibrate", False):
        mass, height = subject(args, settings)
        out = Path(args.calibration_out or "out/calibration/scaled.osim")
        model = asyncio.run(calibrate(settings, input_endpoint=input_endpoint, mass=mass, height=height, out_model=out))
        settings, calibrating = _calibrate_the_rest(settings, model)
    front = Front(settings, input_endpoint, args.output or svc.output, n)
    front.open()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    status_line = status_printer()
    log = logging.getLogger("kinestream.live.workers")
    shown = time.monotonic()
    workers = Workers(n, run_worker, (args, settings, front.router.inner, front.relay.inner, model, calibrating))
    try:
        workers.start()
        while not stop.is_set() and workers.healthy:
            front.pump(0.05)
            if stop.is_set():  # a worker ending now was stopped with us (SIGTERM to the group), not lost
                break
            for line in workers.check():
                log.warning(line)
            if time.monotonic() - shown >= 1.0 and front.relay.statuses:
                shown = time.monotonic()
                status_line(workers_line(front.relay.statuses, n, front.router.status()))
    finally:
        codes = workers.stop()
        front.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(file=sys.stderr)
    final = {"workers": n, "exit_status": codes, "restarts": workers.restarts, "healthy": workers.healthy}
    print(json.dumps({**final, **front.router.status()}))
    # A worker ended by the stop signal itself had not started serving (before that it takes the signal as a
    # request to stop, and ends with 0): stopped, not failed.
    stopped = (0, None, -signal.SIGTERM, -signal.SIGINT)
    if not workers.healthy or any(code not in stopped for code in codes):
        print("kinestream: error: a worker kept ending (see the log above); exit status 1", file=sys.stderr)
        sys.exit(1)


def cmd_serve(args, settings: Settings) -> None:
    import asyncio
    import json

    log_to_stderr()
    if getattr(args, "workers", None):
        _serve_workers(args, settings)
        return
    service, final = asyncio.run(_serve(args, settings))
    print(json.dumps(final))
    _finish_recordings(service, settings)
    if not final.get("healthy", True):
        print(
            "kinestream: error: the service stopped itself: a task kept failing (see the log above); exit "
            "status 1 so that a supervisor starts it again",
            file=sys.stderr,
        )
        sys.exit(1)


def cmd_calibrate(args, settings: Settings) -> None:
    import asyncio

    from kinestream.live.calibrate import calibrate

    log_to_stderr()
    show(PROMPTS, "stdout")  # what the person is told, on stdout; the service's log on stderr
    mass, height = subject(args, settings)
    asyncio.run(
        calibrate(
            settings,
            input_endpoint=args.input or settings.service.input,
            mass=mass,
            height=height,
            out_model=args.out,
            timeout_s=args.timeout,
        )
    )


def cmd_keys(args, settings: Settings) -> None:
    from kinestream.live.transport import make_keys

    public, secret = make_keys(args.dir, args.name, authorize=args.authorize, force=args.force)
    print(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it here)")
    if args.authorize:
        print(f"authorized: {Path(args.dir) / 'authorized' / public.name} (the service reads this folder at start)")
