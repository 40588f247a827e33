"""``evalwatch analyze VIDEO --room ROOM.yaml [--json] [--snapshots DIR]``: offline analysis.

Runs exactly the live analysis core (:func:`analysis.video.analyze_video`) over a video file
with the seats of a room file and prints the incidents: with ``--json`` one JSON object per
line (``rule``, ``kind`` for camera_tamper only, ``seat`` or null, ``start_s``, ``end_s``,
``confidence``; plus ``snapshot`` when ``--snapshots`` is given), otherwise a table.  Times are
seconds from the start of the video.

Exit codes: 0 success; 2 bad usage, bad room/config file, unreadable or corrupt video, or a
detector that cannot be loaded — always with a one-line-per-problem message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.events import Event
from analysis.rules import SessionView
from analysis.video import VideoError, analyze_video
from config import ConfigError, DetectionConfig, RulesConfig, load_config, load_room
from evalwatch.clitools import CliError

PROG = "evalwatch analyze"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="video file (any format FFmpeg reads)")
    p.add_argument("--room", required=True, help="room file (cameras and seat polygons)")
    p.add_argument("--camera", help="camera of the room the video shows (default: the first)")
    p.add_argument("--config", help="evalwatch config file for its 'detection' and 'rules' sections")
    p.add_argument("--json", action="store_true", help="one JSON object per event per line")
    p.add_argument("--snapshots", metavar="DIR", help="write each event's JPEG snapshot into DIR")
    p.add_argument("--assigned", metavar="SEATS",
                   help="comma-separated seats of a simulated running session (e.g. S1,S3): only "
                        "they expect an evaluator; anyone at another seat is an extra person")
    p.add_argument("--no-motion-gate", action="store_true",
                   help="run the detector on every analysed frame (slower; for comparison)")
    return p


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    m, sec = divmod(s, 60)
    return f"{int(m):02d}:{sec:05.2f}"


def format_table(events: Sequence[Event]) -> str:
    """Human-readable table of incidents."""
    if not events:
        return "no events"
    rows = [("RULE", "KIND", "SEAT", "START", "END", "CONF", "SNAPSHOT")]
    for e in events:
        rows.append((e.rule, e.kind or "", e.seat or "-", _fmt_time(e.start_s), _fmt_time(e.end_s),
                     f"{e.confidence:.2f}", e.snapshot_key or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + f"\n{len(events)} event(s)"


def run(argv: Sequence[str]) -> list[Event]:
    """Parse ``argv``, analyse, print; raises :class:`CliError` for user errors."""
    args = _parser().parse_args(list(argv))
    try:
        room = load_room(args.room)
    except ConfigError as e:
        raise CliError(f"bad room file {args.room}:\n  " + "\n  ".join(e.problems)) from None
    dcfg, rcfg = DetectionConfig(), RulesConfig()
    if args.config:
        try:
            cfg = load_config(args.config, load_secrets=False)
        except ConfigError as e:
            raise CliError(f"bad config file {args.config}:\n  " + "\n  ".join(e.problems)) from None
        dcfg, rcfg = cfg.detection, cfg.rules
    if args.camera and args.camera not in [c.id for c in room.cameras]:
        raise CliError(f"camera {args.camera!r} is not in room {room.id!r} "
                       f"(cameras: {', '.join(c.id for c in room.cameras)})")
    session = None
    if args.assigned is not None:
        seats = [x.strip() for x in args.assigned.split(",") if x.strip()]
        unknown = sorted(set(seats) - {s.id for s in room.seats})
        if unknown:
            raise CliError(f"--assigned: no seat {', '.join(unknown)} in room {room.id!r} "
                           f"(seats: {', '.join(s.id for s in room.seats)})")
        session = SessionView(session_id=0, seats=frozenset(seats))
    video = Path(args.video)
    if not video.is_file():
        raise CliError(f"{video}: no such file")
    from analysis.detectors import detector_from_config

    try:
        detector = detector_from_config(dcfg)
    except (OSError, ImportError, ValueError, RuntimeError) as e:
        raise CliError(f"cannot load the detector: {e}") from None
    try:
        events = analyze_video(video, room, detector, detection_cfg=dcfg, rules_cfg=rcfg,
                               camera=args.camera, motion_gate=not args.no_motion_gate,
                               snapshots_dir=args.snapshots, session=session)
    except VideoError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"{e.filename or args.snapshots}: {e.strerror or e}") from None
    if args.json:
        for ev in events:
            d = ev.summary()
            if ev.snapshot_key:
                d["snapshot"] = ev.snapshot_key
            print(json.dumps(d, ensure_ascii=False))
    else:
        print(format_table(events))
    return events


def cli(argv: Sequence[str]) -> int:
    """Entry point of ``evalwatch analyze`` (see module docstring for exit codes)."""
    try:
        run(argv)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        return int(e.code) if isinstance(e.code, int) else 2
    except CliError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli(sys.argv[1:]))
