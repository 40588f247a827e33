"""Issue 15 items 1, 2, 6: the expert register (CSV/XLSX import, bad rows by line), experts on
incidents (REST and WebSocket, names by role), credit records (confirm / dismiss, revisions,
statement, appeal), their CSV/XLSX/signed-JSON exports, and the report PDF's embedded font."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dashboard.services import Services
from evalwatch import experts as experts_cmd
from sessions import credit
from sessions.credit_models import CreditRevision, Expert
from sessions.experts import id_matches, import_experts, normalise_id_number, parse_file
from storage.incident import EventLive
from storage.models import AuditLog, Segment
from testkit.dashboard import (
    add_event,
    asgi_login,
    dashboard_in_chromium,
    make_config,
    make_services,
    ui_login,
)

pytestmark = pytest.mark.credit

BASE = "http://testserver"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(i: int) -> str:
    """A valid 18-character resident ID number (correct check character)."""
    body = f"110105{19600101 + i:08d}{i % 1000:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS, strict=True)) % 11]


HEADER = ["专家编号", "姓名", "身份证号", "手机"]
# (line in the file, row, the problem's words): the header is line 1, good rows follow
BAD = {
    20: (["E0019x!", "坏编号", "", "13800000000"], "code 'E0019x!' must be letters"),
    50: (["E9050", "", "", ""], "name is empty"),
    90: (["E9090", "身份证错", "110105196001010012", ""], "check character does not match"),
    120: (["E9120", "电话错", "", "call me"], "phone 'call me' is not a phone number"),
    150: (["E0001", "重复", "", ""], "code 'E0001' already on line 2"),
}


def rows_200() -> list[list[str]]:
    """The header, 200 good experts E0001..E0200 and the BAD rows at their lines."""
    good = iter([[f"E{i:04d}", f"专家{i}", id_number(i), f"1380000{i:04d}"] for i in range(1, 201)])
    out = [HEADER]
    for line in range(2, 202 + len(BAD)):
        out.append(BAD[line][0] if line in BAD else next(good))
    assert next(good, None) is None
    return out


def csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode("utf-8-sig")


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append([int(c) if c.isdigit() and len(c) == 11 else c for c in r])  # phones as numbers
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def check_report(errors: list[tuple[int, str]]) -> None:
    assert [n for n, _ in errors] == sorted(BAD), errors
    for n, problem in errors:
        assert BAD[n][1] in problem, (n, problem)


def test_import_200_experts_csv_cli_then_xlsx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from storage.db import Database

    rows = rows_200()
    cfg_file = tmp_path / "evalwatch.yaml"
    url = f"sqlite:///{tmp_path}/hub.db"
    cfg_file.write_text(
        json.dumps({"storage": {"database_url": url, "data_dir": str(tmp_path)}, "secrets_file": None})
    )
    (tmp_path / "experts.csv").write_bytes(csv_bytes(rows))
    code = experts_cmd.cli(["import", str(tmp_path / "experts.csv"), "--config", str(cfg_file)])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)  # some rows rejected, the good ones imported
    assert "imported 200 experts (200 new, 0 updated); 5 rows rejected" in out
    assert "experts.csv: line 90: id_number check character does not match" in err
    assert "Traceback" not in err
    check_report([(int(x.split(": line ")[1].split(":")[0]), x) for x in err.splitlines()])

    db = Database(url)
    with db.session() as s:
        e7 = s.scalars(select(Expert).where(Expert.code == "E0007")).one()
        assert e7.name == "专家7" and e7.phone == "13800000007"
        assert id_number(7) not in (e7.id_hash or "") and id_matches(id_number(7), e7.id_hash)
        assert not id_matches(id_number(8), e7.id_hash)
        assert s.scalars(select(Expert).where(Expert.code == "E9120")).first() is None

    # the same register as XLSX, phones as numeric cells: every good row updates, same bad lines
    res = asyncio.run(import_experts(db, "experts.xlsx", xlsx_bytes(rows), "admin"))
    assert (res.created, res.updated) == (0, 200)
    check_report(res.errors)
    with db.session() as s:
        assert s.scalars(select(Expert.phone).where(Expert.code == "E0200")).one() == "13800000200"
        audit = list(s.scalars(select(AuditLog).where(AuditLog.action == "experts_import")))
        assert [a.details["updated"] for a in audit if a.details] == [0, 200]
    db.dispose()

    # a file that is not an export at all: one line naming the problem, exit 2
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n", encoding="utf-8")
    assert experts_cmd.cli(["import", str(tmp_path / "bad.csv"), "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err
    assert "line 1: the header has no code / name column" in err and "Traceback" not in err
    (tmp_path / "bad.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    assert experts_cmd.cli(["import", str(tmp_path / "bad.xlsx"), "--config", str(cfg_file)]) == 2
    assert "not a readable XLSX workbook" in capsys.readouterr().err
    with pytest.raises(ValueError, match="18 characters"):
        normalise_id_number("12345")
    # a title row above the header (as exports have): line numbers stay the sheet's
    titled = xlsx_bytes([["2026年第3批专家抽取结果"], [], *rows[:3]])
    assert [n for n, _ in parse_file("t.xlsx", titled)] == [4, 5]


# ---------------------------------------------------------------------------------- API flow


@pytest.fixture
def services(tmp_path: Path) -> Services:
    cfg = make_config(sites=1, rooms=3)
    cfg.storage.data_dir = str(tmp_path / "data")
    return make_services(tmp_path, cfg=cfg)


login = asgi_login  # a client of the in-process app, logged in as a role


def live(eid: int, seat: str = "s1") -> EventLive:
    return EventLive(
        id=eid,
        uid=f"u{eid}",
        site="site1",
        room="room1",
        camera="cam1",
        seat=seat,
        rule="phone",
        kind=None,
        started_at=datetime.now(UTC),
        ended_at=None,
        confidence=0.8,
        footage_start=None,
        footage_end=None,
        status="new",
        phase="opened",
    )


async def test_experts_on_events_and_credit_records(app: Any, services: Services) -> None:
    admin, sup, aud, obs = [await login(app, r) for r in ("admin", "supervisor", "auditor", "observer")]
    # the register: admin only; bad input is a 422 naming the field
    assert (await sup.post("/api/experts", json={"code": "E1", "name": "x"})).status_code == 403
    r = await admin.post("/api/experts", json={"code": "E0001", "name": "张三", "id_number": "123"})
    assert r.status_code == 422 and "id_number must be 18 characters" in r.json()["detail"]
    r = await admin.post(
        "/api/experts",
        json={"code": "E0001", "name": "张三", "id_number": id_number(1), "phone": "13800000001"},
    )
    assert r.status_code == 201 and r.json()["has_id_number"] and "id_number" not in r.json()
    assert (await admin.post("/api/experts", json={"code": "E0001", "name": "again"})).status_code == 409
    r = await admin.post(
        "/api/experts/import?filename=more.csv",
        content=csv_bytes(
            [HEADER, ["E0002", "李四", "", ""], ["", "无编号", "", ""], ["E0003", "赵六", "", ""]]
        ),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 2, "updated": 0, "errors": [{"line": 3, "problem": "code is empty"}]}
    r = await admin.post("/api/experts/import?filename=x.csv", content=b"a,b\n")
    assert r.status_code == 422 and r.json()["code"] == "err.import_file"
    r = await admin.patch("/api/experts/E0002", json={"phone": "13900000002"})
    assert r.status_code == 200 and r.json()["phone"] == "13900000002"
    r = await admin.put("/api/experts/E0002/photo", content=b"GIF89a not a photo")
    assert r.status_code == 422 and "JPEG or PNG" in r.json()["detail"]
    jpeg = b"\xff\xd8\xff\xe0" + b"0" * 100
    r = await admin.put("/api/experts/E0002/photo", content=jpeg)
    assert r.status_code == 200 and r.json()["photo_key"] == "experts/E0002.jpg"
    assert (await aud.get("/api/experts/E0002/photo")).content == jpeg
    assert (await obs.get("/api/experts/E0002/photo")).status_code == 403
    assert (await aud.get("/api/experts/E0001/photo")).status_code == 404

    # a session seats E0001 on site1/room1/s1 (by code; the name comes from the register)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    spec = {
        "code": "ZB-CREDIT-1",
        "project": "信用测试",
        "bids": ["B1"],
        "planned_start": t0.isoformat(),
        "planned_end": (t0 + timedelta(hours=2)).isoformat(),
        "rooms": [
            {"site": "site1", "room": "room1"},
            {"site": "site1", "room": "room2"},
            {"site": "site1", "room": "room3"},
        ],
        "seats": [
            {"expert_code": "E0001", "bid": "B1", "room": "site1/room1", "seat": "s1"},
            {"expert_code": "E0002", "expert": "李四", "bid": "B1", "room": "site1/room2", "seat": "s1"},
            {"expert": "E0003", "bid": "B1", "room": "site1/room3", "seat": "s1"},  # a register code: linked
        ],
    }
    bad = {
        **spec,
        "code": "ZB-X",
        "seats": [{"expert_code": "E404", "bid": "B1", "room": "site1/room1", "seat": "s1"}],
    }
    r = await sup.post("/api/sessions", json=bad)
    assert r.status_code == 422 and "E404 not in the expert register" in r.json()["detail"]
    r = await sup.post("/api/sessions", json=spec)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert (await sup.post(f"/api/sessions/{sid}/start")).status_code == 200
    seats = (await obs.get(f"/api/sessions/{sid}")).json()["seats"]
    assert [(x["expert"], x["expert_code"]) for x in seats] == [
        ("E0001", "E0001"),
        ("E0002", "E0002"),
        ("E0003", "E0003"),
    ]
    assert "李四" not in (await obs.get("/api/sessions")).text
    assert "李四" in (await aud.get(f"/api/sessions/{sid}")).text

    eid = add_event(services.db, snapshot_key="site1/room1/cam1/snap.jpg")
    other = add_event(services.db, seat=None, rule="extra_person")
    with services.db.session() as s:  # a segment covering the event: its chain position is evidence
        now = datetime.now(UTC)
        s.add(
            Segment(
                site="site1",
                room="room1",
                camera="cam1",
                start=now - timedelta(seconds=5),
                end=now + timedelta(seconds=5),
                key="site1/room1/cam1/seg7.mp4",
                sha256="a" * 64,
                size=10,
                seq=7,
                prev_hash="0" * 64,
                link_hash="b" * 64,
            )
        )
        s.commit()

    # REST: every role gets the code, only non-observers the name
    for c, name in ((sup, "张三"), (aud, "张三"), (obs, None)):
        items = {e["id"]: e for e in (await c.get("/api/events")).json()["items"]}
        assert items[eid]["expert_code"] == "E0001" and items[eid].get("expert_name") == name
        assert items[other]["expert_code"] is None
        one = (await c.get(f"/api/events/{eid}")).json()
        assert one["expert_code"] == "E0001" and one.get("expert_name") == name

    # WebSocket fan-out: the live update carries the expert; the observer's copy has no name
    hub = app.state.dash.alerts
    assert services.bus is not None
    c_obs, c_sup = hub.connect("obs", "observer"), hub.connect("sup", "supervisor")
    services.bus.publish(live(eid))
    m_obs = (await asyncio.wait_for(c_obs.queue.get(), 3))["event"]
    m_sup = (await asyncio.wait_for(c_sup.queue.get(), 3))["event"]
    assert m_sup["expert_code"] == m_obs["expert_code"] == "E0001"
    assert m_sup["expert_name"] == "张三" and "expert_name" not in m_obs
    hub.disconnect(c_obs)
    hub.disconnect(c_sup)

    # judging: observers and auditors cannot; a violation needs a known category
    for c in (obs, aud):
        r = await c.post(f"/api/events/{eid}/credit", json={"decision": "violation", "category": "使用手机"})
        assert r.status_code == 403
    r = await sup.post(f"/api/events/{eid}/credit", json={"decision": "violation"})
    assert r.status_code == 422 and r.json()["code"] == "err.credit_category"
    r = await sup.post(f"/api/events/{eid}/credit", json={"decision": "violation", "category": "打瞌睡"})
    assert r.status_code == 422 and "unknown category" in r.json()["detail"]
    assert (await sup.post("/api/events/99999/credit", json={"decision": "dismissed"})).status_code == 404
    r = await sup.post(
        f"/api/events/{eid}/credit",
        json={"decision": "violation", "category": "使用手机", "note": "评标中使用手机"},
    )
    assert r.status_code == 200, r.text
    rec = r.json()
    assert (rec["expert_code"], rec["expert_name"], rec["decision"]) == ("E0001", "张三", "violation")
    ev = rec["evidence"]
    assert ev["snapshot_key"] == "site1/room1/cam1/snap.jpg" and ev["camera"] == "site1/room1/cam1"
    assert [(g["seq"], g["link_hash"]) for g in ev["segments"]] == [(7, "b" * 64)]
    r = await sup.post(f"/api/events/{other}/credit", json={"decision": "dismissed", "note": "误报"})
    assert r.status_code == 200 and r.json()["expert_code"] is None

    # the trail: statement, appeal, its decision, a revision — each a new row, none changed
    rid = rec["id"]
    steps = [
        ({"statement": "手机是计算器"}, "statement"),
        ({"appeal": "open", "reason": "专家申诉"}, "appeal"),
        ({"appeal": "overturned", "reason": "复核：确为计算器"}, "appeal_decision"),
        ({"decision": "violation", "category": "其他", "reason": "录像复查改判"}, "revise"),
        ({"note": '=HYPERLINK("http://x")'}, "revise"),
    ]
    for body, action in steps:
        r = await sup.post(f"/api/credit/{rid}/revise", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["revisions"][-1]["action"] == action
    r = await sup.post(f"/api/credit/{rid}/revise", json={"category": "其他"})
    assert r.status_code == 409 and r.json()["code"] == "err.credit_unchanged"
    r = await sup.post(f"/api/credit/{rid}/revise", json={"appeal": "upheld"})
    assert r.status_code == 409  # no appeal open
    assert (await aud.post(f"/api/credit/{rid}/revise", json={"note": "x"})).status_code == 403
    full = (await aud.get(f"/api/credit/{rid}")).json()
    assert [(v["rev"], v["action"], v["decision"]) for v in full["revisions"]] == [
        (1, "confirm", "violation"),
        (2, "statement", "violation"),
        (3, "appeal", "violation"),
        (4, "appeal_decision", "dismissed"),
        (5, "revise", "violation"),
        (6, "revise", "violation"),
    ]
    assert full["revisions"][3]["actor"] == "sup" and full["revisions"][3]["changed"] == [
        "decision",
        "appeal",
    ]
    assert (full["decision"], full["category"], full["statement"]) == ("violation", "其他", "手机是计算器")
    with services.db.session() as s:
        first = s.scalars(
            select(CreditRevision).where(CreditRevision.record_id == rid, CreditRevision.rev == 1)
        ).one()
        assert (first.category, first.note, first.decision) == ("使用手机", "评标中使用手机", "violation")
        actions = [a.action for a in s.scalars(select(AuditLog).where(AuditLog.action.like("credit_%")))]
    assert actions[:3] == ["credit_confirm", "credit_dismiss", "credit_statement"]

    # the expert page and the lists: observers see codes, never names or phones
    page = (await sup.get("/api/experts/E0001")).json()
    assert page["expert"]["name"] == "张三" and page["expert"]["violations"] == 1
    assert [x["id"] for x in page["records"]] == [rid]
    page_o = (await obs.get("/api/experts/E0001")).json()
    assert page_o["expert"]["name"] is None and page_o["expert"]["phone"] is None
    assert page_o["records"][0]["expert_name"] is None
    assert "张三" not in (await obs.get("/api/experts")).text
    assert "张三" not in (await obs.get("/api/credit")).text
    assert "张三" in (await aud.get("/api/credit?decision=violation")).text
    assert (await obs.get("/api/experts/NOPE")).status_code == 404
    with services.db.session() as s:
        viewed = {a.action for a in s.scalars(select(AuditLog).where(AuditLog.actor == "obs"))}
    assert {"expert_list", "expert_view", "credit_list"} <= viewed

    # exports: CSV and XLSX (observers' without names), the signed feed (not for observers)
    r = await sup.get("/api/credit/export?format=csv&decision=violation")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [(x["expert_code"], x["expert_name"], x["category"]) for x in table] == [("E0001", "张三", "其他")]
    assert table[0]["segments"] == f"7:{'b' * 64}" and table[0]["revisions"] == "6"
    assert table[0]["note"] == '\'=HYPERLINK("http://x")'  # shown as text, not run as a formula
    r = await obs.get("/api/credit/export?format=csv")
    assert r.status_code == 200 and "张三" not in r.content.decode("utf-8-sig")
    assert "expert_name" not in r.content.decode("utf-8-sig").splitlines()[0]
    r = await aud.get("/api/credit/export?format=xlsx")
    assert r.status_code == 200
    import openpyxl

    ws = openpyxl.load_workbook(io.BytesIO(r.content)).worksheets[0]
    sheet = [[c.value for c in row] for row in ws.iter_rows()]
    head = sheet[0]
    assert len(sheet) == 3 and {sheet[1][head.index("decision")], sheet[2][head.index("decision")]} == {
        "violation",
        "dismissed",
    }
    assert "张三" in [row[head.index("expert_name")] for row in sheet[1:]]
    assert (await obs.get("/api/credit/feed")).status_code == 403
    r = await aud.get("/api/credit/feed")
    assert r.status_code == 200
    doc = r.json()
    pem = (await aud.get("/api/sessions/public-key")).text
    assert credit.verify_feed(doc, pem)
    assert [x["expert_code"] for x in doc["feed"]["records"]] == ["E0001"]
    doc["feed"]["records"][0]["category"] = "使用手机"
    assert not credit.verify_feed(doc, pem)
    from sessions.signing import HubKey

    assert not credit.verify_feed(r.json(), HubKey.generate().public_pem())
    with services.db.session() as s:
        exports = [a.details for a in s.scalars(select(AuditLog).where(AuditLog.action == "credit_export"))]
    assert [d["format"] for d in exports if d] == ["csv", "csv", "xlsx", "feed"]
    for c in (admin, sup, aud, obs):
        await c.aclose()


# ---------------------------------------------------------------------------------- report PDF


def test_report_pdf_embeds_its_font_and_lists_violations(tmp_path: Path) -> None:
    import pypdf
    from pypdf.generic import DictionaryObject

    from sessions.lifecycle import SeatRow, SessionInfo
    from sessions.report import FONT_NAME, ReportData, render_pdf
    from storage.common import CameraId

    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    info = SessionInfo(
        id=1,
        code="ZB-2026-009",
        project="市政道路改造工程评标",
        bids=["B1"],
        planned_start=t0,
        planned_end=t0 + timedelta(hours=1),
        status="running",
        seating_seed=None,
        created_at=t0,
        created_by="sup",
        started_at=t0,
        started_by="sup",
        closed_at=None,
        closed_by=None,
        key_id=None,
        public_key_pem=None,
        retention=None,
        cameras=[CameraId("s", "r", "c")],
        seats=[SeatRow(site="s", room="r", seat="S1", expert="张三", bid="B1", expert_code="E0001")],
        heads=[],
    )
    viol = credit.CreditRecordOut(
        id=1,
        event_id=5,
        expert_code="E0001",
        session_id=1,
        site="s",
        room="r",
        camera="c",
        seat="S1",
        rule="phone",
        occurred_at=t0 + timedelta(minutes=5),
        decision="violation",
        category="使用手机",
        note="评标中使用手机",
        statement=None,
        appeal=None,
        evidence=None,
        created_at=t0,
        created_by="sup",
        updated_at=t0,
        updated_by="sup",
    )
    data = ReportData(
        session=info,
        tz="Asia/Shanghai",
        generated_at=t0,
        window=(t0, t0 + timedelta(hours=1)),
        rooms=[{"site": "s", "room": "r", "name": "第一评标室", "cameras": ["c"], "seats": info.seats}],
        coverage=[],
        events=[
            {
                "id": 5,
                "started_at": t0 + timedelta(minutes=5),
                "ended_at": None,
                "site": "s",
                "room": "r",
                "camera": "c",
                "seat": "S1",
                "rule": "phone",
                "kind": None,
                "confidence": 0.9,
                "status": "resolved",
                "resolved_by": "监督员甲",
                "acknowledged_by": None,
                "note": "已提醒",
                "snapshot_b64": None,
            }
        ],
        violations=[viol],
    )
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(render_pdf(data, "zh"))
    reader = pypdf.PdfReader(str(pdf))
    text = "\n".join(p.extract_text() for p in reader.pages)
    for s in ("评标现场视频监督报告", "E0001", "确认的违规行为", "使用手机", "评标中使用手机", "第一评标室"):
        assert s in text, s
    fonts = []
    for page in reader.pages:
        resources = page["/Resources"]
        assert isinstance(resources, DictionaryObject)
        page_fonts = resources["/Font"]
        assert isinstance(page_fonts, DictionaryObject)
        for f in page_fonts.values():
            f = f.get_object()
            desc = f["/DescendantFonts"][0].get_object() if "/DescendantFonts" in f else f
            fd = desc.get("/FontDescriptor")
            fonts.append((str(f["/BaseFont"]), fd is not None and "/FontFile2" in fd.get_object()))
    assert fonts and all(emb for _n, emb in fonts), fonts
    assert all(FONT_NAME in n for n, _e in fonts), fonts
    pdffonts = shutil.which("pdffonts")
    if pdffonts is None:
        pytest.fail("pdffonts (Debian poppler-utils) is missing: make system-deps installs it")
    out = subprocess.run([pdffonts, str(pdf)], capture_output=True, text=True, check=True).stdout
    head, _rule, *lines = out.splitlines()
    col = head.index("emb")  # the "emb" column of every font row must say yes
    assert len(lines) == len(set(fonts)) and all(line[col : col + 3] == "yes" for line in lines), out


# ---------------------------------------------------------------------------------- browser


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
async def test_experts_page_in_chromium(tmp_path: Path, services: Services) -> None:
    """Admin imports a CSV on the page; a supervisor confirms an alert from the alert list; the
    expert page shows the record; an observer's page shows codes, not names."""

    csv_file = tmp_path / "drawn.csv"
    csv_file.write_bytes(
        csv_bytes([HEADER, ["E0001", "张三", id_number(1), "13800000001"], ["E0002", "", "", ""]])
    )
    async with dashboard_in_chromium(services, 1300, 900) as b:
        page, url, errors = b.page, b.url, b.errors

        async def login(role: str) -> None:
            await ui_login(page, url, role)

        await login("admin")
        await page.goto(url + "/#experts")
        # an empty register says so and how it is filled, not just an empty table
        await page.wait_for_selector("#ex-panel p.empty")
        assert "CSV/XLSX" in await page.inner_text("#ex-panel p.empty")
        await page.set_input_files("#ex-file", str(csv_file))
        await page.click("#ex-import-btn")
        await page.wait_for_selector(".import-errors li")
        assert "name is empty" in await page.inner_text("#ex-result")
        await page.wait_for_selector("table.experts a")
        assert "张三" in await page.inner_text("#ex-panel")
        assert await page.locator("#ex-panel p.empty").count() == 0

        with services.db.session() as s:  # E0001 sits on site1/room1/s1 of a running session
            from sessions.models import EvalSession, SessionSeat

            now = datetime.now(UTC)
            row = EvalSession(
                code="ZB-B",
                project="p",
                bids=["B1"],
                planned_start=now,
                planned_end=now,
                status="running",
                created_by="sup",
                started_at=now - timedelta(seconds=5),
            )
            s.add(row)
            s.flush()
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
            s.commit()
        eid = add_event(services.db)

        await login("supervisor")
        await page.goto(url + "/#alerts")
        await page.wait_for_selector(f"tr[data-event-id='{eid}'] .expert")
        assert "E0001 张三" in await page.inner_text(f"tr[data-event-id='{eid}'] .expert")
        await page.click(f"tr[data-event-id='{eid}'] button.judge")
        await page.wait_for_selector("#cj-category")
        await page.select_option("#cj-category", "离开座位")
        await page.fill("#cj-note", "离席十分钟")
        await page.click("form.judge button")
        await page.wait_for_selector(".credit-record")
        text = await page.inner_text("#ex-panel")
        assert "E0001 张三" in text and "离开座位" in text and "离席十分钟" in text

        await login("observer")
        await page.goto(url + "/#experts/E0001")
        await page.wait_for_selector(".credit-record")
        text = await page.inner_text("#ex-panel")
        assert "E0001" in text and "离开座位" in text and "张三" not in text
        await page.goto(url + "/#experts")
        await page.wait_for_selector("table.experts a")
        assert "张三" not in await page.inner_text("#ex-panel")
    assert not errors, errors


# ---------------------------------------------------------------------------------- PostgreSQL


async def test_credit_queries_on_each_database(database: Any) -> None:
    """The register, the seat lookup, judging, revisions and the violation count on SQLite and a
    real PostgreSQL (the ``database`` fixture runs both)."""
    from dashboard.routes.experts import _violations
    from sessions.experts import event_experts
    from sessions.models import EvalSession, SessionSeat
    from storage.models import EventRow

    res = await import_experts(database, "x.csv", csv_bytes([HEADER, ["E1", "王五", id_number(3), ""]]), "t")
    assert (res.created, res.errors) == (1, [])
    now = datetime.now(UTC)

    def setup(s: Any) -> int:
        row = EvalSession(
            code="ZB-PG",
            project="p",
            bids=["B1"],
            planned_start=now,
            planned_end=now,
            status="running",
            created_by="t",
            started_at=now - timedelta(minutes=1),
        )
        s.add(row)
        s.flush()
        s.add(
            SessionSeat(
                session_id=row.id, site="a", room="r", seat="S1", expert="王五", bid="B1", expert_code="E1"
            )
        )
        e = EventRow(site="a", room="r", camera="c", seat="S1", rule="phone", started_at=now, confidence=0.9)
        s.add(e)
        s.flush()
        return int(e.id)

    eid = await database.run(setup)

    def judge(s: Any) -> int:
        assert event_experts(s, [s.get(EventRow, eid)])[eid].name == "王五"
        rec = credit.judge(
            s,
            eid,
            decision="violation",
            category="使用手机",
            note="n",
            categories=["使用手机"],
            actor="sup",
            role="supervisor",
        )
        credit.revise(s, rec.id, actor="sup", role="supervisor", statement="说明", reason=None)
        return int(rec.id)

    rid = await database.run(judge)
    recs = await database.run(lambda s: credit.records(s, expert_code="E1", names=True))
    assert [(r.id, r.expert_name, len(r.revisions), r.statement) for r in recs] == [(rid, "王五", 2, "说明")]
    assert await database.run(_violations) == {"E1": 1}
    await database.run(
        lambda s: credit.revise(s, rid, actor="sup", role="supervisor", decision="dismissed", reason="复核")
    )
    assert await database.run(_violations) == {}
