"""The hub's check of the agents survives a hub restart: what an agent reported before the
restart is read back from the database, so it is not taken for a miss (``analysis_mismatch``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from test_sessions_support import cfg_dict

from analysis.bus import EventBus
from analysis.events import Event, EventUpdate
from analysis.store import EventStore
from capture.incidents import IncidentUpdateIn
from config.models import EvalwatchConfig
from evalwatch.edgehub import EdgeHub
from evalwatch.hub import sync_inventory
from testkit.dashboard import MemoryObjects

SITE = "edge1"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _iso(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def _mismatch_after_restart(database: Any, tmp_path: Path, remember: bool) -> int:
    raw = cfg_dict(SITE, tmp_path)
    raw["sites"][0]["analysis"] = "agent"
    cfg = EvalwatchConfig.model_validate(raw)
    sync_inventory(database, cfg)
    t0 = datetime.now(UTC).timestamp()
    clock = Clock(t0)
    # Before the restart: the agent reported a phone at S1 on r1/cam1, open now.
    before = EdgeHub(cfg, EventStore(database, MemoryObjects(), "snaps", EventBus(), tmp_path / "s1"), None,
                     clock=clock)
    got = await before.incident(SITE, IncidentUpdateIn(
        site=SITE, room="r1", camera="cam1", uid="ab12cd34ef5" + ("6" if remember else "7"), seq=1,
        action="opened", rule="phone", seat="S1", confidence=0.8, started_at=_iso(t0 - 30)))
    assert got.applied
    # The hub restarts: a new EdgeHub on the same database.
    store = EventStore(database, MemoryObjects(), "snaps", EventBus(), tmp_path / "s2")
    after = EdgeHub(cfg, store, None, clock=clock)
    if remember:
        await after.remember_agent_incidents()
    after.analysis_beat(SITE, {"running": True, "pending_incidents": 0, "cameras": {}})
    # The hub's own check sees the same phone.
    seen = Event(rule="phone", camera="cam1", seat="S1", start_s=t0, confidence=0.7, room="r1", site=SITE)
    await after.handle(EventUpdate("opened", seen))
    clock.t = t0 + cfg.sites[0].analysis_mismatch_seconds + 1
    after.analysis_beat(SITE, {"running": True, "pending_incidents": 0, "cameras": {}})
    await after.handle(EventUpdate("updated", seen))
    return after.mismatches


async def test_restarted_hub_remembers_what_agents_reported(database: Any, tmp_path: Path) -> None:
    assert await _mismatch_after_restart(database, tmp_path / "a", remember=False) == 1  # the old limit
    assert await _mismatch_after_restart(database, tmp_path / "b", remember=True) == 0
