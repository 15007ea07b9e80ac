"""A fake OpenAI-compatible ``/chat/completions`` server on 127.0.0.1 that misbehaves on request.

The text to summarize picks the behaviour: a text starting with ``fault=NAME``
gets that fault, anything else a normal answer after ``delay`` seconds. Every
call is recorded (idempotency key, authorization header, fault) so a test can
count attempts per summary request.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

HUGE_BYTES = 20 * 1024 * 1024
DRIP_SECONDS = 20.0


@dataclass(frozen=True)
class Call:
    idempotency_key: str
    authorization: str
    fault: str
    path: str = ""


class FakeSummaryApi:
    """Run with ``with FakeSummaryApi(...) as api:``; ``api.url`` is the SUMMARY_API_URL."""

    def __init__(self, *, delay: float = 0.0, api_key: str = "") -> None:
        self.delay = delay
        self.api_key = api_key
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def attempts(self) -> Counter[str]:
        """Calls per idempotency key (the summary request id)."""
        with self._lock:
            return Counter(call.idempotency_key for call in self.calls)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                text = body["messages"][-1]["content"]
                fault = text.split()[0].removeprefix("fault=") if text.startswith("fault=") else "none"
                key, authorization = self.headers.get("idempotency-key", ""), self.headers.get("authorization", "")
                api._record(Call(key, authorization, fault, self.path))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                    self.respond(fault, text)

            def respond(self, fault: str, text: str) -> None:
                if fault == "none":
                    time.sleep(api.delay)
                    self.send_json(200, completion(f"Summary: {text[:60]}"))
                elif fault == "timeout":
                    time.sleep(5)
                    self.send_json(200, completion("too late"))
                elif fault in ("500", "503", "429"):
                    self.send_json(int(fault), {"error": {"message": "try again later"}}, {"Retry-After": "0"})
                elif fault == "401-echo-url":  # the URL it was called at, its query's key included
                    self.send_json(401, {"error": {"message": f"bad credentials for {self.path}"}})
                elif fault == "401-echo":
                    self.send_json(401, {"error": {"message": f"Incorrect API key provided: {api.api_key}"}})
                elif fault.startswith("401-echo-at-"):  # the key after N characters, across the app's 200 cut
                    offset = int(fault.removeprefix("401-echo-at-"))
                    self.send_json(401, {"error": {"message": f"{'x' * offset}{api.api_key} is not valid"}})
                elif fault == "401-echo-wrapped":  # the key broken over two lines, past the cut
                    key, half = api.api_key, len(api.api_key) // 2
                    self.send_json(401, {"error": {"message": f"{'y' * 180}key:\n{key[:half]}\n{key[half:]}"}})
                elif fault.startswith(("401-echo-as-", "200-echo-as-")):  # the key disguised (trial 3)
                    key = DISGUISES[fault.split("-as-")[1]](api.api_key)
                    if fault.startswith("401"):
                        self.send_json(401, {"error": {"message": f"Incorrect API key provided: {key}. See docs."}})
                    else:
                        self.send_json(200, completion(f"Summary: {key}"))
                elif fault == "malformed":
                    self.send_raw(200, b'{"choices": [{"message": {"content": "unterminated')
                elif fault == "empty-choices":
                    self.send_json(200, {"choices": []})
                elif fault == "huge":
                    self.send_json(200, completion("x" * HUGE_BYTES))
                elif fault == "drip":
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(10_000))
                    self.end_headers()
                    deadline = time.monotonic() + DRIP_SECONDS
                    while time.monotonic() < deadline:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.1)
                else:
                    raise AssertionError(f"unknown fault {fault!r}")

            def send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
                self.send_raw(status, json.dumps(payload).encode(), headers)

            def send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


DISGUISES = {
    "marks": lambda key: "".join(f"{char}\u0301" for char in key),  # an accent on every character
    "tags": lambda key: "".join(chr(0xE0000 + ord(char)) for char in key),  # invisible ASCII
    "flag-tags": lambda key: "\U0001f3f4" + "".join(chr(0xE0000 + ord(char)) for char in key) + "\U000e007f",
    "base64": lambda key: base64.b64encode(key.encode()).decode(),
    "percent": lambda key: "".join(f"%{byte:02X}" for byte in key.encode()),
    "entities": lambda key: "".join(f"&#{ord(char)};" for char in key),
    "rot13": lambda key: codecs.encode(key, "rot13"),
    "every-7": lambda key: "Q".join(key[start : start + 7] for start in range(0, len(key), 7)),
    "cyrillic": lambda key: key.translate(str.maketrans("aeopcxyisABEKMHOPCTX", "аеорсхуіѕАВЕКМНОРСТХ")),
    "markup": lambda key: "".join(f"<b>{char}</b>" for char in key),
    "doubled": lambda key: "".join(char * 2 for char in key),
    # Trial 6 (K7, K8): encodings of encodings, octal and CSS escapes.
    "base64-twice": lambda key: _base64(_base64(key)),
    "hex-of-base64": lambda key: _base64(key).encode().hex(),
    "base64-of-hex": lambda key: _base64(key.encode().hex()),
    "hex-twice": lambda key: key.encode().hex().encode().hex(),
    "urlsafe-base64-of-percent": lambda key: base64.urlsafe_b64encode(_percent(key).encode()).decode(),
    "percent-of-base64": lambda key: _percent(_base64(key)),
    "octal": lambda key: "".join(f"\\{ord(char):03o}" for char in key),
    "css": lambda key: " ".join(f"\\{ord(char):x}" for char in key),
    "octal-of-base64": lambda key: "".join(f"\\{ord(char):03o}" for char in _base64(key)),
    "base64-of-css": lambda key: _base64("".join(f"\\{ord(char):06x}" for char in key)),
}


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _percent(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def completion(content: str) -> dict[str, object]:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "choices": [choice]}
