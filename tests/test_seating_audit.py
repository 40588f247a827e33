"""`evalwatch seats assign --config FILE` records the seed and the result in the hub's audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evalwatch.seats import cli
from storage.db import Database
from storage.models import AuditLog

INPUT = {
    "rooms": [
        {"id": "R1", "seats": [{"id": f"A{c}", "row": 0, "col": c} for c in range(0, 6, 2)]},
        {"id": "R2", "seats": [{"id": f"B{c}", "row": 0, "col": c} for c in range(0, 6, 2)]},
    ],
    "bids": [{"id": "B1", "experts": ["e1", "e2"]}, {"id": "B2", "experts": ["e3"]}],
}


def test_seed_and_result_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "seats.yaml"
    inp.write_text(yaml.safe_dump(INPUT), encoding="utf-8")
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"storage:\n  database_url: sqlite:///{tmp_path / 'hub.db'}\nsecrets_file: null\n")
    assert cli(["assign", str(inp), "--seed", "7", "--json", "--config", str(cfg)]) == 0
    out = json.loads(capsys.readouterr().out)
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    with db.session() as s:
        rows = s.query(AuditLog).filter(AuditLog.action == "seats_assign").all()
    assert len(rows) == 1
    details = rows[0].details or {}
    assert details["seed"] == 7 and details["assignments"] == out["assignments"]
    assert rows[0].actor.startswith("cli:")

    bad = tmp_path / "bad.yaml"
    bad.write_text("storage: {database_url: 12\n", encoding="utf-8")
    assert cli(["assign", str(inp), "--seed", "7", "--config", str(bad)]) == 2
    assert "config:" in capsys.readouterr().err
