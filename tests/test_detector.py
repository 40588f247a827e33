"""Tests of analysis.detectors on real photographs (tests/data, see IMAGES.md).

The default ONNX detector must find the people a person sees in the photos, at
the right places. The ``ultralytics`` tests need the optional extra (torch) and
are skipped otherwise; run them from the YOLO venv::

    PYTHONPATH=. .venv-yolo/bin/python -m pytest --noconftest -m ultralytics tests/test_detector.py
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from analysis.detectors import (
    COCO80,
    Box,
    Detector,
    ModelNotFoundError,
    OnnxDetector,
    Source,
    YoloOnnxModel,
    crop_frame,
    load_detector,
    map_box_from_crop,
    nms,
)

DATA = Path(__file__).resolve().parent / "data"

# Hand-labelled from the photos (normalised x1, y1, x2, y2).
ZIDANE_PEOPLE = [(0.11, 0.28, 0.56, 1.0), (0.58, 0.06, 0.90, 1.0)]
BUS_PEOPLE = [(0.05, 0.37, 0.30, 0.85), (0.27, 0.36, 0.43, 0.80), (0.83, 0.34, 1.0, 0.82)]
BUS_PARTIAL_PERSON = (0.0, 0.50, 0.10, 0.80)  # cut by the left edge: may or may not be found


def _img(name: str) -> np.ndarray:
    im = cv2.imread(str(DATA / name))
    assert im is not None, f"cannot read {DATA / name}"
    return im


def _iou(a: tuple[float, float, float, float], b: Box) -> float:
    return Box("", 0.0, *a).iou(b)


def _people(boxes: list[Box]) -> list[Box]:
    return [b for b in boxes if b.label == "person"]


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    det = load_detector("onnx", None, person_threshold=0.4, phone_threshold=0.3, threads=1)
    assert isinstance(det, OnnxDetector)
    return det


@pytest.fixture(scope="module")
def zidane() -> np.ndarray:
    return _img("zidane.jpg")


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return _img("bus.jpg")


def test_protocol_and_labels(detector: OnnxDetector) -> None:
    assert isinstance(detector, Detector)
    assert detector.labels == {"person", "cell phone"}
    assert COCO80[0] == "person" and COCO80[67] == "cell phone" and len(COCO80) == 80


def test_zidane_two_people_in_place(detector: OnnxDetector, zidane: np.ndarray) -> None:
    people = _people(detector.detect([zidane])[0])
    assert len(people) == 2, people
    for truth in ZIDANE_PEOPLE:
        best = max(_iou(truth, b) for b in people)
        assert best >= 0.6, (truth, people)
    assert all(b.score >= 0.4 for b in people)


def test_bus_people_in_place_and_no_bus_as_person(detector: OnnxDetector, bus: np.ndarray) -> None:
    people = _people(detector.detect([bus])[0])
    for truth in BUS_PEOPLE:
        best = max((_iou(truth, b) for b in people), default=0.0)
        assert best >= 0.5, (truth, people)
    # every reported person is one of the four real ones (no double counts, not the bus)
    allowed = [*BUS_PEOPLE, BUS_PARTIAL_PERSON]
    for b in people:
        assert max(_iou(t, b) for t in allowed) >= 0.3, b
    assert 3 <= len(people) <= 4


@pytest.fixture(scope="module")
def fast_detector() -> OnnxDetector:
    det = load_detector("onnx", None, person_threshold=0.4, phone_threshold=0.3, frame_input="384x288")
    assert isinstance(det, OnnxDetector)
    return det


def test_fast_input_runs_centernet_at_384x288_and_finds_the_same_people(
    fast_detector: OnnxDetector, zidane: np.ndarray, bus: np.ndarray
) -> None:
    from analysis.detectors import CenterNetCocoModel

    cn = [s.model for s in fast_detector.sources if isinstance(s.model, CenterNetCocoModel)]
    assert [m.input_hw for m in cn] == [(288, 384)]
    people = _people(fast_detector.detect([zidane])[0])
    assert len(people) == 2, people
    for truth in ZIDANE_PEOPLE:
        assert max(_iou(truth, b) for b in people) >= 0.6, (truth, people)
    people = _people(fast_detector.detect([bus])[0])
    for truth in BUS_PEOPLE:
        assert max((_iou(truth, b) for b in people), default=0.0) >= 0.5, (truth, people)
    assert 3 <= len(people) <= 4


def test_fast_model_is_the_converted_model_with_another_input(tmp_path: Path) -> None:
    """``analysis/models/derive.py`` re-creates the committed 384x288 file byte for byte from the
    converted 512x512 one (same weights; only the input and two decode constants differ)."""
    pytest.importorskip("onnx", reason="onnx is in the test extra")
    import hashlib
    import shutil
    import subprocess
    import sys

    from analysis.detectors import DEFAULT_MODEL_DIR

    shutil.copy(DEFAULT_MODEL_DIR / "centernet_coco.onnx", tmp_path)
    r = subprocess.run([sys.executable, str(DEFAULT_MODEL_DIR / "derive.py"), "--models", str(tmp_path),
                        "--only", "centernet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    name = "centernet_coco_384x288.onnx"
    digest = [hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (tmp_path, DEFAULT_MODEL_DIR)]
    assert digest[0] == digest[1]


def test_frame_input_must_be_known() -> None:
    from pydantic import ValidationError

    from config import DetectionConfig

    with pytest.raises(ValidationError, match="frame_input"):
        DetectionConfig(frame_input="640x640")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame_input must be one of"):
        load_detector(frame_input="640x640")
    with pytest.raises(ValidationError, match="crop_model"):
        DetectionConfig(crop_model="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop_model must be one of"):
        load_detector(crop_model="fp16")


def test_boxes_normalised_sorted_and_typed(
    detector: OnnxDetector, zidane: np.ndarray, bus: np.ndarray
) -> None:
    for boxes in detector.detect([zidane, bus]):
        assert boxes == sorted(boxes, key=lambda b: -b.score)
        for b in boxes:
            assert isinstance(b, Box) and isinstance(b.score, float)
            assert 0.0 <= b.x1 < b.x2 <= 1.0 and 0.0 <= b.y1 < b.y2 <= 1.0
            assert b.label in detector.labels


def test_batch_equals_single(detector: OnnxDetector, zidane: np.ndarray, bus: np.ndarray) -> None:
    small = cv2.resize(bus, (300, 400))
    batch = detector.detect([zidane, bus, small, zidane])
    singles = [detector.detect([f])[0] for f in (zidane, bus, small, zidane)]
    assert len(batch) == 4
    for got, want in zip(batch, singles, strict=True):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.label == w.label
            assert g.score == pytest.approx(w.score, abs=1e-4)
            assert (g.x1, g.y1, g.x2, g.y2) == pytest.approx((w.x1, w.y1, w.x2, w.y2), abs=1e-4)


def test_empty_and_blank(detector: OnnxDetector) -> None:
    assert detector.detect([]) == []
    grey = np.full((480, 640, 3), 128, np.uint8)
    assert detector.detect([grey]) == [[]]


@pytest.mark.parametrize(
    ("frames", "msg"),
    [
        ([np.zeros((64, 64, 3), np.float32)], "dtype uint8"),
        ([np.zeros((64, 64), np.uint8)], "shape"),
        ([np.zeros((64, 64, 4), np.uint8)], "shape"),
        ([np.zeros((4, 64, 3), np.uint8)], "too small"),
        (["not an image"], "ndarray"),
        (np.zeros((64, 64, 3), np.uint8), "sequence of frames"),
        (None, "sequence of frames"),
    ],
)
def test_garbage_input_is_a_clear_value_error(detector: OnnxDetector, frames: object, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        detector.detect(frames)  # type: ignore[arg-type]


def test_crop_and_map_back(detector: OnnxDetector, zidane: np.ndarray) -> None:
    full = _people(detector.detect([zidane])[0])
    rect = (0.50, 0.0, 1.0, 1.0)  # right half: Ancelotti only
    crop = crop_frame(zidane, rect)
    assert crop.shape == (720, 640, 3)
    found = [map_box_from_crop(b, rect) for b in _people(detector.detect([crop])[0])]
    assert len(found) == 1
    assert max(b.iou(found[0]) for b in full) >= 0.7
    assert _iou(ZIDANE_PEOPLE[1], found[0]) >= 0.6
    with pytest.raises(ValueError):
        crop_frame(zidane, (0.5, 0.5, 0.4, 1.0))


def test_thresholds_select_and_filter(zidane: np.ndarray) -> None:
    strict = load_detector(person_threshold=0.96, phone_threshold=0.5)
    people = _people(strict.detect([zidane])[0])
    assert len(people) == 1 and people[0].score >= 0.96
    ties = load_detector(thresholds={"tie": 0.2}, person_threshold=0.4)
    labels = {b.label for b in ties.detect([zidane])[0]}
    assert "tie" in labels  # both men wear one; NanoDet reports other COCO labels on request
    with pytest.raises(ValueError, match="threshold"):
        load_detector(person_threshold=1.5)


def test_labels_restrict_models(zidane: np.ndarray) -> None:
    from analysis.detectors import CenterNetCocoModel, NanoDetCocoModel

    phones = load_detector(labels=["cell phone"], phone_threshold=0.35)
    assert isinstance(phones, OnnxDetector) and phones.labels == {"cell phone"}
    assert [type(s.model) for s in phones.sources] == [NanoDetCocoModel]
    assert phones.detect([zidane]) == [[]]  # no phone in the photo
    people = load_detector(labels=["person"])
    assert isinstance(people, OnnxDetector)
    assert type(people.sources[0].model) is CenterNetCocoModel and people.labels == {"person"}
    with pytest.raises(ValueError, match="no threshold"):
        load_detector(labels=["dog"])


def test_nms_and_box_geometry() -> None:
    a = Box("person", 0.9, 0.1, 0.1, 0.5, 0.5)
    b = Box("person", 0.8, 0.12, 0.1, 0.5, 0.52)
    c = Box("cell phone", 0.7, 0.12, 0.1, 0.5, 0.52)
    assert nms([b, a, c]) == [a, c]
    assert a.iou(a) == pytest.approx(1.0)
    assert a.area == pytest.approx(0.16) and a.center == pytest.approx((0.3, 0.3))


def test_missing_model_names_path_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as ei:
        load_detector("onnx", str(tmp_path))
    assert str(tmp_path / "centernet_coco.onnx") in str(ei.value)
    assert "make models" in str(ei.value)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_detector("onnx", str(tmp_path / "nope.onnx"))


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="unknown detection backend"):
        load_detector("tensorflow")
    with pytest.raises(ValueError, match="model_path"):
        load_detector("ultralytics", None)


def test_explicit_sources_reject_unknown_labels() -> None:
    from analysis.detectors import DEFAULT_MODEL_DIR, SsdPersonModel

    ssd = SsdPersonModel(DEFAULT_MODEL_DIR / "ssdlite_person.onnx")
    with pytest.raises(ValueError, match="cannot report"):
        OnnxDetector([Source(ssd, {"cell phone": 0.3})])


# ----------------------------------------------------------------------------- ultralytics

HAVE_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
# `make test-ultralytics` sets EVALWATCH_REQUIRE_ULTRALYTICS so a broken install fails, not skips.
if os.environ.get("EVALWATCH_REQUIRE_ULTRALYTICS") and not HAVE_ULTRALYTICS:
    raise RuntimeError("EVALWATCH_REQUIRE_ULTRALYTICS is set but ultralytics cannot be imported")
needs_ultralytics = pytest.mark.skipif(
    not HAVE_ULTRALYTICS,
    reason="ultralytics extra not installed (pip install torch==2.14.1 torchvision==0.29.1 "
    "&& pip install -e '.[ultralytics]'; see analysis/models/PROVENANCE.md)",
)


def test_ultralytics_missing_extra_is_clear(tmp_path: Path) -> None:
    if HAVE_ULTRALYTICS:
        pytest.skip("ultralytics is installed here")
    from analysis.detectors import UltralyticsNotInstalledError

    with pytest.raises(UltralyticsNotInstalledError, match=r"\[ultralytics\]"):
        load_detector("ultralytics", "yolo11n.yaml")
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        load_detector("ultralytics", str(tmp_path / "yolo11n.pt"))


@pytest.fixture(scope="module")
def random_yolo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A YOLO11n built from its yaml (random weights, no download), saved as .pt and exported to ONNX.

    The class head is re-initialised with a wide spread so that random scores are
    not all tied at ~1e-4 and the two decoders can be compared box by box.
    """
    d = tmp_path_factory.mktemp("yolo")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ["YOLO_CONFIG_DIR"] = str(d)
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    model.model.names = dict(enumerate(COCO80))  # a yaml-built model is named '0'..'79'
    with torch.no_grad():
        # Random init gives near-constant features and scores tied at ~1e-4: amplify every
        # BatchNorm and give the class convs large random weights so scores spread over 0.05..0.5.
        for mod in model.model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.fill_(2.0)
        for branch in model.model.model[-1].cv3:
            branch[-1].weight.normal_(0.0, 100.0)
            branch[-1].bias.fill_(-3.0)
    pt = d / "random_yolo11n.pt"
    model.save(str(pt))
    onnx_path = Path(YOLO(str(pt)).export(format="onnx", imgsz=320, simplify=False, dynamic=False))
    return pt, onnx_path


def _match(a: list[Box], b: list[Box], tol: float) -> float:
    """Fraction of boxes in ``a`` that have a same-label twin in ``b`` within ``tol``."""
    if not a:
        return 1.0
    hit = 0
    for x in a:
        if any(
            y.label == x.label
            and abs(y.score - x.score) < 0.01
            and max(abs(y.x1 - x.x1), abs(y.y1 - x.y1), abs(y.x2 - x.x2), abs(y.y2 - x.y2)) < tol
            for y in b
        ):
            hit += 1
    return hit / len(a)


@pytest.mark.ultralytics
@needs_ultralytics
def test_ultralytics_and_plain_onnx_decoder_agree(
    random_yolo: tuple[Path, Path], zidane: np.ndarray, bus: np.ndarray
) -> None:
    from analysis.detectors import UltralyticsDetector

    pt, onnx_path = random_yolo
    thr = {name: 0.12 for name in COCO80}
    plain = load_detector("onnx", str(onnx_path), thresholds=thr)
    assert isinstance(plain, OnnxDetector)
    yolo_src = plain.sources[0].model
    assert isinstance(yolo_src, YoloOnnxModel) and yolo_src.input_hw == (320, 320)
    assert yolo_src.names == COCO80

    # Same exported ONNX through ultralytics' AutoBackend and through our decoder (any aspect ratio).
    ul_onnx = UltralyticsDetector(onnx_path, thresholds=thr, imgsz=320)
    for frame in (zidane, bus):
        ours = plain.detect([frame])[0]
        theirs = ul_onnx.detect([frame])[0]
        assert 5 <= len(theirs) < 300, len(theirs)
        assert _match(theirs, ours, 0.01) >= 0.95
        assert _match(ours, theirs, 0.01) >= 0.95

    # The .pt (torch) against our decoder on the .onnx: a square frame so both letterboxes agree.
    square = cv2.resize(zidane[:, 280:1000], (320, 320))
    ul_pt = load_detector("ultralytics", str(pt), thresholds=thr)
    assert isinstance(ul_pt, UltralyticsDetector)
    ul_pt.imgsz = 320
    theirs = ul_pt.detect([square])[0]
    ours = plain.detect([square])[0]
    assert 5 <= len(theirs) < 300, len(theirs)
    assert _match(theirs, ours, 0.01) >= 0.9
    assert _match(ours, theirs, 0.01) >= 0.9
    # batches behave like singles on the torch side too
    both = ul_pt.detect([square, square])
    assert [len(x) for x in both] == [len(theirs), len(theirs)]


# ----------------------------------------------------------------------------- sample clips

CLIPS_DIR = Path(__file__).resolve().parent.parent / "sample_videos"


def _clip_phone_cases() -> list[tuple[str, str, float, float]]:
    import json

    cases = []
    for truth in sorted(CLIPS_DIR.glob("*.truth.json")):
        doc = json.loads(truth.read_text())
        for e in doc["events"]:
            if e["rule"] == "phone":
                cases.append((doc["clip"], e["seat"], float(e["start_s"]), float(e["end_s"])))
    return cases


@pytest.mark.skipif(not _clip_phone_cases(), reason="sample_videos/*.truth.json not present")
@pytest.mark.parametrize(("clip", "seat", "start", "end"), _clip_phone_cases())
@pytest.mark.parametrize("crop_model", ["fp32", "int8"])
def test_phone_found_on_seat_crops_of_sample_clips(
    clip: str, seat: str, start: float, end: float, crop_model: str
) -> None:
    """Phone-only NanoDet on raised seat crops: the phone's seat fires, the other seats do not
    (with the converted weights and with the int8 ones of ``detection.crop_model: int8``)."""
    import yaml

    room = yaml.safe_load((CLIPS_DIR / clip.replace(".mp4", ".room.yaml")).read_text())
    rects = {}
    for s in room["seats"]:
        xs = [p[0] for p in s["polygon"]]
        ys = [p[1] for p in s["polygon"]]
        rects[s["id"]] = (min(xs), max(0.0, min(ys) - 0.1), max(xs), max(ys))
    phones = load_detector(labels=["cell phone"], phone_threshold=0.35, crop_model=crop_model)
    cap = cv2.VideoCapture(str(CLIPS_DIR / clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    hits = 0
    times = [start + (end - start) * k / 4 for k in (1, 2, 3)]
    for t in times:
        cap.set(cv2.CAP_PROP_POS_FRAMES, round(t * fps))
        ok, frame = cap.read()
        assert ok, f"{clip}: cannot read frame at {t:.1f}s"
        for sid, rect in rects.items():
            found = phones.detect([crop_frame(frame, rect)])[0]
            if sid == seat:
                hits += bool(found)
            else:
                assert not found, (clip, t, sid, found)
    cap.release()
    assert hits >= 2, f"{clip}: phone at {seat} found in {hits}/3 sampled frames"


# ----------------------------------------------------------------------------- OpenVINO runtime

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None and not os.environ.get("EVALWATCH_REQUIRE_OPENVINO"),
    reason="openvino not installed (an agent installed before openvino joined the base install)")


@pytest.fixture(scope="module")
def ov_detector() -> OnnxDetector:
    det = load_detector("onnx", None, person_threshold=0.4, phone_threshold=0.3, runtime="openvino")
    assert isinstance(det, OnnxDetector)
    return det


@needs_openvino
def test_openvino_runs_every_default_model_and_finds_the_same_people(
    ov_detector: OnnxDetector, detector: OnnxDetector, zidane: np.ndarray, bus: np.ndarray
) -> None:
    """``detection.runtime: openvino``: the same ONNX files compiled by OpenVINO (bfloat16 on
    CPUs with AMX, float32 elsewhere) find the same people at the same places."""
    from analysis.detectors.base import OpenVinoSession

    sessions = [s.model._sess for s in ov_detector.sources]  # type: ignore[attr-defined]
    assert len(sessions) == 3 and all(isinstance(s, OpenVinoSession) for s in sessions)
    for img, truths in ((zidane, ZIDANE_PEOPLE), (bus, BUS_PEOPLE)):
        ov_people = _people(ov_detector.detect([img])[0])
        ort_people = _people(detector.detect([img])[0])
        for truth in truths:
            assert max((_iou(truth, b) for b in ov_people), default=0.0) >= 0.5, (truth, ov_people)
        # every confident onnxruntime person has an OpenVINO twin with a close score
        for b in ort_people:
            if b.score >= 0.5:
                twin = max(ov_people, key=lambda o: o.iou(b))
                assert twin.iou(b) >= 0.9 and abs(twin.score - b.score) < 0.05, (b, twin)


@needs_openvino
def test_openvino_finds_the_sample_phones_and_is_safe_across_threads() -> None:
    """The phone model under OpenVINO on the demo's phone seat crops; two threads sharing the
    detector get the same answers as one (one infer request per thread)."""
    import threading

    cases = _clip_phone_cases()[:2]
    if not cases:
        pytest.skip("sample_videos/*.truth.json not present")
    phones = load_detector(labels=["cell phone"], phone_threshold=0.35, runtime="openvino")
    assert isinstance(phones, OnnxDetector)
    crops = []
    import yaml

    for clip, seat, start, end in cases:
        room = yaml.safe_load((CLIPS_DIR / clip.replace(".mp4", ".room.yaml")).read_text())
        s = next(x for x in room["seats"] if x["id"] == seat)
        xs = [p[0] for p in s["polygon"]]
        ys = [p[1] for p in s["polygon"]]
        cap = cv2.VideoCapture(str(CLIPS_DIR / clip))
        cap.set(cv2.CAP_PROP_POS_FRAMES, round((start + end) / 2 * (cap.get(cv2.CAP_PROP_FPS) or 15.0)))
        ok, frame = cap.read()
        cap.release()
        assert ok
        crops.append(crop_frame(frame, (min(xs), max(0.0, min(ys) - 0.1), max(xs), max(ys))))
    single = phones.detect(crops)
    assert all(found and found[0].label == "cell phone" for found in single), single
    got: list[list[list[Box]]] = []

    def work() -> None:
        for _ in range(5):
            got.append(phones.detect(crops))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 10 and all(g == single for g in got)
    # one execution stream per CPU: the requests of one stream run one after the other, so the
    # analysis workers (one per CPU) would take turns on one core
    from analysis.detectors.base import OpenVinoSession

    sessions = [src.model._sess for src in phones.sources  # type: ignore[attr-defined]  # private session
                if isinstance(getattr(src.model, "_sess", None), OpenVinoSession)]
    assert sessions and all(int(x._compiled.get_property("NUM_STREAMS")) == (os.cpu_count() or 1)
                            for x in sessions)


@needs_openvino
def test_openvino_f32_runs_at_float32_and_finds_the_same_people(
    detector: OnnxDetector, zidane: np.ndarray
) -> None:
    """``detection.runtime: openvino-f32``: OpenVINO held at float32, the path of a room PC whose
    CPU has no AMX / AVX-512 BF16; every model reports f32 and finds onnxruntime's people with
    (float32 both) near-identical scores."""
    from analysis.detectors.base import OpenVinoSession

    det = load_detector("onnx", None, person_threshold=0.4, phone_threshold=0.3, runtime="openvino-f32")
    assert isinstance(det, OnnxDetector) and det.runtime == "openvino-f32"
    sessions = [s.model._sess for s in det.sources]  # type: ignore[attr-defined]
    assert sessions and all(isinstance(x, OpenVinoSession) and x.precision == "f32" for x in sessions)
    f32_people = _people(det.detect([zidane])[0])
    for b in _people(detector.detect([zidane])[0]):
        if b.score >= 0.5:
            twin = max(f32_people, key=lambda o: o.iou(b))
            assert twin.iou(b) >= 0.95 and abs(twin.score - b.score) < 0.01, (b, twin)


#: Four threads make the first inference of a fresh OpenVINO session at the same moment, while
#: the main thread makes calls that give the GIL up (as an import does): what the agent's two
#: analysis workers and its event loop did when the agent hung at start.
FIRST_CALLS = """
import os, sys, threading, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from pathlib import Path
from analysis.detectors.base import OpenVinoSession
if sys.argv[2] == "no-warm-up":  # a model the zeros warm-up does not suit: the lock in run() alone
    OpenVinoSession._warm_up = lambda self: None
s = OpenVinoSession(Path(sys.argv[1]) / "analysis/models/centernet_coco.onnx", 1, precision="f32")
port = s.get_inputs()[0]
bar = threading.Barrier(5)
done = []
def work():
    x = np.zeros([d or 1 for d in port.shape], np.float32)
    bar.wait()
    s.run(None, {port.name: x})
    done.append(1)
for _ in range(4):
    threading.Thread(target=work, daemon=True).start()
bar.wait()
while len(done) < 4:
    os.path.exists(sys.argv[1] + "/no-such-file.py")
print("ok", flush=True)
"""


@needs_openvino
def test_openvino_first_inferences_from_several_threads_do_not_deadlock() -> None:
    """Before the fix 6 of 15 such runs hung for good (OpenVINO fills a static on the first
    inference and gives the GIL up while doing it); ``OpenVinoSession`` now makes its first
    inference itself, under a lock, before any caller's thread can, and each thread's first
    inference takes the same lock (what is left where the zeros warm-up does not suit a model)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    for run, mode in enumerate(["warm-up"] * 4 + ["no-warm-up"] * 4):
        try:
            out = subprocess.run([sys.executable, "-c", FIRST_CALLS, str(root), mode], capture_output=True,
                                 text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {run + 1} ({mode}): four threads' first OpenVINO inferences hung (deadlock)")
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_openvino_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from analysis.detectors.base import RuntimeNotInstalledError

    real = builtins.__import__

    def no_openvino(name: str, *a: object, **kw: object) -> object:
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real(name, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(RuntimeNotInstalledError, match=r"evalwatch\[openvino\]"):
        load_detector(runtime="openvino")
    with pytest.raises(ValueError, match=r"detection\.runtime must be one of"):
        load_detector(runtime="tensorrt")
