"""Read kinestream's joint angles live: the smallest client an XR app needs.

It ships with the package (in the repository, scripts/subscriber.py runs it too).
ZeroMQ (msgpack, every message self-describing):

    python -m kinestream.examples.subscriber zmq [tcp://127.0.0.1:5556]

MQTT (JSON on kinestream/<subject>/angles; start a broker (scripts/mosquitto in
the repository) and the service with `kinestream serve --mqtt 127.0.0.1:1883`):

    python -m kinestream.examples.subscriber mqtt [127.0.0.1:1883] [--subject subject]

With CURVE on (config [curve]), give this subscriber's key pair and the
service's public key (its public key must be in the service's authorized
folder):

    python -m kinestream.examples.subscriber zmq --curve-key keys/headset.key_secret --server-key keys/service.key

Each prints a REP line whenever a squat rep is completed (topic reps) and one line per frame: time, knee
and hip flexion (degrees), and for ZeroMQ the end-to-end latency from the keypoint source.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import msgpack
import numpy as np
import zmq

from kinestream.live.transport import client_settings, secure_client

DESCRIPTION = "Read kinestream's joint angles live: the smallest client an XR app needs."


def zmq_angles(endpoint: str, curve_key: str | None = None, server_key: str | None = None) -> None:
    """Print the angles published on the ZeroMQ output at ``endpoint``, with their end-to-end latency.

    Parameters
    ----------
    endpoint : str
        The service's output, e.g. ``tcp://127.0.0.1:5556``.
    curve_key : str, optional
        With CURVE: this subscriber's key pair (its ``.key_secret`` file).
    server_key : str, optional
        With CURVE: the service's public key (its ``.key`` file).
    """
    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    secure_client(sub, client_settings(curve_key, server_key).curve)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"angles")
    sub.setsockopt(zmq.SUBSCRIBE, b"reps")
    print(f"listening to {endpoint} (topics 'angles' and 'reps'); Ctrl-C to stop")
    while True:
        topic, payload = sub.recv_multipart()
        msg = msgpack.unpackb(payload, raw=False)
        if topic == b"reps":
            print(rep_line(msg))
            continue
        q = np.frombuffer(msg["q"], dtype="<f4")  # degrees for rotations, metres for translations
        angle = dict(zip(msg["coords"], q, strict=False))
        latency = (time.time_ns() - msg["sent_ns"]) / 1e6 if msg.get("sent_ns") else float("nan")
        print(
            f"t {msg['t']:8.3f}  knee R {angle['knee_angle_r']:6.1f}  L {angle['knee_angle_l']:6.1f}  "
            f"hip R {angle['hip_flexion_r']:6.1f}  L {angle['hip_flexion_l']:6.1f}  "
            f"marker error {msg['rmse_mm']:5.1f} mm  latency {latency:5.1f} ms"
        )


def rep_line(msg: dict) -> str:
    """A completed squat rep (ZeroMQ 'reps' or MQTT kinestream/<subject>/reps) as one line."""
    rep, done = msg["rep"], msg["set"]
    if rep.get("complete") is False:
        return f"REP {rep['index']} incomplete (not counted): {rep['reason']}"
    return (
        f"REP {rep['index']} ({rep.get('kind', 'squat').replace('_', '-')}): depth {rep['knee_peak']} deg "
        f"({'deep enough' if rep['deep_enough'] else 'shallow'}"
        f", below parallel: {rep['below_parallel']}), down {rep['descent_s']} s, up {rep['ascent_s']} s, "
        f"knee asymmetry {rep['knee_asymmetry_deg']} deg, trunk lean {rep['trunk_lean_deg']} deg"
        f"{'; ' + ', '.join(rep['cues']) if rep.get('cues') else ''}; "
        f"set: {done['reps']} reps, mean depth {done['depth_mean_deg']} deg"
    )


async def mqtt_angles(broker: str, subject: str) -> None:
    """Print the angles of ``subject`` published on the MQTT ``broker`` (``host[:port]``, port 1883 by default)."""
    import aiomqtt

    host, _, port = broker.rpartition(":")
    topic = f"kinestream/{subject}/angles"
    async with aiomqtt.Client(host or broker, int(port or 1883)) as client:
        await client.subscribe(topic)
        await client.subscribe(f"kinestream/{subject}/reps")
        print(f"listening to {topic} and kinestream/{subject}/reps on {broker}; Ctrl-C to stop")
        async for message in client.messages:
            msg = json.loads(message.payload)
            if message.topic.matches("kinestream/+/reps"):
                print(rep_line(msg))
                continue
            a = msg["angles"]  # null where the frame could not be solved
            print(
                f"t {msg['t']:8.3f}  knee R {a['knee_angle_r']}  L {a['knee_angle_l']}  "
                f"hip R {a['hip_flexion_r']}  L {a['hip_flexion_l']}"
            )


def main(argv: list[str] | None = None) -> None:
    """The example's command line: ``zmq [ENDPOINT]`` or ``mqtt [BROKER] --subject NAME``."""
    parser = argparse.ArgumentParser(prog="python -m kinestream.examples.subscriber", description=DESCRIPTION)
    parser.add_argument("transport", choices=["zmq", "mqtt"])
    parser.add_argument("endpoint", nargs="?", help="tcp://127.0.0.1:5556 (zmq) or 127.0.0.1:1883 (mqtt)")
    parser.add_argument("--subject", default="subject", help="the service's subject name (MQTT topic)")
    parser.add_argument("--curve-key", help="zmq with CURVE: this subscriber's key pair (.key_secret)")
    parser.add_argument("--server-key", help="zmq with CURVE: the service's public key (.key)")
    args = parser.parse_args(argv)
    try:
        if args.transport == "zmq":
            zmq_angles(args.endpoint or "tcp://127.0.0.1:5556", args.curve_key, args.server_key)
        else:
            asyncio.run(mqtt_angles(args.endpoint or "127.0.0.1:1883", args.subject))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
