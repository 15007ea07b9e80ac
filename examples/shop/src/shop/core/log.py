"""The message log: every accepted command, in order, in one SQLite database.

The log is the source of truth. State is rebuilt from it on start, and workers
read it to react. WAL mode with ``synchronous=NORMAL`` keeps every committed
message through a process crash; use ``FULL`` to survive power loss as well.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

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


INSERT = "INSERT INTO messages (timestamp, type, data) VALUES (?, ?, ?)"


class LogLockedError(RuntimeError):
    """Raised when another process already writes to the same database."""


class Message(NamedTuple):
    """One entry of the log. ``data`` is the JSON text that was stored.

    Immutable, like every log entry. A named tuple rather than a frozen dataclass
    because it is made once per message on every append and replay, and a tuple is
    built three times faster.
    """

    id: int
    timestamp: str
    type: str
    data: str

    def payload(self) -> dict[str, Any]:
        """The stored data, decoded."""
        return json.loads(self.data)


# Builds a Message from an (id, timestamp, type, data) tuple in C, with no Python-level
# __new__: appends and replays make one per row, and this is about three times faster.
message_from_row: Callable[[tuple[int, str, str, str]], Message] = functools.partial(tuple.__new__, Message)

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

    def transaction(self) -> Transaction:
        """Commit every append and position update inside the block together, or none.

        Nested blocks join the outer one. Listeners hear about appends only once
        the outermost block has committed.
        """
        return Transaction(self)

    def append(self, type: str, data: Mapping[str, Any] | str) -> Message:
        """Store one message and return it with its id."""
        row = (_now(), type, data if isinstance(data, str) else json.dumps(data))
        with Transaction(self):
            message = message_from_row((self._db.execute(INSERT, row).lastrowid or 0, *row))
            self._appended = True
        return message

    def append_many(self, items: Iterable[tuple[str, Mapping[str, Any] | str]]) -> list[Message]:
        """Store several messages in one transaction."""
        timestamp = _now()
        rows = [(timestamp, type, data if isinstance(data, str) else json.dumps(data)) for type, data in items]
        if not rows:
            return []
        with Transaction(self):
            # One executemany is much faster than a loop; inside this write transaction
            # AUTOINCREMENT hands out consecutive ids, so the last one gives them all.
            self._db.executemany(INSERT, rows)
            last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
            self._appended = True
        return list(map(message_from_row, ((id, *row) for id, row in enumerate(rows, last - len(rows) + 1))))

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
            yield from map(message_from_row, rows)
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


class Transaction:
    """What :meth:`MessageLog.transaction` returns: holds the log's lock for the block.

    A class rather than a ``@contextmanager`` generator because every append goes
    through it, and this is several microseconds cheaper per append.
    """

    __slots__ = ("_log", "_outermost")

    def __init__(self, log: MessageLog) -> None:
        self._log = log
        self._outermost = False

    def __enter__(self) -> None:
        log = self._log
        log._mutex.acquire()
        if log._in_transaction:
            return
        try:
            log._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            log._mutex.release()
            raise
        log._in_transaction = True
        self._outermost = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        log = self._log
        if not self._outermost:
            log._mutex.release()
            return
        try:
            if exc_type is None:
                try:
                    log._db.execute("COMMIT")
                except BaseException:  # disk full, I/O error: leave no half-open transaction behind
                    if log._db.in_transaction:
                        log._db.execute("ROLLBACK")
                    log._appended = False
                    raise
            else:
                log._db.execute("ROLLBACK")
                log._appended = False
        finally:
            log._in_transaction = False
            log._mutex.release()
        if log._appended:
            log._appended = False
            log._notify()


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
