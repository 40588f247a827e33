"""Log rotation (issue #17 item 5): the hub's ``hub.log_file`` and SeaweedFS's own logs stay
bounded however long they run.  The agent's ``--log-file`` is tested in test_agent_service.py
(the same handler: ``capture.hostos.log_handler``)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import httpx
import pytest
import yaml

from config import ConfigError, load_config
from storage.s3server import SeaweedPorts, SeaweedServer, free_ports
from testkit.hub import hub_process, system_config


def test_hub_log_to_file_rotates_at_the_configured_size(tmp_path: Path) -> None:
    from evalwatch.logs import log_to_file

    root = logging.getLogger()
    saved = root.handlers[:]
    path = tmp_path / "logs" / "hub.log"
    try:
        handler = log_to_file(path, max_mb=1 / 1024, backups=3)  # 1 KiB per file
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        log = logging.getLogger("evalwatch.test")
        for i in range(200):
            log.warning("line %03d site=s01 room=a camera=c1", i)
        handler.flush()
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:] = saved
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["hub.log", "hub.log.1", "hub.log.2", "hub.log.3"]  # 3 old files, no more
    assert all(p.stat().st_size <= 1024 for p in path.parent.iterdir())
    assert "line 199" in path.read_text()
    assert "level=WARNING logger=evalwatch.test" in path.read_text()  # the hub's line format


def test_hub_log_settings_are_validated_and_relative_to_the_config(tmp_path: Path) -> None:
    doc = system_config(tmp_path, {"s01": ["room_a"]}, users=[])
    doc["hub"]["log_file"] = "logs/hub.log"
    cfg_path = tmp_path / "evalwatch.yaml"
    cfg_path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    cfg = load_config(str(cfg_path))
    assert cfg.hub.log_file == str(tmp_path / "logs" / "hub.log")
    assert (cfg.hub.log_max_mb, cfg.hub.log_backups) == (10.0, 5)
    assert (cfg.storage.s3.embedded_server.log_max_mb, cfg.storage.s3.embedded_server.log_files) == (10, 5)
    for section, field, bad in (("hub", "log_max_mb", 0), ("hub", "log_backups", 0)):
        doc2 = yaml.safe_load(cfg_path.read_text())
        doc2[section][field] = bad
        cfg_path.write_text(yaml.safe_dump(doc2), encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_config(str(cfg_path))
        assert f"{section}.{field}" in str(e.value)
    doc3 = yaml.safe_load(cfg_path.read_text())
    doc3["hub"]["log_backups"] = 5
    doc3["storage"]["s3"]["embedded_server"]["log_files"] = 0
    cfg_path.write_text(yaml.safe_dump(doc3), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg_path))
    assert "storage.s3.embedded_server.log_files" in str(e.value)


def test_hub_process_logs_to_its_rotated_file(tmp_path: Path) -> None:
    """``evalwatch hub`` with ``hub.log_file`` at 2 KiB x 2: its start-up alone (S3 server,
    migrations, analysis) fills several files; only the newest three remain, each <= 2 KiB,
    and nothing of the log goes to stderr."""
    doc = system_config(tmp_path, {"s01": ["room_a"]}, users=[])
    doc["hub"].update(log_file="logs/hub.log", log_max_mb=2 / 1024, log_backups=2)
    cfg = tmp_path / "evalwatch.yaml"
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    logs = tmp_path / "logs"
    with hub_process(cfg, cwd=tmp_path, log=tmp_path / "hub.out", ready_timeout=120):
        pass
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["hub.log", "hub.log.1", "hub.log.2"], names
    assert all(p.stat().st_size <= 2048 for p in logs.iterdir()), [p.stat().st_size for p in logs.iterdir()]
    text = "".join(p.read_text() for p in logs.iterdir())
    assert "logger=evalwatch." in text
    assert "logger=evalwatch." not in (tmp_path / "hub.out").read_text(errors="replace")


def _server(root: Path, *, log_max_mb: int, log_files: int) -> SeaweedServer:
    return SeaweedServer(root, "soak-access", "soak-secret-0123456789", SeaweedPorts(*free_ports(8)),
                         grace_s=3.0, die_with_parent=True, log_max_mb=log_max_mb, log_files=log_files)


def test_seaweedfs_logs_go_to_a_bounded_log_dir(tmp_path: Path) -> None:
    """Real ``weed``: glog's files in ``<dir>/logs`` (``-logdir``), not in ``weed.log``; with
    ``log_files: 1`` the files of earlier runs are deleted (``-log_max_files``), so restarts do
    not pile them up; an oversized ``weed.log`` is rotated at start."""
    (tmp_path / "weed.log").write_bytes(b"x" * (1024 * 1024 + 1))  # above log_max_mb=1
    for _ in range(3):
        server = _server(tmp_path, log_max_mb=1, log_files=1)
        server.start()
        try:
            with httpx.Client() as c:
                c.get(f"http://{server.endpoint}/")  # some S3 traffic
        finally:
            server.stop()
        assert not server.running
    assert (tmp_path / "weed.log.1").stat().st_size == 1024 * 1024 + 1
    stdout_log = (tmp_path / "weed.log").read_text(errors="replace")
    assert "Start Seaweed Master" not in stdout_log  # INFO lines: glog's files only
    files = [p.name for p in (tmp_path / "logs").iterdir() if not p.is_symlink()]
    infos = [n for n in files if ".log.INFO." in n]
    assert len(infos) == 1, files  # three runs, one kept (log_files: 1)
    # (its content: glog flushes every 30 s, and a server killed sooner leaves only the header)
    assert next((tmp_path / "logs").glob("*.log.INFO.*")).read_text().startswith("Log file created at")
    assert all((tmp_path / "logs" / n).stat().st_size <= 1024 * 1024 for n in files)
    argv = server._argv(Path("weed"), tmp_path / "identities.json")
    assert argv[1:6] == [f"-logdir={tmp_path / 'logs'}", "-log_max_size_mb=1", "-log_max_files=1",
                         "-logtostderr=false", "-alsologtostderr=false"]
