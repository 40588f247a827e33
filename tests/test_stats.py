"""Issue 15 items 3 and 6: statistics (API and the ECharts page in Chromium), the four early-warning
rules (fire on seeded history, once; pushed through the alert hub), the monthly report of a site
(HTML, PDF with every font embedded, CLI and route).  docs/statistics.md."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from config.models import EvalwatchConfig, WarningsConfig
from dashboard.services import Services
from sessions import credit
from sessions.credit_models import Expert
from sessions.earlywarning import EarlyWarning, acknowledge, evaluate
from sessions.models import EvalSession, SessionCamera, SessionSeat
from storage.models import EventRow, Segment
from testkit.dashboard import (
    asgi_login,
    dashboard_in_chromium,
    make_config,
    make_services,
    ui_login,
)

pytestmark = pytest.mark.credit
ROOT = Path(__file__).resolve().parent.parent

BASE = "http://testserver"
TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime.now(TZ).date() - timedelta(days=3)
#: 09:00 in the hub's zone, three days ago: the seeded session runs 09:00-11:00.
T0 = datetime(DAY.year, DAY.month, DAY.day, 9, 0, tzinfo=TZ).astimezone(UTC)
CATS = EvalwatchConfig().credit.categories


def _segment(s: Any, cam: tuple[str, str, str], seq: int, a: datetime, b: datetime) -> None:
    site, room, camera = cam
    s.add(
        Segment(
            site=site,
            room=room,
            camera=camera,
            start=a,
            end=b,
            key=f"{site}/{room}/{camera}/{seq}.mp4",
            sha256="0" * 64,
            size=1000,
            seq=seq,
            prev_hash="0" * 64,
            link_hash=f"{seq:064d}",
            uploaded=True,
        )
    )


def _event(
    s: Any,
    at: datetime,
    *,
    room: str = "room1",
    seat: str | None = "s1",
    rule: str = "phone",
    site: str = "site1",
    ended: datetime | None = None,
    ack_after: float | None = None,
    status: str = "new",
) -> int:
    e = EventRow(
        site=site,
        room=room,
        camera="cam1",
        seat=seat,
        rule=rule,
        started_at=at,
        ended_at=ended or at + timedelta(seconds=20),
        confidence=0.9,
        status=status,
        acknowledged_at=at + timedelta(seconds=ack_after) if ack_after is not None else None,
        acknowledged_by="sup" if ack_after is not None else None,
    )
    s.add(e)
    s.flush()
    return int(e.id)


def seed(db: Any) -> dict[str, Any]:
    """One closed session ZB-1 (bid B1) on site1 room1 + room2, 09:00-11:00 three days ago:

    * experts E0001 (张三, site1/room1/s1) and E0002 (李四, site1/room2/s1), both of bid B1;
    * site1/room1/cam1 archived 90 of 120 min, offline 30 min (a camera_offline incident);
      site1/room2/cam1 archived all 120 min: site1 offline 1800 / 14400 s = 12.5 %;
    * phone incidents: E0001 and E0002 flagged at the same time (5 s apart) in different rooms
      twice; E0001 has 3 phones confirmed as violations (acknowledged after 30, 60, 90 s);
    * seat_empty: 5 incidents on E0002's seat, 1 confirmed, 3 dismissed + 1 closed as a false
      alarm: 80 % false alarms;
    * site2 has an incident but no session.
    """
    end = T0 + timedelta(hours=2)
    ids: dict[str, Any] = {}
    with db.session() as s:
        s.add_all([Expert(code="E0001", name="张三"), Expert(code="E0002", name="李四")])
        row = EvalSession(
            code="ZB-1",
            project="道路工程评标",
            bids=["B1"],
            planned_start=T0,
            planned_end=end,
            status="closed",
            created_by="sup",
            started_at=T0,
            started_by="sup",
            closed_at=end,
            closed_by="sup",
        )
        s.add(row)
        s.flush()
        for room in ("room1", "room2"):
            s.add(SessionCamera(session_id=row.id, site="site1", room=room, camera="cam1"))
        s.add(
            SessionSeat(
                session_id=row.id,
                site="site1",
                room="room1",
                seat="s1",
                expert="张三",
                bid="B1",
                expert_code="E0001",
            )
        )
        s.add(
            SessionSeat(
                session_id=row.id,
                site="site1",
                room="room2",
                seat="s1",
                expert="李四",
                bid="B1",
                expert_code="E0002",
            )
        )
        c1, c2 = ("site1", "room1", "cam1"), ("site1", "room2", "cam1")
        _segment(s, c1, 1, T0 - timedelta(minutes=5), T0 + timedelta(minutes=60))
        _segment(s, c1, 2, T0 + timedelta(minutes=90), end + timedelta(minutes=5))
        _segment(s, c2, 1, T0, T0 + timedelta(minutes=70))
        _segment(s, c2, 2, T0 + timedelta(minutes=60), end)  # overlapping: counted once
        ids["offline"] = _event(
            s, T0 + timedelta(minutes=60), seat=None, rule="camera_offline", ended=T0 + timedelta(minutes=90)
        )
        pairs = []
        for minute in (10, 40):
            a = _event(s, T0 + timedelta(minutes=minute), room="room1")
            b = _event(s, T0 + timedelta(minutes=minute, seconds=5), room="room2")
            pairs.append((a, b))
        ids["pairs"] = pairs
        phones = [pairs[0][0], pairs[1][0]]
        phones.append(_event(s, T0 + timedelta(minutes=100), room="room1"))
        for eid, wait in zip(phones, (30, 60, 90), strict=True):
            row_e = s.get(EventRow, eid)
            row_e.acknowledged_at = row_e.started_at + timedelta(seconds=wait)
        ids["phones"] = phones
        empties = [
            _event(s, T0 + timedelta(minutes=m), room="room2", rule="seat_empty") for m in (15, 25, 35, 45)
        ]
        ids["false_alarm"] = _event(
            s, T0 + timedelta(minutes=55), room="room2", rule="seat_empty", status="false_alarm"
        )
        ids["empties"] = empties
        _event(s, T0 + timedelta(minutes=30), site="site2", seat=None, rule="extra_person")
        s.flush()
        for eid in phones:
            credit.judge(
                s,
                eid,
                decision="violation",
                category="使用手机",
                note="",
                categories=CATS,
                actor="sup",
                role="supervisor",
            )
        credit.judge(
            s,
            empties[0],
            decision="violation",
            category="离开座位",
            note="",
            categories=CATS,
            actor="sup",
            role="supervisor",
        )
        for eid in empties[1:]:
            credit.judge(
                s,
                eid,
                decision="dismissed",
                category=None,
                note="在座",
                categories=CATS,
                actor="sup",
                role="supervisor",
            )
        s.commit()
    return ids


WCFG = WarningsConfig(cron=None)  # defaults: 3 violations / 90 d, 10 % offline, 50 % false alarms, 2 times


# ---------------------------------------------------------------------------- early warnings


def test_each_warning_rule_fires_on_seeded_history_once(tmp_path: Path) -> None:
    services = make_services(tmp_path, cfg=make_config(sites=2, rooms=2))
    db = services.db
    ids = seed(db)
    now = T0 + timedelta(days=1)
    with db.session() as s:
        raised = evaluate(s, WCFG, now)
        s.commit()
    got = {(w.kind, w.subject): w for w in raised}
    assert set(got) == {
        ("expert_violations", "E0001"),
        ("site_offline", "site1"),
        ("false_alarm_rate", "seat_empty"),
        ("concurrent_flags", "ZB-1:B1:E0001+E0002"),
    }, got
    assert got[("expert_violations", "E0001")].value == 3
    assert got[("expert_violations", "E0001")].expert_codes == ["E0001"]
    assert got[("site_offline", "site1")].value == pytest.approx(12.5)
    assert got[("false_alarm_rate", "seat_empty")].value == pytest.approx(80.0)
    cc = got[("concurrent_flags", "ZB-1:B1:E0001+E0002")]
    assert (
        cc.value == 2
        and cc.bid == "B1"
        and cc.details is not None
        and sorted(sorted(p) for p in cc.details["events"]) == sorted(sorted(p) for p in ids["pairs"])
    )
    assert all(w.expert_names is None for w in raised)  # codes only in what is pushed

    # not raised again: the next runs (open, then acknowledged) raise nothing
    with db.session() as s:
        assert evaluate(s, WCFG, now + timedelta(minutes=10)) == []
        for w in raised:
            acknowledge(s, w.id, "sup")
        s.commit()
    with db.session() as s:
        assert evaluate(s, WCFG, now + timedelta(minutes=20)) == []
        s.commit()
    # new evidence (a fourth violation of E0001) raises that one warning again, once
    with db.session() as s:
        eid = _event(s, T0 + timedelta(minutes=110), room="room1")
        credit.judge(
            s,
            eid,
            decision="violation",
            category="使用手机",
            note="",
            categories=CATS,
            actor="sup",
            role="supervisor",
        )
        s.commit()
    with db.session() as s:
        again = evaluate(s, WCFG, now + timedelta(minutes=30))
        s.commit()
        assert [(w.kind, w.subject, w.value) for w in again] == [("expert_violations", "E0001", 4)]
        assert evaluate(s, WCFG, now + timedelta(minutes=40)) == []
        assert s.query(EarlyWarning).count() == 5
    # below every threshold nothing fires (the same history, stricter numbers)
    strict = WarningsConfig(
        cron=None, expert_violations=5, site_offline_percent=20, false_alarm_percent=85, concurrent_times=3
    )
    with db.session() as s:
        assert evaluate(s, strict, now + timedelta(minutes=50)) == []
        s.rollback()
    # the history out of the window raises nothing either
    with db.session() as s:
        assert evaluate(s, WCFG.model_copy(update={"expert_days": 1}), now + timedelta(days=5)) == []
        s.rollback()


def test_warnings_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"warnings\.cron[\s\S]*crontab expression of 5 fields"):
        EvalwatchConfig.model_validate({"warnings": {"cron": "every hour"}})
    with pytest.raises(ValueError, match=r"warnings\.site_offline_percent"):
        EvalwatchConfig.model_validate({"warnings": {"site_offline_percent": 150}})


# ---------------------------------------------------------------------------- API


@pytest.fixture
def services(tmp_path: Path) -> Services:
    cfg = make_config(sites=2, rooms=2)
    cfg.storage.data_dir = str(tmp_path / "data")
    return make_services(tmp_path, cfg=cfg)


login = asgi_login  # a client of the in-process app, logged in as a role


RANGE = {"from": (DAY - timedelta(days=1)).isoformat(), "to": (DAY + timedelta(days=1)).isoformat()}


async def test_stats_api_on_seeded_database(app: Any, services: Services) -> None:
    seed(services.db)
    sup, obs = await login(app, "supervisor"), await login(app, "observer")

    r = await sup.get("/api/stats/incidents", params=RANGE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["range"] == {**RANGE, "tz": "Asia/Shanghai", "site": None}
    inc = body["incidents"]
    assert inc["total"] == 12
    assert [c["key"] for c in inc["by_day"]] == [(DAY + timedelta(days=i)).isoformat() for i in (-1, 0, 1)]
    assert [c["count"] for c in inc["by_day"]] == [0, 12, 0]
    assert {c["key"]: c["count"] for c in inc["by_rule"]} == {
        "phone": 5,
        "seat_empty": 5,
        "camera_offline": 1,
        "extra_person": 1,
    }
    assert {c["key"]: c["count"] for c in inc["by_site"]} == {"site1": 11, "site2": 1}
    assert {c["key"]: c["count"] for c in inc["by_room"]} == {
        "site1/room1": 4,
        "site1/room2": 7,
        "site2/room1": 1,
    }
    r = await sup.get("/api/stats/incidents", params={**RANGE, "site": "site2"})
    assert r.json()["incidents"]["total"] == 1

    r = await sup.get("/api/stats/judgements", params=RANGE)
    rules = {j["rule"]: j for j in r.json()["rules"]}
    assert rules["phone"] == {
        "rule": "phone",
        "confirmed": 3,
        "dismissed": 0,
        "judged": 3,
        "false_alarm_rate": 0.0,
    }
    assert rules["seat_empty"] == {
        "rule": "seat_empty",
        "confirmed": 1,
        "dismissed": 4,
        "judged": 5,
        "false_alarm_rate": 80.0,
    }

    r = await sup.get("/api/stats/ack", params=RANGE)
    phone = next(a for a in r.json()["rules"] if a["rule"] == "phone")
    assert phone == {
        "rule": "phone",
        "acknowledged": 3,
        "unacknowledged": 2,
        "mean_s": 60.0,
        "median_s": 60.0,
        "p90_s": 90.0,
        "max_s": 90.0,
    }

    r = await sup.get("/api/stats/cameras", params=RANGE)
    cams = {c["camera"]: c for c in r.json()["cameras"]}
    assert cams["site1/room1/cam1"] == {
        "camera": "site1/room1/cam1",
        "site": "site1",
        "room": "room1",
        "session_s": 7200.0,
        "archived_s": 5400.0,
        "coverage_percent": 75.0,
        "offline_s": 1800.0,
        "offline_percent": 25.0,
    }
    assert (
        cams["site1/room2/cam1"]["coverage_percent"] == 100.0 and cams["site1/room2/cam1"]["offline_s"] == 0
    )
    assert set(cams) == {"site1/room1/cam1", "site1/room2/cam1"}

    r = await sup.get("/api/stats/experts", params=RANGE)
    assert r.json()["experts"] == [
        {"code": "E0001", "name": "张三", "violations": 3},
        {"code": "E0002", "name": "李四", "violations": 1},
    ]
    r = await obs.get("/api/stats/experts", params=RANGE)  # observers: codes, never names
    assert r.status_code == 200 and [e["name"] for e in r.json()["experts"]] == [None, None]
    assert "张三" not in r.text and "李四" not in r.text

    # bad input: a clear 4xx naming the problem, never a 500
    r = await sup.get("/api/stats/incidents", params={"from": "2026-13-01"})
    assert r.status_code == 422 and r.json()["code"] == "err.invalid_input" and "from" in r.json()["detail"]
    r = await sup.get("/api/stats/incidents", params={"from": "2026-05-02", "to": "2026-05-01"})
    assert r.status_code == 400 and r.json()["code"] == "err.bad_stats_range"
    assert "to (2026-05-01) is before from (2026-05-02)" in r.json()["detail"]
    r = await sup.get("/api/stats/cameras", params={"from": "2024-01-01", "to": "2026-01-01"})
    assert r.status_code == 400 and "at most 366" in r.json()["detail"]
    r = await sup.get("/api/stats/judgements", params={"site": "nowhere"})
    assert r.status_code == 400 and r.json()["code"] == "err.unknown_site" and "nowhere" in r.json()["detail"]
    r = await sup.get("/api/warnings", params={"kind": "bogus"})
    assert r.status_code == 422 and "kind must be one of" in r.json()["detail"]
    anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    assert (await anon.get("/api/stats/incidents")).status_code == 401


async def test_warnings_pushed_listed_acknowledged(app: Any, services: Services) -> None:
    seed(services.db)
    st = app.state.dash
    # the job is scheduled on warnings.cron like the retention purge
    assert st.warnings.scheduler is not None and st.warnings.scheduler.get_job("early-warnings") is not None
    watcher = st.alerts.connect("obs", "observer")  # a browser on /ws/events
    sup, obs, aud = await login(app, "supervisor"), await login(app, "observer"), await login(app, "auditor")
    assert (await obs.post("/api/warnings/run")).status_code == 403
    assert (await aud.post("/api/warnings/run")).status_code == 403
    r = await sup.post("/api/warnings/run")
    assert r.status_code == 200, r.text
    kinds = sorted(w["kind"] for w in r.json()["raised"])
    assert kinds == ["concurrent_flags", "expert_violations", "false_alarm_rate", "site_offline"]
    pushed = [watcher.queue.get_nowait() for _ in range(watcher.queue.qsize())]
    assert sorted(m["kind"] for m in pushed) == kinds
    assert all(m["type"] == "warning" and m["status"] == "open" and m["expert_names"] is None for m in pushed)
    assert "张三" not in json.dumps(pushed, ensure_ascii=False)
    by_kind = {m["kind"]: m for m in pushed}  # the fields the notifications read, text in zh-CN
    offline = by_kind["site_offline"]
    assert offline["site"] == "site1" and offline["details"]["offline_s"] == 1800
    assert by_kind["site_offline"]["text"] == "场地 site1：30 天内摄像头离线占评标时长 12.5%（阈值 10.0%）"
    assert by_kind["expert_violations"]["text"] == "专家 E0001：90 天内确认违规 3 次（阈值 3）"
    assert by_kind["false_alarm_rate"]["text"].startswith("规则 评标专家离席：")
    assert by_kind["concurrent_flags"]["text"].startswith("专家 E0001 + E0002 (标段 B1)")
    # run again: nothing new, nothing pushed
    r = await sup.post("/api/warnings/run")
    assert r.json()["raised"] == [] and watcher.queue.qsize() == 0

    r = await sup.get("/api/warnings")
    ws = {w["kind"]: w for w in r.json()["warnings"]}
    assert ws["expert_violations"]["expert_names"] == {"E0001": "张三"}
    assert ws["concurrent_flags"]["expert_names"] == {"E0001": "张三", "E0002": "李四"}
    r = await obs.get("/api/warnings")
    assert r.status_code == 200 and "张三" not in r.text
    assert all(w["expert_names"] is None for w in r.json()["warnings"])
    wid = ws["site_offline"]["id"]
    assert (await obs.post(f"/api/warnings/{wid}/ack")).status_code == 403
    r = await sup.post(f"/api/warnings/{wid}/ack")
    assert (
        r.status_code == 200 and r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == "sup"
    )
    r = await sup.post(f"/api/warnings/{wid}/ack")
    assert r.status_code == 409 and r.json()["code"] == "err.warning_not_open"
    assert (await sup.post("/api/warnings/999999/ack")).status_code == 404
    r = await aud.get("/api/warnings", params={"status": "open"})
    assert sorted(w["kind"] for w in r.json()["warnings"]) == [
        "concurrent_flags",
        "expert_violations",
        "false_alarm_rate",
    ]


# ---------------------------------------------------------------------------- monthly report


def _pdf_fonts_embedded(pdf: Path) -> str:
    pdffonts = shutil.which("pdffonts")
    if pdffonts is None:
        pytest.fail("pdffonts (Debian poppler-utils) is missing: make system-deps installs it")
    out = subprocess.run([pdffonts, str(pdf)], capture_output=True, text=True, check=True).stdout
    head, _rule, *lines = out.splitlines()
    col = head.index("emb")
    assert lines and all(line[col : col + 3] == "yes" for line in lines), out
    return out


def test_monthly_report_cli_html_pdf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pypdf

    from evalwatch import report as report_cmd
    from storage.db import Database

    url = f"sqlite:///{tmp_path}/hub.db"
    db = Database(url)
    db.upgrade()
    seed(db)
    db.dispose()
    cfg = tmp_path / "evalwatch.yaml"
    cfg.write_text(
        json.dumps(
            {
                "storage": {"database_url": url, "data_dir": str(tmp_path)},
                "secrets_file": None,
                "sites": [
                    {
                        "id": "site1",
                        "name": "一号场地",
                        "rooms": [{"id": "room1", "cameras": [{"id": "cam1", "source": "x.mp4"}]}],
                    }
                ],
            }
        )
    )
    month = DAY.strftime("%Y-%m")
    pdf = tmp_path / "m.pdf"
    code = report_cmd.cli(
        ["monthly", "--site", "site1", "--month", month, "--config", str(cfg), "-o", str(pdf)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"site site1, {month}: 1 sessions, 11 incidents, 2 cameras" in out
    fonts = _pdf_fonts_embedded(pdf)
    assert "WenQuanYi" in fonts
    text = "".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    for want in ("评标现场月度监督报告", "ZB-1", "E0001", "使用手机", "80.0%", "75.0%", "1800"):
        assert want in text, want
    assert "张三" not in text  # a travelling document: expert codes only

    html_file = tmp_path / "m.html"
    assert (
        report_cmd.cli(
            [
                "monthly",
                "--site",
                "site1",
                "--month",
                month,
                "--config",
                str(cfg),
                "-o",
                str(html_file),
                "--lang",
                "en",
            ]
        )
        == 0
    )
    page = html_file.read_text("utf-8")
    assert 'data-rule="seat_empty"' in page and "80.0%" in page and "Incidents by rule" in page
    assert 'data-camera="site1/room1/cam1"' in page and "张三" not in page
    capsys.readouterr()

    # bad input: exit 2 and one line naming the problem
    assert (
        report_cmd.cli(
            ["monthly", "--site", "site1", "--month", "2026-13", "--config", str(cfg), "-o", str(pdf)]
        )
        == 2
    )
    assert "month must be YYYY-MM" in capsys.readouterr().err
    assert (
        report_cmd.cli(["monthly", "--site", "nope", "--month", month, "--config", str(cfg), "-o", str(pdf)])
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown site 'nope'" in err and "Traceback" not in err


async def test_monthly_report_route(app: Any, services: Services) -> None:
    seed(services.db)
    sup, obs, aud = await login(app, "supervisor"), await login(app, "observer"), await login(app, "auditor")
    month = DAY.strftime("%Y-%m")
    r = await aud.get("/api/reports/monthly", params={"site": "site1", "month": month, "format": "pdf"})
    assert (
        r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content[:5] == b"%PDF-"
    )
    r = await sup.get("/api/reports/monthly", params={"site": "site1", "month": month})
    assert r.status_code == 200 and "ZB-1" in r.text and "E0001" in r.text
    assert (
        await obs.get("/api/reports/monthly", params={"site": "site1", "month": month})
    ).status_code == 403
    r = await sup.get("/api/reports/monthly", params={"site": "site1", "month": "11/2026"})
    assert r.status_code == 400 and "month must be YYYY-MM" in r.json()["detail"]
    r = await sup.get("/api/reports/monthly", params={"site": "nope", "month": month})
    assert r.status_code == 400 and r.json()["code"] == "err.unknown_site"
    r = await sup.get("/api/reports/monthly", params={"site": "site1"})
    assert r.status_code == 422 and "month" in r.json()["detail"]


# ---------------------------------------------------------------------------- the page in Chromium


def _colour_pixels(png: bytes, hex_colour: str, tol: int = 18) -> int:
    """Pixels of ``hex_colour`` in the plot area of a chart's canvas screenshot: the top 36 px
    (the legend with its colour swatches, ``legend.top: 0``; the plot starts at 40) do not count,
    so only drawn bars do."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)[36:]
    want = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - want).max(axis=2) <= tol).sum())


#: ``[category labels, the text ECharts draws and shows, spaces and line breaks removed]`` of a chart.
_LABELS_JS = """(id) => {
  const c = window.echarts.getInstanceByDom(document.getElementById(id));
  const shown = c.getZr().storage.getDisplayList(true)
    .filter((e) => e.style && typeof e.style.text === "string" && !e.ignore && !e.invisible)
    .map((e) => e.style.text).join("").replace(/\\s+/g, "");
  return [c.getOption().xAxis[0].data, shown];
}"""


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
async def test_stats_page_draws_charts_in_chromium(tmp_path: Path, services: Services) -> None:
    """The statistics page of a seeded database: every chart's canvas holds pixels of its series
    colours (ECharts drew the data, not just the DOM); observers see codes, not names."""

    shots = tmp_path / "shots"  # the page and each chart, kept for a look when it fails
    shots.mkdir()
    seed(services.db)
    with services.db.session() as s:
        evaluate(s, WCFG, T0 + timedelta(days=1))
        s.commit()
    console: list[str] = []
    want = {  # chart -> series colours that must show
        "day": ["#3b82f6"],
        "site": ["#3b82f6"],
        "room": ["#3b82f6"],
        "rule": ["#3b82f6"],
        "judge": ["#ef4444", "#22c55e"],
        "ack": ["#f59e0b", "#fb923c"],
        "coverage": ["#a855f7"],
        "offline": ["#ec4899"],
    }
    async with dashboard_in_chromium(services, 1400, 1000) as b:
        page, url, errors = b.page, b.url, b.errors
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)

        async def show(role: str) -> None:
            await ui_login(page, url, role)
            await page.goto(url + "/#stats")
            await page.wait_for_function(
                "() => (window.evalwatch.stats?.rendered || 0) >= 1", timeout=20_000
            )
            await page.fill("#st-from", RANGE["from"])
            await page.fill("#st-to", RANGE["to"])
            await page.click("#st-refresh")
            await page.wait_for_function(
                "() => (window.evalwatch.stats?.rendered || 0) >= 2", timeout=20_000
            )

        await show("supervisor")
        await page.screenshot(path=str(shots / "page.png"), full_page=True)
        assert await page.locator("#nav button[data-view='stats']").is_visible()
        for chart, colours in want.items():
            canvas = page.locator(f"#chart-{chart} canvas").first
            png = await canvas.screenshot()
            (shots / f"chart-{chart}.png").write_bytes(png)
            for c in colours:
                n = _colour_pixels(png, c)
                assert n > 150, (chart, c, n)
        # the offline chart has no coverage colour and vice versa (each drew its own data)
        assert (
            _colour_pixels(await page.locator("#chart-offline canvas").first.screenshot(), "#a855f7") == 0
        )
        experts = await page.inner_text("table.stat-experts")
        assert "E0001" in experts and "张三" in experts
        assert await page.locator("#st-warnings tr.warning").count() == 4
        assert "张三" in await page.inner_text("#st-warnings")
        href = await page.get_attribute("#st-report-pdf", "href")
        assert href and href.startswith("/api/reports/monthly?site=site1&month=")
        # every rule's name is drawn under its bar, also where it is wider than its bar's slot (the
        # English names: wrapped, none dropped as overlapping — a bar without its name says nothing)
        await page.click("#lang-switch")  # zh-CN -> en: the charts are drawn again
        await page.wait_for_function("() => (window.evalwatch.stats?.rendered || 0) >= 3", timeout=20_000)
        assert await page.evaluate("document.documentElement.lang") == "en"
        await page.screenshot(path=str(shots / "page-en.png"), full_page=True)
        for chart in ("rule", "judge", "ack"):
            names, drawn = await page.evaluate(_LABELS_JS, f"chart-{chart}")
            missing = [n for n in names if n.replace(" ", "") not in drawn]
            assert names and not missing, (chart, missing, drawn)
        # the names wrap to the bars' width of the moment: a window made narrower (two charts a
        # row instead of three: wider charts) draws them again at the new width
        width_js = ("() => window.echarts.getInstanceByDom(document.getElementById('chart-rule'))"
                    ".getOption().xAxis[0].axisLabel.width")
        before = await page.evaluate(width_js)
        await page.set_viewport_size({"width": 1100, "height": 1000})
        await page.wait_for_function(f"() => ({width_js})() > {before} + 20", timeout=10_000)
        await page.set_viewport_size({"width": 1400, "height": 1000})
        await page.wait_for_function(f"() => ({width_js})() === {before}", timeout=10_000)

        # a range with nothing in it: each chart says why it is empty
        await page.fill("#st-from", "2031-01-01")
        await page.fill("#st-to", "2031-01-31")
        await page.click("#st-refresh")
        await page.wait_for_function("() => (window.evalwatch.stats?.rendered || 0) >= 6", timeout=20_000)
        await page.screenshot(path=str(shots / "page-empty.png"), full_page=True)
        lang = await page.evaluate("document.documentElement.lang")
        strings = json.loads((ROOT / "dashboard" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        why = {"judge": "stats.empty_judged", "ack": "stats.empty_ack",
               "coverage": "stats.empty_sessions", "offline": "stats.empty_sessions"}
        for chart in want:
            said = await page.evaluate(
                "(id) => { const n = document.getElementById(id);"
                " return [n.classList.contains('nodata'), getComputedStyle(n, '::after').content]; }",
                f"chart-{chart}",
            )
            message = strings[why.get(chart, "stats.empty")]
            assert said == [True, json.dumps(message, ensure_ascii=False)], (chart, said)

        await show("observer")
        png = await page.locator("#chart-judge canvas").first.screenshot()
        assert _colour_pixels(png, "#ef4444") > 150
        experts = await page.inner_text("table.stat-experts")
        assert "E0001" in experts and "张三" not in experts and "李四" not in experts
        assert "张三" not in await page.inner_text("#view-stats")
        assert await page.locator("#st-run").is_hidden() and await page.locator("#st-report").is_hidden()
    assert not errors, errors
    assert not [c for c in console if "Content Security Policy" in c], console


# ---------------------------------------------------------------------------- PostgreSQL


def test_stats_and_warnings_on_each_database(database: Any) -> None:
    """The queries and the rules on SQLite and a real PostgreSQL (the ``database`` fixture runs
    both): the seeded history gives the same numbers and the same four warnings, once."""
    from sessions import stats

    seed(database)
    start, end = stats.day_range(DAY, DAY, "Asia/Shanghai")
    with database.session() as s:
        assert stats.incidents(s, start, end, "Asia/Shanghai").total == 12
        cams = {c.camera: c for c in stats.camera_stats(s, start, end)}
        room1 = cams["site1/room1/cam1"]
        assert (room1.coverage_percent, room1.offline_s) == (75.0, 1800.0)
        assert {j.rule: j.false_alarm_rate for j in stats.judgements(s, start, end)} == {
            "phone": 0.0,
            "seat_empty": 80.0,
        }
        assert [(e.code, e.violations) for e in stats.expert_violations(s, start, end, names=True)] == [
            ("E0001", 3),
            ("E0002", 1),
        ]
        raised = evaluate(s, WCFG, T0 + timedelta(days=1))
        s.commit()
        assert sorted(w.kind for w in raised) == [
            "concurrent_flags",
            "expert_violations",
            "false_alarm_rate",
            "site_offline",
        ]
        assert evaluate(s, WCFG, T0 + timedelta(days=1, minutes=10)) == []
        s.commit()
