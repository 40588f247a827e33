"""Processes seen from ``/proc`` (Linux), for tests that check nothing outlives its parent."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie or a dead process does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _parents() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(d.name))
    return out


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    return _parents().get(pid, [])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    parents = _parents()
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def command(pid: int) -> str:
    """``pid``'s command line, arguments joined by spaces ("" when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def still_alive_after(pids: list[int], seconds: float) -> list[int]:
    """Wait up to ``seconds`` for every one of ``pids`` to end; returns those still running."""
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def tempdir_removed_at_exit(prefix: str = "evalwatch-chromium-", *, keep: bool = False) -> str:
    """A fresh temporary directory (a Chromium profile, a bench's work folder), removed when this
    process exits (normally or by Ctrl-C; not on SIGKILL); ``keep`` leaves it (a bench's
    ``--keep``, for its logs).  Without it every browser test and bench run left folders in /tmp."""
    d = tempfile.mkdtemp(prefix=prefix)
    if not keep:
        atexit.register(shutil.rmtree, d, True)
    return d
