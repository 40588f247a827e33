"""Which allocation sites hold a process's memory growth: a memray capture read at chosen minutes.

``python bench/memgrowth.py CAPTURE.bin --at 10 40 64 [--top 25] [--json out.json]``

``CAPTURE.bin`` is a memray capture of every allocation (``memray.FileFormat.ALL_ALLOCATIONS``)
— the hub writes one with ``EVALWATCH_MEMRAY=FILE`` (``evalwatch.memtrace``; ``bench/soak.py
--memray FILE``).  memray sees every ``malloc``/``mmap`` of the process, native ones too (FFmpeg,
OpenVINO, SQLite, OpenSSL), each with the Python stack that led to it; pymalloc's small objects
show as the 1 MiB arenas it maps.  For each ``--at`` minute (since tracking began) this sums the
bytes still allocated per site (Python stack) and prints:

* the process's RSS and memray's total of live bytes at each minute — RSS rising while the live
  bytes stay flat is the allocator (fragmentation, pages not given back), not a leak;
* the live bytes per subsystem (the innermost frame's file, :func:`evalwatch.memtrace.subsystem`);
* the ``--top`` sites whose live bytes grew most from the first to the last minute.

Reading a capture takes ~1 minute per GB.  Needs memray (``pip install 'evalwatch[profile]'``).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalwatch.memtrace import subsystem

MB = 1024 * 1024


def site_name(stack: list[Any]) -> tuple[str, str]:
    """``(site, subsystem)`` of a Python stack (innermost frame first): the innermost frames,
    shortened, and the subsystem of the innermost frame that maps to one (else "other")."""
    frames = []
    sub = "other"
    for fn, filename, line in stack:
        short = filename.split("site-packages/")[-1]
        for root in ("/capture/", "/analysis/", "/storage/", "/dashboard/", "/sessions/", "/evalwatch/"):
            if root in short:
                short = root.strip("/") + "/" + short.split(root, 1)[1]
                break
        frames.append(f"{fn} {short}:{line}")
        if sub == "other":
            sub = subsystem(filename)
    return " <- ".join(frames[:6]) or "(no Python frame: a native thread)", sub


def live_bytes(capture: Path, minutes: list[float]) -> dict[str, Any]:
    """Live bytes per site at each of ``minutes`` (see module docstring)."""
    from memray import FileReader

    reader = FileReader(str(capture))
    snaps = list(reader.get_memory_snapshots())
    if not snaps:
        raise SystemExit(f"{capture}: no memory snapshots (is it a memray capture of all allocations?)")
    t0 = snaps[0].time
    times = [(s.time - t0) / 60000 for s in snaps]
    span = times[-1]
    late = [m for m in minutes if m > span + 0.5]
    if late:
        raise SystemExit(f"{capture}: tracking covers {span:.1f} min; --at {late} is past its end")
    idx = [min(bisect.bisect_left(times, m), len(snaps) - 1) for m in minutes]
    per_site: dict[str, list[int]] = defaultdict(lambda: [0] * len(idx))
    subs: dict[str, str] = {}
    for rec in reader.get_temporal_allocation_records(merge_threads=True):
        name, sub = site_name([(f[0], f[1], f[2]) for f in rec.stack_trace(max_stacks=12)])
        subs[name] = sub
        row = per_site[name]
        for iv in rec.intervals:
            for j, s in enumerate(idx):
                if iv.allocated_before_snapshot <= s and (
                    iv.deallocated_before_snapshot is None or iv.deallocated_before_snapshot > s
                ):
                    row[j] += iv.n_bytes
    by_sub: dict[str, list[int]] = defaultdict(lambda: [0] * len(idx))
    for name, row in per_site.items():
        for j, v in enumerate(row):
            by_sub[subs[name]][j] += v
    return {
        "minutes": [round(times[i], 2) for i in idx],
        "rss_mb": [round(snaps[i].rss / MB, 1) for i in idx],
        "live_mb": [round(sum(r[j] for r in per_site.values()) / MB, 2) for j in range(len(idx))],
        "subsystems_mb": {k: [round(v / MB, 2) for v in row] for k, row in
                          sorted(by_sub.items(), key=lambda kv: kv[1][-1] - kv[1][0], reverse=True)},
        "sites_mb": {k: [round(v / MB, 3) for v in row] for k, row in
                     sorted(per_site.items(), key=lambda kv: kv[1][-1] - kv[1][0], reverse=True)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--at", type=float, nargs="+", required=True, metavar="MINUTE",
                    help="minutes since tracking began, in order")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.capture.is_file():
        ap.error(f"{args.capture}: no such file")
    if args.at != sorted(args.at) or any(m < 0 for m in args.at):
        ap.error(f"--at must be minutes >= 0 in increasing order, got {args.at}")
    try:
        import memray  # noqa: F401
    except ImportError:
        ap.error("memray is not installed: pip install 'evalwatch[profile]'")
    res = live_bytes(args.capture, args.at)
    cols = "  ".join(f"{m:>8.1f}" for m in res["minutes"])
    print(f"{'minute':<46}{cols}")
    print(f"{'process RSS (MB)':<46}" + "  ".join(f"{v:>8.1f}" for v in res["rss_mb"]))
    print(f"{'live bytes memray sees (MB)':<46}" + "  ".join(f"{v:>8.2f}" for v in res["live_mb"]))
    print("\nper subsystem (MB), most growth first:")
    for k, row in res["subsystems_mb"].items():
        print(f"  {k:<44}" + "  ".join(f"{v:>8.2f}" for v in row))
    print(f"\n{args.top} sites that grew most (MB):")
    for k, row in list(res["sites_mb"].items())[: args.top]:
        print("  " + "  ".join(f"{v:>8.3f}" for v in row) + f"  {k}")
    print("  ...and that shrank most:")
    for k, row in list(res["sites_mb"].items())[-5:]:
        print("  " + "  ".join(f"{v:>8.3f}" for v in row) + f"  {k}")
    if args.json:
        top = dict(list(res["sites_mb"].items())[: args.top])
        args.json.write_text(json.dumps({**res, "sites_mb": top}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
