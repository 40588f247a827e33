"""Merge ``bench/accuracy.py --json`` files of disjoint clip subsets into one, and print it.

    .venv/bin/python bench/accuracy_merge.py OUT.json PART.json [PART.json ...]

On a loaded machine one set can be split over several processes (``--clips``), each writing
its own JSON; this adds their counts back up per set and set-up (truth, recalled, detected,
correct, false alarms, duplicates, camera-hours, analysed frames, detector seconds) and prints
the same tables as ``bench/accuracy.py``.  A (set, set-up) pair may appear in several parts only
with disjoint clips.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import RULES, print_table


def merge(parts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    acc: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for part in parts:
        for name, by_setup in part.items():
            for setup, r in by_setup.items():
                acc[(name, setup)].append(r)
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for (name, setup), rs in acc.items():
        clips = [c for r in rs for c in r["clips"]]
        if len(clips) != len(set(clips)):
            raise SystemExit(f"{name}/{setup}: the parts share clips")
        hours = sum(r["camera_hours"] for r in rs)
        frames = sum(r["analysed_frames"] for r in rs)
        det_ms = sum(r["detector_ms_per_frame"] * r["analysed_frames"] for r in rs)
        rules = {}
        for rule in RULES:
            c = [r["rules"][rule] for r in rs]
            tr = sum(x["truth"] for x in c)
            det = sum(x["detected"] for x in c)
            rec = sum(round((x["recall"] or 0) * x["truth"]) for x in c)
            ok = sum(round((x["precision"] or 0) * x["detected"]) for x in c)
            fa = sum(x["false_alarms"] for x in c)
            rules[rule] = {"truth": tr, "detected": det, "recall": None if tr == 0 else rec / tr,
                           "precision": None if det == 0 else ok / det, "false_alarms": fa,
                           "false_alarms_per_camera_hour": fa / hours if hours else None,
                           "duplicates": sum(x["duplicates"] for x in c)}
        kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"truth": 0, "recalled": 0})
        variations: dict[str, dict[str, float]] = defaultdict(lambda: {"truth": 0, "recalled": 0,
                                                                       "false_alarms": 0})
        for r in rs:
            for k, v in r["tamper_kinds"].items():
                kinds[k]["truth"] += v["truth"]
                kinds[k]["recalled"] += round(v["recall"] * v["truth"])
            for k, v in r["variations"].items():
                variations[k]["truth"] += v["truth"]
                variations[k]["recalled"] += round((v["recall"] or 0) * v["truth"])
                variations[k]["false_alarms"] += v["false_alarms"]
        fa_total = sum(x["false_alarms"] for x in rules.values())
        per_clip = {k: v for r in rs for k, v in r["per_clip"].items()}
        out[name][setup] = {
            "clips": sorted(clips), "camera_hours": hours, "rules": rules,
            "tamper_kinds": {k: {"truth": v["truth"], "recall": v["recalled"] / v["truth"]}
                             for k, v in sorted(kinds.items())},
            "variations": {k: {"truth": v["truth"],
                               "recall": v["recalled"] / v["truth"] if v["truth"] else None,
                               "false_alarms": v["false_alarms"]} for k, v in sorted(variations.items())},
            "false_alarms": fa_total, "false_alarms_per_camera_hour": fa_total / hours if hours else None,
            "analysed_frames": frames, "detector_ms_per_frame": det_ms / max(1, frames),
            "per_clip": dict(sorted(per_clip.items())), "seconds": max(r["seconds"] for r in rs),
            "parts": len(rs)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = merge([json.loads(Path(p).read_text(encoding="utf-8")) for p in args[1:]])
    for name, by_setup in out.items():
        for setup, r in by_setup.items():
            print_table(name, setup, r)
    Path(args[0]).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
