"""The OpenAPI document as the app really answers.

FastAPI documents every route with a body or parameters as answering 422 with its own
``HTTPValidationError`` (``detail``: a list of ``{loc, msg, type}``).  The dashboard answers
validation errors as every other error (``dashboard.errors``): ``{"detail": str, "code": str,
"specific"?: true}``.  :func:`install` makes ``app.openapi()`` say so, so that a client generated
from the document — and the API fuzzer (``tests/test_api_fuzz.py``) — reads the 422 it gets.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

#: FastAPI's generated validation-error schemas, replaced by :class:`ApiErrorOut`.
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")


class ApiErrorOut(BaseModel):
    """Every 4xx/5xx answer of the dashboard and the ingest API."""

    detail: str = Field(description="English message naming the problem")
    code: str = Field(description="i18n key of the problem (err.*)")
    specific: bool | None = Field(
        None, description="true when detail says more than the code's generic message"
    )


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` by FastAPI's document with the 422 answers as they are."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for name in _FASTAPI_ERRORS:
            schemas.pop(name, None)
        schemas["ApiErrorOut"] = ApiErrorOut.model_json_schema()
        ref = {"$ref": "#/components/schemas/ApiErrorOut"}
        for ops in spec.get("paths", {}).values():
            for op in ops.values():
                resp = op.get("responses", {}).get("422")
                if resp is not None:
                    resp["description"] = "Invalid input (err.invalid_input, the problem named in detail)"
                    resp["content"] = {"application/json": {"schema": ref}}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
