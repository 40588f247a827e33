"""A stand-in hub that accepts every ingest request of an agent (segments, heartbeats,
incidents), for tests that need an agent to run and stop quickly without the real hub."""

from __future__ import annotations

import threading
import time
from typing import Any


class AcceptingHub:
    """A stand-in hub on 127.0.0.1 that accepts every ingest request (the agent's shutdown
    waits for its uploads; against no hub at all it would wait 10 s)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.puts: list[str] = []
        self.posts: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bytes) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                hub.puts.append(self.path)
                self._answer(b"{}")

            def do_POST(self) -> None:
                hub.posts.append(self.path)
                self._answer(b'{"id": 1, "applied": true}' if "incidents" in self.path else b"{}")

            def do_GET(self) -> None:
                if self.path.startswith("/api/ingest/sessions"):
                    if "after=1" in self.path:
                        time.sleep(1.0)  # a long poll with nothing new
                    self._answer(b'{"version": 1, "rooms": {}}')
                else:
                    self._answer(b'{"ranges": []}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
