"""A local SeaweedFS *cluster* for development: separate master, volume, filer and S3 processes.

Where :class:`storage.s3server.SeaweedServer` runs everything in one ``weed server`` process
(the single hub's default), :class:`SeaweedCluster` runs the parts a production deployment runs
on separate machines (docs/deploy.md), as child processes of this one, on 127.0.0.1:

* 1 ``weed master`` with ``-defaultReplication`` (``001`` by default: every volume has a second
  copy on another volume server of the same rack);
* N ``weed volume`` servers (2–3 for development; all in data centre ``dc1``, rack ``rack1``);
* 1 ``weed filer`` (embedded leveldb store in its own directory);
* 1 ``weed s3`` gateway with the hub's S3 credentials (``identities.json``, mode 0600, as the
  embedded server writes it; the secret is never logged).

Contract:

* ``start()`` launches them in dependency order and returns once the master sees every volume
  server and the S3 gateway answers HTTP; it raises :class:`ClusterError` naming the part that
  failed (missing binary, port taken, a process that exited — with the tail of its log, the
  secret masked —, or a part not ready within ``ready_timeout_s``), after stopping what it
  started.
* ``stop()`` stops them in reverse order (S3, filer, volumes, master): SIGTERM, then SIGKILL
  after ``grace_s`` (the filer after at most ``FILER_GRACE_S``: see :meth:`SeaweedCluster.stop`).
  ``kill_volume(i)`` SIGKILLs one volume server (fault tests, trying the replication by hand).
* ``die_with_parent`` (Linux): every child gets ``PR_SET_PDEATHSIG`` = SIGKILL, so when the
  thread that started them dies — even by SIGKILL of the process — no ``weed`` is left behind.
  Start from a long-lived thread (the main thread) when this is set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from storage.s3server import _pdeathsig, find_weed, free_ports, port_is_free, write_identities

log = logging.getLogger("evalwatch.storage.cluster")

HOST = "127.0.0.1"
FILER_GRACE_S = 2.0


class ClusterError(RuntimeError):
    """The cluster could not be started (or a request about it failed); the message says why."""


@dataclass(frozen=True)
class Endpoint:
    """HTTP and gRPC port of one SeaweedFS process."""

    http: int
    grpc: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.http}"

    @property
    def peer(self) -> str:
        """How other parts name it: ``host:port``, or ``host:port.grpcport`` when the gRPC port
        is not SeaweedFS's default HTTP + 10000 (its address syntax for that case)."""
        return self.address if self.grpc == self.http + 10000 else f"{self.address}.{self.grpc}"


@dataclass(frozen=True)
class ClusterPorts:
    """Every port the cluster opens."""

    master: Endpoint
    filer: Endpoint
    s3: Endpoint
    volumes: tuple[Endpoint, ...]

    @classmethod
    def from_base(cls, base: int, volumes: int) -> ClusterPorts:
        """master = base, filer = base+1, S3 = base+2, volume i = base+3+i; gRPC = HTTP + 10000
        (SeaweedFS's own rule for the ports it derives)."""
        last = base + 2 + volumes
        if base < 1024 or last + 10000 > 65535:
            raise ClusterError(
                f"base port {base}: the cluster needs ports {base}..{last} and their gRPC ports "
                f"(+10000); choose a base between 1024 and {65535 - 10000 - 2 - volumes}"
            )

        def ep(p: int) -> Endpoint:
            return Endpoint(p, p + 10000)

        return cls(ep(base), ep(base + 1), ep(base + 2), tuple(ep(base + 3 + i) for i in range(volumes)))

    @classmethod
    def free(cls, volumes: int) -> ClusterPorts:
        """Ports the OS reports free right now (tests)."""
        p = free_ports(2 * (3 + volumes))
        eps = [Endpoint(p[2 * i], p[2 * i + 1]) for i in range(3 + volumes)]
        return cls(eps[0], eps[1], eps[2], tuple(eps[3:]))

    def named(self) -> dict[str, Endpoint]:
        out = {"master": self.master, "filer": self.filer, "s3": self.s3}
        for i, v in enumerate(self.volumes, 1):
            out[f"volume{i}"] = v
        return out


def check_replication(replication: str, volumes: int) -> None:
    """``replication`` is SeaweedFS's ``xyz`` (x: other data centres, y: other racks, z: other
    servers of the same rack).  All volume servers of this cluster share one rack, so only ``z``
    can be met, and it needs ``1 + z`` volume servers."""
    if not re.fullmatch(r"[0-9]{3}", replication):
        raise ClusterError(
            f"replication {replication!r}: expected three digits such as 001 (see docs/deploy.md)"
        )
    if replication[:2] != "00":
        raise ClusterError(
            f"replication {replication}: this local cluster has one data centre and one rack; "
            "only 000, 001, 002... (copies on other servers of the same rack) can be met"
        )
    if volumes < 1 + int(replication[2]):
        raise ClusterError(
            f"replication {replication} keeps {1 + int(replication[2])} copies on different volume "
            f"servers, but only {volumes} volume server(s) were asked for"
        )


@dataclass
class WeedProcess:
    """One ``weed`` child: its role, command line, working directory and log file."""

    name: str
    argv: list[str]
    cwd: Path
    endpoint: Endpoint
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def start(self, die_with_parent: bool) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        # cwd = the part's own directory: ``weed`` looks for ``./filer.toml`` and the like first,
        # so no stray config file of the caller's directory is picked up.
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_pdeathsig if die_with_parent and sys.platform == "linux" else None,
        )
        log.info("started weed %s pid=%s address=%s log=%s", self.name, self.proc.pid,
                 self.endpoint.address, self.log_path)

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> bool:
        """True when the process has exited within ``timeout``."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, secret: str, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return "(no log)"
        return "\n".join(lines).replace(secret, "***") if secret else "\n".join(lines)


class SeaweedCluster:
    """1 master, N volume servers, 1 filer and 1 S3 gateway as child processes on 127.0.0.1."""

    def __init__(
        self,
        data_dir: str | Path,
        access_key: str,
        secret_key: str,
        ports: ClusterPorts,
        *,
        replication: str = "001",
        weed: str | Path | None = None,
        ready_timeout_s: float = 30.0,
        grace_s: float = 5.0,
        volume_size_limit_mb: int = 64,
        die_with_parent: bool = False,
    ) -> None:
        if not access_key or not secret_key:
            raise ClusterError("the cluster's S3 gateway needs storage.s3.access_key and secret_key")
        if not ports.volumes:
            raise ClusterError("a cluster needs at least one volume server")
        check_replication(replication, len(ports.volumes))
        self.data_dir = Path(data_dir)
        self._access_key = access_key
        self._secret_key = secret_key
        self.ports = ports
        self.replication = replication
        self._weed = Path(weed) if weed else None
        self.ready_timeout_s = ready_timeout_s
        self.grace_s = grace_s
        self.volume_size_limit_mb = volume_size_limit_mb
        self.die_with_parent = die_with_parent
        self.master: WeedProcess | None = None
        self.volumes: list[WeedProcess] = []
        self.filer: WeedProcess | None = None
        self.s3: WeedProcess | None = None

    # --- properties -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 gateway, as ``storage.s3.endpoint`` wants it."""
        return self.ports.s3.address

    @property
    def processes(self) -> list[WeedProcess]:
        """Every started part, in start order."""
        parts = [self.master, *self.volumes, self.filer, self.s3]
        return [p for p in parts if p is not None]

    def exited(self) -> list[WeedProcess]:
        """Parts that have exited (crashed or killed) while the cluster is up."""
        return [p for p in self.processes if p.proc is not None and not p.running]

    # --- command lines --------------------------------------------------------------------

    def _master_argv(self, weed: Path) -> list[str]:
        p = self.ports.master
        return [
            str(weed), "master", f"-ip={HOST}", f"-ip.bind={HOST}", f"-port={p.http}",
            f"-port.grpc={p.grpc}", f"-mdir={self.data_dir / 'master'}", "-peers=none",
            f"-defaultReplication={self.replication}",
            f"-volumeSizeLimitMB={self.volume_size_limit_mb}",
        ]

    def _volume_argv(self, weed: Path, i: int) -> list[str]:
        p = self.ports.volumes[i]
        return [
            str(weed), "volume", f"-ip={HOST}", f"-ip.bind={HOST}", f"-port={p.http}",
            f"-port.grpc={p.grpc}", f"-dir={self.data_dir / f'volume{i + 1}'}", "-max=0",
            f"-master={self.ports.master.peer}", "-dataCenter=dc1", "-rack=rack1",
            "-preStopSeconds=0",
        ]

    def _filer_argv(self, weed: Path) -> list[str]:
        p = self.ports.filer
        return [
            str(weed), "filer", f"-ip={HOST}", f"-ip.bind={HOST}", f"-port={p.http}",
            f"-port.grpc={p.grpc}", f"-master={self.ports.master.peer}",
            f"-defaultStoreDir={self.data_dir / 'filer'}",
        ]

    def _s3_argv(self, weed: Path, identities: Path) -> list[str]:
        p = self.ports.s3
        return [
            str(weed), "s3", f"-ip.bind={HOST}", f"-port={p.http}", f"-port.grpc={p.grpc}",
            "-port.iceberg=0", "-port.lance=0", f"-filer={self.ports.filer.peer}",
            f"-config={identities}",
        ]

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start every part and wait until S3 answers.  No-op if already started."""
        if self.master is not None:
            return
        weed = self._weed or find_weed()
        if not (weed.is_file() and os.access(weed, os.X_OK)):
            raise ClusterError(f"SeaweedFS binary {weed} is missing or not executable")
        taken = [
            f"{name} port {port}"
            for name, ep in self.ports.named().items()
            for port in (ep.http, ep.grpc)
            if not port_is_free(port, HOST)
        ]
        if taken:
            raise ClusterError(
                f"cannot start the SeaweedFS cluster: {', '.join(taken)} on {HOST} already in use "
                "(another cluster running? choose another --base-port)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = write_identities(self.data_dir / "identities.json", self._access_key, self._secret_key)
        log.info("starting SeaweedFS cluster dir=%s replication=%s volumes=%d s3=%s",
                 self.data_dir, self.replication, len(self.ports.volumes), self.endpoint)
        deadline = time.monotonic() + self.ready_timeout_s
        try:
            self.master = self._launch("master", self._master_argv(weed), self.ports.master)
            master_url = f"http://{self.ports.master.address}/cluster/status"
            self._wait([self.master], deadline, lambda: self._http_ok(master_url))
            for i, ep in enumerate(self.ports.volumes):
                self.volumes.append(self._launch(f"volume{i + 1}", self._volume_argv(weed, i), ep))
            self._wait(self.volumes, deadline, lambda: self.data_nodes() >= len(self.volumes))
            self.filer = self._launch("filer", self._filer_argv(weed), self.ports.filer)
            filer_url = f"http://{self.ports.filer.address}/"
            self._wait([self.filer], deadline, lambda: self._http_answers(filer_url))
            self.s3 = self._launch("s3", self._s3_argv(weed, identities), self.ports.s3)
            self._wait([self.s3], deadline, lambda: self._http_answers(f"http://{self.endpoint}/"))
        except BaseException:
            self.stop(grace_s=1.0)
            raise
        log.info("SeaweedFS cluster ready s3=%s pids=%s", self.endpoint,
                 {p.name: p.pid for p in self.processes})

    def _launch(self, name: str, argv: list[str], endpoint: Endpoint) -> WeedProcess:
        part = WeedProcess(name, argv, self.data_dir / name, endpoint)
        part.start(self.die_with_parent)
        return part

    def _wait(self, parts: list[WeedProcess], deadline: float, ready: Callable[[], bool]) -> None:
        while True:
            for part in parts:
                if not part.running:
                    raise ClusterError(
                        f"SeaweedFS {part.name} exited with code {part.returncode} during start-up "
                        f"(log {part.log_path}); last log lines:\n{part.log_tail(self._secret_key)}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                part = parts[-1]
                raise ClusterError(
                    f"SeaweedFS {part.name} on {part.endpoint.address} not ready after "
                    f"{self.ready_timeout_s:.0f}s (log {part.log_path}); last log lines:\n"
                    f"{part.log_tail(self._secret_key)}"
                )
            time.sleep(0.2)

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:  # noqa: S310 - our own http URL
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _http_answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0):  # noqa: S310 - our own http URL
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (403 for anonymous S3) means it is up
        except (urllib.error.URLError, OSError):
            return False

    def _get_json(self, url: str) -> Any:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as r:  # noqa: S310 - our own http URL
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ClusterError(f"{url}: {e}") from None

    def data_nodes(self) -> int:
        """How many volume servers the master currently knows (0 while it does not answer)."""
        try:
            doc = self._get_json(f"http://{self.ports.master.address}/dir/status")
        except ClusterError:
            return 0
        topo = doc.get("Topology") or {}
        return sum(
            len(rack.get("DataNodes") or [])
            for dc in topo.get("DataCenters") or []
            for rack in dc.get("Racks") or []
        )

    def volume_file_counts(self) -> list[int]:
        """Files (needles) each volume server holds, in volume order, from its own ``/status``."""
        counts = []
        for part in self.volumes:
            doc = self._get_json(f"http://{part.endpoint.address}/status")
            counts.append(sum(int(v.get("FileCount", 0)) for v in doc.get("Volumes") or []))
        return counts

    def kill_volume(self, index: int) -> None:
        """SIGKILL volume server ``index`` (0-based): a crashed disk server."""
        part = self.volumes[index]
        if part.running:
            part.signal(signal.SIGKILL)
            part.wait(10.0)
        log.info("killed weed %s pid=%s", part.name, part.pid)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop every part, the S3 gateway first and the master last (SIGTERM, then SIGKILL)."""
        grace = self.grace_s if grace_s is None else grace_s
        tiers: list[list[WeedProcess | None]] = [[self.s3], [self.filer], list(self.volumes), [self.master]]
        for tier in tiers:
            parts = [p for p in tier if p is not None]
            for p in parts:
                p.signal(signal.SIGTERM)
            # weed filer 4.48 sometimes never finishes its gRPC graceful stop (a metadata
            # subscription to itself stays open): it gets a short grace.  Its store writes go
            # through the OS before they are acknowledged, so a kill loses nothing.
            wait = min(grace, FILER_GRACE_S) if parts and parts[0] is self.filer else grace
            deadline = time.monotonic() + wait
            for p in parts:
                if not p.wait(deadline - time.monotonic()):
                    log.info("weed %s pid=%s did not stop on SIGTERM; sending SIGKILL", p.name, p.pid)
                    p.signal(signal.SIGKILL)
                    p.wait(10.0)
                p.close_log()
        stopped = {p.name: p.returncode for p in self.processes}
        self.master, self.volumes, self.filer, self.s3 = None, [], None, None
        if stopped:
            log.info("SeaweedFS cluster stopped codes=%s", stopped)

    def __enter__(self) -> SeaweedCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:  # never shows the keys
        return f"SeaweedCluster(endpoint={self.endpoint!r}, data_dir={str(self.data_dir)!r})"
