"""The OpenAPI describes every JSON response: each 2xx ``application/json`` response of every
route (the dashboard's, the sessions', and the capture ingest routes the hub mounts) has a schema
that names its fields — a model (``$ref``), an object with properties, or a typed list/map —
never a bare ``{}`` or an untyped ``object``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capture.ingest import make_router
from capture.recorder import Recorder
from dashboard.app import create_app
from testkit.capture import DirSegmentStore
from testkit.dashboard import make_services


def _typed(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    if "$ref" in schema:
        target = components[schema["$ref"].rsplit("/", 1)[-1]]
        return _typed(target, components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return all(_typed(s, components) for s in schema[key] if s.get("type") != "null")
    kind = schema.get("type")
    if kind == "object":
        if schema.get("properties"):
            return True
        extra = schema.get("additionalProperties")
        return isinstance(extra, dict) and bool(extra) and _typed(extra, components)
    if kind == "array":
        items = schema.get("items") or schema.get("prefixItems")
        if isinstance(items, list):
            return all(_typed(i, components) for i in items)
        return isinstance(items, dict) and _typed(items, components)
    return kind in ("string", "integer", "number", "boolean")


def test_every_json_response_has_a_schema(tmp_path: Path) -> None:
    services = make_services(tmp_path)
    # the store is never called: only the routes' OpenAPI is read
    store = DirSegmentStore(tmp_path / "store")
    services.extra_routers = [make_router(Recorder(services.cfg), store, services.cfg)]
    spec = create_app(services).openapi()
    components = spec.get("components", {}).get("schemas", {})
    untyped: list[str] = []
    json_responses = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code, resp in op.get("responses", {}).items():
                if not code.startswith("2"):
                    continue
                content = resp.get("content", {})
                if "application/json" not in content:
                    continue
                json_responses += 1
                schema = content["application/json"].get("schema") or {}
                if not _typed(schema, components):
                    untyped.append(f"{method.upper()} {path} {code}: {schema}")
    assert not untyped, "JSON responses without a schema:\n" + "\n".join(untyped)
    assert json_responses >= 30  # the walk saw the routes (dashboard + sessions + ingest)
    for route in ("/api/events", "/api/sessions", "/api/ingest/heartbeat", "/api/sites"):
        assert route in spec["paths"], route
