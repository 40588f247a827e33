"""Ultralytics-exported YOLO ``.onnx`` decoded with plain onnxruntime (no torch)."""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from analysis.detectors.base import (
    COCO80,
    DEFAULT_NMS_IOU,
    Box,
    _make_box,
    _session,
)


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


