"""Connections a client can hold or fill without limit: ``GET /mcp`` streams and HTTP/1.1 pipelining.

Trial 4 found a ``GET /mcp`` that opened a stream outside the cap on ``/events`` streams
and outlived its credential, and a client that pipelined requests without reading the
answers growing the server by ~200 MB a connection in ten seconds (httptools). Trial 6
found such a client, reading nothing (K9), held its connection and its answers' tasks for
ever, and uvloop logging ``'Handle' object has no attribute 'when'`` for pipelined POSTs
answered before their bodies were read (K5). Bounded: a few connections for a few
seconds, on 127.0.0.1 only.
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

from ..support import TLS
from .harness import Server

STACKS = [{"APP_HTTP": "httptools", "APP_LOOP": "uvloop"}, {"APP_HTTP": "h11", "APP_LOOP": "asyncio"}]
STACK_IDS = ["fast", "plain"]  # serve's default, and the pure-Python stack (--http h11 --loop asyncio)
FLOOD_SECONDS = 3.0
MAX_GROWTH_MB = 30  # unbounded, two connections grew the server by 100 MB and more in the flood's time
TCP_ESTABLISHED = 1  # tcp_info's first byte: the connection's state


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
    """A client that sends ``GET path`` back to back on one connection and never reads an answer.

    Its receive buffer is as small as the kernel allows, set before it connects.
    """

    def __init__(self, port: int, first: bytes = b"", path: str = "/healthz") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.batch = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() * 100
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

    def open(self) -> bool:
        """Whether the connection is still established (asked of the kernel: nothing is read)."""
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_ESTABLISHED


@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
def test_pipelining_without_reading_is_read_only_so_far_ahead_and_then_served(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], stack: dict[str, str]
) -> None:
    server = servers(app_dir, tmp_path / "app.db", env=stack).start()
    assert server.process is not None
    pid, port = server.process.pid, server.port
    for _ in range(20):
        httpx.get(f"{server.url}/healthz", timeout=5, verify=TLS)
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


@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
def test_a_client_that_reads_none_of_its_answers_is_reset_after_the_send_timeout(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], stack: dict[str, str]
) -> None:
    """Trial 6, K9: slow readers pipelining GETs held their connections (and the answers' tasks) for ever.

    Each answer (8 KiB of CSS) first fills the kernel's buffers, a few MB; then the server's
    own buffer passes its high-water mark and the send timeout runs. Unbounded, every one of
    these connections was still open after a minute.
    """
    send_timeout = 2
    server = servers(app_dir, tmp_path / "app.db", env=stack | {"APP_SEND_TIMEOUT": str(send_timeout)}).start()
    assert server.process is not None
    readers = [Pipeliner(server.port, path="/static/app.css") for _ in range(6)]
    closed_at: list[float | None] = [None] * len(readers)
    slowest_other = 0.0
    with contextlib.ExitStack() as stack_of_readers:
        for reader in readers:
            stack_of_readers.enter_context(reader)
        began = time.monotonic()
        while None in closed_at and time.monotonic() - began < 40:
            for number, reader in enumerate(readers):
                if closed_at[number] is None and not reader.open():
                    closed_at[number] = time.monotonic() - began
            asked = time.monotonic()  # everyone else is answered meanwhile
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
            slowest_other = max(slowest_other, time.monotonic() - asked)
            time.sleep(0.2)
        sent = sum(reader.sent for reader in readers)
    assert None not in closed_at, f"slow readers still held their connections after 40 s: {closed_at}"
    assert sent > 1_000_000, f"the readers sent only {sent} bytes"
    # the readers' requests are served as fast as they come until the buffers fill: busy, not blocked
    assert slowest_other < 3.0, f"another client waited {slowest_other:.2f}s meanwhile"
    output = server.output()
    assert "went unread for 2s" in output  # one INFO line a connection
    assert "Traceback" not in output
    assert httpx.get(f"{server.url}/static/app.css", timeout=5).status_code == 200


class EarlyAnsweredPosts:
    """Clients that pipeline POSTs the app answers without reading their bodies (405), each write ending mid-body.

    Every body does arrive, with the next write: nothing here is slow (50 ms, where a body may take 2 s), so no
    connection should be cut. Before the fix, the 6 s of this pace cut each connection twice and logged the
    uvloop traceback as writing flat out did (checked on the app petrock generated then), at a fifth of the CPU:
    a few thousand answers, where flat out the server and the clients answered and counted 30,000.
    """

    def __init__(self, port: int, clients: int, pause: float = 0.05) -> None:
        body = b"x" * 64
        one = (
            f"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.batch = one * 8
        self.port = port
        self.pause = pause  # seconds between writes
        self.connections = 0  # opened, all clients together: one each unless the server cut some
        self.answers = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _client(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                with self._lock:
                    self.connections += 1
                reader = threading.Thread(target=self._read, args=(sock,), daemon=True)
                reader.start()
                sock.sendall(self.batch[:-10])
                while not self._stop.is_set():
                    sock.sendall(self.batch[-10:] + self.batch[:-10])
                    time.sleep(self.pause)
                sock.shutdown(socket.SHUT_WR)
                reader.join(5)

    def _read(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                with self._lock:
                    self.answers += chunk.count(b"HTTP/1.1 405 ")


@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
def test_pipelined_posts_answered_before_their_bodies_log_no_traceback_and_keep_their_connection(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], stack: dict[str, str]
) -> None:
    """Trial 6, K5: on uvloop, ``AttributeError: 'Handle' object has no attribute 'when'``.

    An answer given while a body was being read cut the connection's read deadline to the
    2 s an unread body may linger, even when the body being read was a later pipelined
    request's; answers kept shrinking it, and once it was due uvloop's call_later returned a
    plain Handle (it does for a delay under a millisecond), which the next answer asked for
    its ``when()``. Before the fix: tracebacks, and every connection cut every 2 s.
    """
    server = servers(app_dir, tmp_path / "app.db", env=stack).start()
    clients = 6
    with EarlyAnsweredPosts(server.port, clients) as posts:
        time.sleep(6)
    output = server.output()
    assert "Traceback" not in output and "AttributeError" not in output, output[-3000:]
    assert posts.answers > 1000, f"only {posts.answers} answers"
    assert posts.connections == clients, f"{posts.connections} connections for {clients} clients: some were cut"
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
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


# An app that streams an answer to a client that reads nothing, then raises: uvicorn closes the
# transport itself, with bytes unsent. Served by the generated app's own protocol classes.
RAISES_MID_ANSWER = """
import asyncio, functools, socket, sys
import uvicorn
from {app}.core.protocols import TimedH11Protocol, _httptools_protocol

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    for _ in range(2000):
        await send({{"type": "http.response.body", "body": b"x" * 8192, "more_body": True}})
        await asyncio.sleep(0.005)
        if any(c.transport.get_write_buffer_size() > 0 for c in SERVER.server_state.connections):
            break
    raise RuntimeError("the app fails mid-answer")

async def main(protocol, loop_name):
    global SERVER
    http = functools.partial(protocol, send_timeout=1.0)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http, log_level="critical", lifespan="off")
    server = SERVER = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(b"GET / HTTP/1.1\\r\\nhost: 127.0.0.1\\r\\n\\r\\n")
    await asyncio.sleep(6)  # reads nothing
    print(loop_name, "open:", len(server.server_state.connections))
    server.should_exit = True
    client.close()
    await asyncio.wait_for(task, 10)

stack = sys.argv[1]
if stack == "fast":
    import uvloop
    uvloop.run(main(_httptools_protocol(), "fast"))
else:
    asyncio.run(main(TimedH11Protocol, "plain"))
"""


@pytest.mark.parametrize("stack", ["fast", "plain"])
def test_a_connection_uvicorn_closes_with_answers_unread_is_reset_after_the_send_timeout(
    app_dir: Path, stack: str
) -> None:
    """The send clock starts on any close of the transport, not only on the ones the protocol makes."""
    import os
    import subprocess
    import sys

    from .harness import APP_NAME

    env = {**os.environ, "PYTHONPATH": str(app_dir / "src")}
    script = RAISES_MID_ANSWER.format(app=APP_NAME)
    result = subprocess.run(
        [sys.executable, "-c", script, stack], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{stack} open: 0" in result.stdout, result.stdout + result.stderr[-2000:]
