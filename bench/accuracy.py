"""Accuracy of ``evalwatch analyze`` on the sample clips against their ground truth.

    .venv/bin/python bench/accuracy.py [--samples sample_videos] [--clips room_a room_b] [--json]

For every ``<clip>.mp4`` with ``<clip>.room.yaml`` and ``<clip>.truth.json`` it runs the same
code path as ``evalwatch analyze`` (default detector and config) and matches events to truth:
a detected event matches a truth event with the same rule, seat (and kind for camera_tamper)
whose time interval overlaps (``--slack`` seconds of tolerance).  Truth ``seat_empty`` runs
shorter than ``rules.seat_empty_seconds`` are not incidents by definition and are skipped.

Prints per-rule precision, recall, false alarms (detections matching no truth event) per
camera-hour, and duplicates (extra detections of an already-matched incident).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.cli import analyze_video
from analysis.events import Event
from config import DetectionConfig, RulesConfig, load_room

RULES = ["extra_person", "phone", "seat_empty", "camera_tamper"]


def clips(samples: Path, only: list[str] | None) -> list[Path]:
    out = []
    for mp4 in sorted(samples.glob("*.mp4")):
        if only and mp4.stem not in only:
            continue
        if mp4.with_suffix(".truth.json").is_file() and mp4.with_suffix(".room.yaml").is_file():
            out.append(mp4)
    return out


def same(e: Event | dict[str, Any], t: dict[str, Any]) -> bool:
    d = e.summary() if isinstance(e, Event) else e
    if d["rule"] != t["rule"] or d.get("seat") != t.get("seat"):
        return False
    return d["rule"] != "camera_tamper" or d.get("kind") == t.get("kind")


def overlaps(a0: float, a1: float | None, b0: float, b1: float, slack: float) -> bool:
    a1 = a0 if a1 is None else a1
    return a0 <= b1 + slack and b0 <= a1 + slack


def score_clip(events: list[Event], truth: list[dict[str, Any]], slack: float) -> dict[str, Any]:
    """Per-rule counts: truth, recalled, detected, correct, false alarms, duplicates."""
    res: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    matched_truth: set[int] = set()
    fa_list = []
    for t in truth:
        res[t["rule"]]["truth"] += 1
    for e in events:
        r = res[e.rule]
        r["detected"] += 1
        hits = [i for i, t in enumerate(truth)
                if same(e, t) and overlaps(e.start_s, e.end_s, t["start_s"], t["end_s"], slack)]
        if not hits:
            r["false_alarms"] += 1
            fa_list.append(e.summary())
        elif all(i in matched_truth for i in hits):
            r["correct"] += 1
            r["duplicates"] += 1
        else:
            r["correct"] += 1
            matched_truth.update(hits)
    missed = [t for i, t in enumerate(truth) if i not in matched_truth]
    for i in matched_truth:
        res[truth[i]["rule"]]["recalled"] += 1
    return {"rules": {k: dict(v) for k, v in res.items()}, "false_alarms": fa_list, "missed": missed}


def f(v: float | None) -> str:
    return "   -" if v is None else f"{v:.3f}"


def _brief(evs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["rule"], e.get("kind"), e["seat"], e["start_s"], e["end_s"]) for e in evs]


def bench_args(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """The options both analysis benchmarks take: --samples, --clips, --slack, --json."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, default=Path(__file__).resolve().parents[1] / "sample_videos")
    ap.add_argument("--clips", nargs="*")
    ap.add_argument("--slack", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    return ap.parse_args(argv)


def default_detector(dcfg: DetectionConfig) -> Any:
    """The detector the hub builds from ``dcfg`` (the default ONNX models)."""
    from analysis.detector import load_detector

    return load_detector(dcfg.backend, dcfg.model_path, person_threshold=dcfg.person_threshold,
                         phone_threshold=dcfg.phone_threshold, threads=dcfg.threads)


def main(argv: list[str] | None = None) -> int:
    args = bench_args(__doc__ or "", argv)
    paths = clips(args.samples, args.clips)
    if not paths:
        print(f"no clips with truth in {args.samples}", file=sys.stderr)
        return 2
    dcfg, rcfg = DetectionConfig(), RulesConfig()
    detector = default_detector(dcfg)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    hours = 0.0
    per_clip = {}
    t_start = time.perf_counter()
    for mp4 in paths:
        doc = json.loads(mp4.with_suffix(".truth.json").read_text(encoding="utf-8"))
        truth = [t for t in doc["events"]
                 if not (t["rule"] == "seat_empty" and t["end_s"] - t["start_s"] < rcfg.seat_empty_seconds)]
        hours += float(doc["duration_s"]) / 3600.0
        room = load_room(mp4.with_suffix(".room.yaml"))
        events = analyze_video(mp4, room, detector, detection_cfg=dcfg, rules_cfg=rcfg)
        sc = score_clip(events, truth, args.slack)
        per_clip[mp4.stem] = sc
        for rule, counts in sc["rules"].items():
            for k, v in counts.items():
                totals[rule][k] += v
        if not args.json:
            print(f"{mp4.stem}: {len(events)} events, {len(truth)} truth; "
                  f"missed {_brief(sc['missed'])}; false alarms {_brief(sc['false_alarms'])}",
                  flush=True)
    summary = {}
    for rule in RULES:
        c = totals.get(rule, {})
        tr, rec, det, ok = c.get("truth", 0), c.get("recalled", 0), c.get("detected", 0), c.get("correct", 0)
        summary[rule] = {
            "truth": tr, "detected": det,
            "recall": None if tr == 0 else rec / tr,
            "precision": None if det == 0 else ok / det,
            "false_alarms": c.get("false_alarms", 0),
            "false_alarms_per_camera_hour": c.get("false_alarms", 0) / hours if hours else None,
            "duplicates": c.get("duplicates", 0),
        }
    fa_total = sum(s["false_alarms"] for s in summary.values())
    out = {"clips": [p.stem for p in paths], "camera_hours": hours, "rules": summary,
           "false_alarms_per_camera_hour": fa_total / hours, "seconds": time.perf_counter() - t_start}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"\n{len(paths)} clips, {hours * 3600:.0f} s = {hours:.3f} camera-hours, "
              f"{out['seconds']:.0f} s wall")
        print(f"{'rule':<14} {'truth':>5} {'det':>4} {'recall':>7} {'precision':>9} {'FA':>3} "
              f"{'FA/cam-h':>8} {'dup':>3}")
        for rule, s in summary.items():
            print(f"{rule:<14} {s['truth']:>5} {s['detected']:>4} {f(s['recall']):>7} {f(s['precision']):>9} "
                  f"{s['false_alarms']:>3} {s['false_alarms_per_camera_hour']:>8.1f} {s['duplicates']:>3}")
        print(f"all rules: {fa_total} false alarms = "
              f"{out['false_alarms_per_camera_hour']:.1f} per camera-hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
