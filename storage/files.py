"""Durable local files: what the WAL, the agents' incident spool and the hub's snapshot spool
write so that a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write ``data`` to ``path`` durably: ``<name>.tmp`` + fsync + rename over ``path``.

    A reader (or a scan after a crash) sees either the old file or the whole new one; a
    leftover ``*.tmp`` is an unfinished write.  The parent folder must exist.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
