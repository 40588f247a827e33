"""The embedded SeaweedFS stops cleanly (issue #17): on a normal stop ``weed server`` exits by
itself on SIGTERM (exit 0, after closing its filer store and volumes) instead of being killed
when the grace runs out — before, the 5 s grace was shorter than the ~15 s ``weed server`` 4.48
needs (its filer waits that long on the metadata subscriptions it holds to itself), so every
hub stop ended in a SIGKILL.  Nothing is left: no process, no port, and what was written reads
back after a start on the same data."""

from __future__ import annotations

import io
import secrets
import time
from pathlib import Path

from minio import Minio

from config.models import EmbeddedS3Config, S3Config
from storage.s3server import WEED_SERVER_STOP_S, SeaweedPorts, SeaweedServer, free_ports, port_is_free
from testkit.procs import alive


def test_config_grace_outlasts_weed_servers_own_stop() -> None:
    """The hub's server (built from the config) waits longer than weed server needs."""
    keys = {"access_key": "k" * 8, "secret_key": "s" * 16, "endpoint": "127.0.0.1:18333"}
    server = SeaweedServer.from_config(S3Config.model_validate(keys))
    assert server.grace_s == EmbeddedS3Config().stop_grace_s > WEED_SERVER_STOP_S + 2
    short = S3Config.model_validate({**keys, "embedded_server": {"stop_grace_s": 2}})
    assert SeaweedServer.from_config(short).grace_s == 2


def test_weed_server_exits_by_itself_on_sigterm(tmp_path: Path) -> None:
    access, secret = "stop-test", secrets.token_hex(16)
    ports = SeaweedPorts(*free_ports(8))
    cfg = S3Config.model_validate({"access_key": access, "secret_key": secret,
                                   "endpoint": f"127.0.0.1:{ports.s3}"})
    server = SeaweedServer(tmp_path / "s3", access, secret, ports, die_with_parent=True,
                           grace_s=SeaweedServer.from_config(cfg).grace_s)  # the hub's grace
    server.start()
    try:
        s3 = Minio(server.endpoint, access, secret, secure=False)
        s3.make_bucket("stop-test")
        body = secrets.token_bytes(200_000)
        s3.put_object("stop-test", "seg/0001.mp4", io.BytesIO(body), len(body))
        pid = server.pid
        assert pid is not None
        t0 = time.monotonic()
        server.stop()
        took = time.monotonic() - t0
        assert server.exit_code == 0, (
            f"SeaweedFS killed (exit {server.exit_code}) after {took:.1f} s instead of exiting on SIGTERM")
        assert took < server.grace_s, took
        assert not alive(pid), "weed still running after stop()"
        assert all(port_is_free(p) for p in ports.named().values()), ports.named()

        server.start()  # same data: what was acknowledged before the stop is there
        got = s3.get_object("stop-test", "seg/0001.mp4")
        try:
            assert got.read() == body
        finally:
            got.close()
            got.release_conn()
    finally:
        server.kill()
