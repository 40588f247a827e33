"""Structured logging: ``key=value`` lines that say what happened to which site/room/camera."""

from __future__ import annotations

import logging
import os
import sys
import time


class _UTCFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once (level from ``EVALWATCH_LOG_LEVEL``, default INFO)."""
    root = logging.getLogger()
    if getattr(root, "_evalwatch_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _UTCFormatter("%(asctime)sZ level=%(levelname)s logger=%(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("EVALWATCH_LOG_LEVEL", "INFO"))
    # aioice/aiortc are chatty at INFO.
    for noisy in ("aioice", "aiortc", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._evalwatch_configured = True  # type: ignore[attr-defined]
