"""Checks of the committed sample clips in ``sample_videos/`` and their truth files.

Fast: decodes the clips (no detector), parses room and truth files, and checks
that the truth is exactly what the generator's script derives.  The pixel
determinism check renders a few frames and needs the dev-only photo sources; it
is skipped with a reason when they are not installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_videos"
RULES = {"extra_person", "phone", "seat_empty", "camera_tamper"}
TAMPER_KINDS = {"covered", "defocused", "moved", "frozen"}
MAX_TOTAL_BYTES = 9_000_000

TRUTH_FILES = sorted(SAMPLES.glob("*.truth.json"))
CLIP_STEMS = [p.name.removesuffix(".truth.json") for p in TRUTH_FILES]


def _truth(stem: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{stem}.truth.json").read_text(encoding="utf-8"))


def _room(stem: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / f"{stem}.room.yaml").read_text(encoding="utf-8"))


def test_there_are_enough_clips() -> None:
    """Five or more clips, each with a video, a room file and a truth file."""
    assert len(CLIP_STEMS) >= 5, CLIP_STEMS
    for stem in CLIP_STEMS:
        assert (SAMPLES / f"{stem}.mp4").is_file()
        assert (SAMPLES / f"{stem}.room.yaml").is_file()
    total = sum((SAMPLES / f"{s}.mp4").stat().st_size for s in CLIP_STEMS)
    assert total <= MAX_TOTAL_BYTES, f"clips take {total} bytes"


@pytest.mark.parametrize("stem", CLIP_STEMS)
def test_clip_decodes_with_pyav(stem: str) -> None:
    """H.264 / yuv420p, 640x480 @ 15 fps, frame count matching the truth's duration."""
    av = pytest.importorskip("av")
    truth = _truth(stem)
    with av.open(str(SAMPLES / f"{stem}.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (640, 480)
        assert stream.average_rate == truth["fps"] == 15
        n = 0
        for frame in container.decode(stream):
            if n == 0:
                assert frame.format.name == "yuv420p"
                img = frame.to_ndarray(format="bgr24")
                assert img.shape == (480, 640, 3)
                assert 20 < float(img.mean()) < 235
            n += 1
    assert n == round(truth["duration_s"] * truth["fps"])
    assert 40.0 <= truth["duration_s"] <= 75.0


@pytest.mark.parametrize("stem", CLIP_STEMS)
def test_clip_decodes_with_opencv(stem: str) -> None:
    """OpenCV (what the capture side uses) opens the clip with the same geometry."""
    cap = cv2.VideoCapture(str(SAMPLES / f"{stem}.mp4"))
    try:
        assert cap.isOpened()
        ok, frame = cap.read()
        assert ok and frame.shape == (480, 640, 3)
        assert abs(cap.get(cv2.CAP_PROP_FPS) - 15) < 0.01
        assert abs(cap.get(cv2.CAP_PROP_FRAME_COUNT) - _truth(stem)["duration_s"] * 15) <= 1
    finally:
        cap.release()


def _seat_mask(poly: list[list[float]]) -> np.ndarray:
    mask = np.zeros((480, 640), np.uint8)
    pts = np.round(np.array(poly, np.float64) * [640, 480]).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask


@pytest.mark.parametrize("stem", CLIP_STEMS)
def test_room_file(stem: str) -> None:
    """Room file format; seat polygons lie in 0..1 and are pairwise disjoint."""
    room = _room(stem)
    assert isinstance(room["id"], str) and room["id"]
    (cam,) = room["cameras"]
    assert cam["source"] == f"sample_videos/{stem}.mp4"
    assert (ROOT / cam["source"]).is_file()
    assert (cam["width"], cam["height"], cam["fps"]) == (640, 480, 15)
    ids = [s["id"] for s in room["seats"]]
    assert 2 <= len(ids) <= 4 and len(set(ids)) == len(ids)
    masks = []
    for seat in room["seats"]:
        assert seat["camera"] == cam["id"]
        assert isinstance(seat["row"], int) and isinstance(seat["col"], int)
        poly = seat["polygon"]
        assert len(poly) >= 3
        for x, y in poly:
            assert 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
        masks.append(_seat_mask(poly))
        assert masks[-1].sum() > 0.02 * 640 * 480
    overlap = np.sum(masks, axis=0)
    assert overlap.max() == 1, "seat polygons overlap"


@pytest.mark.parametrize("stem", CLIP_STEMS)
def test_truth_file(stem: str) -> None:
    """Truth format; events lie within the clip and name existing seats."""
    truth = _truth(stem)
    seats = {s["id"] for s in _room(stem)["seats"]}
    assert truth["clip"] == f"{stem}.mp4"
    assert truth["room"] == f"{stem}.room.yaml"
    assert truth["fps"] == 15
    for ev in truth["events"]:
        assert set(ev) == {"rule", "kind", "seat", "start_s", "end_s"}
        assert ev["rule"] in RULES
        if ev["rule"] == "camera_tamper":
            assert ev["kind"] in TAMPER_KINDS and ev["seat"] is None
        else:
            assert ev["kind"] is None and ev["seat"] in seats
        assert 0.0 <= ev["start_s"] < ev["end_s"] <= truth["duration_s"]
        assert ev["end_s"] - ev["start_s"] >= 4.0, ev


def test_truth_covers_every_rule_and_has_a_control_clip() -> None:
    """All rules and tamper kinds occur somewhere; one clip has no incident at all."""
    events = [ev for stem in CLIP_STEMS for ev in _truth(stem)["events"]]
    assert {ev["rule"] for ev in events} == RULES
    assert {ev["kind"] for ev in events if ev["rule"] == "camera_tamper"} == TAMPER_KINDS
    assert any(not _truth(stem)["events"] for stem in CLIP_STEMS)


@pytest.mark.parametrize("stem", CLIP_STEMS)
def test_truth_and_room_come_from_the_script(stem: str) -> None:
    """The committed files are exactly what the generator's script derives."""
    script = pytest.importorskip("sample_videos.script")
    spec = script.clip_by_name(stem)
    assert script.truth_doc(spec) == _truth(stem)
    assert script.room_doc(spec) == _room(stem)


def test_script_is_deterministic_over_a_prefix() -> None:
    """Re-deriving the first N frames' truth gives the committed truth clipped at N."""
    script = pytest.importorskip("sample_videos.script")
    stem = "room_a" if "room_a" in CLIP_STEMS else CLIP_STEMS[0]
    spec = script.clip_by_name(stem)
    n = 20 * script.FPS
    first = script.truth_events(spec, n)
    assert first == script.truth_events(spec, n)
    cut = n / script.FPS
    clipped = [dict(ev, end_s=min(ev["end_s"], cut)) for ev in _truth(stem)["events"] if ev["start_s"] < cut]
    assert first == clipped


def test_rendering_is_reproducible(tmp_path: Path) -> None:
    """Rendering the first frames again reproduces the committed pixels (needs sources)."""
    ms = pytest.importorskip("sample_videos.make_samples")
    av = pytest.importorskip("av")
    try:
        cutouts = ms.load_cutouts()
        textures = ms.load_textures()
    except ms.MissingSource as exc:
        pytest.skip(f"photo sources not installed (dev-only): {exc}")
    spec = ms.CLIPS[-2]  # a short clip
    n = 6
    path = ms.render_clip(spec, cutouts, textures, tmp_path, n_frames=n)

    def frames(p: Path) -> list[np.ndarray]:
        out = []
        with av.open(str(p)) as c:
            for f in c.decode(video=0):
                out.append(f.to_ndarray(format="bgr24").astype(np.int16))
                if len(out) == n:
                    break
        return out

    new, old = frames(path), frames(SAMPLES / f"{spec.clip}.mp4")
    assert len(new) == len(old) == n
    for a, b in zip(new, old, strict=True):
        assert float(np.abs(a - b).mean()) < 3.0
