"""Local receivers of notifications for the tests: an HTTP server that records every request
(webhooks, WeCom / DingTalk robots) and an SMTP server (aiosmtpd) with STARTTLS and login.

Both run on 127.0.0.1 and keep what they received in memory; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storage.s3server import free_port
from testkit.capture import serve_app


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """``POST /<anything>`` is recorded; the answer is the next of ``script[path]`` (status,
    JSON) or, when the script is used up, 200 with ``{"errcode": 0, "errmsg": "ok"}`` (what the
    WeCom and DingTalk robots answer)."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[tuple[int, Any]]] = field(default_factory=lambda: defaultdict(list))
    server: Any = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        self.received.append(Received(path, dict(request.query_params), {k.lower(): v for k, v in
                                                                         request.headers.items()}, body))
        if self.script.get(path):
            status, doc = self.script[path].pop(0)
            return JSONResponse(doc, status_code=status)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def start(self) -> HttpReceiver:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        self.server, self.task = await serve_app(app, self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


class _Handler:
    def __init__(self) -> None:
        self.messages: list[tuple[EmailMessage, dict[str, Any]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((msg, {
            "rcpt": list(envelope.rcpt_tos), "mail_from": envelope.mail_from,
            "tls": session.ssl is not None, "authenticated": bool(session.authenticated),
        }))
        return "250 OK"


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 with STARTTLS (``cert``/``key``) and ``AUTH LOGIN/PLAIN``
    accepting ``user``/``password`` only over TLS; ``messages`` holds what it received."""

    def __init__(self, cert: Path, key: Path, user: str, password: str) -> None:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        self.handler = _Handler()
        self.port = free_port()

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok, handled=False)

        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, tls_context=ctx, require_starttls=True,
            authenticator=authenticator, auth_require_tls=True,
        )

    @property
    def messages(self) -> list[tuple[EmailMessage, dict[str, Any]]]:
        return self.handler.messages

    def start(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
