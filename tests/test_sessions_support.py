"""Helpers shared by the session / export / report tests (no tests here).

``make_cfg`` builds a config for one site (a fresh slug per test so tests sharing the S3 server
never see each other's keys) with room ``r1`` (cameras ``cam1``, ``cam2``; seats S1..S4) and room
``r2`` (camera ``cam1``; seats S1, S2).  ``archive`` puts segments through the real
``SegmentStore``; ``sample_segments`` cuts a sample video into short MP4 segments with ffmpeg.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.models import EvalwatchConfig, S3Config

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 1, 0, 0, tzinfo=UTC)  # 09:00 Asia/Shanghai

_SEATS = [
    {"id": f"S{i}", "camera": "cam1", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]], "row": r, "col": c}
    for i, (r, c) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)], start=1)
]


def make_cfg(
    site: str, tmp_path: Path, s3: S3Config | None = None, db_url: str | None = None
) -> EvalwatchConfig:
    return EvalwatchConfig.model_validate(cfg_dict(site, tmp_path, s3, db_url))


def write_cfg(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def cfg_dict(
    site: str, tmp_path: Path, s3: S3Config | None = None, db_url: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "storage": {
            "data_dir": str(tmp_path / "data"),
            "wal_dir": str(tmp_path / "wal"),
            "database_url": db_url or f"sqlite:///{tmp_path / 'x.db'}",
        },
        "sites": [
            {
                "id": site,
                "name": "测试站点",
                "rooms": [
                    {
                        "id": "r1",
                        "name": "评标室一",
                        "cameras": [{"id": "cam1", "source": "x.mp4"}, {"id": "cam2", "source": "y.mp4"}],
                        "seats": _SEATS,
                    },
                    {"id": "r2", "cameras": [{"id": "cam1", "source": "x.mp4"}], "seats": _SEATS[:2]},
                ],
            }
        ],
        "secrets_file": None,
    }
    if s3 is not None:
        data["storage"]["s3"] = s3.model_dump(mode="python")
        data["storage"]["s3"]["access_key"] = s3.access_key.get_secret_value() if s3.access_key else None
        data["storage"]["s3"]["secret_key"] = s3.secret_key.get_secret_value() if s3.secret_key else None
    return data


def spec_dict(site: str, code: str = "ZB-2026-001", **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "code": code,
        "project": "市政道路改造工程评标",
        "bids": ["B1", "B2"],
        "planned_start": T0.isoformat(),
        "planned_end": (T0 + timedelta(hours=3)).isoformat(),
        "rooms": [{"site": site, "room": "r1"}, {"site": site, "room": "r2"}],
        "seats": [
            {"expert": "张三", "bid": "B1", "room": "r1", "seat": "S1"},
            {"expert": "李四", "bid": "B2", "room": "r1", "seat": "S4"},
            {"expert": "王五", "bid": "B1", "room": f"{site}/r2", "seat": "S2"},
        ],
    }
    d.update(over)
    return d


def users_cfg(site: str, tmp_path: Path, s3: S3Config | None = None) -> EvalwatchConfig:
    """:func:`cfg_dict` with one user per role (testkit's passwords) and a fixed secret key: a
    config the dashboard can log people into."""
    from testkit.dashboard import ROLE_USERS, password_of

    raw = cfg_dict(site, tmp_path, s3)
    raw["hub"] = {"secret_key": "test-secret-key-0123456789", "force_password_change": False}
    raw["users"] = [{"username": u, "role": r, "password": password_of(r)} for r, u in ROLE_USERS.items()]
    return EvalwatchConfig.model_validate(raw)


async def one_camera_session(db: Any, cfg: EvalwatchConfig, site: str, code: str, project: str,
                             t0: datetime) -> Any:
    """A session of room ``r1`` / ``cam1`` of ``site``, planned for an hour from ``t0`` and
    started at ``t0`` by ``sup``; its :class:`~sessions.lifecycle` info."""
    from sessions.lifecycle import create_session, parse_spec, start_session

    spec = {
        "code": code, "project": project, "bids": ["B1"],
        "planned_start": t0.isoformat(), "planned_end": (t0 + timedelta(hours=1)).isoformat(),
        "rooms": [{"site": site, "room": "r1", "cameras": ["cam1"]}],
    }
    info = await create_session(db, cfg, parse_spec(spec), "sup")
    await start_session(db, info.id, "sup", now=t0)
    return info


async def archive(
    store: Any, site: str, room: str, camera: str, start: datetime, chunks: list[tuple[float, bytes]]
) -> list[Any]:
    """Archive consecutive segments (duration_s, bytes) from ``start``; returns the records."""
    from storage.segments import SegmentMeta

    out = []
    t = start
    for dur, data in chunks:
        end = t + timedelta(seconds=dur)
        out.append(await store.put(SegmentMeta(site=site, room=room, camera=camera, start=t, end=end), data))
        t = end
    await store.wait_uploaded(30)
    return out


def sample_segments(tmp_path: Path, name: str = "room_a.mp4", seconds: int = 10) -> list[bytes]:
    """The sample video cut into ``seconds``-long MP4 segments (stream copy, key-frame aligned)."""
    import imageio_ffmpeg

    out = tmp_path / "cut"
    out.mkdir(exist_ok=True)
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-i",
            str(ROOT / "sample_videos" / name),
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_time",
            str(seconds),
            "-reset_timestamps",
            "1",
            str(out / "seg%03d.mp4"),
        ],
        check=True,
        timeout=60,
    )
    return [p.read_bytes() for p in sorted(out.glob("seg*.mp4"))]


def frame_jpeg(tmp_path: Path, at_s: float, name: str = "room_a.mp4") -> bytes:
    import imageio_ffmpeg

    out = tmp_path / f"snap_{at_s:.1f}.jpg"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-ss",
            str(at_s),
            "-i",
            str(ROOT / "sample_videos" / name),
            "-frames:v",
            "1",
            "-q:v",
            "5",
            "-s",
            "320x240",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out.read_bytes()
