"""Operator-provided YOLO weights through the optional ``ultralytics`` extra."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.detectors.base import (
    DEFAULT_NMS_IOU,
    DEFAULT_THRESHOLDS,
    Box,
    ModelNotFoundError,
    UltralyticsNotInstalledError,
    _check_thresholds,
    _make_box,
    validate_frames,
)


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


