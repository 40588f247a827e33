"""`evalwatch analyze --assigned`: a clip analysed as if an evaluation session were running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalwatch.analyze import cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


def test_unassigned_seat_occupied_is_an_extra_person(capsys: pytest.CaptureFixture[str]) -> None:
    truth = json.loads((SAMPLES / "room_b.truth.json").read_text())
    absent = next(e for e in truth["events"] if e["rule"] == "seat_empty")  # S1's evaluator away
    seat = absent["seat"]
    others = [s for s in ("S1", "S2", "S3") if s != seat]
    argv = [str(SAMPLES / "room_b.mp4"), "--room", str(SAMPLES / "room_b.room.yaml"), "--json",
            "--assigned", ",".join(others)]
    assert cli(argv) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # nobody expects anyone at the unassigned seat: no seat_empty there, but whoever sits there
    # is an extra person — before the absence and after the return, not during it
    assert not [e for e in events if e["rule"] == "seat_empty"]
    extra = [e for e in events if e["rule"] == "extra_person" and e["seat"] == seat]
    assert extra, events
    for e in extra:
        overlap = min(e["end_s"], absent["end_s"]) - max(e["start_s"], absent["start_s"])
        assert overlap < 2.0, (e, absent)
    assert any(e["end_s"] <= absent["start_s"] + 1 for e in extra)
    assert any(e["start_s"] >= absent["end_s"] - 1 for e in extra)
    # the phone at an assigned seat is reported as before
    assert [e["seat"] for e in events if e["rule"] == "phone"] == ["S3"]


def test_unknown_assigned_seat_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(SAMPLES / "room_b.mp4"), "--room", str(SAMPLES / "room_b.room.yaml"), "--assigned", "S9"]
    assert cli(argv) == 2
    assert "no seat S9 in room 'room-b'" in capsys.readouterr().err
