"""API fuzzing (issue #12): schemathesis generates requests for every operation of the hub's
OpenAPI — the dashboard, the sessions API and the agents' ``/api/ingest/*`` — as each role
(admin, supervisor, auditor, observer, with their session cookie and CSRF token) and as a site
agent (its bearer token, ingest operations), valid and invalid inputs alike.  Every answer must be
below 500 and, where the status is documented, match its documented schema.

Bounded (``EXAMPLES`` per operation, role and generation mode, no shrinking, no example database)
so that it stays well under a minute.  The app is the real one over small real services
(``testkit.dashboard.make_services``: SQLite, in-memory objects, fake recorder) plus the real
ingest router over a directory segment store.  Failures are collected and reported together:
``METHOD path [role/mode] -> status: problem`` with the request that caused it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from capture.ingest import make_router
from capture.recorder import Recorder
from dashboard.app import create_app
from testkit.capture import DirSegmentStore
from testkit.dashboard import ROLE_USERS, make_config, make_services, password_of

pytestmark = [pytest.mark.security, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


#: Examples per (operation, role, generation mode); EVALWATCH_FUZZ_EXAMPLES=50 for a deeper run.
EXAMPLES = int(os.environ.get("EVALWATCH_FUZZ_EXAMPLES", "3"))
AGENT_TOKEN = "fuzz-agent-token-0123456789abcdef"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@dataclass
class Hub:
    client: Any
    schema: Any
    #: The login route is fuzzed from another address: its failures must not throttle the
    #: address the roles log in from (the per-address limit, finding 3/6 of issue #12).
    stranger: Any = None
    failures: list[str] = field(default_factory=list)
    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    tmp: Path = tmp_path_factory.mktemp("fuzz")
    cfg = make_config()
    cfg.sites[0].agent_token = SecretStr(AGENT_TOKEN)
    services = make_services(tmp, cfg=cfg)
    services.extra_routers = [make_router(Recorder(cfg), DirSegmentStore(tmp / "store"), cfg)]
    app = create_app(services)
    schema = schemathesis.openapi.from_dict(app.openapi())
    with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000)) as client:
        # Same app, lifespan already running; only the client address differs.
        stranger = TestClient(app, raise_server_exceptions=False, client=("192.0.2.7", 50000))
        yield Hub(client=client, schema=schema, stranger=stranger)


def _login(hub: Hub, role: str) -> dict[str, str]:
    """The headers of a logged-in ``role``: its session cookie and CSRF token."""
    hub.client.cookies.clear()
    r = hub.client.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, f"login as {role}: {r.status_code} {r.text}"
    cookie = r.cookies.get("evalwatch_session")
    hub.client.cookies.clear()
    return {"Cookie": f"evalwatch_session={cookie}", "X-CSRF-Token": r.json()["csrf"]}


def _operations(hub: Hub, ingest: bool) -> list[Any]:
    ops = []
    for result in hub.schema.get_all_operations():
        op = result.ok()
        if op.path.startswith("/api/ingest") == ingest:
            ops.append(op)
    return ops


def _fuzz(hub: Hub, who: str, ops: list[Any], headers: Any) -> None:
    """Run every operation of ``ops`` with generated inputs; record failures in ``hub``."""
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                strategy = op.as_strategy(generation_mode=mode)
            except Exception as e:  # an operation without anything to make invalid
                if mode is GenerationMode.NEGATIVE:
                    continue
                raise AssertionError(f"{op.method.upper()} {op.path}: no strategy: {e}") from e
            try:
                _runner(hub, who, op, mode, strategy, headers)()
            except Unsatisfiable:  # nothing in this operation can be made invalid
                if mode is not GenerationMode.NEGATIVE:
                    raise


def _runner(hub: Hub, who: str, op: Any, mode: Any, strategy: Any, headers: Any) -> Any:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        h = headers() if callable(headers) else headers
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=h)
        kwargs.pop("cookies", None)
        client = hub.stranger if op.path == "/api/auth/login" else hub.client
        client.cookies.clear()  # who the caller is: the headers above, nothing a response set
        response = client.request(**kwargs)
        hub.calls += 1
        hub.statuses[response.status_code] = hub.statuses.get(response.status_code, 0) + 1
        if op.path == "/api/auth/logout":
            session.pop(who, None)  # that session is over: log in again for the next call
        try:
            case.validate_response(response, checks=CHECKS, headers=h)
        except (Failure, FailureGroup) as e:
            problem = " ".join(str(e).split())[:400]
            body = str(kwargs.get("json", kwargs.get("data")))[:200]
            hub.failures.append(
                f"{op.method.upper()} {op.path} [{who}/{mode.value}] -> {response.status_code}: "
                f"{problem}\n    request: {kwargs.get('method')} {kwargs.get('url')} "
                f"params={kwargs.get('params')} body={body}"
            )

    return run


session: dict[str, dict[str, str]] = {}


@pytest.mark.timeout(120 + 40 * EXAMPLES)
@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_fuzz_dashboard_api_as(hub: Hub, role: str) -> None:
    def headers() -> dict[str, str]:
        if role not in session:
            session[role] = _login(hub, role)
        return session[role]

    ops = _operations(hub, ingest=False)
    assert len(ops) >= 30, [o.path for o in ops]
    before = hub.calls
    _fuzz(hub, role, ops, headers)
    assert hub.calls - before >= len(ops) * 2  # every operation was called (valid and invalid inputs)
    failures, hub.failures[:] = list(hub.failures), []
    print(f"{role}: {hub.calls - before} calls, statuses so far {sorted(hub.statuses.items())}")
    assert not failures, f"{len(failures)} problem(s) as {role}:\n" + "\n".join(failures)


@pytest.mark.timeout(120 + 40 * EXAMPLES)
def test_fuzz_dashboard_api_anonymous(hub: Hub) -> None:
    """Nobody logged in: every operation answers (401, 403, a public answer), never 5xx."""
    ops = _operations(hub, ingest=False)
    _fuzz(hub, "anonymous", ops, {})
    failures, hub.failures[:] = list(hub.failures), []
    assert not failures, f"{len(failures)} problem(s) anonymously:\n" + "\n".join(failures)


@pytest.mark.timeout(120 + 40 * EXAMPLES)
def test_fuzz_ingest_api_as_agent(hub: Hub) -> None:
    ops = _operations(hub, ingest=True)
    assert len(ops) >= 5, [o.path for o in ops]
    _fuzz(hub, "agent", ops, {"Authorization": f"Bearer {AGENT_TOKEN}"})
    failures, hub.failures[:] = list(hub.failures), []
    assert not failures, f"{len(failures)} problem(s) as agent:\n" + "\n".join(failures)
    # Not only refusals: the fuzzer got through the token check and the validation.
    assert any(200 <= s < 300 for s in hub.statuses), hub.statuses


@pytest.mark.parametrize("path", [
    "/api/sessions/{n}/report", "/api/sessions/{n}", "/api/events/{n}", "/api/segments/{n}/video",
])
def test_huge_ids_are_a_422_not_a_500(hub: Hub, path: str) -> None:
    """Found by the fuzzer: an id past the database's integer overflowed the driver (500)."""
    headers = _login(hub, "admin")
    for n in (2**31, 98709034552424273945384976384, 0):
        r = hub.client.get(path.format(n=n), headers=headers)
        assert r.status_code == 422, (path, n, r.status_code, r.text)
        body = r.json()
        assert body["code"] == "err.invalid_input"
        assert any(k in body["detail"] for k in ("event_id", "segment_id", "session_id")), body
    assert hub.client.get(path.format(n=2**31 - 1), headers=headers).status_code == 404
