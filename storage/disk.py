"""Disk space of the folders evalwatch writes to (the hub's WAL and database, an agent's spool).

``disk_usage(path)`` reads the file system holding ``path`` (``os.statvfs``: the space an
unprivileged writer may still use, as ``df`` shows it).  ``DiskUsage.full(min_free, ratio)`` is
the alert rule of docs/storage.md "Full disks": less than ``min_free`` bytes free, or the disk
filled to ``ratio`` or more.  ``is_enospc`` tells a full disk (or quota) from other write errors.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DiskUsage:
    """One file system as seen from ``path`` (bytes)."""

    path: str
    total: int
    free: int

    @property
    def used(self) -> int:
        return max(0, self.total - self.free)

    @property
    def fill_ratio(self) -> float:
        return self.used / self.total if self.total else 1.0

    def full(self, min_free: int, ratio: float) -> bool:
        return self.free < min_free or self.fill_ratio >= ratio

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "total_bytes": self.total, "free_bytes": self.free,
                "fill_ratio": round(self.fill_ratio, 4)}


def disk_usage(path: str | Path) -> DiskUsage:
    """The file system of ``path`` (its nearest existing parent when it does not exist yet)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return DiskUsage(path=str(path), total=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize)


def is_enospc(e: BaseException) -> bool:
    """True for "no space left on device" and "disk quota exceeded"."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
