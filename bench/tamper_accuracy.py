"""camera_tamper recall and false alarms alone, without the detector (seconds, not minutes).

    .venv/bin/python bench/tamper_accuracy.py [--tamper default default-1206] DIR [DIR ...]
    .venv/bin/python bench/tamper_accuracy.py --render-probes /tmp/probes   # then score that DIR

Runs ``analyze_video`` (the real ``AnalysisCore``, tamper detector and rules) with a detector
that sees nothing, on every ``<clip>.mp4`` with ``.room.yaml`` and ``.truth.json`` in the
folders, and scores only the ``camera_tamper`` events, as ``bench/accuracy.py`` does (same
matching, ``--slack`` 1 s).  ``--tamper`` names the tamper set-ups to compare: ``default``
(:class:`analysis.tamper.TamperConfig`) and ``default-1206`` (the tamper detector before
2026-12-07: ``bench/accuracy.py``'s ``TAMPER``).

``--render-probes DIR`` renders the **dev-source probe clips** (not part of the evaluation
set, not committed): 13 s clips made by the evaluation set's generator from the dev half's
photographs only, one tamper each, for the tamper kinds and conditions the dev half has too few
of (a defocus in a room dimmed all along: none on dev; freezes in other rooms).  Needs the dev
half's sources (``python -m sample_videos.evalset.make --fetch``) and scikit-image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import TAMPER, _brief, score_clip

from analysis.tamper import TamperConfig
from analysis.video import analyze_video
from config import RulesConfig, load_room


class _Blind:
    """A detector that sees nothing (the seat rules stay quiet about tamper)."""

    def detect(self, frames: Any) -> list[list[Any]]:
        return [[] for _ in frames]


def probe_clips() -> list[Any]:
    """The dev-source probe clips (see the module docstring)."""
    from sample_videos.evalset.script import BR, _clip, _dim, _writes

    clips = [
        _clip("dev_p1", "far4", 3101, {"S1": "dev_a", "S2": "dev_b", "S3": "dev_c", "S4": "dev_w2"},
              ("tamper", "defocused"), activities=_writes("S1", "S3"), **_dim(0.0, 100.0)),
        _clip("dev_p2", "shallow3", 3102, {"S1": "dev_d", "S2": "dev_a", "S3": "dev_b"},
              ("tamper", "defocused"), activities=_writes("S2"), **_dim(0.0, 100.0)),
        _clip("dev_p3", "row3", 3103, {"S1": "dev_c", "S2": "dev_d", "S3": "dev_a"},
              ("tamper", "defocused"), activities=_writes("S1"), **_dim(0.0, 100.0), **BR),
        _clip("dev_p4", "row2", 3104, {"S1": "dev_c", "S2": "dev_a_flip"},
              ("tamper", "frozen"), activities=_writes("S1")),
        _clip("dev_p5", "grid2x2", 3105, {"S1": "dev_b", "S2": "dev_d", "S3": "dev_w1", "S4": "dev_a"},
              ("tamper", "frozen"), activities=_writes("S2", "S4")),
        _clip("dev_p6", "far4", 3106, {"S1": "dev_b", "S2": "dev_d", "S3": "dev_a", "S4": "dev_c"},
              ("tamper", "frozen"), **_dim(0.0, 100.0), **BR),
        _clip("dev_p7", "near2", 3107, {"S1": "dev_a", "S2": "dev_d_flip"},
              ("tamper", "defocused"), **_dim(0.0, 100.0)),
        _clip("dev_p8", "steep2x2", 3108, {"S1": "dev_b", "S2": "dev_c", "S3": "dev_a", "S4": "dev_w1"},
              ("tamper", "frozen"), activities=_writes("S1", "S3"), **_dim(0.0, 100.0)),
    ]
    for c in clips:
        c.dims = [(a, min(b, c.duration)) for a, b in c.dims]
    return clips


def render_probes(out: Path) -> None:
    from sample_videos.evalset import make as mk

    for c in probe_clips():
        keys = {m.source for m in c.movers()}
        path = mk.render_clip(c, mk.load_cutouts(keys), mk.load_textures(c.half), out)
        print(path, flush=True)


def score(dirs: list[Path], tcfg: TamperConfig | None, slack: float) -> dict[str, Any]:
    total = {"truth": 0, "recalled": 0, "false_alarms": 0}
    per_clip = {}
    for d in dirs:
        for mp4 in sorted(d.glob("*.mp4")):
            if not (mp4.with_suffix(".truth.json").is_file() and mp4.with_suffix(".room.yaml").is_file()):
                continue
            doc = json.loads(mp4.with_suffix(".truth.json").read_text(encoding="utf-8"))
            truth = [t for t in doc["events"] if t["rule"] == "camera_tamper"]
            events = [e for e in analyze_video(mp4, load_room(mp4.with_suffix(".room.yaml")), _Blind(),
                                               rules_cfg=RulesConfig(), tamper_cfg=tcfg)
                      if e.rule == "camera_tamper"]
            sc = score_clip(events, truth, slack)
            total["truth"] += len(truth)
            total["recalled"] += len(truth) - len(sc["missed"])
            total["false_alarms"] += len(sc["false_alarms"])
            per_clip[mp4.stem] = {"events": [(e.kind, round(e.start_s, 2), e.end_s) for e in events],
                                  "missed": _brief(sc["missed"]), "false_alarms": _brief(sc["false_alarms"])}
    return {"total": total, "per_clip": per_clip}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("dirs", nargs="*", type=Path)
    ap.add_argument("--tamper", nargs="+", choices=["default", *TAMPER], default=["default", "default-1206"])
    ap.add_argument("--render-probes", type=Path, metavar="DIR")
    ap.add_argument("--slack", type=float, default=1.0)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.render_probes:
        render_probes(args.render_probes)
        return 0
    if not args.dirs:
        ap.error("name at least one folder of clips")
    out = {}
    for name in args.tamper:
        r = out[name] = score(args.dirs, TAMPER.get(name), args.slack)
        for clip, c in r["per_clip"].items():
            print(f"{name:<13} {clip}: {c['events']} missed {c['missed']} false alarms {c['false_alarms']}")
        t = r["total"]
        print(f"{name}: camera_tamper recalled {t['recalled']}/{t['truth']}, "
              f"false alarms {t['false_alarms']}",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
