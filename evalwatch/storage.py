"""``evalwatch storage``: ``purge`` (the retention purge, :mod:`evalwatch.retention`) and
``cluster``, a local SeaweedFS cluster for development.

    evalwatch storage cluster [--config FILE] [--dir DIR] [--volumes 3] [--replication 001]
                              [--base-port 19333]

Starts 1 master (``-defaultReplication``), N volume servers, a filer and the S3 gateway with the
config's S3 keys, as children of this process (``storage.cluster.SeaweedCluster``), prints the
S3 endpoint to put into ``storage.s3.endpoint`` (with ``storage.s3.embedded: false``) and runs
until SIGINT (Ctrl-C) or SIGTERM, which stop every part; SIGKILL of this process takes the
children along (Linux).  Ports: master = base, filer = base+1, S3 = base+2, volume i =
base+2+i, each gRPC port = HTTP + 10000.  A part that dies meanwhile (e.g. a volume server
killed to try the replication) is reported, the others keep serving.

Exit codes: 0 stopped by a signal, 1 the cluster could not start, 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from evalwatch.clitools import CliError, load_cfg, parse_args
from evalwatch.logs import setup_logging

PROG = "evalwatch storage"
DEFAULT_BASE_PORT = 19333


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="object storage tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    # listed for --help; `evalwatch storage purge ...` is handed to evalwatch.retention.cli
    sub.add_parser("purge", help="delete footage, chain links and snapshots past their retention "
                                 "(evalwatch storage purge --help)", add_help=False)
    c = sub.add_parser(
        "cluster",
        help="run a local SeaweedFS cluster (master, volume servers, filer, S3 gateway) for development",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--config", default="config/default.yaml",
                   help="config whose storage.s3 keys the S3 gateway accepts (default: %(default)s)")
    c.add_argument("--dir", help="data directory (default: <storage.data_dir>/seaweedfs-cluster)")
    c.add_argument("--volumes", type=int, default=3, help="volume servers, 1-9 (default: %(default)s)")
    c.add_argument("--replication", default="001",
                   help="SeaweedFS replication of every volume (default: %(default)s = a second copy "
                        "on another volume server of the same rack)")
    c.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help="first of the ports (default: %(default)s)")
    return p


def cli(argv: list[str]) -> int:
    if argv[:1] == ["purge"]:
        from evalwatch.retention import cli as purge_cli

        return purge_cli(argv)
    args = parse_args(_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        return _cluster(args)
    except CliError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.code


def _cluster(args: argparse.Namespace) -> int:
    from storage.cluster import ClusterError, ClusterPorts, SeaweedCluster
    from storage.s3server import S3ServerError

    if not 1 <= args.volumes <= 9:
        raise CliError(f"--volumes {args.volumes}: choose 1 to 9 volume servers")
    cfg = load_cfg(args.config)
    s3 = cfg.storage.s3
    access = s3.access_key.get_secret_value() if s3.access_key else ""
    secret = s3.secret_key.get_secret_value() if s3.secret_key else ""
    if not access or not secret:
        raise CliError(f"{args.config}: storage.s3.access_key and secret_key are needed (or a secrets file)")
    data_dir = Path(args.dir) if args.dir else Path(cfg.storage.data_dir) / "seaweedfs-cluster"
    setup_logging()
    try:
        ports = ClusterPorts.from_base(args.base_port, args.volumes)
        cluster = SeaweedCluster(data_dir, access, secret, ports, replication=args.replication,
                                 die_with_parent=True)
    except ClusterError as e:
        raise CliError(str(e)) from None

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # Installed before the children start: a Ctrl-C during start-up still stops them in order.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        # From the main thread: the children's death signal follows the thread that started them.
        cluster.start()
    except (ClusterError, S3ServerError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    try:
        if stop.is_set():
            return 0
        _print_ready(cluster, data_dir)
        reported: set[str] = set()
        while not stop.wait(1.0):
            for part in cluster.exited():
                if part.name not in reported:
                    reported.add(part.name)
                    print(f"{PROG}: weed {part.name} (pid {part.pid}) exited with code {part.returncode}; "
                          f"log {part.log_path}", file=sys.stderr, flush=True)
        print("stopping the SeaweedFS cluster", flush=True)
        return 0
    finally:
        cluster.stop()


def _print_ready(cluster: object, data_dir: Path) -> None:
    from storage.cluster import SeaweedCluster

    assert isinstance(cluster, SeaweedCluster)
    lines = [f"SeaweedFS cluster ready (replication {cluster.replication}, data {data_dir}):"]
    for part in cluster.processes:
        lines.append(f"  {part.name:<8} {part.endpoint.address:<16} pid {part.pid:<8} log {part.log_path}")
    lines += [
        f"S3 endpoint: {cluster.endpoint}",
        "Point the hub at it (the keys are the config's storage.s3 keys):",
        "  storage:",
        "    s3:",
        "      embedded: false",
        f"      endpoint: {cluster.endpoint}",
        f"or run the hub with EVALWATCH_S3_ENDPOINT={cluster.endpoint}.  Ctrl-C stops the cluster.",
    ]
    print("\n".join(lines), flush=True)
