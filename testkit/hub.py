"""Helpers for system tests and benchmarks that run the whole hub on this machine.

One place for: a config with free ports in a temp folder (``write_system_config``), an
``evalwatch hub`` process started and waited for (``start_hub_process``, ``hub_process``), and how
headless Chromium is started here (``CHROMIUM``, ``CHROMIUM_ARGS``).  Not used at run time.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, as root, offline; WebRTC on loopback needs the last three.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


#: Test ports stay below Linux's ephemeral range (32768..60999 here, ``ip_local_port_range``),
#: gRPC ports (+10000) included: a port picked free there can be taken by any outgoing connection
#: before the server binds it (seen: a cluster's S3 gRPC port 38122, "address already in use").
#: Clusters take bases 10000..11980 (their ports and gRPC ports: 10000..12005, 20000..22005),
#: single servers 12100..19999 (and 22100..29999): the two never meet.
PAIR_PORTS = range(12100, 20000)
CLUSTER_BASES = range(10000, 12000, 20)


def port_pair() -> int:
    """A port p with p and p+10000 free on 127.0.0.1 (SeaweedFS puts gRPC on port+10000), both
    below the ephemeral range (:data:`PAIR_PORTS`)."""
    from storage.s3server import port_is_free

    rng = random.Random()  # noqa: S311 - picking ports, not secrets
    for _ in range(200):
        p = rng.choice(PAIR_PORTS)
        if port_is_free(p) and port_is_free(p + 10000):
            return p
    raise RuntimeError(f"no free port pair in {PAIR_PORTS.start}..{PAIR_PORTS.stop - 1}")


def cluster_base_port() -> int:
    """A base port for ``evalwatch storage cluster --base-port`` whose whole range (and the gRPC
    ports, +10000) is free right now (:data:`CLUSTER_BASES`; each xdist worker starts at its own)."""
    import os

    from storage.s3server import port_is_free

    k = os.getpid() % len(CLUSTER_BASES)
    for base in [*CLUSTER_BASES[k:], *CLUSTER_BASES[:k]]:
        if all(port_is_free(p) and port_is_free(p + 10000) for p in range(base, base + 6)):
            return base
    raise RuntimeError("no free port range for a storage cluster")


def system_config(
    tmp: Path,
    sites: dict[str, list[str]],
    *,
    users: list[dict[str, Any]],
    segment_seconds: float = 4,
    database_url: str | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A full hub config under ``tmp/data`` on free ports; ``sites`` maps a site id to sample
    clip names (``room_a``...) whose room files become its rooms.  Extra keyword arguments are
    top-level sections (``rules={...}``)."""
    ports = [port_pair() for _ in range(5)]
    data = tmp / "data"
    return {
        "hub": {"listen_port": ports[0], "force_password_change": False},
        "storage": {
            "data_dir": str(data),
            "database_url": database_url or f"sqlite:///{data / 'evalwatch.db'}",
            "wal_dir": str(data / "wal"),
            "segment_seconds": segment_seconds,
            "s3": {
                "endpoint": f"127.0.0.1:{ports[1]}",
                "embedded_server": {
                    "dir": str(data / "seaweedfs"),
                    "master_port": ports[2],
                    "volume_port": ports[3],
                    "filer_port": ports[4],
                    # Tests' hubs stop quickly: weed server needs ~15 s to exit on SIGTERM, the
                    # hub's default grace waits for that (tests/test_s3server_stop.py); here it
                    # is killed after 1 s, as fast as the parent-death signal did before.
                    "stop_grace_s": 1,
                },
            },
        },
        "capture": {"spool_dir": str(data / "spool"), "spool_max_mb": 64},
        "secrets_file": str(data / "secrets.yaml"),
        "users": users,
        "sites": [
            {"id": site, "rooms": [str(ROOT / "sample_videos" / f"{r}.room.yaml") for r in rooms]}
            for site, rooms in sites.items()
        ],
        **sections,
    }


def write_system_config(tmp: Path, sites: dict[str, list[str]], **kw: Any) -> Path:
    """:func:`system_config` written to ``tmp/evalwatch.yaml``; returns the path."""
    path = tmp / "evalwatch.yaml"
    path.write_text(yaml.safe_dump(system_config(tmp, sites, **kw), allow_unicode=True), encoding="utf-8")
    return path


def hub_url(cfg_path: Path) -> str:
    """``http://127.0.0.1:<hub.listen_port>`` of a config written by :func:`write_system_config`."""
    doc = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    return f"http://127.0.0.1:{doc['hub']['listen_port']}"


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30, sig: int = signal.SIGTERM) -> None:
    """``sig`` (SIGTERM), wait up to ``timeout``, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_hub_process(
    cfg_path: Path, *, cwd: Path, log: Path | None = None, ready_timeout: float = 90
) -> tuple[subprocess.Popen[bytes], str]:
    """``evalwatch hub --config cfg_path`` in ``cwd``, its output in ``log`` (``cwd/hub.log``);
    returns once ``/healthz`` answers 200.  Fails with the log's tail when the hub exits first or
    is not up within ``ready_timeout`` (and stops it)."""
    import httpx

    log = log or cwd / "hub.log"
    url = hub_url(cfg_path)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "evalwatch", "hub", "--config", str(cfg_path)],
                                cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return proc, url
            assert time.monotonic() < deadline, "hub did not come up"
            time.sleep(0.3)
    except BaseException:
        stop_process(proc, 5)
        raise


@contextlib.contextmanager
def hub_process(
    cfg_path: Path, *, cwd: Path, log: Path | None = None, ready_timeout: float = 90, stop_timeout: float = 30
) -> Iterator[str]:
    """:func:`start_hub_process` as a context: yields the hub's URL, stops it (SIGTERM, SIGKILL
    after ``stop_timeout``) on exit."""
    proc, url = start_hub_process(cfg_path, cwd=cwd, log=log, ready_timeout=ready_timeout)
    try:
        yield url
    finally:
        stop_process(proc, stop_timeout)


def start_run_process(
    cfg_path: Path, *, cwd: Path, ready_timeout: float = 120
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """``evalwatch run --config cfg_path`` in its own process group (as a terminal runs it);
    returns it, the dashboard URL of its banner and the lines it printed up to there.  Fails
    with that output (after stopping it) when no URL is printed within ``ready_timeout``.  Its
    output stays a pipe: read it on (or drain it) while it runs."""
    import re

    proc = subprocess.Popen([sys.executable, "-m", "evalwatch", "run", "--config", str(cfg_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"dashboard:\s+(http://\S+)/", line):
            return proc, m.group(1), lines
    stop_run_process(proc)
    raise AssertionError("evalwatch run printed no dashboard URL:\n" + "".join(lines))


def stop_run_process(proc: subprocess.Popen[str], timeout: float = 60, *, drained: bool = False) -> str:
    """Ctrl-C as a terminal sends it (SIGINT to the process group), SIGKILL to the group after
    ``timeout``; returns what it printed meanwhile ("" when ``drained``: a thread of the caller's
    reads its output)."""
    import os

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
    try:
        if drained:
            proc.wait(timeout)
            return ""
        rest, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if drained:
            proc.wait()
            return ""
        rest, _ = proc.communicate()
    return rest or ""
