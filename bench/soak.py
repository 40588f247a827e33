"""Soak benchmark (issue #17): is the hub's memory flat over hours, and does it lose anything?

Starts the real hub (``python -m evalwatch hub``: embedded SeaweedFS, database, recorder,
analysis, dashboard; ``bench/hubproc.py``) with ``--cameras`` cameras, one site each, streamed by
simulated agents (real :class:`capture.agent.Agent` objects in ``--farms`` processes: live
WebRTC from the sample clips' pre-encoded packets, and a pre-encoded archive segment PUT per
camera every ``--segment-seconds``) with analysis on (``--analysis hub``: the hub's own
pipeline analyses every camera at ``--fps``; ``agent``: edge sites, the hub runs its check
pipeline).  For ``--minutes`` it samples every ``--interval`` seconds (psutil) the resident
memory (RSS), open file descriptors and threads of the hub process and of its SeaweedFS server.

Reports:

* ``hub_rss_slope_mb_per_min``: least-squares slope of the hub's RSS over the samples after
  ``--warmup`` minutes (also the SeaweedFS server's, and the fd/thread slopes);
* ``lost_segments``: per camera, the segment windows missing between its first and its last
  stored segment (``round((last.end - first.start) / segment_seconds) - rows``), summed, plus
  the windows of cameras that stored nothing;
* ``events``: incidents stored; ``segments``: segment rows stored;
* ``orphans``: every process of the run (hub, SeaweedFS, farms and their children, anything
  whose command line names the run's temporary directory) still alive 15 s after the bench
  stopped them.  The temporary directory is removed at the end (``--keep`` keeps it).

Also ``hub_rss_slope_halves_mb_per_min``: the same fit over each half of that window (memory that
settles, an allocator reaching its working size, makes the first half steeper than the second; a
leak keeps them alike).  Ctrl-C ends the sampling early: the bench still stops everything and
reports what it sampled (``stopped_early_at_min``); a second Ctrl-C abandons the report.

Per mapping: every sample also groups the hub's and SeaweedFS's ``/proc/PID/smaps`` by kind
(:func:`smaps_groups`: glibc's main heap, its thread arenas, other anonymous memory, shared
libraries, other files), and ``hub_smaps_slope_mb_per_min`` / ``seaweedfs_smaps_slope_mb_per_min``
say which kind grows after the warm-up — native growth that tracemalloc cannot see.

``--hub-env K=V`` sets the hub's environment (inherited by its SeaweedFS: ``GOGC``,
``GOMEMLIMIT``), ``--hub-config KEY=VALUE`` one of its config settings (e.g.
``hub.malloc_trim_seconds=0``): run two soaks side by side to compare.

``--trace-memory MINUTES`` runs the hub with ``evalwatch.memtrace`` (tracemalloc diffs per
subsystem in the hub's log, which is then copied to ``--hub-log``).  ``--memray FILE``: the hub
writes every allocation, native ones too, to FILE (``evalwatch.memtrace.AllocationCapture``);
``bench/memgrowth.py FILE --at ...`` says which sites hold the growth (needs memray).

Usage: ``python bench/soak.py [--cameras 20] [--minutes 120] [--warmup 10] [--json out.json]``.
Target (issue #17): slope after a 10-minute warm-up <= 0.1 MB/min, fds flat, 0 lost, 0 orphans.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hubproc import spawn_farm, start_hub, stop_all, wait_healthy  # noqa: E402
from bench.latency import CLIPS, SUP_PW, loadavg  # noqa: E402
from testkit.hub import write_system_config  # noqa: E402


def slope(ts: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``ts`` (None with fewer than 2 points)."""
    n = len(ts)
    if n < 2:
        return None
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def proc_sample(p: Any) -> dict[str, float] | None:
    """RSS (MB), open fds, threads and CPU time (s, user + system) of a psutil process; None
    when it is gone."""
    import psutil

    try:
        with p.oneshot():
            cpu = p.cpu_times()
            return {"rss_mb": p.memory_info().rss / 2**20, "fds": p.num_fds(), "threads": p.num_threads(),
                    "cpu_s": round(cpu.user + cpu.system, 2)}
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


#: glibc's non-main malloc arenas are mmapped as 64 MiB-aligned 64 MiB reservations
#: (``HEAP_MAX_SIZE`` = 2 x the 32 MiB maximum mmap threshold on 64-bit), the used part rw-p and
#: the rest ``---p``: that is how :func:`smaps_groups` tells them from other anonymous memory.
ARENA_BYTES = 64 * 2**20


def parse_smaps(text: str) -> list[dict[str, Any]]:
    """``/proc/PID/smaps`` as a list of mappings: ``start``, ``end``, ``perms``, ``path`` and
    the ``kB`` fields (``Rss``, ``Anonymous``, ``Private_Dirty``, ``Swap``...) in kB."""
    maps: list[dict[str, Any]] = []
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        if head.endswith(":") and rest.rstrip().endswith("kB"):
            if maps:
                with contextlib.suppress(ValueError):
                    maps[-1][head[:-1]] = int(rest.split()[0])
            continue
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            parts = line.split(None, 5)
            lo, hi = head.split("-")
            maps.append({"start": int(lo, 16), "end": int(hi, 16), "perms": parts[1],
                         "path": parts[5].strip() if len(parts) > 5 else ""})
    return maps


def lib_name(path: str) -> str | None:
    """``libavcodec.so.59`` for ``/usr/lib/.../libavcodec.so.59.37.100`` (a shared object: its
    code, data and relocations), None for other files."""
    base = os.path.basename(path.removesuffix(" (deleted)"))
    i = base.find(".so")
    if i <= 0 or (len(base) > i + 3 and base[i + 3] != "."):
        return None
    ver = base[i + 3:].lstrip(".").split(".")[0]
    return base[: i + 3] + (f".{ver}" if ver else "")


def smaps_groups(maps: list[dict[str, Any]]) -> dict[str, Any]:
    """Resident memory (MB) of a process per kind of mapping:

    * ``heap`` — the ``[heap]`` (brk) segment: glibc's main arena;
    * ``anon_arena`` — anonymous mappings inside glibc's 64 MiB thread-arena reservations
      (:data:`ARENA_BYTES`): what ``malloc`` from threads (decoder threads, onnxruntime/OpenVINO
      workers, the executor) holds;
    * ``anon_other`` — all other anonymous memory: mallocs above the mmap threshold (large frames,
      tensors), allocators of their own (TBB's, Go's), thread stacks' touched pages;
    * ``libs`` — shared objects' own mappings (code, data, relocations), per library in
      ``lib`` (those of 1 MB or more);
    * ``files`` — other file mappings (model weights read with mmap, SQLite's shm, /dev/shm);
    * ``other`` — ``[stack]``, ``[vdso]``, ``[vvar]``...

    Also ``anon_maps``: the number of anonymous mappings (glibc's mmapped chunks and arenas),
    and ``arenas``: the number of glibc thread-arena heaps (64 MiB reservations; an arena grows by
    chaining more of them)."""
    kb: dict[str, int] = {"heap": 0, "anon_arena": 0, "anon_other": 0, "libs": 0, "files": 0, "other": 0}
    libs: dict[str, int] = {}
    anon_maps = 0
    anon = [m for m in maps if not m["path"] or m["path"].startswith("[anon")]
    arena_bases: set[int] = set()
    for m in anon:  # a 64 MiB-aligned start and the reservation ends inside anonymous mappings
        if m["start"] % ARENA_BYTES == 0 and m["end"] - m["start"] <= ARENA_BYTES:
            arena_bases.add(m["start"])
    anon_ranges = sorted((m["start"], m["end"]) for m in anon)
    covered: set[int] = set()
    for base in arena_bases:
        pos = base
        for lo, hi in anon_ranges:
            if lo == pos and hi <= base + ARENA_BYTES:
                pos = hi
        if pos == base + ARENA_BYTES:
            covered.add(base)
    for m in maps:
        rss = int(m.get("Rss", 0))
        path = m["path"]
        if path == "[heap]":
            kb["heap"] += rss
        elif not path or path.startswith("[anon"):
            anon_maps += 1
            base = m["start"] - m["start"] % ARENA_BYTES
            kb["anon_arena" if base in covered else "anon_other"] += rss
        elif path.startswith("["):
            kb["other"] += rss
        elif (name := lib_name(path)) is not None:
            kb["libs"] += rss
            libs[name] = libs.get(name, 0) + rss
        else:
            kb["files"] += rss
    out: dict[str, Any] = {k: round(v / 1024, 2) for k, v in kb.items()}
    out["anon_maps"] = anon_maps
    out["arenas"] = len(covered)
    out["lib"] = {k: round(v / 1024, 2) for k, v in sorted(libs.items()) if v >= 1024}
    return out


def smaps_sample(pid: int) -> dict[str, Any] | None:
    """:func:`smaps_groups` of a live process; None when it is gone or not readable."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return smaps_groups(parse_smaps(text)) if text else None


def find_weed(hub_pid: int) -> Any:
    """The hub's SeaweedFS server (a ``weed`` child process), or None."""
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        for c in psutil.Process(hub_pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if "weed" in c.name() or any("weed" in a for a in c.cmdline()[:1]):
                    return c
    return None


def descendants(pids: list[int]) -> set[int]:
    import psutil

    out: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.add(pid)
            out |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
    return out


def orphans(known: set[int], marker: str) -> list[dict[str, Any]]:
    """Processes of the run still alive: a known pid, or a command line naming ``marker``."""
    import psutil

    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.pid == me or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmd = " ".join(p.info["cmdline"] or [])
        if p.pid in known or marker in cmd:
            out.append({"pid": p.pid, "cmdline": cmd[:200]})
    return out


def archive_counts(db_path: Path, seg_s: float, cameras: list[str], t0: float) -> dict[str, Any]:
    """Segments, lost windows and events from the hub's SQLite database (module docstring)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT site, room, camera, start, end FROM segments ORDER BY start").fetchall()
        events = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        con.close()

    def ts(v: str) -> float:
        return datetime.fromisoformat(v).timestamp()

    per: dict[str, list[tuple[float, float]]] = {}
    for site, room, cam, start, end in rows:
        per.setdefault(f"{site}/{room}/{cam}", []).append((ts(start), ts(end)))
    lost = 0
    gaps: list[dict[str, Any]] = []
    for cam in cameras:
        segs = per.get(cam)
        if not segs:
            lost += max(0, int((time.time() - t0) // seg_s) - 1)
            gaps.append({"camera": cam, "after": None, "missing_s": None})
            continue
        span = max(e for _, e in segs) - min(s for s, _ in segs)
        lost += max(0, round(span / seg_s) - len({s for s, _ in segs}))
        prev_end = None
        for start, end in sorted(segs):
            if prev_end is not None and start - prev_end >= seg_s / 2:
                gaps.append({"camera": cam, "after": datetime.fromtimestamp(prev_end, UTC).isoformat(),
                             "missing_s": round(start - prev_end, 1)})
            prev_end = end if prev_end is None else max(prev_end, end)
    return {"segments": len(rows), "lost_segments": lost, "events": int(events), "gaps": gaps}


#: Log lines that say a segment did not reach the archive (the agents' and the hub's logs).
LOSS_MARKERS = ("hub rejected segment", "dropped", "evicted", "Traceback", "level=ERROR")


def log_findings(logs: Path) -> dict[str, Any]:
    """Per log file, how many lines carry each of :data:`LOSS_MARKERS`, and the first few: what a
    lost segment left behind (``lost_segments`` says how many, this says where to look)."""
    out: dict[str, Any] = {}
    for f in sorted(logs.glob("*.log")):
        counts: dict[str, int] = {}
        first: list[str] = []
        with contextlib.suppress(OSError), open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                hit = [m for m in LOSS_MARKERS if m in line]
                for m in hit:
                    counts[m] = counts.get(m, 0) + 1
                if hit and len(first) < 5:
                    first.append(line.strip()[:300])
        if counts:
            out[f.name] = {"counts": counts, "first": first}
    return out


#: ``/metrics`` gauges each sample records (MB): SQLite's own heap inside the hub.
GAUGES = {"evalwatch_sqlite_memory_bytes": "sqlite_mb"}


async def hub_gauges(client: Any, token: str) -> dict[str, float]:
    """:data:`GAUGES` from the hub's ``/metrics`` (the scraper's bearer token), in MB."""
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    out = {}
    for line in r.text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            out[GAUGES[name]] = round(float(value) / 2**20, 2)
    return out


def say(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    import psutil

    from config import load_config
    from dashboard.security import metrics_token

    tmp = Path(tempfile.mkdtemp(prefix="evalwatch-soak-"))
    sites = {f"s{i:02d}": [CLIPS[i % len(CLIPS)]] for i in range(1, args.cameras + 1)}
    cfg_path = write_system_config(
        tmp, sites, users=[{"username": "sup", "role": "supervisor", "password": SUP_PW}],
        segment_seconds=args.segment_seconds, detection={"analysis_fps": args.fps},
    )
    if args.analysis == "hub":
        import yaml

        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        for site in raw["sites"]:
            site["analysis"] = "hub"
        cfg_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    if args.hub_config:
        import yaml

        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        for key, value in args.hub_config:
            node = raw
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = yaml.safe_load(value)
        cfg_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    cfg = load_config(str(cfg_path))
    cams = [f"{s.id}/{r.id}/{c.id}" for s, r, c in cfg.cameras()]
    logs = tmp / "logs"
    logs.mkdir()
    res: dict[str, Any] = {
        "minutes": args.minutes, "cameras": len(cams), "warmup_minutes": args.warmup,
        "interval_s": args.interval, "analysis": args.analysis, "analysis_fps": args.fps,
        "segment_seconds": args.segment_seconds, "cpus": os.cpu_count(), "loadavg_before": loadavg(),
        "hub_env": dict(args.hub_env), "hub_config": dict(args.hub_config),
    }
    env = dict(args.hub_env)
    if args.trace_memory:
        env["EVALWATCH_TRACE_MEMORY"] = str(args.trace_memory)
    if args.trace_memory:
        env["EVALWATCH_TRACE_MEMORY_WARMUP"] = str(args.warmup * 60)
    if args.memray:
        env["EVALWATCH_MEMRAY"] = res["memray_capture"] = args.memray
    hub = start_hub(cfg_path, logs / "hub.log", env=env)
    farms: list[Any] = []
    known: set[int] = {hub.pid}
    samples: list[dict[str, Any]] = []
    try:
        await wait_healthy(cfg.hub.url, hub, timeout=600)
        weed = find_weed(hub.pid)
        say(f"hub up pid={hub.pid} seaweedfs pid={weed.pid if weed else None}")
        site_ids = list(sites)
        nf = max(1, min(args.farms, len(site_ids)))
        life = args.minutes * 60 + 600
        farms = [spawn_farm(cfg_path, site_ids[k::nf], life, logs / f"farm-{k}.log", segments=True)
                 for k in range(nf)]
        async with httpx.AsyncClient(base_url=cfg.hub.url, timeout=30) as c:
            (await c.post("/api/auth/login", json={"username": "sup", "password": SUP_PW})).raise_for_status()
            online = 0
            for _ in range(240):
                with contextlib.suppress(httpx.HTTPError):
                    status = (await c.get("/api/cameras/status")).json()["cameras"]
                    online = sum(1 for x in status if x["online"])
                if online >= len(cams):
                    break
                await asyncio.sleep(1)
            res["cameras_online"] = online
            say(f"{online}/{len(cams)} cameras online; sampling every {args.interval:.0f} s "
                f"for {args.minutes} min")
            hub_p = psutil.Process(hub.pid)
            secret = cfg.hub.secret_key.get_secret_value() if cfg.hub.secret_key else ""
            token = metrics_token(secret)
            t0 = time.monotonic()
            res_t0 = time.time()
            t_end = t0 + args.minutes * 60
            # Ctrl-C ends the sampling early and still reports (a second one stops at once)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def _stop_sampling() -> None:
                say("Ctrl-C: sampling stops now; the bench stops the hub and reports "
                    "(Ctrl-C again to abandon)")
                stop.set()
                loop.remove_signal_handler(signal.SIGINT)

            loop.add_signal_handler(signal.SIGINT, _stop_sampling)
            while True:
                known |= descendants([hub.pid, *(f.pid for f in farms)])
                if weed is None:
                    weed = find_weed(hub.pid)
                h, w = proc_sample(hub_p), proc_sample(weed) if weed else None
                if h is None:
                    raise RuntimeError("the hub process died during the soak")
                s = {"t_min": round((time.monotonic() - t0) / 60, 3), "hub": h, "seaweedfs": w,
                     "load": loadavg()[0], "hub_smaps": smaps_sample(hub.pid),
                     "seaweedfs_smaps": smaps_sample(weed.pid) if weed else None}
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    status = (await c.get("/api/cameras/status")).json()["cameras"]
                    s["online"] = sum(1 for x in status if x["online"])
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    s["hub_gauges"] = await hub_gauges(c, token)
                samples.append(s)
                weed_txt = f" | seaweedfs rss {w['rss_mb']:.1f} MB fds {w['fds']}" if w else ""
                say(f"t={s['t_min']:6.2f} min hub rss {h['rss_mb']:.1f} MB fds {h['fds']} "
                    f"threads {h['threads']}{weed_txt} | online {s.get('online')} load {s['load']}")
                if time.monotonic() >= t_end or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    left = max(0.0, t_end - time.monotonic())
                    await asyncio.wait_for(stop.wait(), min(args.interval, left))
            if stop.is_set():
                res["stopped_early_at_min"] = samples[-1]["t_min"] if samples else 0.0
            else:
                loop.remove_signal_handler(signal.SIGINT)
        res["loadavg_after"] = loadavg()
        # the agents stop first; their last segments reach the hub before it stops
        stop_all(farms)
        await asyncio.sleep(args.segment_seconds + 5)
        res.update(archive_counts(Path(cfg.storage.data_dir) / "evalwatch.db", args.segment_seconds,
                                  cams, res_t0))
    finally:
        with contextlib.suppress(Exception):
            known |= descendants([hub.pid, *(f.pid for f in farms)])
        stop_all([*farms, hub])
        res["log_findings"] = log_findings(logs)
        if args.hub_log:
            with contextlib.suppress(OSError):
                shutil.copy(logs / "hub.log", args.hub_log)
        time.sleep(15)  # noqa: ASYNC251 - give stragglers time to exit before counting them
        res["orphans"] = orphans(known, str(tmp))
        if args.keep:
            res["tmp"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    warm = [s for s in samples if s["t_min"] >= args.warmup]

    def fit(key: str, field: str) -> float | None:
        pts = [(s["t_min"], s[key][field]) for s in warm if s.get(key)]
        v = slope([p[0] for p in pts], [p[1] for p in pts])
        return round(v, 4) if v is not None else None

    res["hub_rss_slope_mb_per_min"] = fit("hub", "rss_mb")
    # the same over each half of the window: settling memory (an allocator reaching its working
    # size) shows as a first half steeper than the second; a leak keeps both alike
    if warm:
        mid = round((warm[0]["t_min"] + warm[-1]["t_min"]) / 2, 1)
        halves: dict[str, float | None] = {"split_min": mid}
        for name, part in (("first", [x for x in warm if x["t_min"] <= mid]),
                           ("second", [x for x in warm if x["t_min"] >= mid])):
            v = slope([x["t_min"] for x in part], [x["hub"]["rss_mb"] for x in part])
            halves[name] = round(v, 4) if v is not None else None
        res["hub_rss_slope_halves_mb_per_min"] = halves
    # SQLite's page caches fill as the database grows (bounded: ~2 MiB per open connection);
    # the hub's RSS without them says whether anything else grows
    res["hub_sqlite_slope_mb_per_min"] = fit("hub_gauges", "sqlite_mb")
    pts = [(x["t_min"], x["hub"]["rss_mb"] - x["hub_gauges"]["sqlite_mb"]) for x in warm
           if x.get("hub_gauges", {}).get("sqlite_mb") is not None]
    rest = slope([t for t, _ in pts], [y for _, y in pts])
    res["hub_rss_without_sqlite_slope_mb_per_min"] = round(rest, 4) if rest is not None else None
    res["hub_sqlite_mb_start_end"] = (
        [x.get("hub_gauges", {}).get("sqlite_mb") for x in (samples[0], samples[-1])] if samples else None
    )
    res["hub_fds_slope_per_min"] = fit("hub", "fds")
    res["hub_threads_slope_per_min"] = fit("hub", "threads")
    res["seaweedfs_rss_slope_mb_per_min"] = fit("seaweedfs", "rss_mb")
    res["seaweedfs_fds_slope_per_min"] = fit("seaweedfs", "fds")
    for who in ("hub", "seaweedfs"):  # what a fix costs: CPU seconds per minute after warm-up
        res[f"{who}_cpu_s_per_min"] = fit(who, "cpu_s")
    res["hub_rss_mb_start_end"] = (
        [round(samples[0]["hub"]["rss_mb"], 1), round(samples[-1]["hub"]["rss_mb"], 1)] if samples else None
    )
    res["hub_fds_start"] = samples[0]["hub"]["fds"] if samples else None
    res["hub_fds_end"] = samples[-1]["hub"]["fds"] if samples else None
    res["hub_threads_end"] = samples[-1]["hub"]["threads"] if samples else None
    for who in ("hub", "seaweedfs"):
        res[f"{who}_smaps_slope_mb_per_min"], res[f"{who}_smaps_start_end_mb"] = smaps_summary(
            warm, f"{who}_smaps")
    res["samples_after_warmup"] = len(warm)
    res["samples"] = samples
    return res


SMAPS_GROUPS = ("heap", "anon_arena", "anon_other", "libs", "files", "other")


def smaps_summary(
    warm: list[dict[str, Any]], key: str
) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    """Per :func:`smaps_groups` group (and per library that changed): the least-squares slope in
    MB/min over the samples after the warm-up, and the first / last value."""
    pts = [(s["t_min"], s[key]) for s in warm if s.get(key)]
    if not pts:
        return {}, {}
    ts = [t for t, _ in pts]
    slopes: dict[str, float | None] = {}
    ends: dict[str, list[float]] = {}

    def put(name: str, ys: list[float]) -> None:
        v = slope(ts, ys)
        slopes[name] = round(v, 4) if v is not None else None
        ends[name] = [ys[0], ys[-1]]

    for g in (*SMAPS_GROUPS, "anon_maps", "arenas"):
        put(g, [float(g_[g]) for _, g_ in pts])
    for lib in sorted({k for _, g_ in pts for k in g_["lib"]}):
        ys = [float(g_["lib"].get(lib, 0.0)) for _, g_ in pts]
        if max(ys) - min(ys) >= 0.5:  # libraries whose own mappings moved (relocated data, bss)
            put(f"lib:{lib}", ys)
    return slopes, ends


def table(res: dict[str, Any]) -> str:
    rows = [
        ("cameras (online) / minutes / warm-up", f"{res['cameras']} ({res.get('cameras_online')}) / "
         f"{res['minutes']} / {res['warmup_minutes']}"
         + (f" (stopped by Ctrl-C at {res['stopped_early_at_min']} min)"
            if "stopped_early_at_min" in res else "")),
        ("analysis / fps", f"{res['analysis']} / {res['analysis_fps']}"),
        ("hub RSS start -> end (MB)", str(res.get("hub_rss_mb_start_end"))),
        ("hub RSS slope after warm-up (MB/min)", str(res.get("hub_rss_slope_mb_per_min"))),
        ("  before / after the window's middle", _halves(res.get("hub_rss_slope_halves_mb_per_min"))),
        ("  of it SQLite's page caches / the rest (MB/min)",
         f"{res.get('hub_sqlite_slope_mb_per_min')} / {res.get('hub_rss_without_sqlite_slope_mb_per_min')}"),
        ("hub fds start / end / slope per min", f"{res.get('hub_fds_start')} / {res.get('hub_fds_end')} / "
         f"{res.get('hub_fds_slope_per_min')}"),
        ("hub threads end / slope per min",
         f"{res.get('hub_threads_end')} / {res.get('hub_threads_slope_per_min')}"),
        ("hub / SeaweedFS CPU s per min", f"{res.get('hub_cpu_s_per_min')} / "
         f"{res.get('seaweedfs_cpu_s_per_min')}"),
        ("SeaweedFS RSS / fds slope per min", f"{res.get('seaweedfs_rss_slope_mb_per_min')} / "
         f"{res.get('seaweedfs_fds_slope_per_min')}"),
        ("hub RSS slope per mapping group (MB/min)", _groups(res.get("hub_smaps_slope_mb_per_min"))),
        ("SeaweedFS slope per mapping group", _groups(res.get("seaweedfs_smaps_slope_mb_per_min"))),
        ("segments stored / lost", f"{res.get('segments')} / {res.get('lost_segments')}"),
        ("events", str(res.get("events"))),
        ("orphans", str(len(res.get("orphans", [])))),
        ("load avg before / after (CPUs)", f"{res.get('loadavg_before')} / {res.get('loadavg_after')} "
         f"({res.get('cpus')})"),
    ]
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(w)}  {b}" for a, b in rows)


def _halves(h: dict[str, float | None] | None) -> str:
    return f"{h.get('first')} / {h.get('second')} (split at {h.get('split_min')})" if h else "None"


def _groups(slopes: dict[str, float | None] | None) -> str:
    if not slopes:
        return "None"
    return ", ".join(f"{k} {v:+.2f}" for k, v in slopes.items()
                     if v is not None and (k in SMAPS_GROUPS or abs(v) >= 0.05))


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v

    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cameras", type=positive(int), default=20)
    ap.add_argument("--minutes", type=positive(float), default=120)
    ap.add_argument("--warmup", type=float, default=10, help="minutes left out of the slope")
    ap.add_argument("--interval", type=positive(float), default=30, help="seconds between samples")
    ap.add_argument("--analysis", choices=["hub", "agent"], default="hub")
    ap.add_argument("--fps", type=positive(float), default=1.0, help="detection.analysis_fps")
    ap.add_argument("--segment-seconds", type=positive(float), default=10)
    ap.add_argument("--farms", type=positive(int), default=2)
    ap.add_argument("--trace-memory", type=positive(float), default=None, metavar="MINUTES",
                    help="hub with tracemalloc diffs in its log every MINUTES (evalwatch.memtrace)")
    ap.add_argument("--memray", default=None, metavar="FILE",
                    help="the hub writes every allocation to FILE (memray; evalwatch.memtrace) for "
                         "bench/memgrowth.py")
    ap.add_argument("--hub-env", nargs="*", default=[], type=_kv, metavar="KEY=VALUE",
                    help="extra environment of the hub process (e.g. MALLOC_ARENA_MAX=2)")
    ap.add_argument("--hub-config", nargs="*", default=[], type=_kv, metavar="KEY=VALUE",
                    help="set a hub config setting (dotted path, YAML value), e.g. "
                         "hub.malloc_trim_seconds=0")
    ap.add_argument("--hub-log", default=None, help="copy the hub's log here at the end")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)
    if args.warmup < 0 or args.warmup >= args.minutes:
        ap.error(f"--warmup must be >= 0 and below --minutes ({args.minutes}), got {args.warmup}")
    if args.memray:
        args.memray = str(Path(args.memray).resolve())
        if Path(args.memray).exists():
            ap.error(f"--memray {args.memray}: the file exists already")
        try:
            import memray  # noqa: F401
        except ImportError:
            ap.error("--memray needs memray: pip install 'evalwatch[profile]'")
    res = asyncio.run(run(args))
    print(table(res))
    if args.memray:
        ats = " ".join(f"{m:g}" for m in (args.warmup, (args.warmup + args.minutes) / 2, args.minutes))
        print(f"memray capture: {args.memray}\n  python bench/memgrowth.py {args.memray} --at {ats}")
    if args.json:
        keys = ("minutes", "cameras", "hub_rss_slope_mb_per_min", "hub_fds_end", "lost_segments", "orphans")
        out = {k: res.get(k) for k in keys} | {"detail": res}
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
