"""``evalwatch agent install-service`` / ``uninstall-service`` (issue 13 item 3).

The generated systemd unit is checked by ``systemd-analyze verify`` (Debian's ``systemd``
package; skipped, saying so, where it is not installed) and by content; the install and
uninstall steps run against a unit folder in tmp with the system commands recorded, not run
(this machine has no systemd as PID 1 and the tests must not add users).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capture import service
from capture.service import ServiceError, install_systemd, service_spec, systemd_unit, uninstall_systemd
from testkit.capture import write_config

pytestmark = pytest.mark.agent


@pytest.fixture
def site_yaml(tmp_path: Path) -> Path:
    cfg = write_config(
        tmp_path / "site.yaml",
        port=8800,
        sites={
            "s1": {"r1": [("c1", "rtsp://10.0.0.5/stream1"), ("c2", "device:0")], "r2": [("c3", "clip.mp4")]}
        },
        tokens={"s1": "token-s1-xxxxxxxxxxxxxxxx"},
        spool_dir=tmp_path / "spool",
    )
    (tmp_path / "agent.token").write_text("token-s1-xxxxxxxxxxxxxxxx\n")
    (tmp_path / "agent.token").chmod(0o600)
    return cfg


def _print_unit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from evalwatch.edge import cli

    rc = cli(["install-service", "--print", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _unit_options(text: str) -> dict[str, list[str]]:
    opts: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            opts.setdefault(k, []).append(v)
    return opts


def test_printed_unit_has_the_agents_options_and_the_service_settings(
    site_yaml: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(site_yaml.parent)  # relative paths are made absolute
    rc, out, err = _print_unit(
        [
            "--config",
            "site.yaml",
            "--site",
            "s1",
            "--room",
            "r1",
            "--token-file",
            "agent.token",
            "--hub-url",
            "https://hub.example:8800",
            "--no-live",
        ],
        capsys,
    )
    assert rc == 0, err
    o = _unit_options(out)
    assert o["User"] == ["evalwatch"] and o["Group"] == ["evalwatch"]
    assert o["Restart"] == ["on-failure"]
    assert o["StateDirectory"] == ["evalwatch"] and o["WorkingDirectory"] == ["%S/evalwatch"]
    assert o["WantedBy"] == ["multi-user.target"]
    for hardening in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
    ):
        assert hardening in out.splitlines()
    # the token is a systemd credential: root-only file, read by systemd, handed to the agent
    assert o["LoadCredential"] == [f"agent-token:{site_yaml.parent / 'agent.token'}"]
    exec_start = o["ExecStart"][0]
    assert exec_start.startswith(f"{sys.executable} -m evalwatch agent ")
    assert f"--config {site_yaml}" in exec_start
    assert "--site s1 --room r1 --hub-url https://hub.example:8800" in exec_start
    assert "--spool-dir /var/lib/evalwatch/spool" in exec_start  # the spool in the state directory
    assert "--no-live" in exec_start
    assert exec_start.endswith("--token-file=${CREDENTIALS_DIRECTORY}/agent-token")
    assert "token-s1-" not in out  # the token itself never lands in the unit
    # room r1 has a device:0 camera: video devices only, not a private /dev
    assert o["DeviceAllow"] == ["char-video4linux rw"] and o["SupplementaryGroups"] == ["video"]
    assert "PrivateDevices" not in o
    assert "PrivateTmp" not in o  # the config lives under /tmp here: a private /tmp would hide it


def test_unit_without_devices_or_tmp_paths_is_fully_sandboxed(site_yaml: Path, tmp_path: Path) -> None:
    spec = service_spec(
        "evalwatch-agent", "evalwatch", ["--config", str(site_yaml), "--site", "s1", "--room", "r2"]
    )
    spec.readable = ["/etc/evalwatch/site.yaml"]
    text = systemd_unit(spec)
    o = _unit_options(text)
    assert o["PrivateDevices"] == ["yes"] and o["PrivateTmp"] == ["yes"] and "DeviceAllow" not in o
    assert "LoadCredential" not in o and "--token-file" not in o["ExecStart"][0]


def test_exec_start_quotes_blanks_percent_and_dollar(tmp_path: Path) -> None:
    spec = service.ServiceSpec(
        name="x", site="s1", agent_args=["--config", "/etc/my site/a%b$c.yaml"], executable="/usr/bin/python3"
    )
    exec_start = _unit_options(systemd_unit(spec))["ExecStart"][0]
    assert exec_start == '/usr/bin/python3 -m evalwatch agent --config "/etc/my site/a%%b$$c.yaml"'


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package 'systemd'; make system-deps installs it)",
)
def test_generated_units_pass_systemd_analyze_verify(site_yaml: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    argvs = [
        ["--config", str(site_yaml), "--site", "s1", "--token-file", str(site_yaml.parent / "agent.token")],
        [
            "--config",
            str(site_yaml),
            "--site",
            "s1",
            "--room",
            "r2",
            "--log-file",
            str(tmp_path / "log" / "a.log"),
            "--spool-dir",
            "/srv/evalwatch spool",
            "--log-level",
            "DEBUG",
            "--no-analysis",
        ],
    ]
    for i, argv in enumerate(argvs):
        unit = units / f"evalwatch-agent-{i}.service"
        unit.write_text(systemd_unit(service_spec(unit.stem, "evalwatch", argv)))
        r = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        # verify exits 0 on unknown keys and bad values too: any line about our unit is a failure
        assert r.returncode == 0 and unit.name not in r.stderr + r.stdout, r.stderr + r.stdout
    # and it does catch a broken unit (the check is not vacuous)
    bad = units / "evalwatch-agent-bad.service"
    bad.write_text(
        systemd_unit(service_spec(bad.stem, "evalwatch", argvs[0])).replace(
            "ProtectSystem=strict", "ProtectSystem=strictest\nRestartSecs=5"
        )
    )
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert bad.name in r.stderr and "RestartSecs" in r.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--site", "s1"], "--site and --token-file go with --config"),
        (["--config", "{cfg}"], "--site is required with --config"),
        (["--config", "nope.yaml", "--site", "s1"], "nope.yaml: no such file"),
        (["--config", "{cfg}", "--site", "s9"], "--site s9: no such site"),
        (["--config", "{cfg}", "--site", "s1", "--room", "r7"], "--room r7: no such room"),
        (["--config", "{cfg}", "--site", "s1", "--duration", "5"], "--duration makes no sense"),
        (["--config", "{cfg}", "--site", "s1", "--frobnicate"], "unknown agent option(s): --frobnicate"),
        (
            ["--config", "{cfg}", "--site", "s1", "--token-file", "missing.token"],
            "missing.token: no such file",
        ),
        (["--name", "a b", "--config", "{cfg}", "--site", "s1"], "--name 'a b'"),
        (["--user", "root", "--config", "{cfg}", "--site", "s1"], "unprivileged user, not root"),
    ],
)
def test_bad_install_options_are_one_clear_line_and_exit_2(
    site_yaml: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [a.replace("{cfg}", str(site_yaml)) for a in argv]
    rc, out, err = _print_unit(argv, capsys)
    assert rc == 2 and out == ""
    assert err.startswith("evalwatch agent: ") and message in err and "Traceback" not in err


def test_install_and_uninstall_write_the_unit_and_drive_systemctl(site_yaml: Path, tmp_path: Path) -> None:
    spec = service_spec(
        "evalwatch-agent",
        "evalwatch",
        ["--config", str(site_yaml), "--site", "s1", "--spool-dir", str(tmp_path / "spool2")],
    )
    calls: list[list[str]] = []
    chowned: list[tuple[str, str]] = []
    unit_dir = tmp_path / "systemd"
    unit = install_systemd(
        spec,
        unit_dir=unit_dir,
        run=calls.append,
        user_exists=lambda u: False,
        chown=lambda p, u: chowned.append((p, u)),
    )
    assert unit == unit_dir / "evalwatch-agent.service"
    assert unit.read_text() == systemd_unit(spec) and oct(unit.stat().st_mode & 0o777) == "0o644"
    assert calls[0][0] == "useradd" and "--system" in calls[0] and calls[0][-1] == "evalwatch"
    assert calls[1:] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "evalwatch-agent.service"],
    ]
    assert (tmp_path / "spool2").is_dir() and chowned == [(str(tmp_path / "spool2"), "evalwatch")]
    calls.clear()
    uninstall_systemd("evalwatch-agent", unit_dir=unit_dir, run=calls.append)
    assert not unit.exists()
    assert calls == [
        ["systemctl", "disable", "--now", "evalwatch-agent.service"],
        ["systemctl", "daemon-reload"],
    ]
    with pytest.raises(ServiceError, match="no unit"):
        uninstall_systemd("evalwatch-agent", unit_dir=unit_dir, run=calls.append)


def test_install_without_root_says_so(
    site_yaml: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalwatch.edge import cli

    monkeypatch.setattr(service.os, "geteuid", lambda: 1000)
    assert cli(["install-service", "--config", str(site_yaml), "--site", "s1"]) == 2
    assert "needs root" in capsys.readouterr().err


def test_log_file_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--log-file: a RotatingFileHandler (10 MB x 5 in production; 300 bytes here), folder created."""
    import logging
    import logging.handlers

    from capture import hostos

    assert (hostos.LOG_MAX_BYTES, hostos.LOG_BACKUPS) == (10 * 1024 * 1024, 5)
    monkeypatch.setattr(hostos, "LOG_MAX_BYTES", 300)
    path = tmp_path / "logs" / "agent.log"
    handler = hostos.log_handler(path)
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    log = logging.getLogger("test.rotation")
    log.propagate = False
    log.addHandler(handler)
    try:
        for i in range(100):
            log.warning("line %03d of the agent's log", i)
    finally:
        log.removeHandler(handler)
        handler.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["agent.log", *(f"agent.log.{i}" for i in range(1, 6))]  # 5 old files, no more
    assert all(p.stat().st_size <= 300 for p in path.parent.iterdir())
    assert "line 099" in path.read_text()
    assert not isinstance(hostos.log_handler(None), logging.FileHandler)  # stderr: the journal


def test_an_option_added_to_the_agent_later_reaches_the_service(
    site_yaml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unit is rebuilt from the agent's own parser, so a new agent option (enrolment's, say)
    is passed on rather than dropped."""
    from capture.agent import agent_parser

    def parser():
        ap = agent_parser()  # --state-dir is the agent's own now (enrolment)
        ap.add_argument("--camera-group", action="append")
        return ap

    monkeypatch.setattr(service, "_agent_parser", parser)
    spec = service_spec(
        "evalwatch-agent",
        "evalwatch",
        [
            "--config",
            str(site_yaml),
            "--site",
            "s1",
            "--state-dir",
            "/srv/ew",
            "--camera-group",
            "a",
            "--camera-group",
            "b",
        ],
    )
    exec_start = _unit_options(systemd_unit(spec))["ExecStart"][0]
    assert "--state-dir /srv/ew " in exec_start and "--camera-group a --camera-group b" in exec_start
