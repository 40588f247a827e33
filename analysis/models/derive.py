"""Derive the faster model variants from the converted models (needs the ``onnx`` package).

    python analysis/models/derive.py [--models analysis/models] [--only centernet|nanodet]

**CenterNet at 384x288.**

The converted CenterNet is fully convolutional up to a decode tail that was frozen for a 512x512
input: the feature-map width (128 = 512/4) used to turn top-k indices into (row, column), and
the row count of the box-size table (128*128 = 16384).  Setting the input to HxW and those two
constants to W/4 and (H/4)*(W/4) gives the same network at another input size, with the same
weights: ``centernet_coco_384x288.onnx`` keeps the 4:3 aspect of CCTV frames and costs about
0.4x of the 512x512 run (docs/analysis.md, "Faster runtime").  The script checks the result on
``tests/data/bus.jpg`` against the 512 model (the same people found) and prints its sha256.

**NanoDet with int8 convolutions** (``nanodet_coco_int8.onnx``, ``detection.crop_model: int8``):
ONNX Runtime's static quantisation (QDQ, weights int8 per channel, activations uint8) of every
convolution except the three detection-head convolutions, which stay float (quantising them
broke the scores).  Calibration: 120 seat crops of the evaluation set's **dev** half (one frame
every 4 s of each clip, shuffled with seed 0) — never the test half.  The check runs both models
on the seat crops of the demo clips and fails unless the same crops score a phone and a person
at 0.4.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: (height, width) of the derived inputs; the file name says width x height.
SIZES = [(288, 384)]
#: Initialisers of the decode tail that depend on the input size (names from the conversion).
FEATURE_WIDTH = "tower_0/strided_slice_6:0"
BOX_TABLE_SHAPE = "const_fold_opt__2889"


def derived_name(h: int, w: int) -> str:
    return f"centernet_coco_{w}x{h}.onnx"


def derive(src: Path, dst: Path, h: int, w: int) -> None:
    import onnx
    from onnx import numpy_helper

    if h % 32 or w % 32:
        raise SystemExit(f"input {w}x{h}: both sides must be multiples of 32")
    m = onnx.load(str(src))
    g = m.graph
    dims = g.input[0].type.tensor_type.shape.dim
    if [d.dim_value for d in dims] != [1, 512, 512, 3]:
        raise SystemExit(f"{src}: expected input [1, 512, 512, 3]")
    patched = set()
    for i, init in enumerate(g.initializer):
        a = numpy_helper.to_array(init)
        if init.name == FEATURE_WIDTH and a.shape == () and int(a) == 128:
            new = np.array(w // 4, dtype=a.dtype)
        elif init.name == BOX_TABLE_SHAPE and a.tolist() == [16384, 4]:
            new = np.array([(h // 4) * (w // 4), 4], dtype=a.dtype)
        else:
            continue
        g.initializer[i].CopyFrom(numpy_helper.from_array(new, init.name))
        patched.add(init.name)
    if patched != {FEATURE_WIDTH, BOX_TABLE_SHAPE}:
        raise SystemExit(f"{src}: decode constants not found (patched {sorted(patched)})")
    dims[1].dim_value, dims[2].dim_value = h, w
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))


def check(ref: Path, got: Path, h: int, w: int) -> None:
    """The derived model finds the people of bus.jpg where the 512 model does."""
    import cv2
    import onnxruntime as ort

    img = cv2.imread(str(HERE.parent.parent / "tests" / "data" / "bus.jpg"))
    if img is None:
        raise SystemExit("tests/data/bus.jpg is missing")

    def people(path: Path, hh: int, ww: int) -> np.ndarray:
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = cv2.resize(img, (ww, hh))[None, :, :, ::-1].astype(np.float32)
        d = s.run(None, {s.get_inputs()[0].name: x})[0][0]
        d = d[(d[:, 4] > 0.35) & (d[:, 5] == 0)][:, :4] / np.array([ww, hh, ww, hh], np.float32)
        return d

    a, b = people(ref, 512, 512), people(got, h, w)
    for box in a:
        if np.abs(b - box).max(axis=1).min() > 0.06:
            raise SystemExit(f"{got.name}: no person near {box.round(2).tolist()} of the 512 model")
    print(f"{got.name}: {len(b)} people on bus.jpg (512 model: {len(a)}), "
          f"sha256 {hashlib.sha256(got.read_bytes()).hexdigest()}")


NANODET_INT8 = "nanodet_coco_int8.onnx"
#: NanoDet's convolutions with this many output channels are the detection heads (80 classes +
#: 4 x 11 box bins): they stay float.
HEAD_CHANNELS = 124
ROOT = HERE.parent.parent


def _seat_crops(folder: Path, every_s: float) -> list[np.ndarray]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from analysis.core import _crop, seat_crop_rects
    from analysis.video import iter_video_frames
    from config import load_room

    out: list[np.ndarray] = []
    for mp4 in sorted(folder.glob("*.mp4")):
        room = load_room(mp4.with_suffix(".room.yaml"))
        rects = seat_crop_rects(room, room.cameras[0].id)
        for _t, frame in iter_video_frames(mp4, 1.0 / every_s):
            out += [_crop(frame, r) for r in rects]
    return out


def _nanodet_input(crop: np.ndarray) -> np.ndarray:
    import cv2

    mean = np.array([103.53, 116.28, 123.675], np.float32)
    std = np.array([57.375, 57.12, 58.395], np.float32)
    x = cv2.resize(crop, (416, 416), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1)[None])


def quantize_nanodet(src: Path, dst: Path) -> None:
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    m = onnx.load(str(src))
    weights = {i.name: i for i in m.graph.initializer}
    convs = [n.name for n in m.graph.node if n.op_type == "Conv"
             and numpy_helper.to_array(weights[n.input[1]]).shape[0] != HEAD_CHANNELS]
    crops = _seat_crops(ROOT / "sample_videos" / "evalset" / "dev", 4.0)
    random.Random(0).shuffle(crops)  # noqa: S311 (a repeatable calibration sample)
    feeds = [{"input_1:0": _nanodet_input(c)} for c in crops[:120]]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, nodes_to_quantize=convs,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)


def check_nanodet(ref: Path, got: Path) -> None:
    """Both models find a phone / a person (>= 0.4) on the same seat crops of the demo clips."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from analysis.detectors.nanodet import NanoDetCocoModel

    a, b = NanoDetCocoModel(ref), NanoDetCocoModel(got)
    crops = _seat_crops(ROOT / "sample_videos", 2.0)
    for label in ("cell phone", "person"):
        hits = [[any(x.label == label for x in m.raw([c], 0.4)[0]) for c in crops] for m in (a, b)]
        differ = sum(x != y for x, y in zip(*hits, strict=True))
        print(f"{got.name}: {label} >= 0.4 on {sum(hits[0])} / {sum(hits[1])} of {len(crops)} seat crops "
              f"(fp32 / int8), {differ} differ")
        if differ > max(2, len(crops) // 100):
            raise SystemExit(f"{got.name}: int8 and fp32 disagree on {differ} crops ({label})")
    print(f"{got.name}: sha256 {hashlib.sha256(got.read_bytes()).hexdigest()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=HERE, help="folder of the converted models")
    ap.add_argument("--only", choices=("centernet", "nanodet"), help="derive only this model's variant")
    args = ap.parse_args(argv)
    if args.only in (None, "centernet"):
        src = args.models / "centernet_coco.onnx"
        for h, w in SIZES:
            dst = args.models / derived_name(h, w)
            derive(src, dst, h, w)
            check(src, dst, h, w)
    if args.only in (None, "nanodet"):
        nano = args.models / "nanodet_coco.onnx"
        quantize_nanodet(nano, args.models / NANODET_INT8)
        check_nanodet(nano, args.models / NANODET_INT8)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
