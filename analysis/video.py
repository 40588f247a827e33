"""Offline analysis of video files: decoded BGR frames thinned to a rate, with clear errors for
unreadable or corrupt files (:class:`VideoError`), and :func:`analyze_video` (a file as one
camera of a room → its incidents; what ``evalwatch analyze`` and the benchmarks run)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# --- reading video files ----------------------------------------------------------------------
from analysis.core import CoreStats, DetectorLike, analyze_frames, next_due
from analysis.events import Event
from analysis.rules import SessionView
from analysis.tamper import TamperConfig
from config.models import DetectionConfig, RoomConfig, RulesConfig


class VideoError(Exception):
    """A video file could not be opened or decoded (message names the file)."""


def iter_video_frames(path: str | Path, fps: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Decode ``path`` → ``(t_seconds, BGR frame)``, thinned to at most ``fps`` frames/s.

    Frames that are not kept are decoded (the codec needs them) but never converted to arrays.
    Raises :class:`VideoError` for a missing, unreadable or corrupt file.
    """
    import av  # local: the site agent does not need analysis

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise VideoError(f"{path}: cannot open video: {e}") from None
    with contextlib.closing(container):
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else None
        interval = 0.0 if not fps else 1.0 / fps
        next_t: float | None = None
        n = 0
        last_t = 0.0
        try:
            for i, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and tb is not None:
                    t = frame.pts * tb - (float(stream.start_time or 0) * tb)
                else:
                    rate = float(stream.average_rate or 15)
                    t = i / rate
                if interval:
                    take, next_t = next_due(next_t, t, interval)
                    if not take:
                        continue
                n += 1
                last_t = t
                yield t, frame.to_ndarray(format="bgr24")
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: corrupt video after {n} frames: {e}") from None
        if n == 0:
            raise VideoError(f"{path}: no decodable video frames")
        declared = _declared_duration(container, stream)
        if declared is not None and last_t < declared - max(1.0, 2 * interval):
            raise VideoError(f"{path}: truncated or corrupt: frames stop at {last_t:.1f} s "
                             f"of {declared:.1f} s")


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None


def analyze_video(
    video: str | Path,
    room: RoomConfig,
    detector: DetectorLike,
    *,
    detection_cfg: DetectionConfig | None = None,
    rules_cfg: RulesConfig | None = None,
    camera: str | None = None,
    motion_gate: bool = True,
    snapshots_dir: str | Path | None = None,
    stats: CoreStats | None = None,
    session: SessionView | None = None,
    tamper_cfg: TamperConfig | None = None,
) -> list[Event]:
    """Analyse ``video`` as camera ``camera`` of ``room`` → incidents (times from video start).

    Raises :class:`analysis.video.VideoError` for an unreadable or corrupt file.  With
    ``snapshots_dir`` each event's JPEG is written there and its path put in ``snapshot_key``.
    """
    dcfg = detection_cfg or DetectionConfig()
    frames = iter_video_frames(video, dcfg.analysis_fps)
    events = analyze_frames(frames, room, detector, rules_cfg, dcfg, camera=camera,
                            motion_gate=motion_gate, snapshots=snapshots_dir is not None,
                            stats=stats, session=session, tamper_cfg=tamper_cfg)
    if snapshots_dir is not None:
        out = Path(snapshots_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i, ev in enumerate(events, 1):
            if ev.snapshot is None:
                continue
            what = ev.kind or ev.seat or "room"
            path = out / f"{i:03d}_{ev.start_s:07.1f}s_{ev.rule}_{what}.jpg"
            path.write_bytes(ev.snapshot)
            ev.snapshot_key = str(path)
    return events
