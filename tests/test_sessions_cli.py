"""``evalwatch session`` command line: create/start/close/show/list/public-key, exit codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_sessions_support import cfg_dict, spec_dict, write_cfg

from evalwatch.session import cli
from sessions.signing import key_id


async def _run(argv: list[str]) -> int:
    return await asyncio.to_thread(cli, argv)


async def test_session_cli(unique_site: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = unique_site
    cfg = str(write_cfg(tmp_path / "evalwatch.yaml", cfg_dict(site, tmp_path)))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict(site)), encoding="utf-8")
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("code: X\nproject: p\nbids: [B1]\nplanned_start: 2026-03-02T09:00:00+08:00\n")

    assert await _run(["create", "--config", cfg, str(spec)]) == 0
    assert "created session 1 ZB-2026-001 (scheduled)" in capsys.readouterr().out
    for argv, msg in (
        (["create", "--config", cfg, str(bad_spec)], "planned_end: Field required"),
        (["create", "--config", cfg, str(tmp_path / "none.yaml")], "cannot read"),
        (["create", "--config", cfg, str(spec)], "already exists"),
        (["close", "--config", cfg, "1"], "only a running session can close"),
        (["start", "--config", cfg, "nope"], "no session 'nope'"),
        (["start", "--config", str(tmp_path / "missing.yaml"), "1"], "config error"),
        (["frobnicate"], "invalid choice"),
    ):
        assert await _run(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (argv, err)

    assert await _run(["start", "--config", cfg, "ZB-2026-001"]) == 0
    assert "running since" in capsys.readouterr().out
    assert await _run(["close", "--config", cfg, "1"]) == 0
    out = capsys.readouterr().out
    assert "closed" in out and "NOT enforced" in out  # no S3 reachable: retention not applied
    assert await _run(["show", "--config", cfg, "1"]) == 0
    assert "seal     OK" in capsys.readouterr().out
    assert await _run(["show", "--config", cfg, "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["seal_problems"] == [] and len(shown["heads"]) == 3
    assert await _run(["list", "--config", cfg, "--status", "closed"]) == 0
    assert "ZB-2026-001" in capsys.readouterr().out
    pem = tmp_path / "hub.pem"
    assert await _run(["public-key", "--config", cfg, "-o", str(pem)]) == 0
    assert key_id(pem.read_text()) == shown["key_id"]
    assert await _run(["public-key", "--config", cfg]) == 0
    assert "BEGIN PUBLIC KEY" in capsys.readouterr().out
