"""TLS (issue #12, finding 12 "no TLS story"): the hub serves HTTPS with a certificate
(``hub.tls_cert``/``tls_key``; ``evalwatch tls self-signed`` / ``evalwatch hub --self-signed``),
agents pin it (``capture/tls.py``), and under HTTPS the session cookie is ``Secure`` and every
answer carries HSTS.  Real uvicorn with TLS on 127.0.0.1, real agents, real handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from capture.agent import Agent
from capture.tls import hub_ssl, pretty_sha256
from config import load_config
from dashboard.app import create_app
from evalwatch import tls as tlscli
from evalwatch.hub import tls_options
from storage.s3server import free_port
from testkit.capture import DirSegmentStore, build_app, make_clip, write_config
from testkit.dashboard import make_config, make_services, password_of

pytestmark = pytest.mark.security

TOKEN = "token-tls-xxxxxxxxxxxxxxxxxxxx"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    d = tmp_path_factory.mktemp("tls")
    assert tlscli.cli(["self-signed", "--out", str(d), "--host", "hub.example"]) == 0
    cert, key = d / "hub.crt", d / "hub.key"
    return cert, key, tlscli.cert_sha256(cert)


@contextlib.asynccontextmanager
async def serving(app: Any, port: int, cfg: Any) -> AsyncIterator[None]:
    """``app`` under uvicorn on 127.0.0.1:``port`` with the hub's own TLS options for ``cfg``."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           **tls_options(cfg)))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield
    finally:
        server.should_exit = True
        await task


Pair = tuple[Path, Path, str]


def test_self_signed_cli(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key, fp = pair
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700
    from cryptography import x509

    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "hub.example" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    capsys.readouterr()
    assert tlscli.cli(["fingerprint", str(cert)]) == 0
    assert capsys.readouterr().out.strip() == pretty_sha256(fp)
    # An existing certificate is never replaced by accident (agents pin it).
    assert tlscli.cli(["self-signed", "--out", str(cert.parent)]) == 2
    assert "exists" in capsys.readouterr().err
    assert tlscli.cli(["fingerprint", str(key)]) == 2
    assert "not a PEM certificate" in capsys.readouterr().err


def test_bad_tls_config_is_a_clear_error(pair: tuple[Path, Path, str], tmp_path: Path) -> None:
    cert, key, _ = pair
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tls_key is missing"):
        make_config(tls_cert=str(cert))
    other = tmp_path / "other"
    tlscli.write_self_signed(other, ["x"])
    with pytest.raises(ValueError, match="not a usable certificate and matching private key"):
        tls_options(make_config(tls_cert=str(cert), tls_key=str(other / "hub.key")))
    with pytest.raises(ValueError, match="does not exist"):
        tls_options(make_config(tls_cert=str(tmp_path / "nope.crt"), tls_key=str(key)))
    with pytest.raises(ValueError, match="not a SHA-256"):
        hub_ssl(cert_sha256="12:34")


async def test_dashboard_over_https_secure_cookie_and_hsts(pair: Pair, tmp_path: Path) -> None:
    cert, key, _ = pair
    port = free_port()
    cfg = make_config(listen_port=port, tls_cert=str(cert), tls_key=str(key))
    from evalwatch.run import _hub_pin

    assert _hub_pin(cfg) == tlscli.cert_sha256(cert) and _hub_pin(make_config()) is None
    assert cfg.hub.url == f"https://127.0.0.1:{port}"
    app = create_app(make_services(tmp_path, cfg=cfg))
    async with serving(app, port, cfg), httpx.AsyncClient(
        base_url=cfg.hub.url, verify=hub_ssl(ca_file=cert)  # the certificate as the CA: chain + name
    ) as c:
        r = await c.get("/healthz")
        assert r.status_code == 200
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        r = await c.post("/api/auth/login", json={"username": "admin", "password": password_of("admin")})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("evalwatch_session=")
        assert "; secure" in cookie.lower() and "httponly" in cookie.lower()
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        assert (await c.get("/api/auth/me")).status_code == 200
        # evalwatch run waits for a hub serving HTTPS with the certificate pinned.
        from evalwatch.procs import wait_http

        fp = tlscli.cert_sha256(cert)
        await asyncio.to_thread(wait_http, f"{cfg.hub.url}/healthz", 10, None, hub_ssl(cert_sha256=fp))
        with pytest.raises(RuntimeError, match="did not answer"):
            await asyncio.to_thread(wait_http, f"{cfg.hub.url}/healthz", 0.5, None,
                                    hub_ssl(cert_sha256="cd" * 32))
    # The same app over plain HTTP: no HSTS, no Secure (the contrast that makes the above mean it).
    plain = create_app(make_services(tmp_path / "plain", cfg=make_config()))
    async with plain.router.lifespan_context(plain), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=plain), base_url="http://localhost"
    ) as c:
        r = await c.post("/api/auth/login", json={"username": "admin", "password": password_of("admin")})
        assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()
        assert "strict-transport-security" not in r.headers


def _agent_config(tmp: Path, port: int, pair: tuple[Path, Path, str], clip: Path) -> Any:
    cert, key, _ = pair
    path = write_config(
        tmp / "cfg.yaml", port=port,
        sites={"s1": {"r1": [("c1", str(clip))]}, "s2": {}},
        tokens={"s1": TOKEN, "s2": TOKEN + "2"}, spool_dir=tmp / "spool", segment_seconds=2.0,
        extra={"hub": {"tls_cert": str(cert), "tls_key": str(key)}},
    )
    return load_config(path)


async def test_agent_pins_the_hub_certificate(pair: tuple[Path, Path, str], tmp_path: Path) -> None:
    """Right fingerprint: heartbeats and segment uploads over HTTPS.  Wrong fingerprint: the
    handshake is refused before the request (no token sent), with an error naming both
    fingerprints; nothing reaches the hub."""
    _, _, fp = pair
    port = free_port()
    clip = make_clip(tmp_path / "room.mp4", seconds=3)
    cfg = _agent_config(tmp_path, port, pair, clip)
    assert cfg.hub.url.startswith("https://")
    store = DirSegmentStore(tmp_path / "store")
    app, _recorder = build_app(cfg, store)
    seen: list[str] = []

    @app.middleware("http")
    async def count(request: Any, call_next: Any) -> Any:
        seen.append(request.url.path)
        return await call_next(request)

    async with serving(app, port, cfg):
        wrong = Agent(cfg, "s2", hub_cert_sha256="ab" * 32, live=False)  # no cameras: heartbeats only
        await wrong.run(duration=1.5)
        assert seen == []
        assert wrong.tls_error is not None
        assert "not the pinned one" in wrong.tls_error
        assert pretty_sha256("ab" * 32) in wrong.tls_error and pretty_sha256(fp) in wrong.tls_error

        # Without a pin or CA the system trust store refuses a self-signed hub, too.
        unpinned = Agent(cfg, "s2", live=False)
        await unpinned.run(duration=1.0)
        assert seen == [] and unpinned.tls_error is not None
        assert "certificate verify failed" in unpinned.tls_error

        good = Agent(cfg, "s1", hub_cert_sha256=pretty_sha256(fp), live=False)
        await good.run(duration=4.5)
        assert good.tls_error is None
    assert "/api/ingest/heartbeat" in seen
    assert any(p.startswith("/api/ingest/segments/s1/r1/c1") for p in seen)
    assert len(store.list("s1", "r1", "c1")) >= 2 and not good.spool.pending()


def test_pin_needs_an_https_hub_url(pair: tuple[Path, Path, str], tmp_path: Path) -> None:
    cfg = _agent_config(tmp_path, free_port(), pair, tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="not https: the agent token would travel in clear"):
        Agent(cfg, "s2", hub_url="http://127.0.0.1:1", hub_cert_sha256="ab" * 32)
    with pytest.raises(ValueError, match=r"hub CA file .* does not exist"):
        Agent(cfg, "s2", hub_ca_file=str(tmp_path / "missing.pem"))
    assert isinstance(Agent(cfg, "s2", hub_cert_sha256="AB:" * 31 + "AB").verify, ssl.SSLContext)


def test_hub_self_signed_is_made_once_and_kept(tmp_path: Path) -> None:
    """``evalwatch hub --self-signed``: the pair lives in <data_dir>/tls and survives restarts
    (a new certificate would break every agent's pin)."""
    from evalwatch.hub import use_self_signed

    cfg = make_config()
    cfg.storage.data_dir = str(tmp_path / "data")
    fp = use_self_signed(cfg)
    assert cfg.hub.tls_cert == str(tmp_path / "data" / "tls" / "hub.crt")
    assert cfg.hub.url.startswith("https://") and cfg.hub.https
    assert tls_options(cfg) == {"ssl_certfile": cfg.hub.tls_cert, "ssl_keyfile": cfg.hub.tls_key}
    again = make_config()
    again.storage.data_dir = cfg.storage.data_dir
    assert use_self_signed(again) == fp


def test_hub_refuses_to_start_with_a_bad_certificate(pair: Pair, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong key for the certificate: one line naming both files, exit 2, nothing started."""
    import yaml

    from evalwatch.hub import cli

    cert, _, _ = pair
    other = tmp_path / "other"
    tlscli.write_self_signed(other, ["x"])
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump({
        "hub": {"secret_key": "k" * 32, "tls_cert": str(cert), "tls_key": str(other / "hub.key")},
        "secrets_file": None,
    }))
    assert cli(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a usable certificate and matching private key" in err and str(cert) in err


async def test_enrolment_pins_the_hub_certificate(pair: Pair, tmp_path: Path) -> None:
    """``evalwatch agent enroll https://HUB --code C --hub-cert-sha256 FP``: the code travels only
    to the pinned hub, and the pin is kept for the enrolled agent; a wrong pin, or none against a
    self-signed hub, is refused before the code is sent.  The hub reports its fingerprint."""
    from datetime import timedelta

    from capture.enroll import EnrollError, enroll, load_state
    from storage.agents import issue_code

    cert, key, fp = pair
    port = free_port()
    cfg = make_config(listen_port=port, tls_cert=str(cert), tls_key=str(key))
    services = make_services(tmp_path, cfg=cfg)

    def new_code() -> str:
        with services.db.session() as s:
            code = issue_code(s, "site1", "admin", timedelta(hours=1)).code
            s.commit()
        return code

    app = create_app(services)
    async with serving(app, port, cfg):
        code = new_code()
        for pin, expect in (("ab" * 32, "not the pinned one"), (None, "CERTIFICATE_VERIFY_FAILED")):
            with pytest.raises(EnrollError, match=expect):
                await asyncio.to_thread(enroll, cfg.hub.url, code, tmp_path / "s0", hub_cert_sha256=pin)
        state = await asyncio.to_thread(
            enroll, cfg.hub.url, code, tmp_path / "s1", hub_cert_sha256=pretty_sha256(fp)
        )  # the refused attempts did not spend the code: it never reached the hub
    assert state.site == "site1" and state.tls_fingerprint == fp
    assert load_state(tmp_path / "s1").tls_fingerprint == fp
    with pytest.raises(EnrollError, match="needs an https:// hub URL"):
        enroll("http://127.0.0.1:1", "x", tmp_path / "s2", hub_cert_sha256=fp)
    from dashboard.routes.agents import _hub_fingerprint

    assert _hub_fingerprint(str(cert)) == fp and _hub_fingerprint(None) is None
