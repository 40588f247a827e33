"""Config loading: valid files load, every problem is reported with file, line and field path."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path

import pytest

from config import ConfigError, load_config, load_room
from evalwatch.config_check import cli

GOOD = """\
hub:
  listen_port: 8800
storage:
  database_url: sqlite:///data/ew.db
users:
  - {username: sup1, role: supervisor}
sites:
  - id: s01
    rooms:
      - id: room-a
        cameras:
          - id: cam1
            source: video.mp4
        seats:
          - id: S1
            polygon: [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]]
"""

BAD = """\
hub:
  listen_port: 99999
sites:
  - id: s01
    rooms:
      - id: room-a
        cameras:
          - id: cam1
        seats:
          - id: S1
            polygon: [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9]]
          - id: S2
            polygon: [[0.1, 0.5], [1.3, 0.2], [0.4, 0.9]]
      - id: Room B
        cameras: []
detection:
  backend: tensorflow
  colour: red
"""


def write(tmp_path: Path, text: str, name: str = "rooms.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_good_config_loads_and_resolves_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    room = cfg.room("s01", "room-a")
    assert room.seats[0].camera == "cam1"  # defaulted to the only camera
    assert cfg.storage.database_url == f"sqlite:///{tmp_path}/data/ew.db"
    assert room.cameras[0].source == str(tmp_path / "video.mp4")


def test_every_problem_reported_with_line_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, BAD), load_secrets=False)
    problems = ei.value.problems
    text = "\n".join(problems)
    assert "rooms.yaml:2 hub.listen_port: Input should be less than or equal to 65535" in text
    assert "rooms.yaml:13 sites[0].rooms[0].seats[1].polygon: point (1.3, 0.2) outside 0..1" in text
    assert "rooms.yaml:14 sites[0].rooms[1].id: String should match pattern" in text
    assert "sites[0].rooms[1].cameras: List should have at least 1 item" in text
    assert "rooms.yaml:17 detection.backend: Input should be 'onnx' or 'ultralytics'" in text
    assert "rooms.yaml:18 detection.colour: unknown field" in text
    assert len(problems) == 6, problems


def test_seat_must_name_existing_camera(tmp_path: Path) -> None:
    room = """\
    id: r1
    cameras: [{id: a}, {id: b}]
    seats:
      - {id: S1, camera: c, polygon: [[0, 0], [1, 0], [1, 1]]}
    """
    with pytest.raises(ConfigError) as ei:
        load_room(write(tmp_path, room, "room.yaml"))
    assert "camera 'c' is not one of ['a', 'b']" in str(ei.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_room(write(tmp_path, "id: r1\ncameras: [\n  - x: : y\n", "room.yaml"))
    assert str(ei.value).startswith(f"{tmp_path / 'room.yaml'}:")
    assert "invalid YAML" in str(ei.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_generated_once_private_and_stable(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cfg1 = load_config(path)
    secrets_file = tmp_path / "data" / "secrets.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    token = cfg1.site("s01").agent_token
    assert token is not None and len(token.get_secret_value()) >= 24
    cfg2 = load_config(path)
    assert cfg2.site("s01").agent_token == token
    assert cfg2.users[0].password == cfg1.users[0].password
    # Secrets never show up in reprs (and so never in logs).
    assert token.get_secret_value() not in repr(cfg2)


def test_config_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["check", str(write(tmp_path, GOOD))]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli(["check", str(write(tmp_path, BAD, "bad.yaml"))]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:13 sites[0].rooms[0].seats[1].polygon: point (1.3, 0.2) outside 0..1" in err


def test_default_demo_config_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "config" / "default.yaml", load_secrets=False)
    assert cfg.sites and all(r.cameras for s in cfg.sites for r in s.rooms)
    for _site, _room, cam in cfg.cameras():
        assert Path(cam.source).is_file(), f"demo camera source missing: {cam.source}"


def test_rooms_included_from_room_files(tmp_path: Path) -> None:
    (tmp_path / "rooms").mkdir()
    (tmp_path / "rooms" / "clip.mp4").write_bytes(b"")
    write(
        tmp_path / "rooms",
        "id: r1\ncameras: [{id: cam1, source: clip.mp4}]\n"
        "seats: [{id: S1, polygon: [[0, 0], [1, 0], [1, 1]]}]\n",
        "r1.room.yaml",
    )
    write(tmp_path / "rooms", "id: r2\ncameras: []\n", "r2.room.yaml")
    cfg = load_config(write(tmp_path, "sites:\n  - id: s1\n    rooms: [rooms/r1.room.yaml]\n"))
    room = cfg.room("s1", "r1")
    assert room.cameras[0].source == str(tmp_path / "rooms" / "clip.mp4")
    assert room.seats[0].camera == "cam1"
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "sites:\n  - id: s1\n    rooms: [rooms/r2.room.yaml]\n", "b.yaml"))
    assert "r2.room.yaml:2 cameras: List should have at least 1 item" in str(ei.value)


@pytest.mark.security
def test_short_secrets_are_refused_with_the_field_named(tmp_path: Path) -> None:
    """#12 finding 12: a hub key or agent token typed into the YAML must be long enough to resist
    guessing (generated ones are 32 random bytes)."""
    doc = """\
    hub:
      secret_key: short-key
    sites:
      - id: s01
        agent_token: "1234"
        rooms: []
    """
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, doc), load_secrets=False)
    text = str(ei.value)
    assert "rooms.yaml:2 hub.secret_key: secret_key must be at least 16 characters" in text, text
    assert "rooms.yaml:5 sites[0].agent_token: agent_token must be at least 16 characters" in text, text
    assert "short-key" not in text and "1234" not in text  # the secrets are not echoed


@pytest.mark.security
def test_csp_allows_websockets_to_this_hub_only() -> None:
    """#12 finding 12: ``connect-src`` was ``'self' ws: wss:`` (any host); now only this hub
    (CSP 3 ``'self'`` covers ws/wss to the same host; the browser tests use the alert socket)."""
    from dashboard.app import CSP

    directives = {d.split()[0]: d.split()[1:] for d in CSP.split("; ")}
    assert directives["connect-src"] == ["'self'"]
