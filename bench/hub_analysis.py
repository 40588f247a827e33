"""Hub analysis capacity (issue 11 target: >= 20 cameras at >= 1 analysed frame/s on 2 cores).

For each detector set-up in turn, starts the real hub (``python -m evalwatch hub``: embedded
SeaweedFS, DB, recorder, analysis, dashboard) with ``--cameras`` cameras whose sites are all
``analysis: hub``, streamed by simulated agents (``bench/wall.py``'s farms: real WebRTC, H.264
pre-encoded once, so the hub does its full receive / decode / record / analysis work) and, with
nobody watching, measures over ``--seconds``:

* analysed frames per second per camera (the hub's ``evalwatch_analysis_frames_total``);
* the live pipeline's measured cost per analysed frame (``frame_cost_seconds``, an EMA of wall
  time: it includes waiting for the CPU) and the age of the frames it analyses (``frame_lag``);
* the hub process tree's CPU (% of one core), and the simulated agents' (the farms run on the
  same cores: on a real site they are the room PCs).

Prints one row per set-up and the ratio of its frame cost and CPU to the first set-up's, which
is the baseline measured in the same run.  Set-ups (``bench/accuracy.py``'s names):
``default`` (the shipped configuration: ``runtime: auto``, i.e. OpenVINO where installed),
``onnxruntime`` (the same models, CenterNet 512x512 and NanoDet fp32, by onnxruntime), ``fast``
(384x288 + int8 by onnxruntime),
``openvino`` (default models run by OpenVINO), ``fast-openvino`` (384x288 run by OpenVINO).

Usage: ``python bench/hub_analysis.py [--cameras 20] [--fps 1] [--seconds 60]
[--setups default fast openvino fast-openvino] [--json out.json]`` (about 2.5 minutes per
set-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wall import run  # noqa: E402

SETUPS: dict[str, dict[str, Any]] = {
    "default": {},
    "onnxruntime": {"runtime": "onnxruntime"},
    "fast": {"frame_input": "384x288", "crop_model": "int8", "runtime": "onnxruntime"},
    "openvino": {"runtime": "openvino"},
    "fast-openvino": {"frame_input": "384x288", "runtime": "openvino"},
    "fast-openvino-gated": {"frame_input": "384x288", "runtime": "openvino", "seat_motion_gate": True},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=20)
    ap.add_argument("--fps", type=float, default=1.0, help="detection.analysis_fps")
    ap.add_argument("--seconds", type=float, default=60, help="measuring window per set-up")
    ap.add_argument("--settle", type=float, default=20, help="seconds after every camera is online")
    ap.add_argument("--setups", nargs="+", choices=sorted(SETUPS), default=["onnxruntime", "fast-openvino"])
    ap.add_argument("--farms", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.setups:
        det = {"analysis_fps": args.fps, **SETUPS[name]}
        wargs = argparse.Namespace(
            cameras=args.cameras, seconds=args.seconds, fill_timeout=60, farms=args.farms,
            enlarged_seconds=0, idle_seconds=args.seconds, settle_seconds=args.settle, no_wall=True,
            hub_analysis=True, detection=list(det.items()), json=None, keep=False)
        print(f"== {name}: {det}", flush=True)
        res = asyncio.run(run(wargs))
        a = res.get("analysis_no_viewer") or {}
        rows.append({
            "setup": name, "detection": det, "cameras": args.cameras,
            "cameras_online": res.get("cameras_online"),
            "analysed_fps_per_camera": a.get("fps_per_camera"),
            "frame_cost_ms": a.get("frame_cost_ms"), "frame_lag_s": a.get("frame_lag_s"),
            "hub_cpu_pct": res.get("hub_cpu_idle_wall_pct"),
            "farms_cpu_pct": res.get("farms_cpu_idle_wall_pct"),
            "loadavg_before": res.get("loadavg_before"), "loadavg_after": res.get("loadavg_after"),
        })
    base = rows[0]

    def ratio(r: dict[str, Any], k: str) -> str:
        return f"{r[k] / base[k]:.2f}" if r.get(k) and base.get(k) else "-"

    print(f"\n{args.cameras} cameras, analysis_fps {args.fps}, {args.seconds:.0f} s each, "
          f"{os.cpu_count()} CPUs; ratios against '{base['setup']}' (same run)")
    print(f"{'set-up':<21}{'online':>7}{'analysed fps/cam':>18}{'ms/frame':>10}{'ratio':>7}"
          f"{'lag s':>7}{'hub CPU %':>11}{'ratio':>7}{'farms CPU %':>13}  load before -> after")
    for r in rows:
        print(f"{r['setup']:<21}{r['cameras_online']!s:>7}{r['analysed_fps_per_camera']!s:>18}"
              f"{r['frame_cost_ms']!s:>10}{ratio(r, 'frame_cost_ms'):>7}{r['frame_lag_s']!s:>7}"
              f"{r['hub_cpu_pct']!s:>11}{ratio(r, 'hub_cpu_pct'):>7}{r['farms_cpu_pct']!s:>13}"
              f"  {r['loadavg_before']} -> {r['loadavg_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
