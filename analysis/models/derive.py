"""Derive the smaller-input CenterNet from ``centernet_coco.onnx`` (needs only the ``onnx`` package).

    python analysis/models/derive.py [--models analysis/models]

The converted CenterNet is fully convolutional up to a decode tail that was frozen for a 512x512
input: the feature-map width (128 = 512/4) used to turn top-k indices into (row, column), and
the row count of the box-size table (128*128 = 16384).  Setting the input to HxW and those two
constants to W/4 and (H/4)*(W/4) gives the same network at another input size, with the same
weights: ``centernet_coco_384x288.onnx`` keeps the 4:3 aspect of CCTV frames and costs about
0.4x of the 512x512 run (docs/analysis.md, "Faster runtime").  The script checks the result on
``tests/data/bus.jpg`` against the 512 model (the same people found) and prints its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=HERE, help="folder with centernet_coco.onnx")
    args = ap.parse_args(argv)
    src = args.models / "centernet_coco.onnx"
    for h, w in SIZES:
        dst = args.models / derived_name(h, w)
        derive(src, dst, h, w)
        check(src, dst, h, w)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
