"""``kinestream batch ROOT``: every trial of a study, on a Dask cluster (local by default)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kinestream.assets import get_assets
from kinestream.commands.common import say
from kinestream.errors import InputError, SettingsError
from kinestream.settings import Settings

EPILOG = """\
layouts of ROOT:
  Pose2Sim  session/participant/trial folders with pose-3d/*.trc; Config.toml [project] participant_height,
            participant_mass, frame_rate at any level, the nearer overriding the farther
  OpenCap   session folders with sessionMetadata.yaml (height_m, mass_kg) and MarkerData/*.trc
  plain     .trc files and a subjects.toml: [[subject]] name, pattern (a glob within ROOT), height, mass

on a cluster: start a scheduler and workers (dask-jobqueue's SLURMCluster, 'dask scheduler' and
'dask worker' by hand, Kubernetes), each worker with kinestream installed and ROOT and --out on a
shared file system, the scheduler and workers on TLS (docs/manual/batch.md), then:
  kinestream batch ROOT --out OUT --scheduler tls://HOST:8786 --tls-ca-file ca.pem --tls-cert node.pem \\
      --tls-key node.key
A plain tcp:// scheduler is refused unless --insecure-scheduler: anyone who can reach it runs code as you.
The local cluster is on TLS with temporary certificates. Workers get the processing settings only (no
[service], [mqtt] or [curve]).
"""


def cmd_batch(args, settings: Settings) -> None:
    from kinestream.batch import describe, find_study, run_batch

    security = _security(args)  # a scheduler refused is said before anything else
    study = find_study(args.root, settings, static_pattern=args.static_pattern)
    for line in describe(study):
        say(line)
    out = Path(args.out) if args.out else Path("out") / Path(args.root).resolve().name

    get_assets(settings)  # before the workers start: they find them in the cache
    for level in ("distributed", "tornado"):  # Dask's own chatter; its warnings still show
        logging.getLogger(level).setLevel(logging.ERROR)
    with _client(args, security) as client:
        say(f"Dask: {_describe_client(client)}")
        rows = run_batch(study, out, settings, client, force=args.force)
    report(rows, out, settings)


def report(rows: list[dict], out: Path, settings: Settings) -> None:
    """Write summary.csv (and its plot), print each failed trial with its reason, and the counts.

    An error when a trial failed. ``batch`` and ``process FOLDER`` end so.
    """
    from kinestream.batch import write_summary

    plot = settings.output.plot
    csv_path, png = write_summary(out, rows, plot=plot)
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        print(f"failed: {r['subject']}/{r['trial']}: {r['reason']}", file=sys.stderr)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("done", "skipped", "failed")}
    print(f"{counts['done']} done, {counts['skipped']} skipped (unchanged), {counts['failed']} failed of {len(rows)}")
    print(f"wrote {csv_path}" + (f" and {png}" if png else ""))
    if failed:
        raise InputError(
            f"{len(failed)} of {len(rows)} trials failed; their reasons are in {csv_path}",
            given=len(failed),
            valid=csv_path,
        )


TLS_FLAGS = {"ca": "--tls-ca-file", "cert": "--tls-cert", "key": "--tls-key"}
_TLS_CONFIG = {"ca": "ca-file", "cert": "client.cert", "key": "client.key"}  # under distributed.comm.tls


def scheduler_security(
    address: str, *, ca: str | None = None, cert: str | None = None, key: str | None = None, insecure: bool = False
):
    """The distributed ``Security`` for a client of the scheduler at ``address``.

    None for a plain ``tcp://`` scheduler, which only ``insecure`` allows.

    A Dask scheduler runs what its clients send and its clients unpickle what it sends back: one reachable
    without TLS lets anyone who can reach it run code as its users. A ``tls://`` scheduler needs the CA that
    signed its certificate and this client's certificate and key: ``ca``, ``cert`` and ``key`` (paths), each
    unset one from Dask's config (``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``).
    """
    import dask
    from distributed import Security

    scheme, _, rest = address.partition("://")
    if not rest:
        scheme, rest = "tcp", address  # distributed's default for HOST:PORT
    given = {"ca": ca, "cert": cert, "key": key}
    if scheme == "tcp":
        if not insecure:
            raise SettingsError(
                f"--scheduler {address} is plain TCP: anyone who can reach it can run code as you, and this command "
                f"unpickles its answers; give its tls:// address with {', '.join(TLS_FLAGS.values())} "
                f"(docs/manual/batch.md), or --insecure-scheduler to use it anyway",
                key="--scheduler",
                given=address,
                valid="a tls:// address, or --insecure-scheduler",
            )
        if any(given.values()):
            used = ", ".join(TLS_FLAGS[k] for k, v in given.items() if v)
            raise SettingsError(
                f"{used}: only with a tls:// scheduler; {address} is plain TCP",
                key=used,
                given=address,
                valid="a tls:// scheduler",
            )
        return None
    if scheme != "tls":
        raise SettingsError(
            f"--scheduler {address}: the scheme {scheme}:// is not supported; give tls://HOST:PORT",
            key="--scheduler",
            given=address,
            valid="tls://HOST:PORT",
        )
    files = {k: v or dask.config.get(f"distributed.comm.tls.{_TLS_CONFIG[k]}", None) for k, v in given.items()}
    missing = [TLS_FLAGS[k] for k, v in files.items() if not v]
    if missing:
        raise SettingsError(
            f"--scheduler {address} needs {', '.join(missing)} (the CA of the cluster's certificates, this "
            f"client's certificate and key), or distributed.comm.tls.ca-file, .client.cert and .client.key in "
            f"Dask's config",
            key="--scheduler",
            given=missing,
            valid=list(TLS_FLAGS.values()),
        )
    for k, v in files.items():
        if not Path(v).is_file():
            raise SettingsError(
                f"{TLS_FLAGS[k]} {v} does not exist; give the PEM file", key=TLS_FLAGS[k], given=v, valid="a PEM file"
            )
    return Security(
        tls_ca_file=str(files["ca"]),
        tls_client_cert=str(files["cert"]),
        tls_client_key=str(files["key"]),
        require_encryption=True,
    )


def _security(args):
    """The TLS settings for ``--scheduler`` (None: plain TCP, allowed by --insecure-scheduler); refusals."""
    if not args.scheduler:
        if any((args.tls_ca_file, args.tls_cert, args.tls_key, args.insecure_scheduler)):
            raise SettingsError(
                "--tls-ca-file, --tls-cert, --tls-key and --insecure-scheduler go with --scheduler; the local cluster "
                "makes its own certificates",
                key="--scheduler",
                valid="--scheduler ADDRESS",
            )
        return None
    security = scheduler_security(
        args.scheduler, ca=args.tls_ca_file, cert=args.tls_cert, key=args.tls_key, insecure=args.insecure_scheduler
    )
    if security is None:
        say(f"--insecure-scheduler: {args.scheduler} is plain TCP; anyone who can reach it can run code as you")
    return security


class _client:
    """A Dask client on the scheduler given, or on a LocalCluster of worker processes made for the batch."""

    def __init__(self, args, security=None) -> None:
        self.args = args
        self.security = security
        self.cluster: Any = None

    def __enter__(self):
        from distributed import Client, LocalCluster

        args = self.args
        if args.scheduler:
            try:
                self.client = Client(args.scheduler, timeout=30, security=self.security)
            except (OSError, ValueError) as exc:
                raise SettingsError(
                    f"cannot reach the Dask scheduler {args.scheduler}: {exc}",
                    key="--scheduler",
                    given=args.scheduler,
                    valid="a reachable scheduler",
                ) from None
            return self.client
        workers = args.workers or os.cpu_count() or 1
        self.cluster = LocalCluster(  # TLS, temporary self-signed certificates: no other process gets in
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            security=True,
        )
        self.client = Client(self.cluster)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _describe_client(client) -> str:
    workers = client.scheduler_info().get("workers", {})
    threads = sum(w.get("nthreads", 1) for w in workers.values())
    return f"{len(workers)} worker(s), {threads} thread(s), scheduler {client.scheduler.address}"


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; give a number of worker processes, 1 or more")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``kinestream batch`` on the command's subparsers."""
    p = subparsers.add_parser(
        "batch",
        help="process a whole study (subjects, static trials, trials) on Dask, resumably",
        description="Scale each subject once from its static trial, then process every trial as 'process' "
        "does, in parallel on a Dask cluster (a local one by default). Trials done before with the same "
        "inputs and settings are skipped; failures are listed with their reason in summary.csv.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", help="the study's folder")
    p.add_argument("--out", help="output folder, mirroring ROOT (default out/ROOT_NAME)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler on TLS, tls://HOST:8786")
    p.add_argument("--tls-ca-file", metavar="PEM", help="--scheduler: the CA of the cluster's certificates")
    p.add_argument("--tls-cert", metavar="PEM", help="--scheduler: this client's certificate")
    p.add_argument("--tls-key", metavar="PEM", help="--scheduler: this client's private key")
    p.add_argument(
        "--insecure-scheduler",
        action="store_true",
        help="--scheduler: allow a plain tcp:// scheduler (anyone who can reach it can run code as you)",
    )
    p.add_argument(
        "--static-pattern", default="*static*", help="glob naming each subject's static trial (default *static*)"
    )
    p.add_argument("--force", action="store_true", help="process every trial again, done or not")
    p.set_defaults(func=cmd_batch)
    return p
