"""What differs between the room PC's operating systems (Linux, Windows) for the site agent.

* :func:`default_state_dir` — where an agent keeps its state (spool, camera list, logs) when
  nothing says otherwise: ``%PROGRAMDATA%\\evalwatch`` on Windows; on Linux ``$STATE_DIRECTORY``
  (systemd sets it from the unit's ``StateDirectory=``), ``/var/lib/evalwatch`` for root, else
  ``$XDG_STATE_HOME/evalwatch`` (``~/.local/state/evalwatch``).
* :func:`install_stop_handlers` — SIGINT/SIGTERM (and Ctrl-Break on Windows) stop the agent.
  Windows event loops have no ``loop.add_signal_handler`` (``NotImplementedError``): there the
  handlers go through ``signal.signal`` and hand the stop to the loop with
  ``call_soon_threadsafe`` (the proactor loop wakes up on a signal).
* :func:`capture_api` — the OpenCV capture backend for ``device:N`` sources: DirectShow
  (``cv2.CAP_DSHOW``) on Windows, OpenCV's default elsewhere (V4L2 on Linux).

* :func:`has_display` — whether the agent can open a window on the room's display: ``DISPLAY``
  or ``WAYLAND_DISPLAY`` on Linux; on Windows a desktop session (a service runs in session 0,
  which has none the room can see).
* :func:`tts_command` — the system's text-to-speech for a room notice: ``espeak-ng`` / ``espeak``
  / ``spd-say`` on Linux, SAPI through PowerShell (``System.Speech``) on Windows; ``None`` when
  there is none.

Every function takes the platform as an argument (default: this machine's), so the Windows
paths are exercised by the tests on Linux.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any

log = logging.getLogger(__name__)

APP = "evalwatch"


def is_windows(platform: str | None = None) -> bool:
    return (platform or sys.platform) == "win32"


def default_state_dir(
    *,
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    is_root: bool | None = None,
    home: str | None = None,
) -> PurePath:
    """The agent's state directory on this (or the given) platform; see the module docstring.

    Returns a ``PureWindowsPath`` for Windows and a ``PurePosixPath`` otherwise (``Path(...)``
    of it on the machine itself)."""
    env = os.environ if environ is None else environ
    if is_windows(platform):
        base = env.get("PROGRAMDATA") or env.get("ALLUSERSPROFILE") or r"C:\ProgramData"
        return PureWindowsPath(base) / APP
    if env.get("STATE_DIRECTORY"):
        # systemd: "StateDirectory=evalwatch" → STATE_DIRECTORY=/var/lib/evalwatch (first one).
        return PurePosixPath(env["STATE_DIRECTORY"].split(":")[0])
    if is_root is None:
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root:
        return PurePosixPath("/var/lib") / APP
    if env.get("XDG_STATE_HOME"):
        return PurePosixPath(env["XDG_STATE_HOME"]) / APP
    home = home or env.get("HOME") or str(Path.home())
    return PurePosixPath(home) / ".local" / "state" / APP


def install_stop_handlers(
    loop: asyncio.AbstractEventLoop,
    stop: Callable[[], None],
    *,
    signal_fn: Callable[[int, Any], Any] | None = None,
) -> list[str]:
    """Make SIGINT, SIGTERM and (Windows) SIGBREAK call ``stop()`` on ``loop``; returns the
    names of the signals handled.  Must be called from the main thread for the fallback."""
    register_stop(loop, stop)
    set_handler = signal_fn or signal.signal
    handled: list[str] = []
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError, AttributeError):
            # Windows (Selector or Proactor loop): no add_signal_handler.
            def on_signal(_signum: int, _frame: Any, _loop: asyncio.AbstractEventLoop = loop) -> None:
                _loop.call_soon_threadsafe(stop)

            try:
                set_handler(sig, on_signal)
            except (ValueError, OSError) as e:  # not the main thread, or not settable here
                log.debug("cannot handle %s: %s", name, e)
                continue
        handled.append(name)
    return handled


def capture_api(cv2: Any, platform: str | None = None) -> int:
    """The ``cv2.VideoCapture`` API preference for a local device on this platform."""
    if is_windows(platform):
        return int(cv2.CAP_DSHOW)
    return int(getattr(cv2, "CAP_ANY", 0))


#: Rotation of the agent's log file (``--log-file``): 10 MB per file, 5 old files kept.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def log_handler(
    log_file: str | os.PathLike[str] | None, max_bytes: int | None = None, backups: int | None = None
) -> logging.Handler:
    """stderr without a file (journald / the console take it); else a rotating file handler
    (``logging.handlers.RotatingFileHandler``; its folder is created) of ``max_bytes`` per file
    and ``backups`` old files (default: the agent's :data:`LOG_MAX_BYTES`, :data:`LOG_BACKUPS`).
    The agent's ``--log-file`` and the hub's ``hub.log_file`` both use it."""
    if not log_file:
        return logging.StreamHandler(sys.stderr)
    from logging.handlers import RotatingFileHandler

    path = Path(log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    return RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES if max_bytes is None else max_bytes,
        backupCount=LOG_BACKUPS if backups is None else backups, encoding="utf-8",
    )


#: (loop, stop) of every running agent in this process: a Windows service's stop request
#: (``capture.winservice``, from the service control thread) reaches them through :func:`stop_all`.
_STOPPERS: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []


def register_stop(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    _STOPPERS[:] = [(lp, s) for lp, s in _STOPPERS if not lp.is_closed()]
    _STOPPERS.append((loop, stop))


def stop_all() -> int:
    """Ask every registered agent to stop (thread-safe); returns how many were asked."""
    n = 0
    for loop, stop in list(_STOPPERS):
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop)
            n += 1
    return n


def has_display(*, platform: str | None = None, environ: Mapping[str, str] | None = None,
                session_id: int | None = None) -> tuple[bool, str]:
    """Whether a window opened by the agent is seen on the room's display, and if not, why."""
    env = os.environ if environ is None else environ
    if is_windows(platform):
        if session_id is None:
            session_id = _windows_session_id()
        if session_id == 0:
            return False, "no display (running as a Windows service, session 0)"
        return True, ""
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return True, ""
    return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset)"


def _windows_session_id() -> int | None:
    try:
        import ctypes

        sid = ctypes.c_ulong()
        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        if kernel32.ProcessIdToSessionId(os.getpid(), ctypes.byref(sid)):
            return int(sid.value)
    except (AttributeError, OSError):
        pass
    return None


def tts_command(text: str, *, platform: str | None = None,
                which: Callable[[str], str | None] | None = None) -> list[str] | None:
    """The command that speaks ``text`` (Chinese voice where the engine has one), or ``None``."""
    import shutil

    find = which or shutil.which
    if is_windows(platform):
        ps = find("powershell") or find("powershell.exe")
        if ps is None:
            return None
        quoted = text.replace("'", "''")
        script = ("Add-Type -AssemblyName System.Speech; "
                  "$s = New-Object System.Speech.Synthesis.SpeechSynthesizer; "
                  f"$s.Speak('{quoted}')")
        return [ps, "-NoProfile", "-NonInteractive", "-Command", script]
    engines = (("espeak-ng", ["-v", "cmn"]), ("espeak", ["-v", "zh"]), ("spd-say", ["-w", "-l", "zh"]))
    for name, args in engines:
        exe = find(name)
        if exe is not None:
            return [exe, *args, text]
    return None
