"""Structured logging: ``key=value`` lines that say what happened to which site/room/camera."""

from __future__ import annotations

import logging
import os
import sys
import time


class _UTCFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)


def _formatter() -> logging.Formatter:
    return _UTCFormatter("%(asctime)sZ level=%(levelname)s logger=%(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once (level from ``EVALWATCH_LOG_LEVEL``, default INFO)."""
    root = logging.getLogger()
    if getattr(root, "_evalwatch_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter())
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("EVALWATCH_LOG_LEVEL", "INFO"))
    # aioice/aiortc are chatty at INFO.
    for noisy in ("aioice", "aiortc", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._evalwatch_configured = True  # type: ignore[attr-defined]


def log_to_file(path: str | os.PathLike[str], max_mb: float, backups: int) -> logging.Handler:
    """Send the root logger's records to ``path`` instead of stderr, rotated at ``max_mb`` with
    ``backups`` old files (``hub.log_file``; the same rotating handler as the agent's
    ``--log-file``: ``capture.hostos.log_handler``).  Returns the handler."""
    from capture.hostos import log_handler

    setup_logging()
    handler = log_handler(path, max_bytes=max(1, int(max_mb * 1024 * 1024)), backups=backups)
    handler.setFormatter(_formatter())
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    return handler
