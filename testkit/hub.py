"""Helpers for system tests and benchmarks that run the whole hub on this machine.

One place for: a config with free ports in a temp folder (``write_system_config``), and how
headless Chromium is started here (``CHROMIUM``, ``CHROMIUM_ARGS``).  Not used at run time.
"""

from __future__ import annotations

import random
import socket
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


def port_pair() -> int:
    """A port p with p and p+10000 free on 127.0.0.1 (SeaweedFS puts gRPC on port+10000)."""
    rng = random.Random()  # noqa: S311 - picking ports, not secrets
    for _ in range(200):
        p = rng.randint(20000, 39999)
        ok = True
        for q in (p, p + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            return p
    raise RuntimeError("no free port pair in 20000..49999")


def cluster_base_port() -> int:
    """A base port for ``evalwatch storage cluster --base-port`` whose whole range (and the gRPC
    ports, +10000) is free right now."""
    import os

    from storage.s3server import port_is_free

    first = 21000 + os.getpid() % 400 * 20
    for base in [*range(first, 30000, 20), *range(21000, first, 20)]:
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
