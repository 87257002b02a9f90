"""Who may talk to the service: loopback by default, CURVE keys on ZeroMQ, a password and TLS on MQTT.

Real sockets throughout: the service with its ZAP authenticator, replays and
subscribers holding the right, the wrong or no key, a mosquitto broker with a
password file and a TLS listener.
"""

import asyncio
import json

import pytest
import zmq
import zmq.asyncio

from broker import Broker, free_port, tls_with_password, until
from kinestream.commands.main import main
from kinestream.errors import SettingsError
from kinestream.files.trc import read_trc
from kinestream.live.messages import decode_angles
from kinestream.live.replay import replay
from kinestream.live.service import Service
from kinestream.live.transport import Access, client_settings, is_loopback, make_keys, open_input, secure_client
from kinestream.settings import CurveSettings, Settings

FRAMES = 90


@pytest.fixture(scope="module")
def session(synth_trial):
    return synth_trial(seconds=5.0, noise_mm=5.0, seed=5)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    make_keys(d, "service")
    for name in ("camera", "headset"):
        make_keys(d, name, authorize=True)
    make_keys(d, "intruder")  # a valid key pair the service was never told about
    return d


def server_settings(keys):
    return Settings().override(
        {
            "service": {"latest_wins": False},  # every frame answered: counts are exact
            "curve": {
                "enabled": True,
                "secret_key": str(keys / "service.key_secret"),
                "authorized": str(keys / "authorized"),
            },
        }
    )


def client(keys, name):
    """A client's settings: its own pair and the service's public key (name None: no CURVE)."""
    if name is None:
        return Settings()
    return client_settings(str(keys / f"{name}.key_secret"), str(keys / "service.key"))


async def listen(ctx, endpoint, settings, got: list):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    secure_client(sub, settings.curve)
    sub.connect(endpoint)
    try:
        while True:
            got.append(await sub.recv_multipart())
    finally:
        sub.close(0)


def test_only_authorized_keys_read_angles_or_send_frames(session, keys):
    table = read_trc(session.keypoints_trc).frames(0, FRAMES)

    async def run():
        src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        service = Service(
            server_settings(keys),
            input_endpoint=src,
            output_endpoint=out,
            mass=session.mass,
            height=session.height,
            status_interval=0.2,
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(service.run(stop, ready))
        await ready.wait()
        ctx = zmq.asyncio.Context()
        got = {name: [] for name in ("headset", "intruder", "plain")}
        listeners = [
            asyncio.create_task(listen(ctx, out, client(keys, name if name != "plain" else None), got[name]))
            for name in got
        ]
        m = service.metrics
        # the headset is in once a status reaches it; the two strangers once both were turned away
        await until(
            lambda: any(topic == b"status" for topic, _ in got["headset"]) and m.refused.get("output", 0) >= 2,
            lambda: f"the listeners in or refused; {service.status()}",
        )
        # sources the service does not know: their frames never reach the decoder (the replays wait their
        # 1.5 s for a subscriber in vain, then send into a link that carries nothing)
        intruded = await replay(table, src, rate=4.0, wait_subscriber=1.5, settings=client(keys, "intruder"))
        plain = await replay(table, src, rate=4.0, wait_subscriber=1.5)
        await until(lambda: m.refused.get("input", 0) >= 2, lambda: f"both sources refused; {service.status()}")
        before = m.frames_in
        # the authorized camera
        sent = await replay(table, src, rate=2.0, wait_subscriber=30.0, settings=client(keys, "camera"))
        await until(
            lambda: m.frames_out == sent and len([p for topic, p in got["headset"] if topic == b"angles"]) == sent,
            lambda: f"{sent} frames answered and their angles at the headset; {service.status()}",
        )
        stop.set()
        final = await serving
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        ctx.term()
        return intruded, plain, before, sent, final, got

    intruded, plain, before, sent, final, got = asyncio.run(run())
    assert intruded == plain == FRAMES  # both sent every frame into a link that carried none
    assert before == 0  # not one injected frame was decoded
    assert final["frames_in"] == sent == FRAMES and final["frames_out"] == FRAMES
    assert sum(final["rejected"].values()) == 0
    angles = [p for topic, p in got["headset"] if topic == b"angles"]
    assert len(angles) == FRAMES and [decode_angles(p)["seq"] for p in angles] == list(range(FRAMES))
    assert any(topic == b"status" for topic, _ in got["headset"])
    assert got["intruder"] == [] and got["plain"] == []  # no angles, no status, nothing
    assert final["curve"] is True
    assert final["refused"]["input"] >= 2 and final["refused"]["output"] >= 2  # each stranger was turned away


def test_sockets_stay_on_loopback_unless_the_config_allows(session, keys):
    for endpoint in ("tcp://127.0.0.1:5556", "tcp://localhost:5556", "tcp://[::1]:5556", "ipc:///tmp/ks.sock"):
        assert is_loopback(endpoint), endpoint
    for endpoint in ("tcp://*:5556", "tcp://0.0.0.0:5556", "tcp://192.168.1.20:5556", "tcp://eth0:5556"):
        assert not is_loopback(endpoint), endpoint
    settings = Settings()
    remote = f"tcp://0.0.0.0:{free_port()}"
    with pytest.raises(SettingsError) as info:
        Service(settings, input_endpoint="tcp://127.0.0.1:1", output_endpoint=remote)
    assert (info.value.key, info.value.given) == ("service.allow_remote", remote)
    settings = settings.override({"service": {"bind_input": True}})

    ctx = zmq.Context()
    try:
        with pytest.raises(SettingsError) as info:
            open_input(ctx, settings, remote)
        assert (info.value.key, info.value.given) == ("service.allow_remote", remote)
        # On loopback too, a bound input without CURVE is refused (any local process could connect and send a
        # message of endless parts), unless allowed in so many words.
        local = f"tcp://127.0.0.1:{free_port()}"
        with pytest.raises(SettingsError) as info:
            open_input(ctx, settings, local)
        assert (info.value.key, info.value.given) == ("service.bind_input", local)
        open_input(ctx, settings.override({"service": {"allow_plain_input": True}}), local).close(0)
        settings = settings.override({"service": {"allow_plain_input": False, "allow_remote": True}})
        # Without CURVE, still refused: any peer could send a message of endless parts, which ZeroMQ buffers whole.
        with pytest.raises(SettingsError) as info:
            open_input(ctx, settings, remote)
        assert (info.value.key, info.value.given) == ("curve.enabled", remote)
        settings = settings.override(
            {
                "curve": {
                    "enabled": True,
                    "secret_key": str(keys / "service.key_secret"),
                    "authorized": str(keys / "authorized"),
                }
            }
        )
        access = Access.from_settings(settings.curve)
        assert access is not None
        access.start(ctx)
        try:
            sock = open_input(ctx, settings, remote, access)  # with CURVE, allowed
            sock.close(0)
        finally:
            access.stop()
    finally:
        ctx.term()


def test_curve_settings_say_what_is_missing(keys, tmp_path):

    base = {"enabled": True, "secret_key": str(keys / "service.key_secret"), "authorized": str(keys / "authorized")}
    cases = [
        ({"secret_key": ""}, "curve.secret_key", ""),
        ({"secret_key": str(tmp_path / "nope.key_secret")}, "curve.secret_key", tmp_path / "nope.key_secret"),
        ({"secret_key": str(keys / "service.key")}, None, keys / "service.key"),  # a public key: the file is at fault
        ({"authorized": str(tmp_path)}, "curve.authorized", tmp_path),
    ]
    for change, key, given in cases:
        with pytest.raises(SettingsError) as info:
            Access.from_settings(CurveSettings(**{**base, **change}))
        assert (info.value.key, info.value.given) == (key, given)
    assert Access.from_settings(CurveSettings(**{**base, "enabled": False})) is None
    access = Access.from_settings(CurveSettings(**base))
    assert access is not None and access.peers == 2
    with pytest.raises(SettingsError) as info:
        client_settings(str(keys / "camera.key_secret"), None)
    assert info.value.key == "--server-key"
    sock = zmq.Context.instance().socket(zmq.SUB)
    with pytest.raises(SettingsError) as info:
        secure_client(sock, CurveSettings(enabled=True, secret_key=str(keys / "camera.key_secret")))
    assert (info.value.key, info.value.given) == ("curve.server_key", "")
    sock.close(0)


def test_keys_command_writes_a_private_pair_and_will_not_overwrite(tmp_path, capsys):
    assert main(["keys", str(tmp_path), "--name", "camera1", "--authorize"]) == 0
    assert (tmp_path / "camera1.key").is_file() and (tmp_path / "authorized" / "camera1.key").is_file()
    assert (tmp_path / "camera1.key_secret").stat().st_mode & 0o077 == 0  # readable by its owner only
    first = (tmp_path / "camera1.key_secret").read_bytes()
    assert main(["keys", str(tmp_path), "--name", "camera1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "camera1.key_secret").read_bytes() == first
    assert main(["keys", str(tmp_path), "--name", "../x"]) == 2


def test_the_service_publishes_over_mqtt_with_tls_and_a_password_only(session):
    """The [mqtt] settings reach the broker: the right password delivers, a wrong one costs MQTT, not the service."""
    import aiomqtt

    table = read_trc(session.keypoints_trc).frames(0, FRAMES)
    with Broker() as broker:
        ca = tls_with_password(broker)
        broker.start()

        async def run(password):
            settings = Settings().override(
                {
                    "service": {"latest_wins": False},
                    "mqtt": {"username": "coach", "password": password, "tls": True, "ca_file": str(ca)},
                }
            )
            src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
            service = Service(
                settings,
                input_endpoint=src,
                output_endpoint=out,
                mass=session.mass,
                height=session.height,
                mqtt=broker.endpoint,
            )
            stop, ready = asyncio.Event(), asyncio.Event()
            serving = asyncio.create_task(service.run(stop, ready))
            await ready.wait()
            received, subscribed = [], asyncio.Event()

            async def subscribe():
                import ssl

                tls = aiomqtt.TLSParameters(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
                async with aiomqtt.Client(
                    "127.0.0.1", broker.port, username="coach", password="squat", tls_params=tls
                ) as c:
                    await c.subscribe("kinestream/+/angles")
                    subscribed.set()
                    async for message in c.messages:
                        received.append(json.loads(message.payload))

            listener = asyncio.create_task(subscribe())
            await until(subscribed.is_set, "the MQTT subscriber's subscription")
            sent = await replay(table, src, rate=2.0, wait_subscriber=30.0)
            if password == "squat":  # every angle delivered
                await until(
                    lambda: service.metrics.frames_out == sent and len(received) == sent,
                    lambda: f"{sent} angle messages at the subscriber, got {len(received)}",
                )
            else:  # the broker said no
                await until(
                    lambda: service.metrics.frames_out == sent and service.status()["mqtt"]["last_error"],
                    lambda: f"{sent} frames answered and the broker's refusal; {service.status()}",
                )
            status = service.status()
            stop.set()
            final = await serving
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            return sent, status, final, received

        sent, status, final, received = asyncio.run(run("squat"))
        assert final["frames_out"] == sent == FRAMES
        assert status["mqtt"]["connected"] is True and len(received) == FRAMES
        assert [m["seq"] for m in received] == list(range(FRAMES))

        sent, status, final, received = asyncio.run(run("wrong"))
        assert final["frames_out"] == sent == FRAMES  # ZeroMQ went on
        assert status["mqtt"]["connected"] is False and received == []
        assert "authori" in status["mqtt"]["last_error"].lower()
