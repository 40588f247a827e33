"""The agent's Windows code paths, run here on Linux (issue 13 item 4).

What these cover: the state directory (``%PROGRAMDATA%\\evalwatch``; the Linux choices too), an
event loop without ``add_signal_handler`` (as on Windows) — the handlers fall back to
``signal.signal`` and a real agent started on such a loop stops on SIGINT —, DirectShow for
``device:N``, binary-mode spool writes, the service's command line and the pywin32 service
class against stand-in pywin32 modules.  What they cannot cover (a real Windows, pywin32, the
service control manager, NTFS, DirectShow devices) is listed in docs/agent.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVarTuple

import pytest

from capture import hostos
from capture.hostos import capture_api, default_state_dir, install_stop_handlers
from capture.service import service_spec, windows_command_line
from testkit.capture import make_clip, write_config
from testkit.stubhub import AcceptingHub

pytestmark = pytest.mark.agent


# -- state directory -------------------------------------------------------------------------------


def test_state_dir_on_windows_is_programdata() -> None:
    d = default_state_dir(platform="win32", environ={"PROGRAMDATA": r"D:\ProgramData"})
    assert isinstance(d, PureWindowsPath) and d == PureWindowsPath(r"D:\ProgramData\evalwatch")
    assert str(d / "spool") == r"D:\ProgramData\evalwatch\spool"
    assert default_state_dir(platform="win32", environ={}) == PureWindowsPath(r"C:\ProgramData\evalwatch")


def test_state_dir_on_linux() -> None:
    assert default_state_dir(platform="linux", environ={}, is_root=True) == PurePosixPath(
        "/var/lib/evalwatch"
    )
    assert default_state_dir(platform="linux", environ={}, is_root=False, home="/home/ops") == PurePosixPath(
        "/home/ops/.local/state/evalwatch"
    )
    assert default_state_dir(
        platform="linux", environ={"XDG_STATE_HOME": "/x/state"}, is_root=False
    ) == PurePosixPath("/x/state/evalwatch")
    # under systemd (StateDirectory=evalwatch) the unit's directory wins, even for root
    assert default_state_dir(
        platform="linux", environ={"STATE_DIRECTORY": "/var/lib/evalwatch:/var/lib/x"}, is_root=True
    ) == PurePosixPath("/var/lib/evalwatch")


# -- signals on an event loop without add_signal_handler ----------------------------------------


_Ts = TypeVarTuple("_Ts")


class WindowsLikeLoop(asyncio.SelectorEventLoop):
    """Like Windows' event loops: no signal handlers through the loop."""

    def add_signal_handler(self, sig: int, callback: Callable[[*_Ts], object], *args: *_Ts) -> None:
        raise NotImplementedError


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_stop_handlers_fall_back_to_signal_signal(restore_signals: None) -> None:
    loop = WindowsLikeLoop()
    try:
        stop = asyncio.Event()

        async def main() -> float:
            handled = install_stop_handlers(asyncio.get_running_loop(), stop.set)
            assert handled == ["SIGINT", "SIGTERM"]  # no SIGBREAK on Linux
            t0 = time.monotonic()
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
            await asyncio.wait_for(stop.wait(), 5)
            return time.monotonic() - t0

        assert loop.run_until_complete(main()) < 3
    finally:
        loop.close()


def test_stop_handlers_off_the_main_thread_do_not_fail() -> None:
    """A Windows service runs the agent off the main thread: no handler, no error — the service
    stops it through stop_all()."""
    result: dict[str, Any] = {}

    def worker() -> None:
        loop = WindowsLikeLoop()
        try:
            stop = asyncio.Event()

            async def main() -> None:
                result["handled"] = install_stop_handlers(asyncio.get_running_loop(), stop.set)
                threading.Timer(0.1, hostos.stop_all).start()
                await asyncio.wait_for(stop.wait(), 5)
                result["stopped"] = True

            loop.run_until_complete(main())
        finally:
            loop.close()

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert result == {"handled": [], "stopped": True}


def test_agent_runs_and_stops_on_a_loop_without_add_signal_handler(
    tmp_path: Path, restore_signals: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real agent (``capture.agent.cli``) on a Windows-like loop: it used to die at start
    with NotImplementedError; now it runs until SIGINT and exits 0."""
    from capture.agent import cli

    clip = make_clip(tmp_path / "clip.mp4", seconds=2)
    hub = AcceptingHub()
    cfg = write_config(
        tmp_path / "site.yaml",
        port=hub.port,
        sites={"s1": {"r1": [("c1", str(clip))]}},
        tokens={"s1": "token-s1-xxxxxxxxxxxxxxxx"},
        spool_dir=tmp_path / "spool",
    )

    def run(coro: Any, **kw: Any) -> Any:
        with asyncio.Runner(loop_factory=WindowsLikeLoop) as runner:
            return runner.run(coro)

    monkeypatch.setattr(asyncio, "run", run)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        rc = cli(["--config", str(cfg), "--site", "s1", "--no-live", "--no-analysis", "--duration", "30"])
    finally:
        timer.cancel()  # the agent failed early: no stray SIGINT into the test run
        hub.close()
    assert rc == 0 and time.monotonic() - t0 < 15
    assert list((tmp_path / "spool").rglob("*.mp4")), "the agent recorded segments before it stopped"
    assert hub.puts, "and uploaded them"


# -- device capture -----------------------------------------------------------------------------


def test_device_capture_uses_directshow_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from capture.source import CameraSource

    opened: list[tuple[Any, ...]] = []

    class FakeCapture:
        def __init__(self, *args: Any) -> None:
            opened.append(args)

        def isOpened(self) -> bool:
            return False

        def release(self) -> None:
            pass

    fake_cv2 = types.SimpleNamespace(CAP_DSHOW=700, CAP_ANY=0, VideoCapture=FakeCapture)
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2)
    src = CameraSource(
        "device:3", width=320, height=240, fps=5, on_frame=lambda f, t: None, loop=False, label="s/r/c"
    )
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(OSError, match="cannot open capture device 3"):
        src._run_device(3)
    assert opened == [(3, 700)]
    assert capture_api(fake_cv2, "linux") == 0 and capture_api(fake_cv2, "win32") == 700


def test_spool_writes_are_binary_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.open without O_BINARY is text mode on Windows (\\n → \\r\\n): spool files must not be."""
    from storage import files

    monkeypatch.setattr(os, "O_BINARY", 0x8000, raising=False)
    flags: list[int] = []
    real_open = os.open

    def spy(path: Any, fl: int, mode: int = 0o777) -> int:
        flags.append(fl)
        return real_open(path, fl & ~0x8000, mode)

    monkeypatch.setattr(files.os, "open", spy)
    files.write_atomic(tmp_path / "x.json", b"{}\n")
    assert flags and all(f & 0x8000 for f in flags)
    assert (tmp_path / "x.json").read_bytes() == b"{}\n"


# -- the Windows service ------------------------------------------------------------------------


@pytest.fixture
def site_yaml(tmp_path: Path) -> Path:
    (tmp_path / "agent.token").write_text("token-s1-xxxxxxxxxxxxxxxx")
    return write_config(
        tmp_path / "site.yaml",
        port=8800,
        sites={"s1": {"r1": [("c1", "device:0")]}},
        tokens={"s1": "token-s1-xxxxxxxxxxxxxxxx"},
        spool_dir=tmp_path / "spool",
    )


def test_windows_service_options_and_command_line(site_yaml: Path) -> None:
    state = PureWindowsPath(r"C:\ProgramData\evalwatch")
    spec = service_spec(
        "evalwatch-agent",
        "ignored",
        ["--config", str(site_yaml), "--site", "s1", "--token-file", str(site_yaml.parent / "agent.token")],
        platform="win32",
        state_dir=state,
    )
    args = spec.agent_args
    assert args[args.index("--spool-dir") + 1] == r"C:\ProgramData\evalwatch\spool"
    assert args[args.index("--log-file") + 1] == r"C:\ProgramData\evalwatch\logs\agent.log"  # rotated
    assert args[args.index("--token-file") + 1] == str(
        site_yaml.parent / "agent.token"
    )  # no credential store
    assert spec.token_file is None
    spec.executable = r"C:\Program Files\Python311\python.exe"
    line = windows_command_line(spec)
    assert line.startswith(
        r'"C:\Program Files\Python311\python.exe" -m evalwatch agent service-run --config '
    )
    assert r"--spool-dir C:\ProgramData\evalwatch\spool" in line


def _fake_pywin32(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    calls: dict[str, list[Any]] = {"install": [], "start": [], "status": [], "dispatch": []}

    class ServiceFramework:
        def __init__(self, args: Any) -> None:
            self.args = args

        def ReportServiceStatus(self, status: int) -> None:
            calls["status"].append(status)

    util = types.SimpleNamespace(
        ServiceFramework=ServiceFramework,
        InstallService=lambda *a, **kw: calls["install"].append((a, kw)),
        StartService=lambda name: calls["start"].append(name),
        StopService=lambda name: None,
        RemoveService=lambda name: calls.setdefault("remove", []).append(name),
    )
    svc = types.SimpleNamespace(SERVICE_AUTO_START=2, SERVICE_STOP_PENDING=3)
    mgr = types.SimpleNamespace(
        Initialize=lambda: calls["dispatch"].append("init"),
        PrepareToHostSingle=lambda cls: calls["dispatch"].append(cls),
        StartServiceCtrlDispatcher=lambda: calls["dispatch"].append("dispatch"),
    )
    monkeypatch.setitem(sys.modules, "win32serviceutil", util)
    monkeypatch.setitem(sys.modules, "win32service", svc)
    monkeypatch.setitem(sys.modules, "servicemanager", mgr)
    monkeypatch.delitem(sys.modules, "capture.winservice", raising=False)
    return calls


def test_windows_service_install_and_stop_with_stand_in_pywin32(
    site_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_pywin32(monkeypatch)
    from capture import winservice

    commands: list[list[str]] = []

    def run(cmd: list[str], **kw: Any) -> types.SimpleNamespace:
        commands.append(cmd)
        return types.SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(winservice.subprocess, "run", run)
    monkeypatch.setattr(winservice, "default_state_dir", lambda: tmp_path / "ProgramData" / "evalwatch")
    spec = service_spec(
        "evalwatch-agent",
        "x",
        ["--config", str(site_yaml), "--site", "s1"],
        platform="win32",
        state_dir=PureWindowsPath(r"C:\ProgramData\evalwatch"),
    )
    winservice.install(spec.name, spec.site, spec.executable, spec.agent_args)
    ((args, kw),) = calls["install"]
    assert args == (None, "evalwatch-agent", "evalwatch site agent (s1)")
    assert kw["userName"] == r"NT AUTHORITY\LocalService" and kw["startType"] == 2
    assert kw["exeName"] == sys.executable
    assert kw["exeArgs"].startswith("-m evalwatch agent service-run --config ")
    assert calls["start"] == ["evalwatch-agent"]
    assert commands[0][:3] == ["icacls", str(tmp_path / "ProgramData" / "evalwatch"), "/grant"]
    assert commands[0][3] == "*S-1-5-19:(OI)(CI)M"
    assert (
        commands[1][:3] == ["sc.exe", "failure", "evalwatch-agent"]
        and "restart/5000/restart/5000/restart/60000" in commands[1]
    )

    # service-run: the dispatcher hosts AgentService; SvcDoRun runs the agent until SvcStop
    seen: dict[str, Any] = {}

    def agent_main(argv: list[str]) -> int:
        seen["argv"] = argv
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def main() -> None:
            install_stop_handlers(asyncio.get_running_loop(), stop.set)
            seen["running"].set()
            await asyncio.wait_for(stop.wait(), 10)

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
        return 0

    seen["running"] = threading.Event()
    assert winservice.run(["--config", "c.yaml", "--site", "s1"], agent_main) == 0
    assert calls["dispatch"] == ["init", winservice.AgentService, "dispatch"]
    svc = winservice.AgentService(["evalwatch-agent"])
    worker = threading.Thread(target=svc.SvcDoRun)
    worker.start()
    assert seen["running"].wait(10)
    svc.SvcStop()
    worker.join(10)
    assert not worker.is_alive() and seen["argv"] == ["--config", "c.yaml", "--site", "s1"]
    assert calls["status"] == [3]

    winservice.remove("evalwatch-agent")
    assert calls["remove"] == ["evalwatch-agent"]


def test_service_run_on_linux_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from evalwatch.edge import cli

    assert cli(["service-run", "--config", "x.yaml", "--site", "s1"]) == 2
    assert "Windows service manager" in capsys.readouterr().err
