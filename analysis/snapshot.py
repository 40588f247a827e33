"""JPEG snapshots of an incident: the frame with detection boxes and seat polygons drawn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

_SEAT = (255, 200, 0)
_SEAT_HIT = (0, 0, 255)
_PERSON = (0, 220, 0)
_PHONE = (0, 140, 255)


def render_snapshot(
    frame: np.ndarray,
    boxes: Sequence[Any],
    seats: Sequence[Any],
    *,
    highlight_seat: str | None = None,
    caption: str = "",
    quality: int = 85,
) -> bytes:
    """JPEG bytes of ``frame`` (BGR) with ``seats`` (polygons, normalised) and ``boxes`` drawn.

    ``boxes`` are detector boxes (``label``, ``score``, ``x1..y2`` normalised); ``seats`` are
    ``config.SeatConfig``.  The seat ``highlight_seat`` is drawn in red; ``caption`` at the top.
    """
    img = np.ascontiguousarray(frame).copy()
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    for seat in seats:
        pts = np.array([[round(x * w), round(y * h)] for x, y in seat.polygon], dtype=np.int32)
        color = _SEAT_HIT if seat.id == highlight_seat else _SEAT
        cv2.polylines(img, [pts], True, color, 2 if seat.id == highlight_seat else 1)
        cv2.putText(img, str(seat.id), (int(pts[0][0]) + 2, int(pts[0][1]) + 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    for b in boxes:
        color = _PHONE if b.label == "cell phone" else _PERSON
        p1 = (round(b.x1 * w), round(b.y1 * h))
        p2 = (round(b.x2 * w), round(b.y2 * h))
        cv2.rectangle(img, p1, p2, color, 2)
        cv2.putText(img, f"{b.label} {b.score:.2f}", (p1[0], max(10, p1[1] - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    if caption:
        cv2.rectangle(img, (0, 0), (w, 18), (0, 0, 0), -1)
        cv2.putText(img, caption, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:  # pragma: no cover - imencode of a valid BGR image does not fail
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf)
