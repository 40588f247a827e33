"""Dev tool: how well the project's detector sees the people and phones in the clips.

    python -m sample_videos.check_detect [--step 5] [room_a ...]

For every sampled frame outside camera-tamper intervals it compares the
detector's person boxes with the script's people: a seat counts as *seen* when
exactly as many person boxes have their lower-centre in the seat polygon as the
script puts there.  It also reports how often a ``cell phone`` box appears while
the truth says a phone is in use (and outside those intervals).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sample_videos.script import CLIPS, FPS, HEIGHT, WIDTH, frame_states

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Print per-clip detection agreement with the script."""
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--step", type=int, default=5, help="analyse every Nth frame")
    args = ap.parse_args(argv)
    from analysis.detectors import load_detector  # the project's detector

    det = load_detector()
    for spec in CLIPS:
        if args.clips and spec.clip not in args.clips:
            continue
        states = frame_states(spec)
        cap = cv2.VideoCapture(str(HERE / f"{spec.clip}.mp4"))
        seen = total = 0
        ph_hit = ph_n = ph_false = ph_quiet = 0
        heights: list[float] = []
        miss_by_seat: dict[str, int] = {}
        for i, st in enumerate(states):
            ok, frame = cap.read()
            if not ok:
                break
            tp = st.tamper
            if i % args.step or tp.covered or tp.defocused or tp.moved or tp.frozen:
                continue
            boxes = det.detect([frame])[0]
            persons = [b for b in boxes if b.label == "person"]
            phones = [b for b in boxes if b.label == "cell phone"]
            for s in spec.geom.seats:
                want = sum(1 for p in st.people if s.contains(*p.point))
                got = sum(1 for b in persons
                          if s.contains((b.x1 + b.x2) / 2 * WIDTH, b.y2 * HEIGHT))
                total += 1
                if want == got:
                    seen += 1
                else:
                    miss_by_seat[s.seat_id] = miss_by_seat.get(s.seat_id, 0) + 1
            heights += [(b.y2 - b.y1) * HEIGHT for b in persons]
            if st.phones:
                ph_n += 1
                ph_hit += bool(phones)
            else:
                ph_quiet += 1
                ph_false += bool(phones)
        cap.release()
        med = sorted(heights)[len(heights) // 2] if heights else 0
        print(f"{spec.clip}: seat occupancy right {seen}/{total} ({100 * seen / max(1, total):.0f}%),"
              f" misses by seat {miss_by_seat}, median person box {med:.0f}px;"
              f" phone seen {ph_hit}/{ph_n}, phone false {ph_false}/{ph_quiet}"
              f" (every {args.step / FPS:.2f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
