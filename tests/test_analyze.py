"""``evalwatch analyze`` end to end with the real detector, and its error handling."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from evalwatch.cli import main

SAMPLES = Path(os.environ.get("EVALWATCH_SAMPLES", Path(__file__).resolve().parents[1] / "sample_videos"))
CLIP = "room_b"  # an evaluator leaves for half a minute; another uses a phone


def _overlap(e: dict, t: dict, slack: float = 1.0) -> bool:
    same = e["rule"] == t["rule"] and e["seat"] == t["seat"]
    if t["rule"] == "camera_tamper":
        same = same and e.get("kind") == t["kind"]
    return same and e["start_s"] <= t["end_s"] + slack and t["start_s"] <= e["end_s"] + slack


@pytest.mark.parametrize("runtime", [
    "onnxruntime",
    pytest.param("openvino", marks=pytest.mark.skipif(
        importlib.util.find_spec("openvino") is None, reason="openvino not installed")),
])
def test_analyze_json_matches_the_clips_truth(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    runtime: str,
) -> None:
    """The CLI contract on a demo clip, with the default runtime and with ``detection.runtime:
    openvino`` from a config file (the same ONNX models run by OpenVINO)."""
    video = SAMPLES / f"{CLIP}.mp4"
    assert video.is_file(), f"{video} missing (run sample_videos/make_samples.py)"
    truth = json.loads(video.with_suffix(".truth.json").read_text(encoding="utf-8"))
    # seat_empty is an incident only after seat_empty_seconds (default 10 s)
    wanted = [t for t in truth["events"]
              if not (t["rule"] == "seat_empty" and t["end_s"] - t["start_s"] < 10.0)]
    assert wanted, "the clip's truth has no incidents to find"
    snaps = tmp_path / "snaps"
    extra = []
    if runtime:
        (tmp_path / "cfg.yaml").write_text(f"detection:\n  runtime: {runtime}\n", encoding="utf-8")
        extra = ["--config", str(tmp_path / "cfg.yaml")]
    rc = main(["analyze", str(video), "--room", str(video.with_suffix(".room.yaml")), "--json",
               "--snapshots", str(snaps), *extra])
    out = capsys.readouterr().out
    assert rc == 0
    events = [json.loads(line) for line in out.splitlines()]
    for e in events:
        assert set(e) >= {"rule", "seat", "start_s", "end_s", "confidence"}
        assert ("kind" in e) == (e["rule"] == "camera_tamper")
        assert 0.0 < e["confidence"] <= 1.0
        assert e["start_s"] <= e["end_s"]
        assert Path(e["snapshot"]).read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    missed = [t for t in wanted if not any(_overlap(e, t) for e in events)]
    false = [e for e in events if not any(_overlap(e, t) for t in wanted)]
    assert missed == [] and false == []
    # one event per incident
    assert len(events) == len(wanted)


def test_table_output() -> None:
    from analysis.events import Event
    from evalwatch.analyze import format_table

    ev = Event(rule="camera_tamper", camera="cam1", seat=None, kind="moved", start_s=65.0, end_s=70.5,
               confidence=0.9)
    lines = format_table([ev]).splitlines()
    assert lines[0].split()[:3] == ["RULE", "KIND", "SEAT"]
    assert lines[1].split()[:5] == ["camera_tamper", "moved", "-", "01:05.00", "01:10.50"]
    assert lines[-1] == "1 event(s)"
    assert format_table([]) == "no events"


@pytest.fixture
def room_file() -> Path:
    return SAMPLES / f"{CLIP}.room.yaml"


def test_corrupt_video_exits_2_with_message(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    room_file: Path,
) -> None:
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(os.urandom(4096))
    assert main(["analyze", str(bad), "--room", str(room_file)]) == 2
    err = capsys.readouterr().err
    assert "garbage.mp4" in err and "Traceback" not in err


def test_truncated_video_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, room_file: Path) -> None:
    data = (SAMPLES / f"{CLIP}.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 16])  # the index is at the start (+faststart), frames cut short
    assert main(["analyze", str(cut), "--room", str(room_file), "--json"]) == 2
    err = capsys.readouterr().err
    assert "cut.mp4" in err and ("truncated" in err or "corrupt" in err)


def test_missing_video_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, room_file: Path) -> None:
    assert main(["analyze", str(tmp_path / "nope.mp4"), "--room", str(room_file)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_bad_room_file_exits_2_with_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    room = tmp_path / "room.yaml"
    room.write_text("id: r1\ncameras:\n  - id: cam1\nseats:\n  - id: S1\n"
                    "    polygon: [[0, 0], [2, 0], [1, 1]]\n", encoding="utf-8")
    assert main(["analyze", str(SAMPLES / f"{CLIP}.mp4"), "--room", str(room)]) == 2
    err = capsys.readouterr().err
    assert "room.yaml:6" in err and "outside 0..1" in err and "Traceback" not in err


def test_invalid_yaml_room_and_missing_argument_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    room = tmp_path / "room.yaml"
    room.write_text("id: [unclosed\n", encoding="utf-8")
    assert main(["analyze", "x.mp4", "--room", str(room)]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert main(["analyze", "x.mp4"]) == 2
    assert "--room" in capsys.readouterr().err
