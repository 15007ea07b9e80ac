"""Connections a client can hold or fill without limit: ``GET /mcp`` streams and HTTP/1.1 pipelining.

Trial 4 found a ``GET /mcp`` that opened a stream outside the cap on ``/events`` streams
and outlived its credential, and a client that pipelined requests without reading the
answers growing the server by ~200 MB a connection in ten seconds (httptools). Bounded:
a few connections for a few seconds, on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx
import pytest

from .harness import Server

STACKS = [{"APP_HTTP": "httptools", "APP_LOOP": "uvloop"}, {"APP_HTTP": "h11", "APP_LOOP": "asyncio"}]
STACK_IDS = ["fast", "plain"]  # serve's default, and the pure-Python stack (--http h11 --loop asyncio)
FLOOD_SECONDS = 3.0
MAX_GROWTH_MB = 30  # unbounded, two connections grew the server by 100 MB and more in the flood's time


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def answer_of(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything ``sock`` receives within ``timeout`` seconds, or until the server closes it."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if b"\r\n\r\n" in received:
                break
            continue
        if not chunk:
            break
        received += chunk
    return received


@pytest.mark.parametrize("headers", [{}, {"last-event-id": "1"}], ids=["fresh", "resuming"])
def test_get_on_mcp_is_answered_405_at_once_and_holds_no_connection(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], headers: dict[str, str]
) -> None:
    server = servers(app_dir, tmp_path / "app.db", env={"APP_MAX_CONNECTIONS": "20"}).start()
    port = server.port
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sockets = []
    for _ in range(30):  # more than the connection limit: none of them may keep its place
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(
            f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n{extra}"
            "Connection: close\r\n\r\n".encode()
        )
        sockets.append(sock)
    for sock in sockets:
        answer = answer_of(sock)
        assert answer.startswith(b"HTTP/1.1 405 "), answer[:200]
        assert b"\r\nallow: POST\r\n" in answer
        assert b"text/event-stream" not in answer
        sock.close()
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"accept": "application/json, text/event-stream"}
    assert httpx.post(f"{server.url}/mcp", json=listing, headers=accept, timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert "Traceback" not in server.output()


class Pipeliner:
    """A client that sends ``GET /healthz`` back to back on one connection and never reads an answer."""

    def __init__(self, port: int, first: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(0.2)
        self.batch = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() * 100
        self.first = first
        self.sent = 0  # bytes the server's side took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _send(self) -> None:
        with contextlib.suppress(OSError):
            if self.first:
                self.sock.sendall(self.first)
            while not self._stop.is_set():
                try:
                    self.sent += self.sock.send(self.batch)
                except TimeoutError:
                    continue


@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
def test_pipelining_without_reading_is_read_only_so_far_ahead_and_then_served(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], stack: dict[str, str]
) -> None:
    server = servers(app_dir, tmp_path / "app.db", env=stack).start()
    assert server.process is not None
    pid, port = server.process.pid, server.port
    for _ in range(20):
        httpx.get(f"{server.url}/healthz", timeout=5)
    before = rss_mb(pid)
    streaming = f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()  # it listens for its client
    peak = before
    with Pipeliner(port) as plain, Pipeliner(port, first=streaming) as behind_a_stream:
        began = time.monotonic()
        while time.monotonic() - began < FLOOD_SECONDS:
            time.sleep(0.2)
            peak = max(peak, rss_mb(pid))
        sent = plain.sent + behind_a_stream.sent
    assert sent > 200_000, f"the flood sent only {sent} bytes"
    assert peak - before < MAX_GROWTH_MB, f"pipelining grew the server from {before:.0f} to {peak:.0f} MB"

    count = 500  # an honest pipelining client is still answered, every request in order
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request * count)
        time.sleep(0.3)
        received = b""
        deadline = time.monotonic() + 10
        while received.count(b"HTTP/1.1 200 ") < count and time.monotonic() < deadline:
            received += sock.recv(65536)
    assert received.count(b"HTTP/1.1 200 ") == count
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert "Traceback" not in server.output()
    server.terminate()


def data_segments_received(sock: socket.socket) -> int:
    """How many TCP segments carrying data ``sock`` has received (Linux's ``tcp_info.tcpi_data_segs_in``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int.from_bytes(info[152:156], "little")  # after 136 bytes of older fields, segs_out/in, notsent, min_rtt


@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
def test_each_answer_is_one_write_on_the_socket(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server], stack: dict[str, str]
) -> None:
    """uvicorn writes a head and then a body: two sends, each a segment that wakes the client. One suffices."""
    if not hasattr(socket, "TCP_INFO"):
        pytest.skip("TCP_INFO is Linux's")
    server = servers(posts_dir, tmp_path / "app.db", env=stack).start()
    body = b'{"type": "posts/create", "payload": {"title": "One write", "content": "Head and body together."}}'
    head = f"POST /commands HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
    request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    count = 5
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        before = data_segments_received(sock)
        answers = b""
        for sent in range(1, count + 1):  # one at a time: each answer is all in before the next request goes
            sock.sendall(request)
            while answers.count(b"HTTP/1.1 201 ") < sent or not answers.endswith(b"}}"):
                answers += sock.recv(65536)
        segments = data_segments_received(sock) - before
    assert answers.count(b"HTTP/1.1 201 ") == count
    assert segments == count, f"{count} answers came in {segments} segments"
    server.terminate()
