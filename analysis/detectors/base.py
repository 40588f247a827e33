"""What every detector backend shares: the box, the detector protocol, COCO names, default
thresholds and model files, input checks, crops and NMS."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
PERSON_MODEL = "ssdlite_person.onnx"
COCO_MODEL = "centernet_coco.onnx"
#: ``DetectionConfig.frame_input`` -> the CenterNet file for that input (``models/derive.py``).
FRAME_INPUT_MODELS: Mapping[str, str] = {"512x512": COCO_MODEL, "384x288": "centernet_coco_384x288.onnx"}
NANODET_MODEL = "nanodet_coco.onnx"
#: ``DetectionConfig.crop_model`` -> the NanoDet file (int8: ``models/derive.py``).
CROP_MODELS: Mapping[str, str] = {"fp32": NANODET_MODEL, "int8": "nanodet_coco_int8.onnx"}

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


#: ``DetectionConfig.runtime`` values: the inference engine that runs the ONNX files ("auto":
#: OpenVINO when it is installed, else onnxruntime -- see :func:`resolve_runtime`).
#: ``"openvino-f32"`` is OpenVINO held at float32: what a CPU without AMX / AVX-512 BF16 (a
#: room PC's Core i5) runs, so this machine can measure that path too.
RUNTIMES: tuple[str, ...] = ("auto", "onnxruntime", "openvino", "openvino-f32")


def resolve_runtime(runtime: str) -> str:
    """The engine ``runtime`` means here: ``"auto"`` is ``"openvino"`` when the package is
    installed (the base install has it since 2026-12-07; an older agent install may not), else
    ``"onnxruntime"``.  Both run the same ONNX files; on the evaluation set's dev half they
    found the same incidents (docs/analysis.md, "Faster runtime")."""
    if runtime not in RUNTIMES:
        raise ValueError(f"detection.runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if runtime != "auto":
        return runtime
    import importlib.util

    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


class RuntimeNotInstalledError(ImportError):
    """``detection.runtime`` names an engine whose package is not installed."""


@dataclass(frozen=True, slots=True)
class _Port:
    name: str
    shape: tuple[int | None, ...]


class OpenVinoSession:
    """An ONNX file compiled by OpenVINO for the CPU, behind the three calls of an
    ``onnxruntime.InferenceSession`` the models use (``get_inputs``, ``get_outputs``, ``run``).

    OpenVINO picks its CPU precision itself: bfloat16 where the CPU has AMX / AVX-512 BF16
    (current Xeons: ~0.2x onnxruntime's time on NanoDet, ~0.5x on CenterNet 384x288, measured
    here), float32 elsewhere (about onnxruntime's speed).  One infer request per thread, so a
    detector shared by threads stays correct.
    """

    _core: Any = None

    def __init__(self, path: Path, threads: int, precision: str | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RuntimeNotInstalledError(
                "detection.runtime 'openvino' needs the openvino package: pip install 'evalwatch[openvino]'"
            ) from e

        if OpenVinoSession._core is None:
            OpenVinoSession._core = ov.Core()
        core = OpenVinoSession._core
        # One execution stream per CPU: requests of one stream run one after the other, so with a
        # single stream the analysis workers (one per CPU) took turns on one core (measured here,
        # NanoDet, 2 threads calling: 134 inferences/s with 1 stream at ~94 % CPU, 279/s with 2
        # at ~180 %; one caller: the same either way).
        self.streams = max(1, os.cpu_count() or 1)
        self._name = Path(path).name
        self._compiled = core.compile_model(
            core.read_model(str(path)), "CPU",
            {"INFERENCE_NUM_THREADS": self.streams * max(1, int(threads)), "NUM_STREAMS": self.streams,
             "PERFORMANCE_HINT": "LATENCY",
             # None: OpenVINO's own choice (bf16 with AMX / AVX-512 BF16, else f32)
             **({"INFERENCE_PRECISION_HINT": precision} if precision else {})})
        self._local = threading.local()

        def port(p: Any) -> _Port:
            dims = tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
            return _Port(p.get_any_name(), dims)

        self._inputs = [port(p) for p in self._compiled.inputs]
        self._outputs = [port(p) for p in self._compiled.outputs]
        self._warm_up()

    #: Held while a session makes its first inference (:meth:`_warm_up`).
    _first_call = threading.Lock()

    def _warm_up(self) -> None:
        """One inference on zeros, one thread at a time, before any caller's thread runs one.

        OpenVINO's Python binding fills function-local statics on its first inference (the
        element type → numpy dtype of ``Type.to_dtype``, seen in ``data_dispatcher``) while the
        thread holds the GIL, and that initialisation itself gives the GIL up: two analysis
        workers making their first inference at once deadlocked the agent for good (one waited
        for the static with the GIL, the other for the GIL inside the static; all of its
        threads stopped, seen with py-spy, issue #11).  Reproduced here in 6 of 15 runs of four
        threads calling a fresh session at once; ``tests/test_detector.py`` checks it no longer
        hangs.  The zeros inference also takes the compile's lazy work out of the first frame."""
        with OpenVinoSession._first_call:
            try:
                feeds = {
                    port.name: np.zeros([d or 1 for d in port.shape], ov_port.get_element_type().to_dtype())
                    for port, ov_port in zip(self._inputs, self._compiled.inputs, strict=True)
                }
                self._compiled.create_infer_request().infer(feeds)
            except Exception as e:  # a model a zeros tensor of this shape does not suit
                # (dynamic sizes read as 1): no warm-up; each thread's first inference still
                # runs under the lock (run)
                log.debug("OpenVINO warm-up of %s skipped: %s", self._name, e)

    @property
    def precision(self) -> str:
        """The precision OpenVINO runs at on this CPU (``bf16`` or ``f32``)."""
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(hint.to_string() if hasattr(hint, "to_string") else hint)

    def get_inputs(self) -> list[_Port]:
        return list(self._inputs)

    def get_outputs(self) -> list[_Port]:
        return list(self._outputs)

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        req = getattr(self._local, "request", None)
        if req is None:  # this thread's first inference: one at a time (_warm_up says why)
            req = self._local.request = self._compiled.create_infer_request()
            with OpenVinoSession._first_call:
                res = req.infer(dict(feeds), share_inputs=True)
        else:
            # sync call: the request reads the caller's arrays in place (no copy into its tensors)
            res = req.infer(dict(feeds), share_inputs=True)
        names = [o.name for o in self._outputs] if output_names is None else list(output_names)
        by_name = {o.name: res[i] for i, o in enumerate(self._outputs)}
        return [np.asarray(by_name[n]) for n in names]


def _session(path: Path, threads: int, what: str, runtime: str = "onnxruntime") -> Any:
    """An inference session for the ONNX file ``path``: onnxruntime (default) or OpenVINO."""
    if not path.is_file():
        raise ModelNotFoundError(f"{what} model not found: {path}. {_MAKE_MODELS_HINT}")
    runtime = resolve_runtime(runtime)
    if runtime == "openvino":
        return OpenVinoSession(path, threads)
    if runtime == "openvino-f32":
        return OpenVinoSession(path, threads, precision="f32")
    import onnxruntime as ort

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




class _Model(Protocol):
    labels: frozenset[str]

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Box]]: ...


