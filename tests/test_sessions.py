"""Session model and lifecycle on SQLite and PostgreSQL; sealing with the hub's Ed25519 key."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from test_sessions_support import T0, archive, make_cfg, spec_dict

from sessions.lifecycle import (
    SessionError,
    SessionNotFound,
    active_sessions,
    close_session,
    create_session,
    get_session,
    list_sessions,
    parse_spec,
    start_session,
    verify_seal,
)
from sessions.signing import HubKey, key_id, verify_signature
from storage.chain import GENESIS
from storage.models import AuditLog, EventRow


def test_key_created_once_with_mode_0600(tmp_path: Path) -> None:
    k1 = HubKey.load_or_create(tmp_path)
    path = tmp_path / "keys" / "hub_ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    k2 = HubKey.load_or_create(tmp_path)
    assert k1.key_id == k2.key_id == key_id(k1.public_pem())
    assert "PRIVATE" not in repr(k1) and "PRIVATE" not in k1.public_pem()
    os.chmod(path, 0o644)
    HubKey.load_or_create(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sig = k1.sign(b"abc")
    assert verify_signature(k1.public_pem(), b"abc", sig)
    assert not verify_signature(k1.public_pem(), b"abd", sig)
    assert not verify_signature(HubKey.generate().public_pem(), b"abc", sig)
    assert not verify_signature("not a key", b"abc", sig)
    assert not verify_signature(k1.public_pem(), b"abc", "%%%")


def test_spec_validation_messages(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="planned_end must be after planned_start"):
        parse_spec(spec_dict("s", planned_end=T0.isoformat()))
    with pytest.raises(SessionError, match=r"planned_start: .*timezone"):
        parse_spec(spec_dict("s", planned_start="2026-03-02T09:00:00"))
    with pytest.raises(SessionError, match="bids"):
        parse_spec(spec_dict("s", bids=[]))
    with pytest.raises(SessionError, match="expected a mapping"):
        parse_spec([1, 2])


async def test_lifecycle(database, segment_store, object_store, unique_site: str, tmp_path: Path) -> None:
    site = unique_site
    cfg = make_cfg(site, tmp_path)
    key = HubKey.load_or_create(cfg.storage.data_dir)

    # bad input names the problem
    bad = [
        (spec_dict(site, rooms=[{"site": site, "room": "nope"}], seats=[]), "no room .*nope"),
        (
            spec_dict(site, rooms=[{"site": site, "room": "r1", "cameras": ["cam9"]}], seats=[]),
            "no camera 'cam9'",
        ),
        (
            {**spec_dict(site), "seats": [{"expert": "a", "bid": "B1", "room": "r1", "seat": "S9"}]},
            "no seat 'S9'",
        ),
        (
            {**spec_dict(site), "seats": [{"expert": "a", "bid": "B7", "room": "r1", "seat": "S1"}]},
            "bid 'B7'",
        ),
        (
            {
                **spec_dict(site),
                "seats": [
                    {"expert": "a", "bid": "B1", "room": "r1", "seat": "S1"},
                    {"expert": "a", "bid": "B1", "room": "r1", "seat": "S3"},
                ],
            },
            "seated twice",
        ),
        (
            {
                **spec_dict(site),
                "seats": [
                    {"expert": "a", "bid": "B1", "room": "r1", "seat": "S1"},
                    {"expert": "b", "bid": "B1", "room": "r1", "seat": "S1"},
                ],
            },
            "assigned twice",
        ),
    ]
    for d, msg in bad:
        with pytest.raises(SessionError, match=msg):
            await create_session(database, cfg, parse_spec(d), "tester")

    # seating output accepted verbatim
    seating = {"seed": 42, "assignments": [{"expert": "E1", "bid": "B1", "room": "r2", "seat": "S1"}]}
    other = await create_session(
        database,
        cfg,
        parse_spec({**spec_dict(site, code="OTHER"), "seats": [], "seating": seating}),
        "tester",
    )
    assert other.seating_seed == "42" and other.seats[0].room == "r2"

    info = await create_session(database, cfg, parse_spec(spec_dict(site)), "tester")
    assert info.status == "scheduled"
    assert [c.path for c in info.cameras] == [f"{site}/r1/cam1", f"{site}/r1/cam2", f"{site}/r2/cam1"]
    assert {(x.room, x.seat, x.expert) for x in info.seats} == {
        ("r1", "S1", "张三"),
        ("r1", "S4", "李四"),
        ("r2", "S2", "王五"),
    }
    with pytest.raises(SessionError, match="already exists"):
        await create_session(database, cfg, parse_spec(spec_dict(site)), "tester")
    assert active_sessions(database, site, "r1") == []
    with pytest.raises(SessionError, match="only a running session can close"):
        await close_session(database, cfg, key, info.id, "tester")

    # archive before and during the session
    await archive(
        segment_store, site, "r1", "cam1", T0 - timedelta(seconds=20), [(10, b"a" * 100), (10, b"b" * 100)]
    )
    started = await start_session(database, info.code, "sup", now=T0)
    assert started.status == "running" and started.started_at == T0
    with pytest.raises(SessionError, match="only a scheduled session can start"):
        await start_session(database, info.id, "sup")
    with pytest.raises(SessionError, match=f"room {site}/r1 is already in running session {info.code}"):
        await start_session(database, other.id, "sup")
    act = active_sessions(database, site, "r1")
    assert len(act) == 1 and act[0].seats == {"S1", "S4"} and act[0].experts["S1"] == "张三"
    assert act[0].cameras == {"cam1", "cam2"}
    assert active_sessions(database, site, "r2")[0].seats == {"S2"}

    await archive(segment_store, site, "r1", "cam1", T0, [(10, b"c" * 100), (10, b"d" * 100)])
    recs = await archive(segment_store, site, "r2", "cam1", T0, [(10, b"e" * 100)])

    def add_event(s) -> None:
        s.add(
            EventRow(
                site=site,
                room="r1",
                camera="cam1",
                seat="S1",
                rule="phone",
                started_at=T0 + timedelta(seconds=5),
                confidence=0.9,
                status="new",
            )
        )
        s.add(
            EventRow(
                site=site,
                room="r1",
                camera="cam1",
                seat="S1",
                rule="phone",
                started_at=T0 - timedelta(hours=1),
                confidence=0.9,
                status="new",
            )
        )

    await database.run(add_event)
    closed = await close_session(
        database, cfg, key, info.id, "sup", objects=object_store, now=T0 + timedelta(minutes=5)
    )
    assert closed.status == "closed" and closed.closed_by == "sup"
    assert active_sessions(database, site, "r1") == []
    heads = {h.path: h for h in closed.heads}
    assert (heads[f"{site}/r1/cam1"].first_seq, heads[f"{site}/r1/cam1"].head_seq) == (3, 4)
    assert heads[f"{site}/r2/cam1"].head_hash == recs[-1].link_hash
    assert (heads[f"{site}/r1/cam2"].head_seq, heads[f"{site}/r1/cam2"].head_hash) == (0, GENESIS)
    assert closed.retention is not None and "enforced" in closed.retention
    if not closed.retention["enforced"]:
        assert "not enforced" in closed.retention["note"]
    with pytest.raises(SessionError, match="only a running session can close"):
        await close_session(database, cfg, key, info.id, "sup")

    # events of the session were tagged, the earlier one was not
    tagged = await database.run(
        lambda s: sorted((e.started_at, e.session_id) for e in s.query(EventRow).all()))
    assert [sid for _, sid in tagged] == [None, info.id]

    # audit trail
    actions = await database.run(
        lambda s: [
            a.action for a in s.query(AuditLog).filter(AuditLog.target == f"session:{info.id}:{info.code}")
        ]
    )
    assert actions == ["session_create", "session_start", "session_close"]

    # the seal verifies with the exported public key ...
    again = await get_session(database, info.code)
    assert verify_seal(again, key.public_pem()) == []
    assert verify_seal(again, HubKey.generate().public_pem())  # ... not with another key
    # ... and fails after tampering with a head
    tampered = again.model_copy(deep=True)
    p = json.loads(tampered.heads[0].payload)
    p["head_seq"] += 1
    tampered.heads[0].payload = json.dumps(p, sort_keys=True, separators=(",", ":"))
    assert any("bad signature" in m for m in verify_seal(tampered, key.public_pem()))
    tampered2 = again.model_copy(deep=True)
    tampered2.heads[1].head_hash = "f" * 64
    assert any("sealed head_hash" in m for m in verify_seal(tampered2, key.public_pem()))

    assert [s.code for s in await list_sessions(database, "closed")] == [info.code]
    with pytest.raises(SessionNotFound):
        await get_session(database, "nope")
    with pytest.raises(SessionNotFound):
        await get_session(database, 9999)
