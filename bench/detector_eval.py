"""Benchmark and accuracy check of the detector models on the sample clips.

    .venv/bin/python bench/detector_eval.py [--step 10] [--clips room_a room_b] [--threads 1]

For every ``step``-th frame outside camera-tamper intervals it reports, per
person-source combination, how often the number of person boxes whose
lower-centre falls in each seat equals the script's truth ("seat right"), and
for phones, per COCO model, the score of the best ``cell phone`` box on the
whole frame and on each seat crop (seat polygon's bounding box, raised by 10%
of the frame height to include a raised hand), split by whether the script says
that seat's evaluator is using a phone. It ends with milliseconds per frame of
each model and of the default detector.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.detectors import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    CenterNetCocoModel,
    NanoDetCocoModel,
    OnnxDetector,
    Source,
    SsdPersonModel,
    crop_frame,
    load_detector,
)
from analysis.detectors.base import COCO_MODEL, NANODET_MODEL, PERSON_MODEL  # noqa: E402
from sample_videos.script import CLIPS, HEIGHT, WIDTH, frame_states  # noqa: E402


def _q(a: list[float]) -> str:
    if not a:
        return "-"
    p = np.percentile(a, [10, 50, 90, 100])
    return "p10 {:.2f} p50 {:.2f} p90 {:.2f} max {:.2f} (n={})".format(*p, len(a))


def _raw(m: CenterNetCocoModel | NanoDetCocoModel) -> Callable[[list[np.ndarray]], object]:
    return lambda fr: m.raw(fr, 0.3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--clips", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--person-threshold", type=float, default=0.4)
    ap.add_argument("--no-phones", action="store_true", help="skip the phone score statistics")
    args = ap.parse_args(argv)

    d = DEFAULT_MODEL_DIR
    ssd = SsdPersonModel(d / PERSON_MODEL, threads=args.threads)
    coco: dict[str, CenterNetCocoModel | NanoDetCocoModel] = {}
    if (d / NANODET_MODEL).exists():
        coco["nanodet"] = NanoDetCocoModel(d / NANODET_MODEL, threads=args.threads)
    if (d / COCO_MODEL).exists():
        coco["centernet"] = CenterNetCocoModel(d / COCO_MODEL, threads=args.threads)
    pt = args.person_threshold
    combos: dict[str, OnnxDetector] = {"ssd": OnnxDetector([Source(ssd, {"person": pt})])}
    for name, m in coco.items():
        combos[f"{name}"] = OnnxDetector([Source(m, {"person": pt})])
        combos[f"{name}+ssd>=0.6"] = OnnxDetector([Source(m, {"person": pt}), Source(ssd, {"person": 0.6})])
    combos["default (labels=person)"] = OnnxDetector(thresholds={"person": pt}, threads=args.threads)

    for spec in CLIPS:
        path = ROOT / "sample_videos" / f"{spec.clip}.mp4"
        if (args.clips and spec.clip not in args.clips) or not path.exists():
            continue
        states = frame_states(spec)
        cap = cv2.VideoCapture(str(path))
        right = dict.fromkeys(combos, 0)
        total = 0
        ph: dict[str, dict[str, list[float]]] = {
            n: {"full+": [], "full-": [], "seat+": [], "seat-": []} for n in coco
        }
        for i, st in enumerate(states):
            ok, frame = cap.read()
            if not ok:
                break
            tp = st.tamper
            if i % args.step or tp.covered or tp.defocused or tp.moved or tp.frozen:
                continue
            for name, det in combos.items():
                persons = det.detect([frame])[0]
                for s in spec.geom.seats:
                    want = sum(1 for p in st.people if s.contains(*p.point))
                    got = sum(1 for b in persons if s.contains((b.x1 + b.x2) / 2 * WIDTH, b.y2 * HEIGHT))
                    right[name] += want == got
            total += len(spec.geom.seats)
            phone_seats = {p.seat for p, _ in st.phones}
            for name, m in ({} if args.no_phones else coco).items():
                full = max((b.score for b in m.raw([frame], 0.01)[0] if b.label == "cell phone"), default=0.0)
                ph[name]["full+" if phone_seats else "full-"].append(full)
                for s in spec.geom.seats:
                    x1, y1, x2, y2 = s.rect
                    rect = (
                        max(0.0, x1 / WIDTH),
                        max(0.0, y1 / HEIGHT - 0.1),
                        min(1.0, x2 / WIDTH),
                        min(1.0, y2 / HEIGHT),
                    )
                    crop = crop_frame(frame, rect)
                    sc = max(
                        (b.score for b in m.raw([crop], 0.01)[0] if b.label == "cell phone"), default=0.0
                    )
                    ph[name]["seat+" if s.seat_id in phone_seats else "seat-"].append(sc)
        cap.release()
        print(f"== {spec.clip} ({total} seat-frames)")
        for name, n in right.items():
            print(f"  persons {name:22s} seat right {n}/{total} ({100 * n / max(1, total):.0f}%)")
        for name, groups in ph.items():
            for g, vals in groups.items():
                print(f"  phone   {name:10s} {g:6s} best cell-phone score {_q(vals)}")

    img = cv2.imread(str(ROOT / "tests" / "data" / "zidane.jpg"))
    assert img is not None
    small = cv2.resize(img, (640, 360))
    print(f"== speed (ms/frame, 640x360, {args.threads} intra-op thread(s), median of 15)")
    default = load_detector(threads=args.threads)
    runs: dict[str, Callable[[list[np.ndarray]], object]] = {
        "ssdlite person": lambda fr: ssd.raw(fr, 0.3),
        **{name: _raw(m) for name, m in coco.items()},
        "default detector": default.detect,
    }
    for name, fn in runs.items():
        fn([small])
        ts = []
        for _ in range(15):
            t0 = time.perf_counter()
            fn([small])
            ts.append((time.perf_counter() - t0) * 1000)
        print(f"  {name:18s} {np.median(ts):6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
