"""CPU cost of the analysis per camera, for each detector set-up, on the same frames in one run.

    .venv/bin/python bench/runtime.py [--set samples dev] [--setups onnxruntime default fast ...] [--fps 2 1]
                                      [--rounds 2] [--json FILE]

What a camera costs is the CPU the analysis spends per second of video: frames decoded once
(not counted: the agent decodes its cameras anyway to stream them, the hub to show them) and
thinned to ``--fps``, then :func:`analysis.core.analyze_frames` with the set-up's detector and
config — motion gate, seat crops, rules, as ``evalwatch analyze`` and the edge agent run them.
CPU is this process's CPU time (every ONNX Runtime thread included), so another load on the
machine slows the run but hardly changes the figure.  Each round runs every set-up on the same
clip one after the other (paired), and the ratio to the first set-up is the median over clips
and rounds.

Printed per set-up and rate:

* ``ms/frame`` — CPU per analysed frame (seat crops included);
* ``core % per camera`` — CPU per second of video, in % of one core (issue #11's edge target:
  <= 35 % at 2 fps);
* ``cameras per 2 cores`` — how many cameras two cores could analyse at that rate if they did
  nothing else (the hub also decodes and records: a ceiling, not a promise);
* ``ratio`` — CPU per video second against the first set-up.

Set-ups are those of ``bench/accuracy.py`` (``default``, ``fast``, ``before``), which also
reports the accuracy of each on the evaluation set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accuracy import SETS, clips, default_detector, setups

from analysis.core import CoreStats, analyze_frames
from analysis.video import iter_video_frames
from config import load_room

FIELDS = ("cpu_s", "video_s", "frames", "crops")


def cpu() -> float:
    return time.process_time()


def main(argv: list[str] | None = None) -> int:
    all_setups = setups()
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--set", nargs="+", choices=sorted(SETS), default=["samples", "dev"], dest="sets")
    ap.add_argument("--setups", nargs="+", choices=sorted(all_setups),
                    default=["onnxruntime", "default", "fast", "fast-openvino"])
    ap.add_argument("--fps", nargs="+", type=float, default=[2.0, 1.0], help="analysed frames/s per camera")
    ap.add_argument("--clips", nargs="*", help="only these clip names")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    paths = [p for name in args.sets for p in clips(SETS[name], args.clips)]
    if not paths:
        print("no clips", file=sys.stderr)
        return 2
    detectors = {name: default_detector(all_setups[name][0]) for name in args.setups}
    # per (setup, fps): cpu seconds, video seconds, frames; per-clip ratios against setups[0]
    acc: dict[tuple[str, float], dict[str, float]] = {}
    ratios: dict[tuple[str, float], list[float]] = {}
    load0 = os.getloadavg()
    t_start = time.monotonic()
    for fps in args.fps:
        for mp4 in paths:
            room = load_room(mp4.with_suffix(".room.yaml"))
            frames = list(iter_video_frames(mp4, fps))
            video_s = frames[-1][0] - frames[0][0] + 1.0 / fps if frames else 0.0
            for _ in range(args.rounds):
                per: dict[str, float] = {}
                for name in args.setups:
                    dcfg, rcfg = all_setups[name]
                    dcfg = dcfg.model_copy(update={"analysis_fps": fps})
                    stats = CoreStats()
                    c0 = cpu()
                    analyze_frames(iter(frames), room, detectors[name], rcfg, dcfg, stats=stats)
                    used = cpu() - c0
                    a = acc.setdefault((name, fps), dict.fromkeys(FIELDS, 0.0))
                    a["cpu_s"] += used
                    a["video_s"] += video_s
                    a["frames"] += stats.frames
                    a["crops"] += stats.crops
                    per[name] = used / video_s
                base = per[args.setups[0]]
                for name in args.setups:
                    ratios.setdefault((name, fps), []).append(per[name] / base)
            print(f"  {mp4.parent.name}/{mp4.stem} @ {fps:g} fps: "
                  + "  ".join(f"{n} {per[n] * 100:.1f}%" for n in args.setups), flush=True)
    load1 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    print(f"\n{len(paths)} clips ({', '.join(args.sets)}), {args.rounds} rounds, "
          f"{time.monotonic() - t_start:.0f} s; cores {os.cpu_count()}, "
          f"load {load0[0]:.1f} -> {load1[0]:.1f}")
    print(f"{'set-up':<10}{'fps':>5}{'ms/frame':>10}{'crops/frame':>13}{'core %/camera':>15}"
          f"{'cameras/2 cores':>17}{'ratio':>7}")
    for (name, fps), a in sorted(acc.items(), key=lambda kv: (-kv[0][1], args.setups.index(kv[0][0]))):
        per_s = a["cpu_s"] / a["video_s"]
        row = {"setup": name, "fps": fps, "ms_per_frame": 1000 * a["cpu_s"] / max(1.0, a["frames"]),
               "crops_per_frame": a["crops"] / max(1.0, a["frames"]), "core_pct_per_camera": 100 * per_s,
               "cameras_per_2_cores": 2.0 / per_s if per_s > 0 else None,
               "ratio": statistics.median(ratios[(name, fps)])}
        rows.append(row)
        print(f"{name:<10}{fps:>5g}{row['ms_per_frame']:>10.1f}{row['crops_per_frame']:>13.2f}"
              f"{row['core_pct_per_camera']:>15.1f}{row['cameras_per_2_cores']:>17.1f}{row['ratio']:>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows, "sets": args.sets, "rounds": args.rounds,
                                               "load": [load0[0], load1[0]], "cores": os.cpu_count()},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
