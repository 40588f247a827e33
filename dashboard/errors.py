"""API errors: every 4xx/5xx body is ``{"detail": <English message>, "code": <i18n key>}``.

The UI shows ``t(code)`` (falling back to ``detail``), so a user always sees a translated reason
and never a stack trace.  Every code used here must exist in both ``dashboard/i18n/*.json``
(checked by the tests).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("evalwatch.dashboard")

MESSAGES: dict[str, str] = {
    "err.not_logged_in": "Please log in.",
    "err.forbidden": "Your role is not allowed to do this.",
    "err.csrf": "Missing or wrong CSRF token; reload the page.",
    "err.bad_origin": "Request from a foreign origin refused.",
    "err.bad_host": "This hub does not answer to that host name.",
    "err.too_many_connections": "Too many open connections for this account; close some first.",
    "err.export_too_large": "This export is too large; export a shorter range or fewer cameras.",
    "err.bad_credentials": "Wrong username or password.",
    "err.locked": "Too many failed logins; try again later.",
    "err.too_many_attempts": "Too many failed logins from this address; try again later.",
    "err.invalid_input": "Invalid input.",
    "err.not_found": "Not found.",
    "err.method_not_allowed": "Method not allowed.",
    "err.internal": "Internal error; it has been logged.",
    "err.event_not_found": "No such alert.",
    "err.bad_transition": "This alert cannot go to that state from its current state.",
    "err.note_required": "A note is required to resolve an alert.",
    "err.no_snapshot": "This alert has no snapshot.",
    "err.storage_unavailable": "Object storage is unavailable.",
    "err.unknown_camera": "No such camera.",
    "err.camera_offline": "The camera is offline.",
    "err.live_unavailable": "Live video is not available on this hub.",
    "err.bad_sdp": "Invalid WebRTC offer.",
    "err.bad_range": "Invalid time range (end must be after start, at most 24 h).",
    "err.segment_not_found": "No such segment.",
    "err.user_exists": "A user with this name already exists.",
    "err.user_not_found": "No such user.",
    "err.password_too_short": "The password must have at least 10 characters.",
    "err.password_too_long": "The password is too long.",
    "err.cannot_demote_self": "You cannot change your own role or deactivate yourself.",
    "err.body_too_large": "Request body too large.",
    "err.seating_infeasible": "The experts cannot be seated in these rooms.",
    "err.no_footage": "No archived footage in this range.",
    # experts and credit records (dashboard/routes/experts.py)
    "err.expert_not_found": "No such expert.",
    "err.expert_exists": "An expert with this code already exists.",
    "err.import_file": "The file cannot be imported.",
    "err.credit_not_found": "No such credit record.",
    "err.credit_category": "Choose a category from the list.",
    "err.credit_appeal": "This appeal step is not possible now.",
    "err.credit_unchanged": "Nothing to change.",
    "err.unknown_site": "No such site.",
    "err.enroll_code_invalid": "Unknown enrolment code; check it or ask the administrator for a new one.",
    "err.enroll_code_used": "This enrolment code has already been used; ask the administrator for a new one.",
    "err.enroll_code_expired": "This enrolment code has expired; ask the administrator for a new one.",
    "err.too_many_enroll_attempts": "Too many failed enrolments from this address; try again later.",
    "err.credential_not_found": "No such agent credential of this site (or already revoked).",
    "err.conflict": "Conflicts with what is already stored.",
    # statistics and early warnings (dashboard/routes/stats.py)
    "err.bad_stats_range": "Invalid date range (to must not be before from, at most 366 days).",
    "err.warning_not_found": "No such warning.",
    "err.warning_not_open": "This warning has already been acknowledged.",
    "err.warnings_failed": "The early-warning rules could not be evaluated; see the hub's log.",
    "err.bad_audit_range": "Invalid time range: 'until' must be after 'since'.",
    "err.audit_export_too_large": "More than 100,000 audit entries match; export a shorter time range.",
    "err.password_change_required": "Choose a new password before using the dashboard.",
    "err.not_holder": "This hub node does not hold this site; its agents go to the node that does.",
}


class ApiError(Exception):
    """An expected failure, answered with ``status`` and the message of ``code``."""

    def __init__(self, status: int, code: str, detail: str | None = None) -> None:
        if code not in MESSAGES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail or MESSAGES[code]


class LoginRedirect(Exception):
    """Raised by page gates for anonymous visitors: answered with a redirect to the login page."""


def error_body(code: str, detail: str | None = None) -> dict[str, Any]:
    """``{"detail", "code"}``; ``"specific": true`` when ``detail`` says more than the code's
    generic message (the UI then shows the translated code followed by the detail)."""
    body: dict[str, Any] = {"detail": detail or MESSAGES[code], "code": code}
    if detail and detail != MESSAGES[code]:
        body["specific"] = True
    return body


def install_error_handlers(app: FastAPI) -> None:
    """JSON bodies for every error; the catch-all hides internals and logs the traceback."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": "Cookie"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.detail), status_code=exc.status, headers=headers)

    @app.exception_handler(LoginRedirect)
    async def _login_redirect(request: Request, exc: LoginRedirect) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return JSONResponse(error_body("err.invalid_input", "Invalid input: " + "; ".join(parts)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # The code follows the status (finding 10 of #12: an agent's 401/403/409 said
        # "err.invalid_input"); the detail says what exactly.
        code = {
            401: "err.not_logged_in", 403: "err.forbidden", 404: "err.not_found",
            405: "err.method_not_allowed", 409: "err.conflict", 413: "err.body_too_large",
            421: "err.not_holder", 503: "err.storage_unavailable", 507: "err.storage_unavailable",
        }.get(exc.status_code, "err.invalid_input")
        # The agents' ingest API names the problem in its detail (capture.ingest): keep it.
        ingest = request.url.path.startswith("/api/ingest/")
        detail = exc.detail if ingest and isinstance(exc.detail, str) else None
        body = error_body(code, detail)
        headers = None
        if exc.status_code == 421 and exc.headers:  # another hub node holds the site (storage.leases)
            headers = dict(exc.headers)
            body["holder"] = headers.get("X-Evalwatch-Holder") or None
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("err.internal"), status_code=500)
