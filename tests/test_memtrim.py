"""The hub returns the native memory its threads freed (``evalwatch.memtrim``, issue #17)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.models import HubConfig
from evalwatch.memtrim import MallocTrim, tune_malloc

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")

#: A process whose threads malloc 4 x 40 MB in 1 KB blocks and free all but every 64th: the
#: arenas keep the freed pages (the survivors pin each 64 KB stretch's top), RSS stays up.
FRAGMENT = textwrap.dedent(
    """
    import ctypes, json, sys, threading
    sys.path.insert(0, sys.argv[1])
    from evalwatch.memtrim import MallocTrim, rss_bytes
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    keep = []
    def work():
        ptrs = [libc.malloc(1024) for _ in range(40_000)]
        for p in ptrs:
            ctypes.memset(p, 1, 1024)
        for i, p in enumerate(ptrs):
            if i % 64:
                libc.free(p)
            else:
                keep.append(p)
    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    trim = MallocTrim(float(sys.argv[2]))
    before = rss_bytes()
    released, took = trim.trim()
    print(json.dumps({"before": before, "after": rss_bytes(), "released": released, "took": took,
                      "runs": trim.runs}))
    """
)


def run_script(code: str, arg: float) -> dict[str, float]:
    """``code`` in a fresh interpreter (its own allocator state); its last line of JSON."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(arg)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_fragmenter(period: float) -> dict[str, float]:
    return run_script(FRAGMENT, period)


def test_trim_returns_what_threads_freed() -> None:
    got = run_fragmenter(60)
    assert got["runs"] == 1
    # ~155 MB freed in the arenas; the survivors (1 in 64) pin very little of it
    assert got["released"] >= 100 * 2**20, got
    assert got["before"] - got["after"] >= 100 * 2**20, got
    assert got["took"] < 5.0


def test_off_means_no_trim() -> None:
    got = run_fragmenter(0)
    assert got["runs"] == 0 and got["released"] == 0
    assert got["after"] >= got["before"] - 10 * 2**20  # the freed memory stayed resident


def test_the_periodic_task_runs_and_stops() -> None:
    async def main() -> MallocTrim:
        trim = MallocTrim(0.05)
        assert trim.enabled
        trim.start()
        for _ in range(100):
            if trim.runs >= 2:
                break
            await asyncio.sleep(0.05)
        await trim.stop()
        return trim

    trim = asyncio.run(main())
    assert trim.runs >= 2 and trim.seconds > 0


def test_the_setting_is_validated() -> None:
    assert HubConfig().malloc_trim_seconds == 60.0
    assert HubConfig(malloc_trim_seconds=0).malloc_trim_seconds == 0
    with pytest.raises(ValidationError, match="malloc_trim_seconds"):
        HubConfig(malloc_trim_seconds=-1)


#: Decoded frames the way the hub's decoder threads make them: 460 KB blocks, one in ten still
#: held (the newest frames of each camera) when the others are freed.
FRAMES = textwrap.dedent(
    """
    import ctypes, json, sys, threading
    sys.path.insert(0, sys.argv[1])
    from evalwatch.memtrim import rss_bytes, tune_malloc
    applied = tune_malloc(int(sys.argv[2]))
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(460_000))  # glibc's default: the mmap threshold rises above a frame
    keep = []
    def decode():
        frames = [libc.malloc(460_000) for _ in range(200)]
        for f in frames:
            ctypes.memset(f, 1, 460_000)
        for i, f in enumerate(frames):
            (keep.append if i % 10 == 0 else libc.free)(f)
    base = rss_bytes()
    t = threading.Thread(target=decode)
    t.start()
    t.join()
    print(json.dumps({"applied": applied, "kept_mb": (rss_bytes() - base) / 2**20}))
    """
)


def frames_kept(threshold_kb: int) -> dict[str, float]:
    return run_script(FRAMES, threshold_kb)


def test_large_blocks_stay_out_of_the_arenas() -> None:
    """92 MB of frames, 9 MB still held: glibc's default keeps nearly all of it resident in the
    thread's arena; with the hub's threshold the freed frames go back to the system."""
    default = frames_kept(0)
    tuned = frames_kept(128)
    assert not default["applied"] and tuned["applied"]
    assert default["kept_mb"] >= 60, default
    assert tuned["kept_mb"] <= 20, tuned
    assert tune_malloc(0) is False


def test_threshold_setting_is_validated() -> None:
    assert HubConfig().malloc_mmap_threshold_kb == 128
    with pytest.raises(ValidationError, match="malloc_mmap_threshold_kb"):
        HubConfig(malloc_mmap_threshold_kb=-5)


def test_seaweedfs_runs_with_the_go_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real ``weed``: the configured ``go_memory_limit_mb`` (384 by default, what
    ``SeaweedServer.from_config`` passes on) is its ``GOMEMLIMIT``; 0 sets none; a ``GOMEMLIMIT``
    the operator put in the hub's environment wins."""
    from pydantic import SecretStr

    from config.models import S3Config
    from storage.s3server import SeaweedPorts, SeaweedServer, free_ports

    def environ_of(limit: int, sub: str) -> dict[str, str]:
        server = SeaweedServer(tmp_path / sub, "soak-access", "soak-secret-0123456789",
                               SeaweedPorts(*free_ports(8)), grace_s=3.0, die_with_parent=True,
                               go_memory_limit_mb=limit)
        server.start()
        try:
            assert server._proc is not None
            raw = Path(f"/proc/{server._proc.pid}/environ").read_bytes()
        finally:
            server.stop()
        return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)

    cfg = S3Config(access_key=SecretStr("soak-access"), secret_key=SecretStr("soak-secret-0123456789"))
    assert SeaweedServer.from_config(cfg, tmp_path).go_memory_limit_mb == 384  # the default
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    assert environ_of(384, "a").get("GOMEMLIMIT") == "384MiB"
    assert "GOMEMLIMIT" not in environ_of(0, "b")
    monkeypatch.setenv("GOMEMLIMIT", "1GiB")
    assert environ_of(300, "c")["GOMEMLIMIT"] == "1GiB"
    with pytest.raises(ValidationError, match="go_memory_limit_mb"):
        S3Config.model_validate({"embedded_server": {"go_memory_limit_mb": -1}})


#: Seven threads, each with its own SQLite connection (the hub's worker threads each hold one),
#: read a 12 MB database; each connection's page cache fills up to its ``cache_size``.
SQLITE_CACHES = textwrap.dedent(
    """
    import json, sqlite3, sys, threading
    sys.path.insert(0, sys.argv[1])
    from storage.db import sqlite_memory
    db, cache_kb = sys.argv[3], int(sys.argv[2])
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    if not c.execute("SELECT COUNT(*) FROM t").fetchone()[0]:
        c.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 200,) for _ in range(60000)])
        c.commit()
    c.close()
    before = sqlite_memory()[0]
    ready, done = threading.Barrier(8), threading.Event()
    def reader():
        con = sqlite3.connect(db, check_same_thread=False)
        if cache_kb:
            con.execute(f"PRAGMA cache_size=-{cache_kb}")
        con.execute("SELECT SUM(LENGTH(v)) FROM t").fetchall()
        ready.wait()
        done.wait()
    ts = [threading.Thread(target=reader) for _ in range(7)]
    for t in ts:
        t.start()
    ready.wait()
    grown = (sqlite_memory()[0] - before) / 2**20
    done.set()
    print(json.dumps({"grown_mb": grown}))
    """
)


def test_sqlite_memory_counts_each_connections_page_cache(tmp_path: Path) -> None:
    """What the hub's ``evalwatch_sqlite_memory_bytes`` reports: SQLite's page caches, ~2 MiB
    per open connection at the default ``cache_size``, bounded by it (the growth a SQLite hub
    shows while its database grows past 2 MiB, issue #17)."""
    def grown(cache_kb: int) -> float:
        cmd = [sys.executable, "-c", SQLITE_CACHES, str(ROOT), str(cache_kb), str(tmp_path / "t.db")]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["grown_mb"])

    default = grown(0)
    small = grown(256)
    assert 7 * 1.5 <= default <= 7 * 2.5, default  # 7 connections x ~2 MiB
    assert small <= 7 * 0.5, small  # bounded by cache_size
