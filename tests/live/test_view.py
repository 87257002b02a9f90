"""`kinestream view`: live from a real service, playback of its recording, the web viewer in a real browser,
and Rerun's analytics off. Real ZeroMQ on loopback, a real `serve` process, real Rerun, real Chromium."""

from __future__ import annotations

import http.client
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from broker import DEADLINE_S, free_port, wait_until
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.settings import Settings
from served import Served, feed
from viewing import ROOT, Viewing, entity_rows, scalar_curve

try:
    import rerun  # noqa: F401  (the view extra)
except ImportError:
    reason = "rerun-sdk is absent: the view extra, pip install -e '.[view]' (scripts/test installs it)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

ARTEFACTS = ROOT / "tests" / "artefacts"  # kept after the run (gitignored): the browser's screenshot


# ---------------------------------------------------------------- no Rerun, analytics


def test_view_without_rerun_says_how_to_install(tmp_path):
    """With rerun-sdk absent (its import made to fail, as Python does for a module set to None), the command
    says what to install and exits 2."""
    code = (
        "import sys; sys.modules['rerun'] = None\n"
        "from kinestream.commands.main import main\n"
        f"sys.exit(main(['view', '--save', {str(tmp_path / 'x.rrd')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'kinestream[view]'" in done.stderr and "rerun-sdk" in done.stderr


def test_rerun_runs_with_its_analytics_off(tmp_path):
    """A Rerun process started as kinestream starts them reads kinestream's analytics config: no first-run
    notice, and no analytics session file in its data folder (Rerun writes one there whenever it collects)."""
    from kinestream.live.viewers import rerun_binary, rerun_env

    data = tmp_path / "data"
    # Rerun also stays silent when CI is set, whatever its config: the check must not lean on that
    plain = {k: v for k, v in os.environ.items() if k != "CI"}
    env = rerun_env({**plain, "HOME": str(tmp_path), "XDG_DATA_HOME": str(data)})
    web = free_port()
    proc = subprocess.Popen(
        [str(rerun_binary()), "--serve-web", "--bind", "127.0.0.1", "--port", str(free_port())]
        + ["--web-viewer-port", str(web)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = wait_until(lambda: _get(f"http://127.0.0.1:{web}/"), "Rerun's web viewer to answer")
        assert "<canvas" in page
    finally:
        proc.terminate()
        said, _ = proc.communicate(timeout=30)
    assert "collects anonymous usage data" not in said
    assert not list(data.rglob("*.json")), list(data.rglob("*"))


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.read().decode(errors="replace")
    except OSError:
        return None


def test_web_viewer_refuses_to_listen_beyond_loopback_unless_allowed(tmp_path):
    viewer = Viewing(tmp_path, "--web", "--bind", "0.0.0.0", "--web-port", str(free_port()))
    try:
        wait_until(lambda: viewer.proc.poll() is not None, "the viewer to refuse and exit", 60)
    finally:
        code, _ = viewer.stop()  # a viewer that did not refuse is stopped, its Rerun process with it
    said = "\n".join(viewer.lines)
    assert code == 2, said
    assert "would listen beyond this machine" in said and "service.allow_remote" in said


# ---------------------------------------------------------------- the web viewer's relays, on the wire


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """`view TRIAL.trc --web` serving on two loopback ports until the module is done: (viewer, web, grpc)."""
    from kinestream.synth import synthesize

    tmp = tmp_path_factory.mktemp("web")
    trc = synthesize(tmp / "syn", seconds=5.0, seed=7).keypoints_trc
    web_port, grpc_port = free_port(), free_port()
    viewer = Viewing(tmp, str(trc), "--web", "--web-port", str(web_port), "--grpc-port", str(grpc_port))
    try:
        viewer.wait_for(lambda line: "keeps serving" in line, "the web viewer to serve")
        yield viewer, web_port, grpc_port
    finally:
        code, _ = viewer.stop()
    assert code == 0, viewer.lines[-10:]


def _exchange(port: int, request: bytes) -> bytes:
    """What the server on ``port`` answers to ``request`` sent as raw bytes, up to its closing the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(1 << 16):
            answer += chunk
    return answer


HOSTILE = [
    b"GET @x HTTP/1.0\r\n\r\n",  # once relayed as http://127.0.0.1:PORT@x: another host
    b"GET 0 HTTP/1.0\r\n\r\n",  # http://127.0.0.1:PORT0: a port that is no number
    "GET /\u00e9t\u00e9 HTTP/1.0\r\n\r\n".encode(),  # a path that is not ASCII
    b"GET http://evil.example/ HTTP/1.0\r\n\r\n",  # a proxy's request
    b"GET /\x7f HTTP/1.0\r\n\r\n",
    b"HEAD @x HTTP/1.0\r\n\r\n",
]


def test_web_viewer_answers_hostile_requests_with_an_http_error_and_no_traceback(web):
    """Requests that are not a plain path get a 4xx status line on both ports (the page's and the recording's),
    and the viewer prints nothing about them; the page still loads after."""
    viewer, web_port, grpc_port = web
    for port in (web_port, grpc_port):
        for request in HOSTILE + [
            b"POST /x HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n",
            b"POST /x HTTP/1.0\r\nContent-Length: -1\r\n\r\n",
            b"POST /x HTTP/1.0\r\nContent-Length: many\r\n\r\n",
            b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ]:
            status = _exchange(port, request).split(b"\r\n", 1)[0]
            assert re.fullmatch(rb"HTTP/1\.[01] 4\d\d .+", status), (port, request, status)
    assert _get(f"http://127.0.0.1:{web_port}/") is not None
    said = "\n".join(viewer.lines)
    assert "Traceback" not in said and "Exception" not in said, said[-2000:]


def test_web_viewer_serves_a_bounded_number_of_connections_and_refuses_more_with_503(web):
    """Connections that send nothing hold the relay's every slot: one more is answered 503 at once, not given a
    thread; once they close, the page loads again."""
    from kinestream.live.viewers import MAX_CONNECTIONS

    viewer, web_port, _ = web
    holders = [socket.create_connection(("127.0.0.1", web_port), timeout=DEADLINE_S) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection(("127.0.0.1", web_port), timeout=DEADLINE_S) as extra:
            status = extra.recv(1 << 16).split(b"\r\n", 1)[0]
        assert status == b"HTTP/1.0 503 Service Unavailable", status
    finally:
        for sock in holders:
            sock.close()
    wait_until(lambda: _get(f"http://127.0.0.1:{web_port}/"), "the page to load once the holders are gone")
    assert "Traceback" not in "\n".join(viewer.lines)


def test_a_recording_stream_the_page_leaves_frees_its_connection(web):
    """A page that goes away (closed, reloaded) while its recording stream idles (a playback sent whole) gives
    its connection back: streams opened and dropped to the bound, the relay serves again."""
    from kinestream.live.viewers import MAX_CONNECTIONS

    viewer, web_port, grpc_port = web
    read = (
        b"POST /rerun.sdk_comms.v1alpha1.MessageProxyService/ReadMessages HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{grpc_port}\r\nOrigin: http://127.0.0.1:{web_port}\r\n".encode()
        + b"Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: 5\r\n\r\n\0\0\0\0\0"
    )
    streams = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", grpc_port), timeout=DEADLINE_S)
            streams.append(sock)
            sock.sendall(read)
            assert sock.recv(64).startswith(b"HTTP/1.0 200 OK")  # the recording flows, then the stream idles
    finally:
        for sock in streams:
            sock.close()

    def served() -> bool:
        return not _exchange(grpc_port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 503")

    wait_until(served, "the relay to serve again once the streams' pages are gone")
    assert "Traceback" not in "\n".join(viewer.lines)


def _preflight(port: int, origin: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    try:
        conn.request(
            "OPTIONS",
            "/rerun.sdk_comms.v1alpha1.MessageProxyService/ReadMessages",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-grpc-web",
            },
        )
        answer = conn.getresponse()
        answer.read()
        return answer.status, answer.getheader("Access-Control-Allow-Origin")
    finally:
        conn.close()


def test_web_viewer_s_recording_is_readable_from_its_own_page_only(web):
    """The browser asks the gRPC port before reading the recording (a CORS preflight). Only the page kinestream
    serves gets a yes: another site, a page on another loopback port and rerun.io (which Rerun's own server
    always allows) get none, so a page the user visits cannot read the pose. The page's CSP lets it reach that
    gRPC port at the addresses served, and no other server a ?url= could name."""
    _, web_port, grpc_port = web
    others = (
        "http://evil.example",
        f"http://evil.example:{web_port}",
        f"http://127.0.0.1:{free_port()}",
        "http://localhost:8000",
        "https://rerun.io",
        "null",
    )
    answers = {origin: _preflight(grpc_port, origin) for origin in others}
    assert {o: allowed for o, (_, allowed) in answers.items() if allowed is not None} == {}  # no page may read
    assert {status for status, _ in answers.values()} == {403}
    for origin in (f"http://127.0.0.1:{web_port}", f"http://localhost:{web_port}"):
        assert _preflight(grpc_port, origin) == (204, origin)
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=DEADLINE_S) as answer:
        csp = answer.headers["Content-Security-Policy"]
    connect = next(d for d in csp.split(";") if d.strip().startswith("connect-src")).split()[1:]
    assert connect == ["'self'", f"http://127.0.0.1:{grpc_port}", f"http://localhost:{grpc_port}"], csp


def test_a_web_viewer_beyond_loopback_is_said_to_be_plain_http_even_with_curve(caplog):
    """Allowed beyond loopback, the web viewer serves the pose in plain HTTP: the warning says so, CURVE on or
    off (CURVE covers the ZeroMQ links, not the viewer). Its recording answers the page at the addresses it
    is served at, nothing wider."""
    from kinestream.live.transport import check_bind

    settings = Settings().override({"service": {"allow_remote": True}, "curve": {"enabled": True}})
    with caplog.at_level("WARNING", logger="kinestream.live.transport"):
        check_bind("tcp://0.0.0.0:9090", settings, "web viewer", plain=True)
        check_bind("tcp://127.0.0.1:9090", settings, "web viewer", plain=True)  # loopback: nothing to say
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "0.0.0.0:9090 in plain HTTP" in said[0] and "CURVE" in said[0], said
    from kinestream.live.viewers import page_hosts

    hosts = page_hosts("0.0.0.0")
    assert hosts[:2] == ["127.0.0.1", "localhost"] and len(hosts) == 3 and "*" not in hosts[2]
    assert page_hosts("192.0.2.10") == ["127.0.0.1", "localhost", "192.0.2.10"]


# ---------------------------------------------------------------- live


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The demo's kind of trial (a synthetic squat session, 5 mm noise, gaps) replayed in real time into a
    `serve` process that records it, while `view --save` records what it shows. Everything the tests read."""
    from kinestream.synth import synthesize

    tmp = tmp_path_factory.mktemp("view")
    syn = synthesize(tmp / "synth", seconds=10.0, noise_mm=5.0, gaps=6)
    record, rrd = tmp / "session.mot", tmp / "live.rrd"
    served = Served(tmp, "--record", str(record), "--mass", f"{syn.mass}", "--height", f"{syn.height}")
    viewer = None
    try:
        served.status()  # up
        viewer = Viewing(tmp, "--endpoint", served.out, "--save", str(rrd))
        viewer.wait_for(lambda line: "the service has published" in line, "the viewer to hear the service")
        served.status_when(lambda s: s["pose"]["subscribed"], "the service to see the viewer's pose subscription")
        sent = feed(read_trc(syn.keypoints_trc), served.src)
        final = served.settled()
        published = final["frames_out"]
        viewer.wait_for(
            lambda line: f"{published} angle frames" in line and f"published {published} frames" in line,
            f"the viewer to have all {published} frames",
        )
        code, out = viewer.stop()
        assert code == 0, viewer.lines[-10:]
    finally:
        if viewer is not None and viewer.proc.poll() is None:
            viewer.stop()
        served_code, _ = served.stop()
    assert served_code == 0
    return {"syn": syn, "sent": sent, "final": final, "record": record, "rrd": rrd, "tmp": tmp, "viewer_out": out}


@pytest.mark.slow
def test_live_view_records_every_frame_the_knee_curve_and_each_rep(live):
    final, rows = live["final"], entity_rows(live["rrd"])
    published = final["frames_out"]
    assert live["sent"] == final["frames_in"] and published + final["skipped"] == final["frames_in"]
    assert f"{published} angle frames, {published} poses" in live["viewer_out"]
    # one keypoint frame (and one of markers and joint centres) per published frame
    for entity in ("/world/keypoints", "/world/keypoints/skeleton", "/world/markers", "/world/model/joints"):
        assert len(rows[entity]) == published, entity
    assert len(rows["/world/keypoints"][0][1]) == 20 and len(rows["/world/markers"][0][1]) == 43
    # the knee curve is the recording's, within float32
    motion = read_mot(live["record"])
    for k, side in enumerate(("r", "l")):  # one entity, the right then the left knee
        t, knee = scalar_curve(rows, "/angles/knee", k)
        np.testing.assert_allclose(t, motion.time, atol=1e-6)
        np.testing.assert_allclose(knee, motion.get(f"knee_angle_{side}"), rtol=2**-23, atol=1e-7)
    # one rep event per rep: as many as the service counted and the session has squats
    reps = rows["/reps"]
    assert len(reps) == final["reps"] == len(live["syn"].squats) >= 2
    assert len(rows["/angles/knee/reps"]) == len(reps)
    assert all(text[0].startswith(f"rep {i + 1} (squat): depth") for i, (_, text) in enumerate(reps))
    assert rows["/status"] and rows["/status/latency_p99_ms"]
    print(f"\nlive view: {published} frames, {len(reps)} reps in {live['rrd']} ({live['rrd'].stat().st_size} bytes)")


@pytest.mark.slow
def test_playback_gives_the_entities_of_the_live_view(live):
    """`view SESSION.mot --save` (its _markers.trc beside it, the service's model) holds the live view's
    entities, but for the service's status, which a file does not have; and the same knee curve."""
    from kinestream.assets import get_assets

    played = live["tmp"] / "played.rrd"
    viewer = Viewing(
        live["tmp"], str(live["record"]), "--model", str(get_assets().generic_model), "--save", str(played)
    )
    code, out = _finished(viewer)
    assert code == 0, viewer.lines[-10:]
    rows, live_rows = entity_rows(played), entity_rows(live["rrd"])
    live_entities = {e for e in live_rows if not e.startswith("/status")}
    assert set(rows) == live_entities
    motion = read_mot(live["record"])
    assert len(rows["/world/keypoints"]) == len(rows["/world/model/joints"]) == len(motion.time)
    np.testing.assert_allclose(
        scalar_curve(rows, "/angles/knee")[1], scalar_curve(live_rows, "/angles/knee")[1], rtol=2**-23, atol=1e-7
    )
    assert len(rows["/reps"]) == len(live_rows["/reps"])
    # a trial's .trc: its keypoints and their connections, nothing else
    trial = live["tmp"] / "trial.rrd"
    code, _ = _finished(Viewing(live["tmp"], str(live["syn"].keypoints_trc), "--save", str(trial)))
    assert code == 0
    assert set(entity_rows(trial)) == {"/world/keypoints", "/world/keypoints/skeleton"}
    print(f"\nplayback: {len(motion.time)} frames; entities {sorted(rows)}")


def _finished(viewer: Viewing) -> tuple[int, str]:
    """A playback to a file ends by itself."""
    out, _ = viewer.proc.communicate(timeout=300)
    viewer._reader.join(10)
    return viewer.proc.returncode, out


# ---------------------------------------------------------------- the web viewer in a browser


RIGHT, LEFT = np.array([230, 80, 60]), np.array([60, 130, 230])  # the right and left curves' colours


@pytest.mark.slow
def test_web_viewer_renders_in_chromium_and_sends_nothing_elsewhere(live):
    """`view SESSION.mot --web` serves Rerun's web viewer; headless Chromium loads it and shows the recording:
    the viewer's canvas is there, the page is not blank and the knee curves are drawn in their colours. The
    page reaches no other host: Rerun's analytics, GitHub's release check and Google's fonts are refused."""
    from matplotlib import image

    from browser import Chromium

    web, grpc = free_port(), free_port()
    viewer = Viewing(live["tmp"], str(live["record"]), "--web", "--web-port", str(web), "--grpc-port", str(grpc))
    try:
        line = viewer.wait_for(lambda line: line.startswith("the web viewer: "), "the web viewer's address")
        viewer.wait_for(lambda line: "keeps serving" in line, "the session to be sent")
        url = line.split(": ", 1)[1]
        assert url.startswith(f"http://127.0.0.1:{web}/?url=")
        with Chromium() as browser:
            page = browser.open(url)
            seen: dict = {}

            def rendered() -> bool:
                png = page.screenshot()
                rgb = (image.imread(io.BytesIO(png), format="png")[..., :3] * 255).astype(int)
                seen.update(
                    png=png,
                    canvas=page.evaluate("document.querySelectorAll('canvas').length"),
                    spread=float(rgb.std()),
                    right=int((np.abs(rgb - RIGHT).sum(-1) < 40).sum()),
                    left=int((np.abs(rgb - LEFT).sum(-1) < 40).sum()),
                )
                return seen["canvas"] >= 1 and seen["spread"] > 20 and seen["right"] > 300 and seen["left"] > 300

            started = time.monotonic()
            wait_until(rendered, lambda: f"the viewer to draw the session; last seen {dict(seen, png=None)}", 180)
            took = time.monotonic() - started
            ARTEFACTS.mkdir(exist_ok=True)
            shot = ARTEFACTS / "web_viewer.png"
            shot.write_bytes(seen["png"])
            print(f"\nthe web viewer rendered in {took:.0f} s; screenshot: {shot}")
            requested = page.requested()
            blocked = {
                e["params"]["requestId"]
                for e in browser.events
                if e.get("method") == "Network.loadingFailed" and e["params"].get("blockedReason") == "csp"
            }
            sent_out = [
                e["params"]["request"]["url"]
                for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"
                and not e["params"]["request"]["url"].startswith(("http://127.0.0.1", "data:", "blob:"))
                and e["params"]["requestId"] not in blocked
            ]
            assert sent_out == [], sent_out
            assert any(u.startswith(f"http://127.0.0.1:{web}/") for u in requested)
    finally:
        code, _ = viewer.stop()
    assert code == 0


# ---------------------------------------------------------------- CURVE


def test_live_view_reads_with_an_authorized_key_only(tmp_path):
    """The viewer's core subscribes as any subscriber does: with an authorized CURVE key it gets every frame
    (angles and pose), with a key the service does not know it gets nothing and is counted as refused."""
    import asyncio
    import uuid

    import rerun as rr

    from broker import until
    from kinestream.live.replay import replay
    from kinestream.live.service import Service
    from kinestream.live.transport import client_settings, make_keys
    from kinestream.live.view import LiveView, RerunLog
    from kinestream.synth import synthesize

    keys = tmp_path / "keys"
    make_keys(keys, "service")
    for name in ("camera", "viewer"):
        make_keys(keys, name, authorize=True)
    make_keys(keys, "intruder")
    settings = Settings().override(
        {
            "service": {"latest_wins": False},  # every frame answered: counts are exact
            "curve": {
                "enabled": True,
                "secret_key": str(keys / "service.key_secret"),
                "authorized": str(keys / "authorized"),
            },
        }
    )
    table = read_trc(synthesize(tmp_path / "syn", seconds=5.0, seed=4).keypoints_trc).frames(0, 60)

    def holding(name: str) -> Settings:
        return client_settings(str(keys / f"{name}.key_secret"), str(keys / "service.key"))

    async def run():
        src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        service = Service(settings, input_endpoint=src, output_endpoint=out, status_interval=0.2)
        stop, ready = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(service.run(stop, ready))
        await ready.wait()
        views, tasks, recs = {}, [], []
        for name in ("viewer", "intruder"):
            rec = rr.RecordingStream("kinestream-test", recording_id=uuid.uuid4())
            rec.save(str(tmp_path / f"{name}.rrd"))
            log = RerunLog(rec)
            log.setup(live=True)
            views[name] = LiveView(log)
            tasks.append(asyncio.create_task(views[name].run(out, holding(name), stop)))
            recs.append(rec)
        m = service.metrics
        await until(
            lambda: views["viewer"].counts.status and service.status()["pose"]["subscribed"],
            lambda: f"the viewer in; {service.status()}",
        )
        await until(lambda: m.refused.get("output", 0) >= 1, lambda: f"the intruder refused; {service.status()}")
        sent = await replay(table, src, rate=float("inf"), wait_subscriber=30.0, settings=holding("camera"))
        await until(
            lambda: views["viewer"].counts.angles == sent == views["viewer"].counts.pose,
            lambda: f"{sent} frames at the viewer; it has {views['viewer'].counts}",
        )
        stop.set()
        await serving
        await asyncio.gather(*tasks)
        for rec in recs:
            rec.flush()
            rec.disconnect()
        return sent, views

    sent, views = asyncio.run(run())
    assert sent == 60 and views["viewer"].counts.rejected == 0
    intruder = views["intruder"].counts
    assert (intruder.angles, intruder.pose, intruder.reps, intruder.status) == (0, 0, 0, 0)
    assert len(entity_rows(tmp_path / "viewer.rrd")["/world/keypoints"]) == 60
    assert "/world/keypoints" not in entity_rows(tmp_path / "intruder.rrd")


# ---------------------------------------------------------------- the demo


@pytest.mark.slow
def test_demo_view_records_the_demo_session(tmp_path):
    """`kinestream demo --view FILE.rrd`: the viewer runs beside the demo's service and records the session."""
    from kinestream.commands.demo import run_demo

    settings = Settings().override(
        {"service": {"input": f"tcp://127.0.0.1:{free_port()}", "output": f"tcp://127.0.0.1:{free_port()}"}}
    )
    rrd = tmp_path / "demo.rrd"
    final = run_demo(settings, tmp_path, seconds=6.0, rate=1.0, view=str(rrd))
    rows = entity_rows(rrd)
    motion = read_mot(tmp_path / "session.mot")
    assert len(rows["/angles/knee"]) == len(motion.time) > 300
    assert len(rows["/world/keypoints"]) == final["frames_out"]
    assert len(rows["/reps"]) == final["reps"] >= 1
