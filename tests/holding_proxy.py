"""A TCP proxy on 127.0.0.1 that can fall silent, as pgbouncer does while PostgreSQL is down.

While held it goes on accepting connections and reading what clients send, but passes
nothing on in either direction: a query waits for an answer that does not come, and the
connection stays open. Held one way (``hold(answers_only=True)``), it passes the queries on
and holds the answers: a ``COMMIT`` then lands and its caller never hears so. Released, it
passes on what it held, in order.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class HoldingProxy:
    """``with HoldingProxy(port) as proxy:`` listens on ``proxy.port`` and forwards to 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._queries = threading.Event()  # set: what clients send is passed on
        self._answers = threading.Event()  # set: what the server sends back is passed on
        self.release()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = False

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, name="proxy accept", daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._closed = True
        self.release()
        for sock in self._sockets:
            sock.close()

    def hold(self, *, answers_only: bool = False) -> None:
        self._answers.clear()
        if not answers_only:
            self._queries.clear()

    def release(self) -> None:
        self._queries.set()
        self._answers.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            for source, sink, passing in ((client, server, self._queries), (server, client, self._answers)):
                pump = threading.Thread(target=self._pump, args=(source, sink, passing), name="proxy pump", daemon=True)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, passing: threading.Event) -> None:
        """Pass what ``source`` sends on to ``sink``, waiting while ``passing`` is not set."""
        try:
            while data := source.recv(65536):
                passing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
