"""Speed of the analysis pipeline vs a naive baseline, on the same clips in the same run.

    .venv/bin/python bench/analysis.py [--samples sample_videos] [--clips room_a room_d] [--json]

* pipeline: exactly ``evalwatch analyze`` (frames thinned to ``analysis_fps`` before colour
  conversion, motion gate with re-check every ``recheck_seconds``, batched detector calls,
  phones on seat crops with each seat re-detected every ``detection.seat_check_s``);
* naive: decode and convert every frame, run the same detector on every full frame (one call
  per frame, no seat crops), the same rules on every frame (``analysis_fps`` = the video rate,
  no gate).

Throughput is *video frames consumed per wall-clock second* (how much camera time one core
keeps up with); the speed-up is the ratio.  Recall/precision of both against the truth files
are computed as in ``bench/accuracy.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accuracy import bench_args, clips, default_detector, score_clip

from analysis.core import CoreStats, analyze_frames
from analysis.video import analyze_video, iter_video_frames
from config import DetectionConfig, RulesConfig, load_room


def naive(mp4: Path, room: Any, detector: Any, rcfg: RulesConfig, fps: float, stats: CoreStats) -> list[Any]:
    dcfg = DetectionConfig(analysis_fps=min(30.0, fps))
    return analyze_frames(iter_video_frames(mp4, None), room, detector, rcfg, dcfg,
                          motion_gate=False, seat_crops=False, batch=1, stats=stats)


def main(argv: list[str] | None = None) -> int:
    args = bench_args(__doc__ or "", argv)
    paths = clips(args.samples, args.clips)
    if not paths:
        print(f"no clips with truth in {args.samples}", file=sys.stderr)
        return 2
    dcfg, rcfg = DetectionConfig(), RulesConfig()
    detector = default_detector(dcfg)
    detector.detect([__import__("numpy").zeros((480, 640, 3), "uint8")])  # warm-up
    agg: dict[str, dict[str, float]] = {m: defaultdict(float) for m in ("pipeline", "naive")}
    for mp4 in paths:
        doc = json.loads(mp4.with_suffix(".truth.json").read_text(encoding="utf-8"))
        truth = [t for t in doc["events"]
                 if not (t["rule"] == "seat_empty" and t["end_s"] - t["start_s"] < rcfg.seat_empty_seconds)]
        room = load_room(mp4.with_suffix(".room.yaml"))
        n_frames = round(float(doc["duration_s"]) * float(doc["fps"]))
        for mode in ("pipeline", "naive"):
            st = CoreStats()
            t0 = time.perf_counter()
            if mode == "pipeline":
                events = analyze_video(mp4, room, detector, detection_cfg=dcfg, rules_cfg=rcfg, stats=st)
            else:
                events = naive(mp4, room, detector, rcfg, float(doc["fps"]), st)
            wall = time.perf_counter() - t0
            sc = score_clip(events, truth, args.slack)
            a = agg[mode]
            a["wall"] += wall
            a["video_frames"] += n_frames
            a["analysed"] += st.frames
            a["detected"] += st.detected
            a["crops"] += st.crops
            a["truth"] += sum(r.get("truth", 0) for r in sc["rules"].values())
            a["recalled"] += sum(r.get("recalled", 0) for r in sc["rules"].values())
            a["detections"] += len(events)
            a["correct"] += sum(r.get("correct", 0) for r in sc["rules"].values())
            if not args.json:
                print(f"{mp4.stem:<8} {mode:<8} {wall:7.1f} s  {n_frames / wall:7.1f} video fps  "
                      f"analysed {st.frames:5d}  detector frames {st.detected:5d}  seat crops {st.crops:5d}  "
                      f"recall {sum(r.get('recalled', 0) for r in sc['rules'].values())}/"
                      f"{sum(r.get('truth', 0) for r in sc['rules'].values())}  "
                      f"false alarms {len(sc['false_alarms'])}", flush=True)
    out: dict[str, Any] = {}
    for mode, a in agg.items():
        out[mode] = {
            "wall_s": round(a["wall"], 2),
            "video_frames_per_s": round(a["video_frames"] / a["wall"], 2),
            "analysed_frames_per_s": round(a["analysed"] / a["wall"], 2),
            "detector_frames": int(a["detected"]),
            "seat_crops": int(a["crops"]),
            "recall": round(a["recalled"] / a["truth"], 3) if a["truth"] else None,
            "precision": round(a["correct"] / a["detections"], 3) if a["detections"] else None,
        }
    out["speedup"] = round(out["pipeline"]["video_frames_per_s"] / out["naive"]["video_frames_per_s"], 2)
    out["clips"] = [p.stem for p in paths]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print()
        for mode in ("pipeline", "naive"):
            o = out[mode]
            print(f"{mode:<8} {o['video_frames_per_s']:7.1f} video frames/s  "
                  f"({o['analysed_frames_per_s']:.1f} analysed/s, {o['detector_frames']} detector frames, "
                  f"{o['seat_crops']} seat crops)  "
                  f"recall {o['recall']}  precision {o['precision']}")
        print(f"speed-up: {out['speedup']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
