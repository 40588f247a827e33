"""``evalwatch storage cluster`` (issue #14, item 4): a SeaweedFS cluster of separate processes —
1 master with replication 001, 3 volume servers, a filer, the S3 gateway — as children of one
command.  The hub's segment archive writes to it; one volume server is killed and every segment
still reads back (its copy on another volume server of the rack) and writes go on; SIGTERM of
the command stops every ``weed``; SIGKILL of it takes them along too."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr

from config.models import S3Config
from storage.cluster import ClusterError, ClusterPorts, SeaweedCluster, check_replication
from testkit.hub import cluster_base_port, port_pair
from testkit.procs import still_alive_after

pytestmark = pytest.mark.cluster

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def _config(tmp: Path) -> tuple[Path, str, str]:
    access, secret = "cluster-test", "cluster-secret-" + os.urandom(8).hex()
    doc = {
        "storage": {
            "data_dir": str(tmp / "data"),
            "database_url": f"sqlite:///{tmp / 'data' / 'evalwatch.db'}",
            "wal_dir": str(tmp / "data" / "wal"),
            "s3": {"embedded": False, "access_key": access, "secret_key": secret},
        },
        "secrets_file": str(tmp / "data" / "secrets.yaml"),
    }
    path = tmp / "evalwatch.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path, access, secret


class ClusterCommand:
    """``evalwatch storage cluster`` as a process; ``parts`` = {name: (address, pid)} it printed."""

    def __init__(self, cfg: Path, data: Path, base: int) -> None:
        self.out_path = data.parent / f"cluster-{int(time.time() * 1000)}.out"
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evalwatch", "storage", "cluster", "--config", str(cfg),
             "--dir", str(data), "--base-port", str(base)],
            stdout=self.out, stderr=subprocess.STDOUT,
        )
        self.parts: dict[str, tuple[str, int]] = {}
        self.endpoint = ""

    def text(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while "S3 endpoint:" not in self.text():
            assert self.proc.poll() is None, self.text()[-3000:]
            assert time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.2)
        text = self.text()
        for name, addr, pid in re.findall(r"^  (\w+)\s+(127\.0\.0\.1:\d+)\s+pid (\d+)", text, re.M):
            self.parts[name] = (addr, int(pid))
        self.endpoint = re.search(r"S3 endpoint: (\S+)", text).group(1)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def _files_on(address: str) -> int:
    doc = httpx.get(f"http://{address}/status", timeout=5).json()
    return sum(int(v.get("FileCount", 0)) for v in doc.get("Volumes") or [])


def _blob(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (4000 + 37 * i)  # ~130-200 KB each


async def test_cluster_keeps_every_segment_when_a_volume_server_dies(tmp_path: Path) -> None:
    from storage.db import Database
    from storage.objects import ObjectStore
    from storage.segments import SegmentMeta, SegmentStore
    from storage.verify import verify_chain

    cfg_path, access, secret = _config(tmp_path)
    data = tmp_path / "cluster"
    cmd = ClusterCommand(cfg_path, data, cluster_base_port())
    try:
        cmd.wait_ready()
        assert set(cmd.parts) == {"master", "volume1", "volume2", "volume3", "filer", "s3"}, cmd.text()
        assert secret not in cmd.text()
        s3 = S3Config(endpoint=cmd.endpoint, access_key=SecretStr(access), secret_key=SecretStr(secret),
                      embedded=False)
        objects = ObjectStore(s3)
        # As the hub does: write-once buckets for the evidence.
        await objects.ensure_buckets([s3.bucket_segments], lock_days=1)
        db = Database(f"sqlite:///{tmp_path / 'evalwatch.db'}")
        db.upgrade()
        store = SegmentStore(objects, db, tmp_path / "wal", s3.bucket_segments,
                             retry_min_s=0.2, retry_max_s=1.0)
        await store.start()
        cams = [("s01", "r1", "cam1"), ("s01", "r1", "cam2")]
        written: dict[int, bytes] = {}
        recs = []

        async def put(i: int) -> None:
            site, room, cam = cams[i % 2]
            start = T0 + timedelta(seconds=10 * (i // 2))
            end = start + timedelta(seconds=10)
            meta = SegmentMeta(site=site, room=room, camera=cam, start=start, end=end)
            rec = await store.put(meta, _blob(i))
            written[rec.id] = _blob(i)
            recs.append(rec)

        for i in range(24):
            await put(i)
        await store.wait_uploaded(timeout_s=30)
        assert await store.pending_uploads() == 0
        assert not any((tmp_path / "wal").rglob("*.seg"))  # every read below comes from S3

        # Kill the volume server holding the most files (the master's view lags; ask each one).
        vols = {name: addr for name, (addr, _pid) in cmd.parts.items() if name.startswith("volume")}
        deadline = time.monotonic() + 10
        while True:
            counts = {name: _files_on(addr) for name, addr in vols.items()}
            # 24 segments + 24 links, two copies of each (replication 001).
            if sum(counts.values()) >= 2 * 48 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        victim = max(counts, key=lambda n: counts[n])
        assert counts[victim] > 0, counts
        os.kill(cmd.parts[victim][1], signal.SIGKILL)
        assert not still_alive_after([cmd.parts[victim][1]], 5)

        for rec in recs:
            assert await store.read(rec) == written[rec.id], rec.key
        for site, room, cam in cams:
            res = await verify_chain(objects, site, room, cam)
            assert res.ok, res

        # Writes go on with the two volume servers left.
        for i in range(24, 32):
            await put(i)
        await store.wait_uploaded(timeout_s=30)
        for rec in recs[24:]:
            assert await objects.get_bytes(s3.bucket_segments, rec.key) == written[rec.id]
        for site, room, cam in cams:
            res = await verify_chain(objects, site, room, cam)
            assert res.ok and res.links_checked == 16, res
        await store.stop()
        db.dispose()

        # The command reports the dead part and keeps the others running.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if f"weed {victim} (pid" in cmd.text():
                break
            await asyncio.sleep(0.2)
        assert f"weed {victim} (pid {cmd.parts[victim][1]}) exited" in cmd.text()

        # SIGTERM: every weed stops, the command exits 0.
        pids = [pid for _addr, pid in cmd.parts.values()]
        cmd.proc.send_signal(signal.SIGTERM)
        assert cmd.proc.wait(timeout=20) == 0, cmd.text()[-2000:]
        assert still_alive_after(pids, 5) == [], cmd.text()[-2000:]
    finally:
        cmd.close()

    # Restarted on the same data: the archive is there; SIGKILL of the command takes every
    # weed along (no orphan holding the ports and the data).
    cmd = ClusterCommand(cfg_path, data, cluster_base_port())
    try:
        cmd.wait_ready()
        s3 = S3Config(endpoint=cmd.endpoint, access_key=SecretStr(access), secret_key=SecretStr(secret),
                      embedded=False)
        res = await verify_chain(ObjectStore(s3), "s01", "r1", "cam1")
        assert res.ok, res
        pids = [pid for _addr, pid in cmd.parts.values()]
        cmd.proc.kill()
        cmd.proc.wait()
        assert still_alive_after(pids, 5) == []
    finally:
        cmd.close()


def test_cluster_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="only 1 volume server"):
        check_replication("001", 1)
    with pytest.raises(ClusterError, match="one data centre and one rack"):
        check_replication("010", 3)
    with pytest.raises(ClusterError, match="three digits"):
        check_replication("1", 3)
    with pytest.raises(ClusterError, match="base port 65000"):
        ClusterPorts.from_base(65000, 3)
    with pytest.raises(ClusterError, match="access_key and secret_key"):
        SeaweedCluster(tmp_path, "", "", ClusterPorts.free(2))

    cfg_path, _access, _secret = _config(tmp_path)
    # A port of the range in use: a one-line error naming it, no traceback, exit 1.
    base = cluster_base_port()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", base + 2))
        busy.listen()
        r = subprocess.run(
            [sys.executable, "-m", "evalwatch", "storage", "cluster", "--config", str(cfg_path),
             "--dir", str(tmp_path / "c"), "--base-port", str(base)],
            capture_output=True, text=True, timeout=60,
        )
    assert r.returncode == 1, r.stderr
    assert f"s3 port {base + 2}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "evalwatch", "storage", "cluster", "--config", str(cfg_path),
         "--volumes", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and "only 1 volume server" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_test_ports_stay_below_the_ephemeral_range() -> None:
    """The ports the tests pick for hubs and clusters, gRPC ports (+10000) included, lie below
    the kernel's ephemeral range: a free port there could be taken by any outgoing connection
    before the server binds it (a full `make test` lost a cluster's S3 gRPC port 38122 so)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    base = cluster_base_port()
    assert base + 5 + 10000 < low, (base, low)
    for _ in range(20):
        p = port_pair()
        assert p + 10000 < low, (p, low)
        assert not (base <= p <= base + 5 or base + 10000 <= p <= base + 10005)
