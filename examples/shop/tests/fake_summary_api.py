"""A small, real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and demos.

::

    with FakeSummaryAPI() as api:
        api.queue(Reply(500))              # the next request gets HTTP 500, later ones a summary
        os.environ["SUMMARY_API_URL"] = api.url
        ...
        assert api.requests[0].headers["authorization"] == "Bearer ..."

It answers ``POST /v1/chat/completions`` with ``FakeSummaryAPI.summary_for(the user's text)``.
Run it on its own to try the app's summary worker without a model::

    python tests/fake_summary_api.py --port 8090
    SUMMARY_API_URL=http://127.0.0.1:8090/v1 python -m APP serve
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """How to answer one request: a status, a raw body (None: a chat completion) and a delay in seconds."""

    status: int = 200
    body: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as the server saw it; header names are lowercase."""

    path: str
    headers: dict[str, str] = field(repr=False)
    body: Any


class FakeSummaryAPI:
    """Serves scripted answers on a free port of 127.0.0.1 from a background thread."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[ReceivedRequest] = []
        self.concurrent = 0  # requests received and not yet answered
        self.max_concurrent = 0
        self._replies: deque[Reply] = deque()
        self._default = Reply()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-summary-api", daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL to put in ``SUMMARY_API_URL``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @staticmethod
    def summary_for(text: str) -> str:
        """The summary this server gives for ``text``."""
        words = text.split()
        return f"Summary ({len(words)} words): {' '.join(words[:8])}"

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order; then the default again."""
        with self._lock:
            self._replies.extend(replies)

    def always(self, reply: Reply) -> None:
        """Answer every request (after the queued ones) with ``reply``."""
        with self._lock:
            self._default = reply

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; requests still waiting out a delay are released at once."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next_reply(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            return self._replies.popleft() if self._replies else self._default

    def _done(self) -> None:
        with self._lock:
            self.concurrent -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                request = ReceivedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if self.path != PATH:
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                    return
                reply = api._next_reply(request)
                try:
                    if reply.delay:
                        api._closing.wait(reply.delay)
                finally:
                    # Done before answering: once the client has its answer it may call again at once,
                    # and this request must not still count as in flight when that call arrives.
                    api._done()
                self._send(reply.status, reply.body if reply.body is not None else _completion(body))

            def _send(self, status: int, text: str) -> None:
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout or a cancelled call): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``api.requests`` instead."""

        return Handler


def _completion(body: Any) -> str:
    """A chat completion whose content is the summary of the last user message."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    text = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body.get("model", "") if isinstance(body, dict) else "",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": FakeSummaryAPI.summary_for(text)},
                    "finish_reason": "stop",
                }
            ],
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible summary API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8090)
    port = parser.parse_args().port
    with FakeSummaryAPI(port) as api:
        print(f"fake summary API at {api.url} (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
