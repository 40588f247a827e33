"""The cluster test of issue #14 (item 5) on one machine: PostgreSQL, a SeaweedFS cluster of
separate processes (``evalwatch storage cluster``: master, 3 volume servers with replication 001,
filer, S3 gateway), two ``evalwatch hub`` processes sharing them, and one ``evalwatch agent`` per
site (2 sites) that knows both hubs (``sites[].hub_urls``).

``kill -9`` the hub holding site s01: its lease expires (TTL 15 s, database clock), the other
hub takes it, the agent (pointed at the dead hub) follows to the survivor, backfills what it
spooled meanwhile, and the survivor's wall shows the camera live again — within 30 s.  Then one
volume server is killed and recording goes on.  At the end every segment each agent recorded is
archived exactly once (DB row with the same sha256, in S3), each camera's chain is linear
(seq 1..n, no overlap, no gap) and verifies (``storage.verify.verify_chain``, what ``evalwatch
verify`` runs), and the rows written after the failover carry the survivor's node id and a
higher lease epoch.  The figures go to stdout (``FAILOVER {...}``) and ``docs/benchmarks.md``.

Marked ``slow`` (about 2-3 minutes on this machine):
``.venv/bin/pytest tests/test_scaleout.py -m scaleout -p no:cacheprovider -s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import select

from config.models import S3Config
from storage.db import Database
from storage.models import Segment, SiteLease
from storage.objects import ObjectStore
from storage.verify import verify_chain
from testkit.dashboard import open_live_view
from testkit.hub import cluster_base_port, system_config

pytestmark = [pytest.mark.scaleout, pytest.mark.postgres, pytest.mark.cluster, pytest.mark.slow]

SITES = {"s01": "room_a", "s02": "room_b"}
CAMS = {"s01": ("room-a", "cam1"), "s02": ("room-b", "cam1")}
SUP_PW = "sup-scaleout-pw-12"


class Procs:
    """Child processes and their logs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "wb") as log:
            p = subprocess.Popen([sys.executable, "-m", "evalwatch", *args], cwd=self.tmp, stdout=log,
                                 stderr=subprocess.STDOUT, env=env)
        self.procs[name] = p
        return p

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.procs)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _files_on(address: str) -> int:
    doc = httpx.get(f"http://{address}/status", timeout=5).json()
    return sum(int(v.get("FileCount", 0)) for v in doc.get("Volumes") or [])


async def _wait(pred: Any, what: str, within: float, procs: Procs, step: float = 0.3) -> float:
    """Poll ``pred()`` (sync or async) until true; the seconds it took."""
    t0 = time.monotonic()
    while True:
        got = pred()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < within, f"{what} not within {within}s\n{procs.logs()}"
        await asyncio.sleep(step)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_kill_a_hub_its_sites_move_nothing_lost(db_url: str, tmp_path: Path) -> None:
    procs = Procs(tmp_path)
    access, secret = "scaleout", "scaleout-secret-" + uuid.uuid4().hex
    users = [{"username": "sup", "role": "supervisor", "password": SUP_PW}]
    tokens = {s: f"tok-{s}-" + uuid.uuid4().hex for s in SITES}
    docs = {n: system_config(tmp_path / n, {s: [r] for s, r in SITES.items()}, users=users,
                             database_url=db_url, segment_seconds=2) for n in ("a", "b")}
    urls = {n: f"http://127.0.0.1:{d['hub']['listen_port']}" for n, d in docs.items()}
    for n, doc in docs.items():
        doc["hub"]["node_id"] = f"hub-{n}"
        doc["hub"]["public_url"] = urls[n]
        doc["secrets_file"] = str(tmp_path / "secrets.yaml")  # one set of secrets for both nodes
        doc["storage"]["s3"] = {"embedded": False, "access_key": access, "secret_key": secret}
        doc["capture"].update(heartbeat_seconds=1.0, reconnect_min_seconds=0.5, reconnect_max_seconds=2.0)
        for site in doc["sites"]:
            site.update(agent_token=tokens[site["id"]], hub_urls=[urls["a"], urls["b"]],
                        analysis_check_fps=0.1)
    paths = {n: tmp_path / f"hub-{n}.yaml" for n in docs}

    def write() -> None:
        for n, p in paths.items():
            p.write_text(yaml.safe_dump(docs[n], allow_unicode=True), encoding="utf-8")

    write()
    env = {k: v for k, v in os.environ.items()
           if k not in ("EVALWATCH_DATABASE_URL", "EVALWATCH_S3_ENDPOINT")}
    db = Database(db_url)
    browsers: dict[str, httpx.AsyncClient] = {}
    try:
        # The storage cluster: separate master / 3 volume servers / filer / S3 gateway processes.
        procs.start("cluster", "storage", "cluster", "--config", str(paths["a"]), "--dir",
                    str(tmp_path / "cluster"), "--base-port", str(cluster_base_port()), env=env)
        await _wait(lambda: "S3 endpoint:" in procs.log("cluster"), "storage cluster", 150, procs)
        text = procs.log("cluster")
        parts = {name: (addr, int(pid)) for name, addr, pid in
                 re.findall(r"^  (\w+)\s+(127\.0\.0\.1:\d+)\s+pid (\d+)", text, re.M)}
        endpoint = re.search(r"S3 endpoint: (\S+)", text).group(1)  # type: ignore[union-attr]
        assert {"master", "volume1", "volume2", "volume3", "filer", "s3"} <= set(parts), text
        for doc in docs.values():
            doc["storage"]["s3"]["endpoint"] = endpoint
        write()

        # Two hubs, started together on the fresh database.
        for n in docs:
            procs.start(f"hub-{n}", "hub", "--config", str(paths[n]), env=env)

        async def up(n: str) -> bool:
            assert procs.procs[f"hub-{n}"].poll() is None, procs.log(f"hub-{n}")[-4000:]
            try:
                async with httpx.AsyncClient(timeout=2) as c:
                    return (await c.get(f"{urls[n]}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        for n in docs:
            await _wait(lambda n=n: up(n), f"hub {n}", 240, procs)

        def leases() -> dict[str, tuple[str | None, int, datetime]]:
            with db.session() as s:
                return {r.site_id: (r.node_id, r.epoch, r.expires_at) for r in s.scalars(select(SiteLease))}

        # Each node takes its share (the first one up takes both, then hands one over).
        await _wait(lambda: len({v[0] for v in leases().values()}) == 2, "one site per hub", 40, procs)
        holder = {site: str(v[0]) for site, v in leases().items()}
        victim = holder["s01"].removeprefix("hub-")
        survivor = "b" if victim == "a" else "a"

        # One agent per site; s01's first hub is the victim, s02's the survivor (both know both).
        for site in SITES:
            first = victim if site == "s01" else survivor
            procs.start(f"agent-{site}", "agent", "--config", str(paths[first]), "--site", site,
                        "--no-analysis", "--spool-dir", str(tmp_path / f"spool-{site}"), "--duration", "400",
                        env=env)

        def rows(site: str) -> list[Segment]:
            with db.session() as s:
                return list(s.scalars(select(Segment).where(Segment.site == site).order_by(Segment.seq)))

        for site in SITES:
            await _wait(lambda site=site: len(rows(site)) >= 4, f"first segments of {site}", 150, procs)

        async def wall_live(n: str, site: str) -> bool:
            """A supervisor's wall on hub ``n`` shows ``site``'s camera online."""
            if n not in browsers:
                c = browsers[n] = httpx.AsyncClient(base_url=urls[n], timeout=30)
                r = await c.post("/api/auth/login", json={"username": "sup", "password": SUP_PW})
                assert r.status_code == 200, r.text
                c.headers["X-CSRF-Token"] = r.json()["csrf"]
            try:
                st = (await browsers[n].get("/api/cameras/status")).json()["cameras"]
            except httpx.TimeoutException:
                return False
            room, cam = CAMS[site]
            return any(x["site"] == site and x["room"] == room and x["camera"] == cam and x.get("online")
                       for x in st)

        await _wait(lambda: wall_live(victim, "s01"), "s01 live on its first hub", 60, procs)
        await _wait(lambda: wall_live(survivor, "s02"), "s02 live on its first hub", 60, procs)
        # Every node's wall shows every camera: the victim's shows s02, which the survivor ingests.
        await _wait(lambda: wall_live(victim, "s02"), "s02 on the other node's wall", 30, procs)

        async def tile(n: str, site: str) -> bool:
            room, cam = CAMS[site]
            target = f"{site}/{room}/{cam}"
            r = await browsers[n].get("/api/live/thumbs", params={"c": f"{target}:0"})
            assert r.status_code == 200, r.text
            return target in r.json()["frames"]

        await _wait(lambda: tile(victim, "s02"), "s02's wall tile on the other node", 30, procs)

        async def single_tile(n: str, site: str) -> bool:
            room, cam = CAMS[site]
            r = await browsers[n].get(f"/api/live/{site}/{room}/{cam}/thumb.jpg")
            assert r.status_code in (200, 409), r.text
            return r.status_code == 200 and r.content[:2] == b"\xff\xd8"

        await _wait(lambda: single_tile(victim, "s02"), "s02's thumb.jpg on the other node", 30, procs)

        # Live view of a camera another node holds: a browser of the victim asks for s02's camera
        # (held by the survivor); the offer is forwarded, the video comes from the survivor.
        # Offer round trips direct and through the other node, alternating, 3 of each.
        async def watch(n: str, site: str) -> float:
            room, cam = CAMS[site]
            pc, took = await open_live_view(browsers[n], f"/api/live/{site}/{room}/{cam}/offer")
            await pc.close()
            return took

        offer_s: dict[str, list[float]] = {"direct": [], "via_other_node": []}
        for _ in range(3):
            offer_s["direct"].append(await watch(survivor, "s02"))
            offer_s["via_other_node"].append(await watch(victim, "s02"))
        assert f"answered by the holder {urls[survivor]}" in procs.log(f"hub-{victim}")

        # A session of s01's room (ingested by the victim) created and started on the survivor.
        now = datetime.now(UTC)
        spec = {"code": "SCALE-1", "project": "scale-out", "bids": ["B1"],
                "planned_start": (now - timedelta(minutes=1)).isoformat(),
                "planned_end": (now + timedelta(hours=1)).isoformat(),
                "rooms": [{"site": "s01", "room": CAMS["s01"][0]}]}
        r = await browsers[survivor].post("/api/sessions", json=spec)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        r = await browsers[survivor].post(f"/api/sessions/{sid}/start")
        assert r.status_code == 200, r.text

        # kill -9 the hub holding s01.
        killed_at = datetime.now(UTC)
        t_kill = time.monotonic()
        procs.procs[f"hub-{victim}"].send_signal(signal.SIGKILL)
        procs.procs[f"hub-{victim}"].wait()

        def moved() -> bool:
            v = leases()["s01"]
            return v[0] == f"hub-{survivor}"

        lease_s = await _wait(moved, "s01's lease on the survivor", 40, procs, step=0.2)

        def archived_after() -> bool:
            return any(r.node_id == f"hub-{survivor}" and r.created_at > killed_at for r in rows("s01"))

        segment_s = lease_s + await _wait(archived_after, "an s01 segment on the survivor", 40, procs)
        wall_s = time.monotonic() - t_kill
        await _wait(lambda: wall_live(survivor, "s01"), "s01 live on the survivor's wall", 60, procs)
        wall_s = time.monotonic() - t_kill
        assert segment_s < 30 and lease_s < 30, (lease_s, segment_s)

        # Kill one volume server (the one holding the most files): recording goes on.
        vols = {name: addr for name, (addr, _pid) in parts.items() if name.startswith("volume")}
        counts = {name: _files_on(addr) for name, addr in vols.items()}
        vname = max(counts, key=lambda k: counts[k])
        os.kill(parts[vname][1], signal.SIGKILL)
        n_before = {site: len(rows(site)) for site in SITES}
        for site in SITES:
            await _wait(lambda site=site: len(rows(site)) >= n_before[site] + 3,
                        f"{site} archiving after the volume server died", 60, procs)

        # The session closes on the survivor: its seal covers the chain across the handover.
        r = await browsers[survivor].post(f"/api/sessions/{sid}/close")
        assert r.status_code == 200, r.text
        r = await browsers[survivor].get(f"/api/sessions/{sid}/seal")
        assert r.status_code == 200 and r.json()["ok"], r.text

        # Let the agents catch up with their backlog (a loaded machine: the survivor archives one
        # segment per 1-2 s while it takes over), stop them (they send what is left), check.
        def backlog(site: str) -> int:
            room, cam = CAMS[site]
            spool = tmp_path / f"spool-{site}" / site / room / cam
            return sum(1 for p in spool.glob("*.mp4") if not p.with_name(p.name + ".done").exists())

        for site in SITES:
            await _wait(lambda site=site: backlog(site) <= 1, f"{site}'s agent catching up", 180, procs)
        for site in SITES:
            procs.procs[f"agent-{site}"].send_signal(signal.SIGTERM)
        for site in SITES:
            assert procs.procs[f"agent-{site}"].wait(60) == 0, procs.log(f"agent-{site}")[-3000:]

        objects = ObjectStore(S3Config(endpoint=endpoint, access_key=SecretStr(access),
                                       secret_key=SecretStr(secret), embedded=False))
        await _wait(lambda: all(r.uploaded for site in SITES for r in rows(site)), "every row in S3", 60,
                    procs)
        figures: dict[str, Any] = {"victim": f"hub-{victim}", "lease_moved_s": round(lease_s, 1),
                                   "first_segment_on_survivor_s": round(segment_s, 1),
                                   "live_on_survivor_wall_s": round(wall_s, 1), "volume_killed": vname,
                                   "live_offer_s": {k: sorted(round(x, 3) for x in v)
                                                    for k, v in offer_s.items()}}
        for site in SITES:
            room, cam = CAMS[site]
            spool = tmp_path / f"spool-{site}" / site / room / cam
            spooled = sorted(spool.glob("*.mp4"))
            assert not list(spool.glob("*.rejected")), procs.log(f"agent-{site}")[-3000:]
            pending = [p.name for p in spooled if not p.with_name(p.name + ".done").exists()]
            assert not pending, pending
            got = rows(site)
            by_sha = {r.sha256 for r in got}
            lost = [p.name for p in spooled if hashlib.sha256(p.read_bytes()).hexdigest() not in by_sha]
            assert [r.seq for r in got] == list(range(1, len(got) + 1))
            overlaps = [(a.key, b.key) for a, b in itertools.pairwise(got)
                        if b.start < a.end - timedelta(seconds=0.5)]
            gaps = [(a.end.isoformat(), b.start.isoformat()) for a, b in itertools.pairwise(got)
                    if b.start - a.end > timedelta(seconds=1)]
            res = await verify_chain(objects, site, room, cam, expected_head=len(got))
            assert res.ok and res.segments_checked == len(got), str(res)
            figures[site] = {
                "segments": len(got), "spooled": len(spooled), "lost": len(lost), "duplicated": len(overlaps),
                "gaps": gaps, "writers": sorted({(r.node_id, r.epoch) for r in got}, key=str),
                "backfilled": sum(1 for r in got if r.source == "backfill"),
            }
            assert not lost and not overlaps, figures[site]
        assert {w[0] for w in figures["s01"]["writers"]} == {f"hub-{victim}", f"hub-{survivor}"}
        s01_epochs = sorted(w[1] for w in figures["s01"]["writers"])
        assert s01_epochs[-1] > s01_epochs[0]  # the survivor wrote under a newer fencing token
        assert "agent switches hub site=s01" in procs.log("agent-s01")
        print("FAILOVER " + json.dumps(figures, default=str))
        (tmp_path / "figures.json").write_text(json.dumps(figures, default=str, indent=1))
    finally:
        for c in browsers.values():
            await c.aclose()
        procs.stop_all()
        db.dispose()
