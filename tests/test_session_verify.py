"""`evalwatch verify --session`: a closed session's archive checked against its seal."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from test_sessions_support import T0, archive, cfg_dict, spec_dict, write_cfg

from evalwatch.verify import cli
from sessions.lifecycle import close_session, create_session, parse_spec, start_session
from sessions.signing import HubKey
from storage.chain import chain_key


async def test_session_archive_verifies_and_tampering_is_named(
    database, segment_store, object_store, s3_server, unique_site: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = unique_site
    data = cfg_dict(site, tmp_path, s3_server.cfg, db_url=database.url)
    cfg_path = write_cfg(tmp_path / "evalwatch.yaml", data)
    from config import load_config

    cfg = load_config(cfg_path)
    key = HubKey.load_or_create(cfg.storage.data_dir)
    info = await create_session(database, cfg, parse_spec(spec_dict(site)), "sup")
    await start_session(database, info.id, "sup", now=T0)
    recs = await archive(segment_store, site, "r1", "cam1", T0, [(10, b"a" * 64), (10, b"b" * 64)])
    await close_session(database, cfg, key, info.id, "sup", objects=object_store,
                        now=T0 + timedelta(minutes=1))
    # footage after the close extends the chain; the seal still holds
    await archive(segment_store, site, "r1", "cam1", T0 + timedelta(minutes=2), [(10, b"c" * 64)])

    assert await _run(["--config", str(cfg_path), "--session", info.code]) == 0
    out = capsys.readouterr().out
    assert f"session {info.code}: OK" in out and f"OK {site}/r1/cam1" in out

    # an archived segment rewritten after the session was sealed
    bucket = s3_server.cfg.bucket_segments
    await object_store.put_bytes(bucket, recs[1].key, b"X" * 64, "video/mp4")
    assert await _run(["--config", str(cfg_path), "--session", str(info.id)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "altered" in out and recs[1].key in out

    # the sealed head's chain link deleted
    await object_store.put_bytes(bucket, recs[1].key, b"b" * 64, "video/mp4")
    await object_store.delete(bucket, chain_key(site, "r1", "cam1", recs[1].seq))
    assert await _run(["--config", str(cfg_path), "--session", info.code]) == 1
    assert "missing" in capsys.readouterr().out

    assert await _run(["--config", str(cfg_path), "--session", "NO-SUCH"]) == 2
    assert "NO-SUCH" in capsys.readouterr().err


async def _run(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(cli, argv)
