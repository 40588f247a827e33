"""Accuracy of ``evalwatch analyze`` against ground truth: demo samples and the evaluation set.

    .venv/bin/python bench/accuracy.py [--set dev test samples] [--setups onnxruntime default fast ...]
                                       [--clips NAME ...] [--json FILE]

Sets: ``samples`` = the demo clips in ``sample_videos/``; ``dev`` / ``test`` = the two halves
of the evaluation set in ``sample_videos/evalset/`` (tune on dev, report test; see
``docs/analysis.md``).  Set-ups (:data:`SETUPS`): ``default`` = the shipped configuration
(``detection.runtime: auto``: OpenVINO where installed, as in the project venv), ``onnxruntime``
= the same models run by onnxruntime (a room PC's base install), ``openvino`` = run by OpenVINO,
``before`` = the detector set-up before the evaluation set existed (commit aeb50c6),
``default-1206`` = the shipped defaults up to 2026-12-06 (the tamper detector before the
OSD-free sharpness and the re-coded-freeze rule), ``fast`` =
CenterNet at 384x288 and int8 NanoDet by onnxruntime (issue #11's faster runtime),
``fast-openvino`` = CenterNet at 384x288 by OpenVINO, ``tiles`` = phone tiles on
(high-resolution footage, see ``--dir``), all run
in the same invocation on the same clips so their figures and their detector cost compare.

For every ``<clip>.mp4`` with ``<clip>.room.yaml`` and ``<clip>.truth.json`` it runs the same
code path as ``evalwatch analyze`` (default detector and config) and matches events to truth:
a detected event matches a truth event with the same rule, seat (and kind for camera_tamper)
whose time interval overlaps (``--slack`` seconds of tolerance).  Truth ``seat_empty`` runs
shorter than ``rules.seat_empty_seconds`` are not incidents by definition and are skipped.

Prints per-rule precision, recall, false alarms (detections matching no truth event) per
camera-hour, and duplicates (extra detections of an already-matched incident); per variation
(the clip's and the incident's ``variation`` tags in the truth file) recall and false alarms;
and the detector's cost per analysed frame (one intra-op thread, seat crops included).
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

from analysis.events import Event
from analysis.tamper import TamperConfig
from analysis.video import analyze_video
from config import DetectionConfig, RulesConfig, load_room

RULES = ["extra_person", "phone", "seat_empty", "camera_tamper"]


ROOT = Path(__file__).resolve().parents[1]
SETS = {"samples": ROOT / "sample_videos", "dev": ROOT / "sample_videos" / "evalset" / "dev",
        "test": ROOT / "sample_videos" / "evalset" / "test"}


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
    from analysis.detectors import detector_from_config

    return detector_from_config(dcfg)


def setups() -> dict[str, tuple[DetectionConfig, RulesConfig]]:
    """Named configurations compared side by side: the shipped defaults and the set-up before."""
    return {
        "before": (DetectionConfig(crop_person_threshold=None, phone_threshold=0.3, runtime="onnxruntime"),
                   RulesConfig(extra_person_seconds=0.0, frozen_seconds=5.0, desk_phone_min_score=None)),
        # the shipped configuration: detection.runtime "auto" = OpenVINO where installed (the hub)
        "default": (DetectionConfig(), RulesConfig()),
        # the shipped models run by onnxruntime (a room PC's base install)
        "onnxruntime": (DetectionConfig(runtime="onnxruntime"), RulesConfig()),
        # The faster runtime of issue #11: CenterNet on a 384x288 input instead of 512x512 and
        # NanoDet's convolutions in int8.
        "fast": (DetectionConfig(frame_input="384x288", crop_model="int8", runtime="onnxruntime"),
                 RulesConfig()),
        # The same models as "default", run by OpenVINO (bfloat16 on CPUs with AMX, e.g. this
        # machine; float32 elsewhere) -- and "fast" run by OpenVINO.
        "openvino": (DetectionConfig(runtime="openvino"), RulesConfig()),
        "fast-openvino": (DetectionConfig(frame_input="384x288", runtime="openvino"), RulesConfig()),
        # each seat re-detected on every analysed frame at 2 fps (0.5 s, the default since
        # 2026-12-07) / every other frame (1.0 s, before)
        "seat-0.5": (DetectionConfig(seat_check_s=0.5), RulesConfig()),
        "seat-1.0": (DetectionConfig(seat_check_s=1.0), RulesConfig()),
        "onnxruntime-seat-0.5": (DetectionConfig(runtime="onnxruntime", seat_check_s=0.5), RulesConfig()),
        # the per-seat motion gate (issue #11: a hub analysing many cameras itself): still seats
        # re-detected every rules.recheck_seconds instead of every second
        "gated": (DetectionConfig(seat_motion_gate=True), RulesConfig()),
        "fast-openvino-gated": (
            DetectionConfig(frame_input="384x288", runtime="openvino", seat_motion_gate=True), RulesConfig()),
        # the shipped configuration up to 2026-12-06 (its tamper detector: TAMPER below)
        "default-1206": (DetectionConfig(seat_check_s=1.0), RulesConfig()),
        # phone tiles of the seat crops (only cut where a tile keeps >= 160 frame px, i.e. on
        # high-resolution footage: render it with `sample_videos.evalset.make --scale 2`)
        "tiles": (DetectionConfig(phone_tiles=2), RulesConfig()),
    }


SETUPS = tuple(setups())
# The tamper detector before 2026-12-07 (sharpness measured with the burned-in OSD rows and not
# normalised by the contrast, frozen = mean difference only, frozen checked before defocused); the
# rules' frozen_seconds as in each set-up.
LEGACY_TAMPER = {"frozen_amp": None, "sharp_osd_rows": 0.0, "defocus_first": False,
                 "defocus_contrast_norm": False, "frozen_blip": 1.0, "frozen_max_blips": 1,
                 "frozen_quiet_frac": 0.0}
TAMPER = {"before": TamperConfig(frozen_seconds=5.0, **LEGACY_TAMPER),  # type: ignore[arg-type]
          "default-1206": TamperConfig(frozen_seconds=3.0, **LEGACY_TAMPER)}  # type: ignore[arg-type]


def _tags(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def run_set(paths: list[Path], dcfg: DetectionConfig, rcfg: RulesConfig, detector: Any,
            slack: float, log: bool, tamper_cfg: TamperConfig | None = None) -> dict[str, Any]:
    """Analyse ``paths`` with one set-up; per-rule and per-variation counts and detector cost."""
    from analysis.core import CoreStats

    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_var: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_kind: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    hours, frames, det_s = 0.0, 0, 0.0
    per_clip: dict[str, Any] = {}
    t_start = time.perf_counter()
    for mp4 in paths:
        doc = json.loads(mp4.with_suffix(".truth.json").read_text(encoding="utf-8"))
        truth = [t for t in doc["events"]
                 if not (t["rule"] == "seat_empty" and t["end_s"] - t["start_s"] < rcfg.seat_empty_seconds)]
        hours += float(doc["duration_s"]) / 3600.0
        room = load_room(mp4.with_suffix(".room.yaml"))
        stats = CoreStats()
        events = analyze_video(mp4, room, detector, detection_cfg=dcfg, rules_cfg=rcfg, stats=stats,
                               tamper_cfg=tamper_cfg)
        frames += stats.frames
        det_s += stats.detector_seconds
        sc = score_clip(events, truth, slack)
        per_clip[mp4.stem] = {"missed": _brief(sc["missed"]), "false_alarms": _brief(sc["false_alarms"])}
        for rule, counts in sc["rules"].items():
            for k, v in counts.items():
                totals[rule][k] += v
        clip_tags = _tags(doc.get("variations"))
        missed = [id(t) for t in sc["missed"]]
        for t in truth:
            if t["rule"] == "camera_tamper":
                by_kind[t["kind"]]["truth"] += 1
                by_kind[t["kind"]]["recalled"] += id(t) not in missed
            for tag in {*clip_tags, *_tags(t.get("variation"))}:
                by_var[tag]["truth"] += 1
                by_var[tag]["recalled"] += id(t) not in missed
        for tag in clip_tags:
            by_var[tag]["false_alarms"] += len(sc["false_alarms"])
            by_var[tag]["hours_x1e6"] += round(float(doc["duration_s"]) / 3600.0 * 1e6)
        if log:
            print(f"  {mp4.stem}: {len(events)} events, {len(truth)} truth; "
                  f"missed {_brief(sc['missed'])}; false alarms {_brief(sc['false_alarms'])}", flush=True)
    summary: dict[str, dict[str, Any]] = {}
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
    variations = {
        tag: {"truth": v["truth"], "recall": v["recalled"] / v["truth"] if v["truth"] else None,
              "false_alarms": v["false_alarms"]}
        for tag, v in sorted(by_var.items())
    }
    kinds = {k: {"truth": v["truth"], "recall": v["recalled"] / v["truth"]}
             for k, v in sorted(by_kind.items())}
    fa_total = sum(s["false_alarms"] for s in summary.values())
    return {"clips": [p.stem for p in paths], "camera_hours": hours, "rules": summary, "tamper_kinds": kinds,
            "variations": variations, "false_alarms": fa_total,
            "false_alarms_per_camera_hour": fa_total / hours if hours else None,
            "analysed_frames": frames, "detector_ms_per_frame": 1000.0 * det_s / max(1, frames),
            "per_clip": per_clip, "seconds": time.perf_counter() - t_start}


def print_table(name: str, setup: str, r: dict[str, Any]) -> None:
    print(f"\n== {name} / {setup}: {len(r['clips'])} clips, {r['camera_hours'] * 3600:.0f} s = "
          f"{r['camera_hours']:.3f} camera-hours, detector {r['detector_ms_per_frame']:.0f} ms per analysed "
          f"frame (1 thread), {r['seconds']:.0f} s wall")
    print(f"{'rule':<14} {'truth':>5} {'det':>4} {'recall':>7} {'precision':>9} {'FA':>3} "
          f"{'FA/cam-h':>8} {'dup':>3}")
    for rule, s in r["rules"].items():
        fa_h = s["false_alarms_per_camera_hour"]
        print(f"{rule:<14} {s['truth']:>5} {s['detected']:>4} {f(s['recall']):>7} {f(s['precision']):>9} "
              f"{s['false_alarms']:>3} {'-' if fa_h is None else f'{fa_h:.1f}':>8} {s['duplicates']:>3}")
    for kind, v in r["tamper_kinds"].items():
        print(f"  {kind:<12} {v['truth']:>5} {'':>4} {f(v['recall']):>7}")
    fa_h = r["false_alarms_per_camera_hour"]
    per_h = "-" if fa_h is None else f"{fa_h:.1f}"
    print(f"all rules: {r['false_alarms']} false alarms = {per_h} per camera-hour")
    if r["variations"]:
        print(f"{'variation':<22} {'truth':>5} {'recall':>7} {'FA':>3}")
        for tag, v in r["variations"].items():
            print(f"{tag:<22} {v['truth']:>5} {f(v['recall']):>7} {v['false_alarms']:>3}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--set", nargs="+", choices=sorted(SETS), default=["dev", "test"], dest="sets")
    ap.add_argument("--setups", nargs="+", choices=SETUPS, default=["onnxruntime", "default"])
    ap.add_argument("--clips", nargs="*", help="only these clip names")
    ap.add_argument("--dir", nargs=2, action="append", metavar=("SET", "DIR"), default=[],
                    help="read set SET from DIR instead (e.g. dev /tmp/hd/dev: the dev half "
                         "rendered at 1280x960 by `python -m sample_videos.evalset.make --scale 2`)")
    ap.add_argument("--slack", type=float, default=1.0)
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    ap.add_argument("--quiet", action="store_true", help="no per-clip lines")
    args = ap.parse_args(argv)
    for name, folder in args.dir:
        if name not in SETS:
            ap.error(f"--dir: unknown set {name!r}")
        SETS[name] = Path(folder)
    todo = {name: clips(SETS[name], args.clips) for name in args.sets}
    empty = [name for name, paths in todo.items() if not paths]
    if empty:
        print(f"no clips with truth in {', '.join(str(SETS[n]) for n in empty)}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = defaultdict(dict)
    cfgs = setups()
    for setup in args.setups:
        dcfg, rcfg = cfgs[setup]
        detector = default_detector(dcfg)
        for name, paths in todo.items():
            if not args.quiet:
                print(f"{name} / {setup}:", flush=True)
            results[name][setup] = run_set(paths, dcfg, rcfg, detector, args.slack, not args.quiet,
                                           TAMPER.get(setup))
    for name in todo:
        for setup in args.setups:
            print_table(name, setup, results[name][setup])
    if len(args.setups) > 1:
        first, last = args.setups[0], args.setups[-1]
        for name in todo:
            ms = {s: results[name][s]["detector_ms_per_frame"] for s in args.setups}
            print(f"{name}: detector ms per analysed frame (1 thread): "
                  + " / ".join(f"{s} {v:.0f}" for s, v in ms.items())
                  + f"; {last}/{first} = {ms[last] / max(1e-9, ms[first]):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
