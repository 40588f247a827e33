"""`evalwatch verify --session`: a closed session's archive checked against its seal."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_sessions_support import T0, archive, cfg_dict, spec_dict, write_cfg

from evalwatch.verify import cli
from sessions.lifecycle import close_session, create_session, parse_spec, start_session
from sessions.signing import HubKey
from storage.chain import chain_key


async def _started_session(
    database: Any, s3_server: Any, site: str, tmp_path: Path
) -> tuple[Path, Any, Any, Any]:
    """A hub config for ``site`` on the test's database and S3, its key, and a started session."""
    from config import load_config

    data = cfg_dict(site, tmp_path, s3_server.cfg, db_url=database.url)
    cfg_path = write_cfg(tmp_path / "evalwatch.yaml", data)
    cfg = load_config(cfg_path)
    key = HubKey.load_or_create(cfg.storage.data_dir)
    info = await create_session(database, cfg, parse_spec(spec_dict(site)), "sup")
    await start_session(database, info.id, "sup", now=T0)
    return cfg_path, cfg, key, info


async def test_session_archive_verifies_and_tampering_is_named(
    database, segment_store, object_store, s3_server, unique_site: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = unique_site
    cfg_path, cfg, key, info = await _started_session(database, s3_server, site, tmp_path)
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


@pytest.mark.security
async def test_seal_re_signed_in_the_db_is_not_trusted(
    database, segment_store, object_store, s3_server, unique_site: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Finding 2: with DB write access only, an attacker re-signs a session's seals with their
    own key (stored in the session row) and truncates the session (4 segments → 2).  verify,
    the report and the export must check the seal against the hub's key files, so all three
    say NOT OK and the hub does not countersign an export."""
    from sqlalchemy import delete, select

    from sessions import export as ex
    from sessions.lifecycle import SessionError
    from sessions.models import EvalSession, SessionHead
    from sessions.report import build_report
    from storage.chain import canonical_json
    from storage.models import Segment

    site = unique_site
    cfg_path, cfg, key, info = await _started_session(database, s3_server, site, tmp_path)
    chunks = [(10.0, bytes([65 + i]) * 64) for i in range(4)]
    recs = await archive(segment_store, site, "r1", "cam1", T0, chunks)
    await close_session(database, cfg, key, info.id, "sup", objects=object_store,
                        now=T0 + timedelta(minutes=1))
    assert await _run(["--config", str(cfg_path), "--session", info.code]) == 0
    capsys.readouterr()

    attacker = HubKey.generate()
    keep = recs[1]

    def forge(s) -> None:
        row = s.scalars(select(EvalSession).where(EvalSession.id == info.id)).one()
        row.key_id, row.public_key_pem = attacker.key_id, attacker.public_pem()
        for h in s.scalars(select(SessionHead).where(SessionHead.session_id == info.id)):
            p = json.loads(h.payload)
            if h.camera == "cam1":
                p["head_seq"], p["head_hash"] = keep.seq, keep.link_hash
                h.head_seq, h.head_hash = keep.seq, keep.link_hash
            p["key_id"] = attacker.key_id
            h.payload = canonical_json(p)
            h.signature = attacker.sign(h.payload.encode("utf-8"))
        s.execute(delete(Segment).where(Segment.site == site, Segment.room == "r1", Segment.camera == "cam1",
                                        Segment.seq > keep.seq))

    await database.run(forge)
    bucket = s3_server.cfg.bucket_segments
    for r in recs[2:]:
        await object_store.delete(bucket, r.key)
        await object_store.delete(bucket, chain_key(site, "r1", "cam1", r.seq))

    # verify --session
    assert await _run(["--config", str(cfg_path), "--session", info.code]) == 1
    out = capsys.readouterr().out
    assert f"session {info.code}: PROBLEMS FOUND" in out and "trusted hub key" in out
    # the report
    rep = await build_report(database, object_store, cfg, info.id)
    assert rep.seal_problems and rep.seal_public_pem is None
    assert attacker.public_pem() not in str(rep.seal_problems)
    # the export: refused, nothing countersigned
    out_zip = tmp_path / "forged.zip"
    with pytest.raises(SessionError, match="NOT OK"):
        await ex.export_session(database, object_store, cfg, key, info.code, out_zip, progress=False)
    assert not out_zip.exists()
    import asyncio

    from evalwatch import export as export_cmd

    rc = await asyncio.to_thread(export_cmd.cli, [info.code, "--config", str(cfg_path), "-o", str(out_zip)])
    assert rc == 1 and "NOT OK" in capsys.readouterr().err and not out_zip.exists()

    # a retired hub key kept in <data_dir>/keys/trusted/ is trusted; the DB row is not needed
    trusted = Path(cfg.storage.data_dir) / "keys" / "trusted"
    trusted.mkdir()
    (trusted / "attacker.pem").write_text(attacker.public_pem())
    assert not (await build_report(database, object_store, cfg, info.id)).seal_problems
