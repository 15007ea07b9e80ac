"""The message log: every accepted command, in order, in one SQLite database.

The log is the source of truth. State is rebuilt from it on start, and workers
read it to react. WAL mode with ``synchronous=NORMAL`` keeps every committed
message through a process crash; use ``FULL`` to survive power loss as well.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""


class LogLockedError(RuntimeError):
    """Raised when another process already writes to the same database."""


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of the log. ``data`` is the JSON text that was stored."""

    id: int
    timestamp: str
    type: str
    data: str

    def payload(self) -> dict[str, Any]:
        """The stored data, decoded."""
        return json.loads(self.data)


Listener = Callable[[], None]


class MessageLog:
    """Append-only message store with worker positions, on SQLite.

    The interface is deliberately narrow (append, after, version, positions,
    transaction, subscribe) so that another database can stand behind it.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        synchronous: str = "NORMAL",
        exclusive: bool = False,
    ) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.path = str(path)
        self._lock_file = _lock_exclusively(self.path) if exclusive else None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={mode}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._mutex = threading.RLock()
        self._in_transaction = False
        self._appended = False
        self._listeners: list[Listener] = []

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection, for stores that share this database (see kv.py)."""
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit every append and position update inside the block together, or none.

        Nested blocks join the outer one. Listeners hear about appends only once
        the outermost block has committed.
        """
        with self._mutex:
            if self._in_transaction:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._appended = False
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._in_transaction = False
        if self._appended:
            self._appended = False
            self._notify()

    def append(self, type: str, data: Mapping[str, Any] | str) -> Message:
        """Store one message and return it with its id."""
        return self.append_many([(type, data)])[0]

    def append_many(self, items: Iterable[tuple[str, Mapping[str, Any] | str]]) -> list[Message]:
        """Store several messages in one transaction."""
        timestamp = _now()
        rows = [(timestamp, type, data if isinstance(data, str) else json.dumps(data)) for type, data in items]
        messages = []
        with self.transaction():
            for row in rows:
                cursor = self._db.execute("INSERT INTO messages (timestamp, type, data) VALUES (?, ?, ?)", row)
                messages.append(Message(cursor.lastrowid or 0, *row))
            self._appended = bool(messages)
        return messages

    def after(self, position: int = 0, *, batch_size: int = 1000) -> Iterator[Message]:
        """Stream the messages with an id greater than ``position``, oldest first.

        Reads in batches, so memory stays flat however long the log is, and
        messages appended while iterating are included.
        """
        while True:
            with self._mutex:
                rows = self._db.execute(
                    "SELECT id, timestamp, type, data FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                    (position, batch_size),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield Message(*row)
            position = rows[-1][0]

    def rows_after(self, position: int = 0, *, batch_size: int = 10000) -> Iterator[tuple[int, str, str, str]]:
        """Like :meth:`after`, as plain ``(id, timestamp, type, data)`` tuples: the fast path for replay."""
        while True:
            with self._mutex:
                rows = self._db.execute(
                    "SELECT id, timestamp, type, data FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                    (position, batch_size),
                ).fetchall()
            if not rows:
                return
            yield from rows
            position = rows[-1][0]

    def version(self) -> int:
        """The id of the newest message, 0 when the log is empty."""
        with self._mutex:
            row = self._db.execute("SELECT MAX(id) FROM messages").fetchone()
        return row[0] or 0

    def position(self, name: str) -> int:
        """The stored log position of a worker (0 if it never stored one)."""
        with self._mutex:
            row = self._db.execute("SELECT position FROM positions WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def set_position(self, name: str, position: int) -> None:
        """Store a worker's position; inside :meth:`transaction` it commits with the appends."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO positions (name, position) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                (name, position),
            )

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every committed append; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def close(self) -> None:
        """Close the database (and release the writer lock, if held)."""
        with self._mutex:
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _lock_exclusively(path: str):
    """Hold an OS lock beside the database so a second writer fails clearly."""
    if path == ":memory:":
        return None
    import fcntl

    lock_file = open(f"{path}.lock", "w")  # noqa: SIM115 - held open for the log's lifetime
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.close()
        raise LogLockedError(f"{path} is already in use by another process; one server owns one database") from None
    return lock_file
