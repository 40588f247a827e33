"""The agent's enrolment and its state directory (the room PC's side; no hub dependency).

``evalwatch agent enroll https://HUB --code CODE [--state-dir DIR]`` posts the one-time code to
the hub (``POST /api/agent/enroll``) and stores what comes back in ``DIR/agent.json``: the site,
the agent's own credential (a random secret of this agent only, which the hub keeps hashed and
an admin can revoke), the hub's URL and, once the hub serves TLS, its certificate fingerprint
(``tls_fingerprint``, null today).  From then on ``evalwatch agent`` without ``--config`` reads
that file, fetches its configuration from the hub (``GET /api/ingest/config``: cameras, seats,
rates; the running sessions come from the heartbeats and ``/api/ingest/sessions`` as always) and
keeps a copy in ``DIR/config.json``, which it runs with when the hub is unreachable at start-up —
the cameras are recorded into the spool (``DIR/spool``) and uploaded later.

The state directory is created owner-only (0700) and its files 0600: the credential and the
cameras' source URLs (which may hold camera passwords) are in it.  Default directory
(:func:`default_state_dir`): ``$EVALWATCH_AGENT_STATE_DIR``, else the agent's state directory of
the OS (``capture.hostos``: ``%PROGRAMDATA%\\evalwatch`` on Windows; ``$STATE_DIRECTORY`` under
systemd, ``/var/lib/evalwatch`` for root, ``$XDG_STATE_HOME/evalwatch`` for other users on Linux).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from config.models import EvalwatchConfig

log = logging.getLogger("capture.enroll")

STATE_FILE = "agent.json"
CONFIG_FILE = "config.json"


class EnrollError(Exception):
    """Enrolment or the enrolled start-up failed; the message says why (no traceback)."""


class AgentState(BaseModel):
    """``agent.json`` in the state directory."""

    site: str
    credential_id: str
    credential: str = Field(repr=False)
    hub_url: str
    tls_fingerprint: str | None = None
    enrolled_at: str


def default_state_dir() -> Path:
    """Where the agent keeps its state when ``--state-dir`` is not given:
    ``$EVALWATCH_AGENT_STATE_DIR``, else the agent's state directory of this OS
    (``capture.hostos.default_state_dir``, the service's ``StateDirectory`` under systemd)."""
    env = os.environ.get("EVALWATCH_AGENT_STATE_DIR")
    if env:
        return Path(env)
    from capture.hostos import default_state_dir as host_state_dir

    return Path(str(host_state_dir()))


def _private_dir(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # NTFS: permissions come from the ACL of %PROGRAMDATA%
        os.chmod(d, 0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, readable by its owner only (0600)."""
    _private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_state(state_dir: Path) -> AgentState:
    path = state_dir / STATE_FILE
    try:
        return AgentState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise EnrollError(
            f"this agent is not enrolled ({path} does not exist): run 'evalwatch agent enroll https://HUB "
            "--code CODE' with a code from the hub's admin page, or give --config FILE --site SITE"
        ) from None
    except (OSError, ValidationError, ValueError) as e:
        raise EnrollError(f"{path} is unreadable ({type(e).__name__}); enrol again with --force") from None


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))[:300]
    except ValueError:
        return r.text[:300]


def _verify(hub_url: str, pin: str | None) -> Any:
    """httpx's ``verify`` for the hub: its pinned certificate (capture.tls), else the trust store."""
    if pin and hub_url.startswith("https://"):
        from capture.tls import hub_ssl

        return hub_ssl(cert_sha256=pin)
    return True


def enroll(
    hub_url: str, code: str, state_dir: Path, *, force: bool = False, timeout: float = 15.0,
    hub_cert_sha256: str | None = None,
) -> AgentState:
    """Redeem ``code`` at ``hub_url`` and store the credential in ``state_dir``.

    ``hub_cert_sha256`` pins the hub's certificate for the enrolment itself and from then on
    (``tls_fingerprint`` in the state).  Without it an https hub must pass the system's trust
    store; the fingerprint the hub then reports (its ``hub.tls_cert``) is kept as the pin."""
    from capture.tls import normalize_sha256

    hub_url = hub_url.rstrip("/")
    if not hub_url.startswith(("http://", "https://")):
        raise EnrollError(f"hub URL must start with http:// or https://, got {hub_url!r}")
    pin: str | None = None
    if hub_cert_sha256:
        if not hub_url.startswith("https://"):
            raise EnrollError(f"--hub-cert-sha256 needs an https:// hub URL, got {hub_url!r}")
        try:
            pin = normalize_sha256(hub_cert_sha256)
        except ValueError as e:
            raise EnrollError(str(e)) from None
    if (state_dir / STATE_FILE).exists() and not force:
        raise EnrollError(f"already enrolled ({state_dir / STATE_FILE}); add --force to enrol again")
    try:
        r = httpx.post(
            f"{hub_url}/api/agent/enroll",
            json={"code": code, "host": socket.gethostname()[:128]},
            timeout=timeout,
            verify=_verify(hub_url, pin),
        )
    except httpx.HTTPError as e:
        raise EnrollError(f"cannot reach the hub at {hub_url}: {type(e).__name__}: {e}") from None
    if r.status_code != 200:
        raise EnrollError(f"the hub refused the enrolment code: HTTP {r.status_code}: {_detail(r)}")
    try:
        body = r.json()
        reported = body.get("tls_fingerprint")
        if pin is None and reported and hub_url.startswith("https://"):
            pin = normalize_sha256(str(reported))  # over a connection the trust store verified
        state = AgentState(
            site=body["site"],
            credential_id=body["credential_id"],
            credential=body["credential"],
            hub_url=hub_url,
            tls_fingerprint=pin,
            enrolled_at=datetime.now(UTC).isoformat(),
        )
    except (ValueError, KeyError, TypeError, ValidationError):
        raise EnrollError(
            f"{hub_url} answered the enrolment with something else than an evalwatch hub"
        ) from None
    write_private(state_dir / STATE_FILE, state.model_dump_json(indent=2).encode())
    with contextlib.suppress(FileNotFoundError):
        (state_dir / CONFIG_FILE).unlink()  # another site's cameras, if enrolled again
    log.info(
        "enrolled site=%s credential=%s hub=%s state=%s", state.site, state.credential_id, hub_url, state_dir
    )
    return state


def fetch_config(state: AgentState, state_dir: Path, timeout: float = 15.0) -> tuple[EvalwatchConfig, str]:
    """The configuration the hub serves this agent (saved to ``config.json``), and its version.
    :class:`EnrollError` when the hub refuses the credential, ``httpx.HTTPError`` when unreachable."""
    r = httpx.get(
        f"{state.hub_url}/api/ingest/config",
        params={"site": state.site},
        headers={"Authorization": f"Bearer {state.credential}"},
        timeout=timeout,
        verify=_verify(state.hub_url, state.tls_fingerprint),
    )
    if r.status_code in (401, 403):
        raise EnrollError(
            f"the hub refused this agent's credential {state.credential_id} "
            f"(HTTP {r.status_code}: {_detail(r)}); it was revoked or the hub's database was reset: "
            "enrol again with a new code (--force)"
        )
    if r.status_code != 200:
        raise httpx.HTTPStatusError(f"HTTP {r.status_code}: {_detail(r)}", request=r.request, response=r)
    body = r.json()
    cfg = _config_of(body, f"{state.hub_url}/api/ingest/config")
    write_private(state_dir / CONFIG_FILE, json.dumps(body, indent=2).encode())
    return cfg, str(body["version"])


def _config_of(body: Any, where: str) -> EvalwatchConfig:
    try:
        return EvalwatchConfig.model_validate(body["config"])
    except (KeyError, TypeError, ValidationError) as e:
        raise EnrollError(f"the configuration from {where} is not valid here: {e}") from None


def cached_config(state_dir: Path) -> tuple[EvalwatchConfig, str] | None:
    path = state_dir / CONFIG_FILE
    try:
        body = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("cached configuration %s is unreadable; ignored", path)
        return None
    return _config_of(body, str(path)), str(body.get("version", ""))


def enrolled_config(
    state_dir: Path, *, wait: bool = True, retry_s: float = 5.0
) -> tuple[EvalwatchConfig, AgentState, str]:
    """The enrolled agent's state and configuration: from the hub, else the cached copy (hub
    unreachable); without a cached copy wait for the hub (``wait``) or fail."""
    state = load_state(state_dir)
    while True:
        try:
            cfg, version = fetch_config(state, state_dir)
            log.info("configuration from hub site=%s version=%s", state.site, version)
            return cfg, state, version
        except httpx.HTTPError as e:
            cached = cached_config(state_dir)
            if cached is not None:
                log.warning(
                    "hub %s unreachable (%s): running with the cached configuration site=%s version=%s",
                    state.hub_url,
                    e,
                    state.site,
                    cached[1],
                )
                return cached[0], state, cached[1]
            if not wait:
                raise EnrollError(f"cannot reach the hub at {state.hub_url}: {e}") from None
            log.warning(
                "hub %s unreachable (%s) and no cached configuration yet site=%s: retry in %.0fs",
                state.hub_url,
                e,
                state.site,
                retry_s,
            )
            time.sleep(retry_s)


def enroll_cli(argv: list[str]) -> int:
    """``evalwatch agent enroll HUB_URL --code CODE [--state-dir DIR] [--force]``."""
    ap = argparse.ArgumentParser(
        prog="evalwatch agent enroll", description="enrol this PC's agent with a one-time code from the hub"
    )
    ap.add_argument("hub_url", help="the hub's URL, e.g. https://hub.example:8800")
    ap.add_argument("--code", required=True, help="the enrolment code the hub's admin gave you")
    ap.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the agent keeps its credential (default: {default_state_dir()})",
    )
    ap.add_argument("--force", action="store_true", help="replace an existing enrolment")
    ap.add_argument(
        "--hub-cert-sha256",
        help="the hub's HTTPS certificate SHA-256 (from its admin: evalwatch tls fingerprint hub.crt); "
        "pinned for the enrolment and afterwards",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = args.state_dir or default_state_dir()
    try:
        state = enroll(args.hub_url, args.code, state_dir, force=args.force,
                       hub_cert_sha256=args.hub_cert_sha256)
    except EnrollError as e:
        print(f"evalwatch agent enroll: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"evalwatch agent enroll: cannot write {state_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(
        f"enrolled as an agent of site {state.site} (credential {state.credential_id}); "
        f"state in {state_dir}\n"
        f"start it with: evalwatch agent --state-dir {state_dir}"
    )
    return 0
