"""Checks of the evaluation set in ``sample_videos/evalset/`` (issue #10).

Fast: no rendering and no detector.  The committed room and truth files must be
exactly what the set's script derives, the set must meet the agreed size (clips,
minutes, incidents per rule and tamper kind in each half, control clips), and
the dev and test halves must be cut from disjoint photographs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

from config.loader import load_room
from sample_videos.evalset import script, sources

ROOT = Path(__file__).resolve().parent.parent
EVALSET = ROOT / "sample_videos" / "evalset"
HALVES = ("dev", "test")
CLIPS = {c.clip: c for c in script.CLIPS}
MAX_TOTAL_BYTES = 30_000_000


def _truth(name: str) -> dict[str, Any]:
    c = CLIPS[name]
    return json.loads((EVALSET / c.half / f"{name}.truth.json").read_text(encoding="utf-8"))


def _room(name: str) -> dict[str, Any]:
    c = CLIPS[name]
    return yaml.safe_load((EVALSET / c.half / f"{name}.room.yaml").read_text(encoding="utf-8"))


def test_every_clip_has_its_three_files_and_nothing_else_is_there() -> None:
    """Each half's folder holds exactly the script's clips (mp4, room, truth)."""
    for half in HALVES:
        names = sorted(c.clip for c in script.CLIPS if c.half == half)
        for suffix in (".mp4", ".room.yaml", ".truth.json"):
            found = sorted(p.name.removesuffix(suffix) for p in (EVALSET / half).glob(f"*{suffix}"))
            assert found == names, (half, suffix)
    total = sum((EVALSET / c.half / f"{c.clip}.mp4").stat().st_size for c in script.CLIPS)
    assert total <= MAX_TOTAL_BYTES, f"clips take {total} bytes"


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_truth_and_room_come_from_the_script(name: str) -> None:
    """The committed files are exactly what the generator's script derives."""
    c = CLIPS[name]
    assert script.truth_doc(c) == _truth(name)
    assert script.eval_room_doc(c) == _room(name)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_room_loads_and_clip_matches_the_truth(name: str) -> None:
    """evalwatch reads the room file; the video has the truth's length and geometry."""
    c = CLIPS[name]
    room = load_room(EVALSET / c.half / f"{name}.room.yaml")
    assert 2 <= len(room.seats) <= 4
    assert _room(name)["cameras"][0]["source"] == f"sample_videos/evalset/{c.half}/{name}.mp4"
    truth = _truth(name)
    cap = cv2.VideoCapture(str(EVALSET / c.half / f"{name}.mp4"))
    try:
        assert cap.isOpened()
        ok, frame = cap.read()
        assert ok and frame.shape == (480, 640, 3)
        assert abs(cap.get(cv2.CAP_PROP_FPS) - 15) < 0.01
        assert abs(cap.get(cv2.CAP_PROP_FRAME_COUNT) - truth["duration_s"] * 15) <= 1
    finally:
        cap.release()
    assert 40.0 <= truth["duration_s"] <= 60.0


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_truth_format_and_quiet_gaps(name: str) -> None:
    """Demo truth format plus variation tags; incidents apart by at least 6 s."""
    truth = _truth(name)
    seats = {s["id"] for s in _room(name)["seats"]}
    assert truth["half"] == CLIPS[name].half
    assert isinstance(truth["variations"], list) and truth["variations"]
    prev_end = -10.0
    for ev in truth["events"]:
        assert set(ev) == {"rule", "kind", "seat", "start_s", "end_s", "variation"}
        if ev["rule"] == "camera_tamper":
            assert ev["kind"] in {"covered", "defocused", "moved", "frozen"} and ev["seat"] is None
        else:
            assert ev["rule"] in {"phone", "extra_person", "seat_empty"}
            assert ev["kind"] is None and ev["seat"] in seats
        assert 0.0 <= ev["start_s"] < ev["end_s"] <= truth["duration_s"]
        assert ev["end_s"] - ev["start_s"] >= 4.0, ev
        assert ev["start_s"] - prev_end >= script.MIN_GAP_S, ev
        prev_end = ev["end_s"]
        assert set(ev["variation"]) <= set(truth["variations"])


def _half_events(half: str) -> list[dict[str, Any]]:
    return [ev for c in script.CLIPS if c.half == half for ev in _truth(c.clip)["events"]]


def test_the_set_is_large_enough() -> None:
    """>= 24 clips, >= 16 min, >= 60 incidents; per half the agreed minimum per rule/kind."""
    assert len(CLIPS) >= 24
    assert sum(_truth(n)["duration_s"] for n in CLIPS) >= 16 * 60
    assert sum(len(_truth(n)["events"]) for n in CLIPS) >= 60
    need = {("phone", None): 10, ("extra_person", None): 8, ("seat_empty", None): 4,
            ("camera_tamper", "covered"): 2, ("camera_tamper", "defocused"): 2,
            ("camera_tamper", "moved"): 2, ("camera_tamper", "frozen"): 2}
    sizes = []
    for half in HALVES:
        names = [c.clip for c in script.CLIPS if c.half == half]
        assert len(names) >= 12, half
        got = Counter((ev["rule"], ev["kind"]) for ev in _half_events(half))
        for key, n in need.items():
            assert got[key] >= n, (half, key, got[key])
        controls = [n for n in names if not _truth(n)["events"]]
        assert len(controls) >= 2, half
        sizes.append(sum(got.values()))
    assert max(sizes) <= 1.25 * min(sizes), sizes


def test_each_half_has_the_variations() -> None:
    """Both halves hold every phone / visitor style, dim light, 200 kbps and new cameras."""
    wanted = {"phone_face", "phone_hands", "phone_screen", "phone_desk", "phone_covered",
              "phone_black", "phone_white", "phone_blue", "phone_gold", "phone_small",
              "phone_large", "extra_side", "extra_behind", "extra_lean", "extra_crouch",
              "far_seat", "near_seat", "dim", f"bitrate{script.ARCHIVE_KBPS}",
              "cam_high", "cam_low"}
    for half in HALVES:
        tags = {t for ev in _half_events(half) for t in ev["variation"]}
        assert wanted <= tags, (half, wanted - tags)
        clips = [c for c in script.CLIPS if c.half == half]
        low_rate = [c for c in clips if c.bitrate_kbps == script.ARCHIVE_KBPS]
        assert 0.25 <= len(low_rate) / len(clips) <= 0.45, half


def test_dev_and_test_use_disjoint_photos() -> None:
    """People and phones of the test half come from photos the dev half never uses."""
    for c in script.CLIPS:
        for m in c.movers():
            assert m.source in sources.PEOPLE, m.source
            assert sources.half_of(m.source) == c.half, (c.clip, m.source)
    dev, test = sources.photos_of_half("dev"), sources.photos_of_half("test")
    assert dev and test
    assert not dev & test, dev & test
    assert set(sources.PHOTOS) >= dev | test
    for key in dev | test:
        ph = sources.PHOTOS[key]
        assert len(ph.sha256) == 64 and ph.fetch and ph.licence
        assert ph.registry in {"pypi", "debian", "npm"}


def test_demo_sources_are_not_used() -> None:
    """The demo clips' and the detector checks' photos are not sources of the set."""
    banned = {"ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg",
              "skimage/data/astronaut.png"}
    for key in sources.photos_of_half("dev") | sources.photos_of_half("test"):
        assert sources.PHOTOS[key].member not in banned, key
