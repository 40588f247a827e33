"""Seat rules armed by evaluation sessions: unit tests on ``CameraRules`` and one live-pipeline
test against a real database where the session is created and started through
``sessions.lifecycle`` (scripted detector, synthetic frames)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from test_sessions_support import cfg_dict, spec_dict

from analysis.detectors import Box
from analysis.events import EventUpdate
from analysis.live import AnalysisPipeline, session_view
from analysis.rules import CameraRules, SessionView
from analysis.store import EventStore
from config.models import EvalwatchConfig, RulesConfig, SeatConfig
from evalwatch.hub import db_sessions
from sessions.lifecycle import ActiveSession, close_session, create_session, parse_spec, start_session
from sessions.signing import HubKey
from storage.incident import EventLive
from storage.models import EventRow

A = SeatConfig(id="A", camera="cam1", polygon=[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)])
B = SeatConfig(id="B", camera="cam1", polygon=[(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)])


def person(cx: float, bottom: float, score: float = 0.9) -> Box:
    return Box("person", score, cx - 0.05, bottom - 0.3, cx + 0.05, bottom)


def cfg(**kw: Any) -> RulesConfig:
    base: dict[str, Any] = dict(open_k=3, open_n=5, close_m=4, seat_empty_seconds=2.0,
                                extra_person_seconds=0.0)
    base.update(kw)
    return RulesConfig(**base)


def feed(rules: CameraRules, frames: list[list[Box]], t0: float = 0.0, dt: float = 0.5) -> list[EventUpdate]:
    out: list[EventUpdate] = []
    for i, boxes in enumerate(frames):
        out += rules.update(t0 + i * dt, boxes)
    return out


def opened(ups: list[EventUpdate]) -> set[tuple[str, str | None]]:
    return {(u.event.rule, u.event.seat) for u in ups if u.action == "opened"}


def test_without_session_every_seat_is_armed() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    ups = feed(r, [[person(0.25, 0.9)]] * 10)  # A taken, B empty for 4.5 s
    assert opened(ups) == {("seat_empty", "B")}
    assert all(u.event.session_id is None for u in ups)


def test_without_session_one_person_per_seat_is_fine_two_is_extra() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    ups = feed(r, [[person(0.25, 0.9), person(0.75, 0.9)]] * 8)
    assert opened(ups) == set()
    ups = feed(r, [[person(0.2, 0.9), person(0.3, 0.95, 0.8), person(0.75, 0.9)]] * 4, t0=4.0)
    assert opened(ups) == {("extra_person", "A")}


def test_session_arms_only_assigned_seats() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    assert r.set_session(SessionView(7, frozenset({"A"}))) == []
    assert r.armed_seats == {"A"}
    # nobody anywhere: only the assigned seat A is reported empty
    ups = feed(r, [[]] * 10)
    assert opened(ups) == {("seat_empty", "A")}
    assert {u.event.session_id for u in ups} == {7}


def test_session_person_at_unassigned_seat_is_extra() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    r.set_session(SessionView(7, frozenset({"A"})))
    ups = feed(r, [[person(0.25, 0.9), person(0.75, 0.9)]] * 6)
    ev = [u.event for u in ups if u.action == "opened"]
    assert [(e.rule, e.seat, e.session_id) for e in ev] == [("extra_person", "B", 7)]
    assert ev[0].start_s == 0.0 and ev[0].confidence == 0.9
    # the intruder leaves: closes after close_m clear frames
    ups = feed(r, [[person(0.25, 0.9)]] * 5, t0=3.0)
    assert [(u.action, u.event.rule, u.event.seat) for u in ups] == [("closed", "extra_person", "B")]


def test_session_person_outside_every_seat() -> None:
    outside = person(0.5, 0.3)  # lower centre above both seats
    r = CameraRules("cam1", [A, B], cfg())
    r.set_session(SessionView(3, frozenset({"A", "B"})))
    ups = feed(r, [[person(0.25, 0.9), person(0.75, 0.9), outside]] * 5)
    assert [(u.event.rule, u.event.seat, u.event.session_id) for u in ups if u.action == "opened"] == [
        ("extra_person", None, 3)
    ]
    r2 = CameraRules("cam1", [A, B], cfg(outside_seat_is_extra=False))
    r2.set_session(SessionView(3, frozenset({"A", "B"})))
    assert opened(feed(r2, [[person(0.25, 0.9), person(0.75, 0.9), outside]] * 5)) == set()


def test_session_change_closes_seat_empty_of_disarmed_seat_and_arms_new_ones() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    ups = feed(r, [[person(0.25, 0.9)]] * 6)  # B empty 2.5 s, no session: raised
    assert opened(ups) == {("seat_empty", "B")}
    ups = r.set_session(SessionView(9, frozenset({"A"})))  # B is not assigned: its incident ends
    assert [(u.action, u.event.seat, u.event.end_s) for u in ups] == [("closed", "B", 2.5)]
    assert opened(feed(r, [[person(0.25, 0.9)]] * 10, t0=3.0)) == set()
    # the session ends: B is armed again, its absence counts from its next frame
    assert r.set_session(None) == []
    ups = feed(r, [[person(0.25, 0.9)]] * 6, t0=8.0)
    assert [(u.event.rule, u.event.seat, u.event.start_s, u.event.session_id) for u in ups] == [
        ("seat_empty", "B", 8.0, None)
    ]


def test_session_view_from_active_sessions() -> None:
    assert session_view([]) is None
    a = ActiveSession(session_id=4, code="X", seats=frozenset({"S1", "S3"}))
    assert session_view([a]) == SessionView(4, frozenset({"S1", "S3"}))


# --- the live pipeline against a real database ------------------------------------------------

SEATS = [
    {"id": f"S{i + 1}", "camera": "cam1",
     "polygon": [[i * 0.25, 0.5], [(i + 1) * 0.25, 0.5], [(i + 1) * 0.25, 1.0], [i * 0.25, 1.0]]}
    for i in range(4)
]


class SceneDetector:
    """People at S1 and S2; one more person outside every seat when pixel (0, 0) is 255."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        out = []
        for f in frames:
            boxes = [person(0.125, 0.9), person(0.375, 0.9)]
            if f[0, 0, 0] == 255:
                boxes.append(person(0.5, 0.3))
            out.append(boxes)
        return out


class MemoryObjects:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.data[key] = data


async def test_pipeline_picks_up_a_started_session(database: Any, tmp_path: Path) -> None:
    from analysis.bus import EventBus
    from evalwatch.hub import sync_inventory

    site = "sess1"
    raw = cfg_dict(site, tmp_path)
    raw["sites"][0]["rooms"][0]["seats"] = SEATS
    raw["rules"] = {"open_k": 2, "open_n": 3, "close_m": 2, "seat_empty_seconds": 1.0,
                    "extra_person_seconds": 0.0}
    raw["detection"] = {"analysis_fps": 10}
    cfg = EvalwatchConfig.model_validate(raw)
    sync_inventory(database, cfg)
    bus = EventBus()
    sub = bus.subscribe()
    store = EventStore(database, MemoryObjects(), "snaps", bus, tmp_path / "spool")
    pipeline = AnalysisPipeline(SceneDetector(), [(site, room) for room in cfg.sites[0].rooms],
                                detection_cfg=cfg.detection, rules_cfg=cfg.rules, sink=store,
                                sessions=db_sessions(database), session_poll_s=0.05)
    pipeline.core.motion_gate = False
    rng = np.random.default_rng(0)
    texture = np.kron(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), np.ones((10, 10, 1), np.uint8))
    plain = np.ascontiguousarray(texture)  # a textured picture: not "covered" for the tamper check
    plain[0, 0] = 0
    visitor = plain.copy()
    visitor[0, 0] = 255
    t = time.time()
    n = 0

    async def play(frame: np.ndarray, seconds: float) -> None:
        nonlocal t, n
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t += 0.1
            n += 1
            f = frame.copy()  # a little change every frame: not "frozen"
            f[200:240, (n % 10) * 40 + 100:(n % 10) * 40 + 140] = n * 37 % 256
            pipeline.submit((site, "r1", "cam1"), t, f)
            await asyncio.sleep(0.05)

    def messages() -> list[EventLive]:
        out = []
        while not sub.queue.empty():
            out.append(sub.get_nowait())
        return out

    await store.start()
    await pipeline.start()
    try:
        # no session: every seat armed → S3 and S4 empty, S2's person is fine
        await play(plain, 1.5)
        before = messages()
        assert {(m.rule, m.seat) for m in before if m.phase == "opened"} == {
            ("seat_empty", "S3"), ("seat_empty", "S4")}
        assert all(m.session_id is None for m in before)

        # a session assigns S1 and S4 in r1 (spec_dict's default seating) and starts
        info = await create_session(database, cfg, parse_spec(spec_dict(site)), "tester")
        await start_session(database, info.id, "tester")
        await play(plain, 1.0)
        await play(visitor, 1.2)
        during = messages()
        got = {(m.phase, m.rule, m.seat, m.session_id) for m in during}
        assert ("closed", "seat_empty", "S3", None) in got  # S3 is not assigned: disarmed
        assert ("opened", "extra_person", "S2", info.id) in got  # occupied, unassigned
        assert ("opened", "extra_person", None, info.id) in got  # outside every seat
        assert not any(m.rule == "seat_empty" and m.phase == "opened" for m in during)
        assert not any(m.seat == "S4" and m.phase == "closed" for m in during)  # still empty

        # closing the session: back to every seat armed; S3 empty again (no session id)
        await close_session(database, cfg, HubKey.load_or_create(tmp_path), info.id, "tester")
        await play(plain, 1.6)
        after = messages()
        assert ("opened", "seat_empty", "S3", None) in {
            (m.phase, m.rule, m.seat, m.session_id) for m in after}
    finally:
        await pipeline.stop()
        await store.close()
    with database.session() as s:
        rows = s.query(EventRow).filter(EventRow.site == site, EventRow.rule == "extra_person").all()
    assert sorted((r.seat or "", r.session_id) for r in rows) == [("", info.id), ("S2", info.id)]
