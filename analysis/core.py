"""The analysis core: frames → (motion gate, batched detector, seat crops, tamper) → rules →
incident updates, shared by every way analysis runs.

* :class:`AnalysisCore` — synchronous, one caller at a time: the hub's live scheduler
  (:mod:`analysis.live`), the agent's edge analyser (``evalwatch.edge``) and the offline path;
* :func:`analyze_frames` — ``evalwatch analyze`` and the benchmarks: a finite iterator of frames
  of one room → the list of incidents (closed at the end of input); video files are read by
  :mod:`analysis.video`.

Per camera the core keeps: the rule state (:class:`analysis.rules.CameraRules`), the tamper
state (:class:`analysis.tamper.TamperDetector`) and a motion gate.  Frames are thinned to
``DetectionConfig.analysis_fps``.  The detector runs once per batch over every camera's frame
that needs it; a frame whose picture has not changed since the last detection of that camera
reuses that detection, but never for longer than ``RulesConfig.recheck_seconds`` (seated
people hardly move and must still be re-detected).  Phones (and, with
``DetectionConfig.crop_person_threshold``, people) are also looked for on seat crops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from analysis.events import Event, EventUpdate
from analysis.rules import CameraRules, SessionView
from analysis.snapshot import render_snapshot
from analysis.tamper import TamperConfig, TamperDetector
from config.models import DetectionConfig, RoomConfig, RulesConfig

log = logging.getLogger("evalwatch.analysis")

#: Grey-level change (0..255, on a 96x72 blurred thumbnail) that counts as motion in a pixel.
MOTION_PIXEL = 10
#: Fraction of moving pixels below which a frame is "unchanged" since the last detection.
MOTION_FRACTION = 0.002
#: Frames per detector call at most (several cameras, or consecutive frames of one video).
MAX_BATCH = 8
#: Seat crops for phones: the bounding box of the seat polygon, raised by this fraction of the
#: frame height (a phone held up at the face leaves the polygon) ...
CROP_RAISE = 0.10
#: ... and widened by this fraction of the frame width on each side.
CROP_PAD = 0.03
#: Phone boxes from overlapping seat crops with at least this IoU are one phone.
CROP_NMS_IOU = 0.4
#: A person found on a seat crop is the same person as a whole-frame (or other crop's) person
#: box when their IoU exceeds this, or when this fraction of the smaller box lies in the other.
CROP_PERSON_SAME_IOU = 0.3
CROP_PERSON_SAME_COVER = 0.6
#: Crop persons whose box reaches this close (fraction of the crop width) to a crop side are cut
#: by the crop edge (usually a neighbour) and are ignored.
CROP_PERSON_EDGE = 0.01
PHONE = "cell phone"
PERSON = "person"


class DetectorLike(Protocol):
    """``analysis.detectors.Detector``: BGR uint8 frames → boxes per frame (normalised)."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Any]]: ...


Rect = tuple[float, float, float, float]


@dataclass
class DetectorSplit:
    """How the core uses a detector: ``frame`` on whole frames (people, and phones when
    ``crop`` is None); ``crop`` on seat crops (phones only), or None for no seat crops."""

    frame: DetectorLike
    crop: DetectorLike | None
    #: Phones only, on phone tiles of the seat crops (``DetectionConfig.phone_tiles``).
    tile: DetectorLike | None = None


def split_detector(detector: DetectorLike, crop_person_threshold: float | None = None,
                   tile_phone_threshold: float | None = None) -> DetectorSplit:
    """Split a multi-model detector into a whole-frame part and a phone part for seat crops.

    A phone is a few dozen pixels in a 640x480 room view; the phone model finds it far more
    reliably on a seat crop scaled up to its input size.  People are large and are found on
    the whole frame.  A detector exposing ``sources`` (:class:`analysis.detectors.OnnxDetector`)
    is split by label, sharing its model sessions: whole frames run every model except the
    phone-only ones, crops run only the models trusted for phones.  Any other detector (YOLO,
    test doubles) is used as is on whole frames, without seat crops.

    With ``crop_person_threshold`` the crop part also reports ``person`` (from the same phone
    model, in the same call: no extra inference) at that score, so a small or partly hidden
    person at a seat is looked for at the crop's higher resolution too.

    With ``tile_phone_threshold`` a third part, phones only at that score (same sessions), is
    made for the phone tiles of the seat crops (:func:`phone_tile_rects`).
    """
    sources = getattr(detector, "sources", None)
    if not sources:
        return DetectorSplit(detector, None)
    from analysis.detectors import OnnxDetector, Source

    frame_src = [Source(s.model, {k: v for k, v in s.thresholds.items() if k != PHONE}) for s in sources]
    phone_src = [Source(s.model, {PHONE: s.thresholds[PHONE]}) for s in sources if PHONE in s.thresholds]
    if crop_person_threshold is not None:
        phone_src = [Source(s.model, {**s.thresholds, PERSON: crop_person_threshold})
                     if PERSON in s.model.labels else s for s in phone_src]
    frame_src = [s for s in frame_src if s.thresholds]
    if not phone_src or not frame_src:
        return DetectorSplit(detector, None)
    kw = {k: getattr(detector, k) for k in ("nms_iou", "merge_iou", "merge_cover") if hasattr(detector, k)}
    tile = None
    if tile_phone_threshold is not None:
        tile = OnnxDetector([Source(s.model, {PHONE: tile_phone_threshold}) for s in sources
                             if PHONE in s.thresholds], **kw)
    return DetectorSplit(OnnxDetector(frame_src, **kw), OnnxDetector(phone_src, **kw), tile)


def seat_crop_rects(room: RoomConfig, camera: str) -> list[Rect]:
    """One crop rectangle (normalised x1, y1, x2, y2) per seat of ``camera`` (see CROP_RAISE)."""
    out: list[Rect] = []
    for seat in room.seats_for(camera):
        xs = [p[0] for p in seat.polygon]
        ys = [p[1] for p in seat.polygon]
        r = (max(0.0, min(xs) - CROP_PAD), max(0.0, min(ys) - CROP_RAISE),
             min(1.0, max(xs) + CROP_PAD), min(1.0, max(ys)))
        if r[2] - r[0] > 0.02 and r[3] - r[1] > 0.02:
            out.append(r)
    return out


def phone_tile_rects(crops: Sequence[Rect], width: int, height: int, rows: int, overlap: float,
                     min_px: int) -> list[tuple[int, Rect]]:
    """Square phone tiles of each seat crop of a ``width`` x ``height`` frame: ``(crop index,
    normalised rect)``, ``rows`` tiles high (at least; more when the crop is wider than tall),
    overlapping by ``overlap`` of a tile side, none smaller than ``min_px`` pixels (a crop
    whose tiles would be smaller gets none: upscaling them shows the model no more detail)."""
    out: list[tuple[int, Rect]] = []
    if rows <= 0:
        return out
    for ci, r in enumerate(crops):
        cw, ch = (r[2] - r[0]) * width, (r[3] - r[1]) * height
        side = min(cw, ch, ch / (rows - (rows - 1) * overlap))
        if side < min_px:
            continue

        def starts(extent: float, side: float = side) -> list[float]:
            # a crop up to 10 % of a tile longer than the tile gets one tile, centred
            n = max(1, math.ceil((extent - side) / (side * (1 - overlap)) - 0.1) + 1)
            if n == 1:
                return [(extent - side) / 2]
            return [k * (extent - side) / (n - 1) for k in range(n)]

        for y in starts(ch):
            for x in starts(cw):
                out.append((ci, (r[0] + x / width, r[1] + y / height,
                                 r[0] + (x + side) / width, r[1] + (y + side) / height)))
    return out


def _crop(frame: np.ndarray, r: Rect) -> np.ndarray:
    h, w = frame.shape[:2]
    return np.ascontiguousarray(frame[round(r[1] * h):round(r[3] * h), round(r[0] * w):round(r[2] * w)])


def _from_crop(box: Any, r: Rect) -> Any:
    from analysis.detectors import Box

    cw, ch = r[2] - r[0], r[3] - r[1]
    return Box(box.label, box.score, r[0] + box.x1 * cw, r[1] + box.y1 * ch,
               r[0] + box.x2 * cw, r[1] + box.y2 * ch)


def _iou(a: Any, b: Any) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def merge_crop_phones(boxes: Iterable[Any], iou: float = CROP_NMS_IOU) -> list[Any]:
    """Greedy NMS over phone boxes mapped back from overlapping seat crops."""
    kept: list[Any] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(_iou(b, k) < iou for k in kept):
            kept.append(b)
    return kept


def _inside_crop(box: Any) -> bool:
    """A person box (crop coordinates) that does not run into the crop's side edges: a
    neighbour cut by the crop edge would otherwise look like a second, small person here."""
    return box.x1 > CROP_PERSON_EDGE and box.x2 < 1.0 - CROP_PERSON_EDGE


def _same_object(a: Any, b: Any) -> bool:
    if _iou(a, b) > CROP_PERSON_SAME_IOU:
        return True
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    small = min((a.x2 - a.x1) * (a.y2 - a.y1), (b.x2 - b.x1) * (b.y2 - b.y1))
    return small > 0 and ix * iy / small > CROP_PERSON_SAME_COVER


def merge_crop_people(frame_people: Sequence[Any], crop_people: Iterable[Any]) -> list[Any]:
    """Persons found on seat crops that are not already a whole-frame person (nor found twice
    on overlapping crops): the people only the crop's higher resolution shows."""
    kept: list[Any] = []
    for b in sorted(crop_people, key=lambda b: -b.score):
        if not any(_same_object(b, k) for k in [*frame_people, *kept]):
            kept.append(b)
    return kept


@dataclass
class CameraState:
    """Everything the core remembers about one camera."""

    key: str
    camera: str
    room: RoomConfig
    rules: CameraRules
    tamper: TamperDetector
    last_t: float | None = None
    next_t: float | None = None
    det_t: float | None = None
    det_thumb: np.ndarray | None = None
    boxes: list[Any] = field(default_factory=list)
    crops: list[Rect] = field(default_factory=list)
    crop_phones: list[list[Any]] = field(default_factory=list)
    crop_people: list[list[Any]] = field(default_factory=list)
    crop_turn: int = 0
    #: Per seat crop: time and 32x32 thumbnail of its last detection (the per-seat motion gate).
    crop_det_t: list[float | None] = field(default_factory=list)
    crop_thumbs: list[np.ndarray | None] = field(default_factory=list)
    #: The last whole-frame detection as the detector returned it (before seat-crop results are
    #: merged in): frames the motion gate passes reuse it with fresh seat crops.
    frame_boxes: list[Any] = field(default_factory=list)
    #: Phone tiles (crop index, rect) for frames of ``tile_size`` (w, h), their last phones.
    tiles: list[tuple[int, Rect]] = field(default_factory=list)
    tile_size: tuple[int, int] | None = None
    tile_phones: list[list[Any]] = field(default_factory=list)
    tile_turn: int = 0


@dataclass
class CoreStats:
    """Counters for the benchmarks and /metrics."""

    frames: int = 0
    detected: int = 0
    reused: int = 0
    detector_calls: int = 0
    detector_seconds: float = 0.0
    crops: int = 0
    #: Seat crops due but skipped by the per-seat motion gate (``detection.seat_motion_gate``).
    crops_reused: int = 0
    tiles: int = 0


def next_due(next_t: float | None, t: float, interval: float) -> tuple[bool, float | None]:
    """Thinning on a time grid: ``(take frame at t?, new next_t)``.

    Frames are taken at about ``1/interval`` per second on average whatever the source rate
    (a 15 fps source at 2 fps gives 0, 0.53, 1.0, 1.53, ...); after a gap the grid restarts.
    """
    if next_t is not None and t < next_t - 1e-6:
        return False, next_t
    nxt = (t if next_t is None else next_t) + interval
    if nxt <= t:
        nxt = t + interval
    return True, nxt


def _crop_thumb(frame: np.ndarray, rect: Rect) -> np.ndarray:
    """A 32x32 blurred grey thumbnail of the normalised ``rect`` of ``frame``."""
    h, w = frame.shape[:2]
    c = frame[int(rect[1] * h):max(int(rect[3] * h), int(rect[1] * h) + 1),
              int(rect[0] * w):max(int(rect[2] * w), int(rect[0] * w) + 1)]
    g = cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) if c.ndim == 3 else c
    g = cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g, (3, 3), 0)


def _thumb(frame: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    g = cv2.resize(g, (96, 72), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g, (3, 3), 0)


class AnalysisCore:
    """Synchronous analysis of frames from any number of cameras (module docstring).

    Register cameras with :meth:`add_camera`, then call :meth:`process` with batches of
    ``(key, t, frame)`` in time order per camera, and :meth:`finish` at the end of input.
    Threads may call :meth:`process` at the same time with batches of *different* cameras (the
    live pipeline's workers do): all state is per camera but the counters, which are locked.
    """

    def __init__(
        self,
        detector: DetectorLike,
        rules_cfg: RulesConfig | None = None,
        detection_cfg: DetectionConfig | None = None,
        *,
        motion_gate: bool = True,
        snapshots: bool = True,
        tamper_cfg: TamperConfig | None = None,
        seat_crops: bool = True,
    ):
        self.detector = detector
        self.rules_cfg = rules_cfg or RulesConfig()
        self.detection_cfg = detection_cfg or DetectionConfig()
        dc = self.detection_cfg
        tile_thr = (dc.phone_tile_threshold or dc.phone_threshold) if dc.phone_tiles else None
        self.split = (split_detector(detector, dc.crop_person_threshold, tile_thr) if seat_crops
                      else DetectorSplit(detector, None))
        self.motion_gate = motion_gate
        self.snapshots = snapshots
        self.tamper_cfg = tamper_cfg or TamperConfig(frozen_seconds=self.rules_cfg.frozen_seconds)
        self.cameras: dict[str, CameraState] = {}
        self.stats = CoreStats()
        self._stats_lock = threading.Lock()

    def _count(self, **add: float) -> None:
        with self._stats_lock:
            for k, v in add.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    @property
    def interval(self) -> float:
        """Seconds between analysed frames of one camera."""
        return 1.0 / self.detection_cfg.analysis_fps

    def add_camera(self, key: str, room: RoomConfig, camera: str, *, site: str | None = None) -> None:
        """Register ``camera`` of ``room`` under ``key`` (its seats come from the room)."""
        if camera not in [c.id for c in room.cameras]:
            raise ValueError(f"camera {camera!r} is not in room {room.id!r}")
        rules = CameraRules(camera, room.seats_for(camera), self.rules_cfg, room=room.id, site=site)
        crops = seat_crop_rects(room, camera) if self.split.crop is not None else []
        self.cameras[key] = CameraState(key, camera, room, rules, TamperDetector(self.tamper_cfg),
                                        crops=crops, crop_phones=[[] for _ in crops],
                                        crop_people=[[] for _ in crops],
                                        crop_det_t=[None for _ in crops], crop_thumbs=[None for _ in crops])

    def set_session(self, site: str | None, room: str, session: SessionView | None) -> list[EventUpdate]:
        """Arm the rules of every camera of ``site/room`` for ``session`` (None: no session
        running, every seat armed); returns the updates this caused (see
        :meth:`analysis.rules.CameraRules.set_session`)."""
        out: list[EventUpdate] = []
        for st in self.cameras.values():
            if st.room.id == room and st.rules.site == site:
                out += st.rules.set_session(session)
        return out

    def due(self, key: str, t: float) -> bool:
        """Whether a frame of camera ``key`` at ``t`` should be analysed (``analysis_fps``)."""
        return next_due(self.cameras[key].next_t, t, self.interval)[0]

    def process(self, batch: Sequence[tuple[str, float, np.ndarray]]) -> list[EventUpdate]:
        """Analyse a batch of frames (skipping those not due); returns the event updates."""
        work: list[tuple[CameraState, float, np.ndarray, dict[str, float]]] = []
        need: list[int] = []
        for key, t, frame in batch:
            st = self.cameras[key]
            ok, st.next_t = next_due(st.next_t, t, self.interval)
            if not ok:
                continue
            st.last_t = t
            self._count(frames=1)
            tamper = st.tamper.update(t, frame)
            work.append((st, t, frame, tamper))
            if self._needs_detection(st, t, frame, tamper):
                need.append(len(work) - 1)
        results: dict[int, list[Any]] = {}
        for i in range(0, len(need), MAX_BATCH):
            idx = need[i:i + MAX_BATCH]
            t0 = time.perf_counter()
            boxes = self.split.frame.detect([work[j][2] for j in idx])
            self._count(detector_seconds=time.perf_counter() - t0, detector_calls=1, detected=len(idx))
            results.update(zip(idx, boxes, strict=True))
        detected = set(need)
        if self.split.crop is not None:
            # Seat crops keep their own schedule (every seat about every seat_check_s) on every
            # analysed frame, also when the motion gate lets the whole frame's people be reused:
            # a still room still has each seat re-checked every second.  Not while tampered.
            crop_frames = [j for j, w in enumerate(work) if j in detected or not w[3]]
            self._detect_crops(work, crop_frames, detected, results)
        out: list[EventUpdate] = []
        for j, (st, t, frame, tamper) in enumerate(work):
            if j in results:
                st.boxes = list(results[j])
            if j in detected:
                st.det_t = t
                st.det_thumb = _thumb(frame)
            else:
                self._count(reused=1)
            snap = self._snapshot_fn(st, frame) if self.snapshots else None
            out += st.rules.update(t, st.boxes, tamper, snap, tamper_onsets=st.tamper.onsets())
        return out

    @property
    def crop_stride(self) -> int:
        """A seat crop is detected on every ``crop_stride``-th analysed frame of its camera."""
        dc = self.detection_cfg
        return max(1, round(dc.seat_check_s * dc.analysis_fps))

    @property
    def tile_stride(self) -> int:
        """A phone tile is detected on every ``tile_stride``-th analysed frame of its camera."""
        dc = self.detection_cfg
        return max(1, round(dc.phone_tile_interval_s * dc.analysis_fps))

    def _camera_tiles(self, st: CameraState, frame: np.ndarray) -> list[tuple[int, Rect]]:
        h, w = frame.shape[:2]
        if st.tile_size != (w, h):
            dc = self.detection_cfg
            st.tiles = phone_tile_rects(st.crops, w, h, dc.phone_tiles, dc.phone_tile_overlap,
                                        dc.phone_tile_min_px)
            st.tile_size = (w, h)
            st.tile_phones = [[] for _ in st.tiles]
        return st.tiles

    def _detect_tiles(self, work: Sequence[tuple[CameraState, float, np.ndarray, dict[str, float]]],
                      need: Sequence[int]) -> dict[tuple[int, int], list[Any]]:
        """Phones on the phone tiles due in the frames of ``need`` (the tiles of a camera take
        turns, see ``phone_tile_interval_s``): ``{(frame, tile): phones}``."""
        tiler = self.split.tile
        if tiler is None:
            return {}
        stride = self.tile_stride
        jobs: list[tuple[int, int]] = []
        for j in need:
            st = work[j][0]
            tiles = self._camera_tiles(st, work[j][2])
            jobs += [(j, ti) for ti in range(len(tiles)) if (st.tile_turn + ti) % stride == 0]
            st.tile_turn += 1
        fresh: dict[tuple[int, int], list[Any]] = {}
        for i in range(0, len(jobs), MAX_BATCH):
            chunk = jobs[i:i + MAX_BATCH]
            t0 = time.perf_counter()
            found = tiler.detect([_crop(work[j][2], work[j][0].tiles[ti][1]) for j, ti in chunk])
            self._count(detector_seconds=time.perf_counter() - t0, detector_calls=1, tiles=len(chunk))
            for (j, ti), boxes in zip(chunk, found, strict=True):
                rect = work[j][0].tiles[ti][1]
                fresh[(j, ti)] = [_from_crop(b, rect) for b in boxes if b.label == PHONE]
        return fresh

    def _detect_crops(self, work: Sequence[tuple[CameraState, float, np.ndarray, dict[str, float]]],
                      need: Sequence[int], detected: set[int], results: dict[int, list[Any]]) -> None:
        """Phones on seat crops (and their phone tiles) of the frames in ``need`` (each seat in
        turn, see ``detection.seat_check_s``); they replace the frames' whole-frame phones.  Frames in
        ``detected`` have a fresh whole-frame detection in ``results``; the others reuse their
        camera's last one (``CameraState.frame_boxes``) and get a result here."""
        assert self.split.crop is not None
        stride = self.crop_stride
        jobs: list[tuple[int, int]] = []
        gate = self.detection_cfg.seat_motion_gate
        for j in need:
            st, t, frame = work[j][0], work[j][1], work[j][2]
            for ci in range(len(st.crops)):
                if (st.crop_turn + ci) % stride:
                    continue
                if gate:
                    thumb = _crop_thumb(frame, st.crops[ci])
                    if self._seat_unchanged(st, ci, t, thumb):
                        self._count(crops_reused=1)
                        continue
                    st.crop_det_t[ci], st.crop_thumbs[ci] = t, thumb
                jobs.append((j, ci))
            st.crop_turn += 1
        fresh_tiles = self._detect_tiles(work, need)
        fresh: dict[tuple[int, int], list[Any]] = {}
        for i in range(0, len(jobs), MAX_BATCH):
            chunk = jobs[i:i + MAX_BATCH]
            t0 = time.perf_counter()
            found = self.split.crop.detect([_crop(work[j][2], work[j][0].crops[ci]) for j, ci in chunk])
            self._count(detector_seconds=time.perf_counter() - t0, detector_calls=1, crops=len(chunk))
            for (j, ci), boxes in zip(chunk, found, strict=True):
                rect = work[j][0].crops[ci]
                fresh[(j, ci)] = [_from_crop(b, rect) for b in boxes
                                  if b.label == PHONE or (b.label == PERSON and _inside_crop(b))]
        for j in need:  # in time order, so a later frame reuses an earlier frame's fresh crops
            st = work[j][0]
            if not st.crops:
                continue
            for ci in range(len(st.crops)):
                if (j, ci) in fresh:
                    st.crop_phones[ci] = [b for b in fresh[(j, ci)] if b.label == PHONE]
                    st.crop_people[ci] = [b for b in fresh[(j, ci)] if b.label == PERSON]
            for ti in range(len(st.tile_phones)):
                if (j, ti) in fresh_tiles:
                    st.tile_phones[ti] = fresh_tiles[(j, ti)]
            if j in detected:
                st.frame_boxes = list(results[j])
            base = st.frame_boxes
            phones = merge_crop_phones([b for ps in [*st.crop_phones, *st.tile_phones] for b in ps])
            frame_people = [b for b in base if b.label == PERSON]
            people = merge_crop_people(frame_people, [b for ps in st.crop_people for b in ps])
            results[j] = [b for b in base if b.label != PHONE] + phones + people

    def _seat_unchanged(self, st: CameraState, ci: int, t: float, thumb: np.ndarray) -> bool:
        """The per-seat motion gate: seat crop ``ci`` looks as at its last detection, which is
        younger than ``recheck_seconds``."""
        last_t, last = st.crop_det_t[ci], st.crop_thumbs[ci]
        if last_t is None or last is None or t - last_t >= self.rules_cfg.recheck_seconds:
            return False
        diff = cv2.absdiff(thumb, last)
        return float(np.count_nonzero(diff > MOTION_PIXEL)) / diff.size <= MOTION_FRACTION

    def _needs_detection(
        self, st: CameraState, t: float, frame: np.ndarray, tamper: dict[str, float]
    ) -> bool:
        if not self.motion_gate or st.det_t is None or st.det_thumb is None:
            return True
        if t - st.det_t >= self.rules_cfg.recheck_seconds:
            return True
        if tamper:  # the rules ignore detections while the picture is tampered with
            return False
        diff = cv2.absdiff(_thumb(frame), st.det_thumb)
        return float(np.count_nonzero(diff > MOTION_PIXEL)) / diff.size > MOTION_FRACTION

    def _snapshot_fn(
        self, st: CameraState, frame: np.ndarray
    ) -> Callable[[str, str | None, str | None], bytes]:
        def snap(rule: str, seat: str | None, kind: str | None) -> bytes:
            what = f"{rule}{'/' + kind if kind else ''}{' @ ' + seat if seat else ''}"
            return render_snapshot(frame, st.boxes, st.rules.seats, highlight_seat=seat,
                                   caption=f"{st.room.id}/{st.camera}  {what}")
        return snap

    def finish(self) -> list[EventUpdate]:
        """End of input: close every open incident."""
        out: list[EventUpdate] = []
        for st in self.cameras.values():
            out += st.rules.finish()
        return out


def analyze_frames(
    frames: Iterable[tuple[float, np.ndarray]] | Iterable[tuple[str, float, np.ndarray]],
    room: RoomConfig,
    detector: DetectorLike,
    rules_cfg: RulesConfig | None = None,
    detection_cfg: DetectionConfig | None = None,
    *,
    camera: str | None = None,
    motion_gate: bool = True,
    seat_crops: bool = True,
    snapshots: bool = False,
    batch: int = 4,
    on_update: Callable[[EventUpdate], None] | None = None,
    stats: CoreStats | None = None,
    session: SessionView | None = None,
    tamper_cfg: TamperConfig | None = None,
) -> list[Event]:
    """Analyse a finite stream of frames of ``room`` and return its incidents, by start time.

    ``session`` arms the rules as a running evaluation session does live (only its seats
    expect an evaluator; anyone at another seat or outside every seat is an extra person).

    ``frames`` yields ``(t, frame)`` (all of camera ``camera``, default the room's first camera)
    or ``(camera_id, t, frame)``.  Times are seconds, increasing per camera.  Frames closer than
    ``1/analysis_fps`` to the previous analysed frame of their camera are skipped.  Up to
    ``batch`` consecutive frames are analysed with one detector call.  Events still open at the
    end are closed at their last positive frame.  ``on_update`` sees every update as it
    happens; ``stats`` (if given) receives the core's counters.  ``seat_crops=False`` runs the
    whole detector on whole frames only (no phone crops; for comparison); ``tamper_cfg``
    replaces the tamper thresholds (default: ``TamperConfig(frozen_seconds=rules.frozen_seconds)``).
    """
    core = AnalysisCore(detector, rules_cfg, detection_cfg, motion_gate=motion_gate, snapshots=snapshots,
                        seat_crops=seat_crops, tamper_cfg=tamper_cfg)
    default_cam = camera or room.cameras[0].id
    for c in room.cameras:
        core.add_camera(c.id, room, c.id)
    if default_cam not in core.cameras:
        raise ValueError(f"camera {default_cam!r} is not in room {room.id!r}")
    if session is not None:
        core.set_session(None, room.id, session)
    events: dict[str, Event] = {}

    def handle(updates: list[EventUpdate]) -> None:
        for u in updates:
            events[u.event.id] = u.event
            if on_update is not None:
                on_update(u)

    pending: list[tuple[str, float, np.ndarray]] = []
    for item in frames:
        if len(item) == 2:
            t, frame = item
            key = default_cam
        else:
            key, t, frame = item
        if key not in core.cameras:
            raise ValueError(f"frame from unknown camera {key!r}")
        pending.append((key, float(t), frame))
        if len(pending) >= max(1, batch):
            handle(core.process(pending))
            pending = []
    if pending:
        handle(core.process(pending))
    handle(core.finish())
    if stats is not None:
        stats.__dict__.update(core.stats.__dict__)
    return sorted(events.values(), key=lambda e: (e.start_s, e.rule, e.seat or "", e.kind or ""))


