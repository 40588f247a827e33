"""Supervision report: coverage math, and an HTML + PDF report of a session recorded from a
sample video's segments (one deliberately missing), with events, snapshots and the seal."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from test_sessions_support import (
    ROOT,
    T0,
    archive,
    cfg_dict,
    frame_jpeg,
    make_cfg,
    sample_segments,
    spec_dict,
    write_cfg,
)

from evalwatch import report as report_cmd
from sessions import report as rp
from sessions.lifecycle import close_session, create_session, parse_spec, start_session
from sessions.signing import HubKey
from storage.models import EventRow


def _t(s: float):
    return T0 + timedelta(seconds=s)


def test_coverage_math() -> None:
    start, end = _t(0), _t(100)
    # overlap (10-30 and 20-40), a 20 s hole, a 0.3 s jitter gap, clipped ends
    segs = [(_t(-5), _t(10)), (_t(10), _t(30)), (_t(20), _t(40)), (_t(60), _t(80)), (_t(80.3), _t(95))]
    archived, gaps = rp.coverage(segs, start, end)
    assert archived == pytest.approx(10 + 30 + 20 + 14.7)
    assert [(g.start, g.end) for g in gaps] == [(_t(40), _t(60)), (_t(95), _t(100))]
    assert rp.coverage([], start, end) == (0.0, [rp.Gap(start, end)])
    assert rp.coverage([(_t(0), _t(100))], start, end) == (100.0, [])
    cov = rp.Coverage("c", 100.0, 75.0, 4, [])
    assert cov.percent == 75.0


@pytest.fixture
async def recorded(object_store, s3_server, unique_site: str, tmp_path: Path):
    """A closed session whose r1/cam1 archive is room_a.mp4 cut in 10 s segments, the third
    (20-30 s) missing, with the sample's scripted incidents as events."""
    from storage.db import Database
    from storage.segments import SegmentStore

    site = unique_site
    raw = cfg_dict(site, tmp_path, s3_server.cfg)
    cfg = make_cfg(site, tmp_path, s3_server.cfg)
    cfg_path = write_cfg(tmp_path / "evalwatch.yaml", raw)
    db = Database(cfg.storage.database_url)
    db.upgrade()
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    key = HubKey.load_or_create(cfg.storage.data_dir)
    spec = spec_dict(site, rooms=[{"site": site, "room": "r1", "cameras": ["cam1"]}])
    spec["seats"] = [s for s in spec["seats"] if s["room"] == "r1"]
    info = await create_session(db, cfg, parse_spec(spec), "tester")
    await start_session(db, info.id, "sup", now=T0)
    chunks = await asyncio.to_thread(sample_segments, tmp_path)
    assert len(chunks) == 6
    await archive(store, site, "r1", "cam1", T0, [(10, c) for c in chunks[:2]])
    await archive(store, site, "r1", "cam1", _t(30), [(10, c) for c in chunks[3:]])
    truth = json.loads((ROOT / "sample_videos" / "room_a.truth.json").read_text())
    for i, ev in enumerate(truth["events"], start=1):
        jpg = await asyncio.to_thread(frame_jpeg, tmp_path, ev["start_s"] + 1)
        key_s = f"{site}/r1/cam1/2026/03/02/{i:06d}_{i}.jpg"
        await object_store.put_bytes(cfg.storage.s3.bucket_snapshots, key_s, jpg, "image/jpeg")

        def add(s, ev=ev, key_s=key_s, i=i) -> None:
            s.add(
                EventRow(
                    site=site,
                    room="r1",
                    camera="cam1",
                    seat=ev["seat"],
                    rule=ev["rule"],
                    kind=ev["kind"],
                    started_at=_t(ev["start_s"]),
                    ended_at=_t(ev["end_s"]),
                    confidence=0.9,
                    snapshot_key=key_s,
                    status="resolved" if i == 2 else "new",
                    resolved_by="监督员甲" if i == 2 else None,
                    note="专家使用手机，已提醒" if i == 2 else None,
                )
            )

        await db.run(add)
    await close_session(db, cfg, key, info.id, "sup", objects=object_store, now=_t(60))
    await store.stop()
    yield cfg, cfg_path, db, object_store, info.code, tmp_path, site
    db.dispose()


async def test_report_html_and_pdf(recorded, capsys: pytest.CaptureFixture[str]) -> None:
    import pypdf

    cfg, cfg_path, db, objects, code, tmp, _site = recorded
    data = await rp.build_report(db, objects, cfg, code)
    (cov,) = data.coverage
    assert cov.expected_s == 60 and cov.archived_s == pytest.approx(50)
    assert cov.percent == pytest.approx(83.333, abs=0.01)
    assert [(g.start, g.end) for g in cov.gaps] == [(_t(20), _t(30))]
    assert cov.chain_ok and cov.head_ok and cov.head_seq == 5, cov.chain_message
    assert data.seal_problems == []
    assert [e["rule"] for e in data.events] == ["extra_person", "phone", "camera_tamper"]
    assert all(e["snapshot_b64"] for e in data.events)

    html_path, pdf_path = tmp / "r.html", tmp / "r.pdf"
    argv = [code, "--config", str(cfg_path)]
    assert await asyncio.to_thread(report_cmd.cli, [*argv, "--format", "html", "-o", str(html_path)]) == 0
    assert await asyncio.to_thread(report_cmd.cli, [*argv, "-o", str(pdf_path)]) == 0
    assert "3 events" in capsys.readouterr().out
    page = html_path.read_text(encoding="utf-8")
    for s in (
        "评标现场视频监督报告",
        "市政道路改造工程评标",
        "张三",
        "83.3%",
        "09:00:20",
        "09:00:30",
        "使用手机",
        "监督员甲",
        "data:image/jpeg;base64,",
        "封存签名验证通过",
        "BEGIN PUBLIC KEY",
    ):
        assert s in page, s
    assert "对象存储未强制保留" in page  # the test S3 server has no object lock

    assert pdf_path.read_bytes().startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(pdf_path.read_bytes()))
    text = "\n".join(p.extract_text() for p in reader.pages)
    for s in (
        "评标现场视频监督报告",
        "ZB-2026-001",
        "张三",
        "83.3%",
        "2026-03-02 09:00:20",
        "extra_person",
        "phone",
        "camera_tamper",
        "covered",
        "监督员甲",
        "封存签名验证通过",
    ):
        assert s in text, s
    images = sum(len(p.images) for p in reader.pages)
    assert images == 3

    en = tmp / "r_en.html"
    assert await asyncio.to_thread(report_cmd.cli, [*argv, "--lang", "en", "-o", str(en)]) == 0
    assert "Recording coverage" in en.read_text(encoding="utf-8")


async def test_report_shows_tampering_and_bad_input(recorded, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, cfg_path, db, objects, code, tmp, site = recorded
    bucket = cfg.storage.s3.bucket_segments
    listing = [o.key for o in await objects.list(bucket, f"{site}/r1/cam1/2026/")]
    data = bytearray(await objects.get_bytes(bucket, listing[1]))
    data[100] ^= 0xFF
    await objects.put_bytes(bucket, listing[1], bytes(data), "video/mp4")
    r = await rp.build_report(db, objects, cfg, code)
    assert not r.coverage[0].chain_ok and "does not match" in r.coverage[0].chain_message
    page = rp.render_html(r)
    assert "异常" in page

    argv = [code, "--config", str(cfg_path)]
    for bad, msg in (
        ([*argv, "-o", str(tmp / "x.doc")], "--format html or --format pdf"),
        (["nope", "--config", str(cfg_path), "-o", str(tmp / "x.pdf")], "no session 'nope'"),
        ([*argv, "--format", "docx", "-o", str(tmp / "x.pdf")], "invalid choice"),
    ):
        assert await asyncio.to_thread(report_cmd.cli, bad) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err


async def test_stitched_export_of_sample_session(recorded) -> None:
    import zipfile

    import imageio_ffmpeg

    from sessions.evidence_verify import verify_evidence
    from sessions.export import export_session

    cfg, _cfg_path, db, objects, code, tmp, site = recorded
    key = HubKey.load_or_create(cfg.storage.data_dir)
    r = await export_session(db, objects, cfg, key, code, tmp / "st.zip", stitch=True, progress=False)
    assert r.notes == [] and r.segments == 5 and r.snapshots == 3
    res = verify_evidence(r.path, progress=False)
    assert res.ok, res.message
    with zipfile.ZipFile(r.path) as z:
        mp4 = z.read(f"stitched/{site}_r1_cam1.mp4")
    (tmp / "st.mp4").write_bytes(mp4)
    _frames, secs = await asyncio.to_thread(imageio_ffmpeg.count_frames_and_secs, str(tmp / "st.mp4"))
    assert 48 <= secs <= 52  # five 10 s segments (the missing one is not invented)
