"""Phone tiles of the seat crops (``detection.phone_tiles``): geometry, and ``evalwatch analyze``
on a high-resolution clip whose real-size phone only the tiles find.

``tests/data/hd_phone.mp4`` is the first 12 s of the evaluation set's ``dev_02`` rendered at
1280x960 (``python -m sample_videos.evalset.make --only dev_02 --scale 2``; dev half only): an
evaluator at seat S2 holds a phone in both hands from 4 to 11 s; nobody else does anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.core import phone_tile_rects
from evalwatch.cli import main

DATA = Path(__file__).resolve().parent / "data"
CLIP = DATA / "hd_phone.mp4"
ROOM = DATA / "hd_phone.room.yaml"


def test_tiles_are_square_cover_the_crop_and_skip_small_crops() -> None:
    crop = (0.1, 0.2, 0.5, 0.6)  # 512 x 384 px of a 1280x960 frame
    tiles = phone_tile_rects([crop], 1280, 960, rows=2, overlap=0.2, min_px=160)
    assert tiles and all(ci == 0 for ci, _ in tiles)
    for _, (x1, y1, x2, y2) in tiles:
        assert round((x2 - x1) * 1280) == round((y2 - y1) * 960)  # square in pixels
        assert crop[0] - 1e-9 <= x1 and x2 <= crop[2] + 1e-9 and crop[1] - 1e-9 <= y1 and y2 <= crop[3] + 1e-9
    assert min(r[0] for _, r in tiles) == pytest.approx(crop[0])
    assert max(r[2] for _, r in tiles) == pytest.approx(crop[2])
    assert max(r[3] for _, r in tiles) == pytest.approx(crop[3])
    rows = sorted({round(r[1], 6) for _, r in tiles})
    assert len(rows) == 2
    # the same crop of a 640x480 frame: tiles of ~107 px would only be upscaled -> none
    assert phone_tile_rects([crop], 640, 480, rows=2, overlap=0.2, min_px=160) == []
    assert phone_tile_rects([crop], 1280, 960, rows=0, overlap=0.2, min_px=160) == []


def _analyze(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiles: int) -> list[dict]:
    cfg = tmp_path / f"tiles{tiles}.yaml"
    cfg.write_text(f"detection:\n  phone_tiles: {tiles}\n", encoding="utf-8")
    rc = main(["analyze", str(CLIP), "--room", str(ROOM), "--json", "--config", str(cfg)])
    assert rc == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_hd_phone_is_found_only_with_phone_tiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert CLIP.is_file() and ROOM.is_file()
    with_tiles = _analyze(tmp_path, capsys, 2)
    phones = [e for e in with_tiles if e["rule"] == "phone"]
    assert [e["seat"] for e in phones] == ["S2"], with_tiles
    assert phones[0]["start_s"] <= 11.0 + 1.0 and phones[0]["end_s"] >= 4.0 - 1.0
    assert [e for e in with_tiles if e["rule"] != "phone"] == []
    without = _analyze(tmp_path, capsys, 0)  # the whole seat crop shrunk to 416 px: missed
    assert [e for e in without if e["rule"] == "phone"] == []
