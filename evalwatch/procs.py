"""Child-process supervision for ``evalwatch run``: start, watch, stop cleanly on Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("evalwatch.run")


def parent_death_signal(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn`` that has the child receive ``sig`` when the thread that forked it dies
    (Linux ``PR_SET_PDEATHSIG``; the child keeps its own process group).  libc is loaded here,
    before the fork: the child only makes the call."""
    import ctypes

    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, int(sig))

    return set_signal


@dataclass
class Child:
    """One supervised child process; its output goes to ``log_path``."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            list(self.argv), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            # Linux: SIGTERM (a clean stop) when the thread that starts it (``evalwatch run``'s
            # main thread) dies, also by SIGKILL: no hub or agent outlives the demo (issue #17).
            preexec_fn=parent_death_signal(signal.SIGTERM) if sys.platform == "linux" else None,
        )
        out.close()
        log.info("started %s pid=%s log=%s", self.name, self.proc.pid, self.log_path)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs, killing", self.name, timeout)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def python_cmd(*args: str) -> list[str]:
    """The ``evalwatch`` command line in this interpreter (works without the console script)."""
    return [sys.executable, "-m", "evalwatch", *args]


def wait_http(url: str, timeout: float, child: Child | None = None, verify: Any = True) -> None:
    """Poll ``url`` until it answers 2xx; raise ``RuntimeError`` naming what failed.  ``verify``:
    httpx's (an ``ssl.SSLContext`` pinning the hub's certificate: ``capture.tls.hub_ssl``)."""
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited early; see {child.log_path}")
        try:
            r = httpx.get(url, timeout=2.0, verify=verify)
            if r.status_code < 300:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s ({last})")
