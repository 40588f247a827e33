"""The default detector: several ONNX models behind one :class:`~analysis.detectors.base.Detector`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.detectors.base import (
    CROP_MODELS,
    DEFAULT_MODEL_DIR,
    DEFAULT_NMS_IOU,
    DEFAULT_THRESHOLDS,
    FRAME_INPUT_MODELS,
    PERSON,
    PERSON_MODEL,
    SSD_PERSON_MIN,
    Box,
    _check_thresholds,
    _Model,
    nms,
    resolve_runtime,
    validate_frames,
)
from analysis.detectors.centernet import CenterNetCocoModel
from analysis.detectors.nanodet import NanoDetCocoModel
from analysis.detectors.ssdlite import SsdPersonModel

# ----------------------------------------------------------------------------- detectors


@dataclass(frozen=True, slots=True)
class Source:
    """One model inside an :class:`OnnxDetector` and the labels it is trusted for.

    ``thresholds`` maps label -> minimum score *for this model* (model scores
    are not calibrated against each other, so the same label may need a
    different floor per model).
    """

    model: _Model
    thresholds: Mapping[str, float]


def _overlaps(a: Box, b: Box, iou: float, cover: float) -> bool:
    """Same object seen by two models: IoU above ``iou`` or one box mostly inside the other."""
    if a.iou(b) > iou:
        return True
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    small = min(a.area, b.area)
    return small > 0 and ix * iy / small > cover


class OnnxDetector:
    """The default detector: one or more ONNX models behind one :class:`Detector`.

    Each :class:`Source` reports the labels it has a threshold for. Within a
    source, boxes go through per-label NMS (``nms_iou``). Sources are then
    merged in order: a box from a later source is dropped when it overlaps a
    kept box of the same label (IoU > ``merge_iou`` or > ``merge_cover`` of the
    smaller box inside the larger), so two models never double-count one person.

    With ``sources=None`` it loads the committed models from ``model_dir``
    (default ``analysis/models``), chosen by measurement on the sample clips
    and photos (see PROVENANCE.md):

    1. CenterNet: ``person`` at ``thresholds["person"]`` - the best model for
       half-visible people seated behind desks under a high camera;
    2. SSDLite: ``person`` at max(person threshold, ``ssd_person_min``) - adds
       the large/full-body people CenterNet scores low (close-ups, people
       standing at a desk), never a second box for the same person;
    3. NanoDet: every other label in ``thresholds`` (``"cell phone"`` by
       default) - clearly the better phone model, above all on seat crops.

    ``thresholds`` (label -> min score) also selects which labels are reported,
    and only the models needed for them are loaded: ``{"cell phone": 0.35}``
    gives a phone-only detector for seat crops.  ``frame_input`` picks the CenterNet input
    (:data:`~analysis.detectors.base.FRAME_INPUT_MODELS`: ``"512x512"`` or ``"384x288"``),
    ``crop_model`` the NanoDet weights (:data:`~analysis.detectors.base.CROP_MODELS`: ``"fp32"``
    or ``"int8"``), ``runtime`` the engine (:data:`~analysis.detectors.base.RUNTIMES`:
    ``"onnxruntime"``, ``"openvino"`` (:class:`~analysis.detectors.base.OpenVinoSession`) or
    ``"auto"``, :func:`~analysis.detectors.base.resolve_runtime`); :attr:`runtime` says which ran.
    """

    def __init__(
        self,
        sources: Sequence[Source] | None = None,
        *,
        thresholds: Mapping[str, float] | None = None,
        nms_iou: float = DEFAULT_NMS_IOU,
        merge_iou: float = 0.3,
        merge_cover: float = 0.6,
        threads: int = 1,
        model_dir: str | os.PathLike[str] | None = None,
        ssd_person_min: float | None = SSD_PERSON_MIN,
        frame_input: str = "512x512",
        crop_model: str = "fp32",
        runtime: str = "onnxruntime",
    ) -> None:
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        self.nms_iou = float(nms_iou)
        self.merge_iou = float(merge_iou)
        self.merge_cover = float(merge_cover)
        self.runtime = resolve_runtime(runtime)
        runtime = self.runtime
        if sources is None:
            thr = _check_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
            d = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
            if frame_input not in FRAME_INPUT_MODELS:
                raise ValueError(
                    f"frame_input must be one of {sorted(FRAME_INPUT_MODELS)}, got {frame_input!r}")
            if crop_model not in CROP_MODELS:
                raise ValueError(f"crop_model must be one of {sorted(CROP_MODELS)}, got {crop_model!r}")
            sources = []
            if PERSON in thr:
                cn = CenterNetCocoModel(d / FRAME_INPUT_MODELS[frame_input], threads=threads, runtime=runtime)
                sources.append(Source(cn, {PERSON: thr[PERSON]}))
                if ssd_person_min is not None:
                    ssd = SsdPersonModel(d / PERSON_MODEL, threads=threads, runtime=runtime)
                    sources.append(Source(ssd, {PERSON: max(thr[PERSON], float(ssd_person_min))}))
            other = {k: v for k, v in thr.items() if k != PERSON}
            if other:
                sources.append(Source(NanoDetCocoModel(d / CROP_MODELS[crop_model], threads=threads,
                                                       runtime=runtime), other))
        elif thresholds is not None:
            raise ValueError("pass thresholds inside each Source when giving explicit sources")
        self._sources: list[Source] = []
        for src in sources:
            st = _check_thresholds(src.thresholds)
            unknown = set(st) - src.model.labels
            if unknown:
                raise ValueError(f"{type(src.model).__name__} cannot report {sorted(unknown)}")
            if st:
                self._sources.append(Source(src.model, st))
        self.thresholds: dict[str, float] = {}
        for src in self._sources:
            for k, v in src.thresholds.items():
                self.thresholds[k] = min(v, self.thresholds.get(k, 1.0))

    @property
    def labels(self) -> frozenset[str]:
        """Labels this detector can report."""
        return frozenset(self.thresholds)

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(self._sources)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        items = validate_frames(frames)
        if not items:
            return []
        merged: list[list[Box]] = [[] for _ in items]
        for src in self._sources:
            thr = src.thresholds
            found_all = src.model.raw(items, min(thr.values()))
            for kept, found in zip(merged, found_all, strict=True):
                mine = [b for b in found if b.score >= thr.get(b.label, 2.0)]
                if not getattr(src.model, "applies_nms", False):
                    mine = nms(mine, self.nms_iou)
                fresh = [
                    b
                    for b in mine
                    if not any(
                        k.label == b.label and _overlaps(k, b, self.merge_iou, self.merge_cover) for k in kept
                    )
                ]
                kept.extend(fresh)
        for boxes in merged:
            boxes.sort(key=lambda b: (-b.score, b.label, b.x1, b.y1))
        return merged


