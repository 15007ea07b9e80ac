"""The SQLite backend of the message log: one database file, one or several processes.

WAL mode with ``synchronous=NORMAL`` keeps every committed message through a
process crash (kill -9); use ``FULL`` to survive power loss as well.

Several processes (``serve --processes N``) share the file safely: SQLite lets
one writer in at a time (``BEGIN IMMEDIATE``), and the state every process reads
is in the same file (the store's tables, see ``core/store.py``). A process learns
of others' appends by polling ``PRAGMA data_version``, which changes only when
another connection commits and costs about a microsecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import IO, Any

from ..log import (
    DEFAULT_LEASE_SECONDS,
    LeaseLost,
    Listener,
    LogLockedError,
    Message,
    Row,
    encode,
    message_from_row,
    this_thread_in_transaction,
)
from .sqlite_tables import SCHEMA as TABLES_SCHEMA
from .sqlite_tables import SQLITE

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
# Set by ``serve --processes N`` in its server processes: the file descriptor of the
# database lock their supervisor holds for the whole group (see cli.py's ``serve``).
GROUP_LOCK_FD = "APP_GROUP_LOCK_FD"

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS positions (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
    + TABLES_SCHEMA
)
# Enough page cache for the store's indexes to stay in memory at a million rows, not the whole file.
CACHE_KIB = 32 * 1024

INSERT = "INSERT INTO messages (timestamp, type, data, version) VALUES (?, ?, ?, ?)"
SELECT_AFTER = "SELECT id, timestamp, type, data, version FROM messages WHERE id > ? ORDER BY id LIMIT ?"
# Which types have messages of a later schema version (core/upcasting.py checks them at start):
# a partial index, so messages at version 1 (most of them) cost it nothing.
VERSIONS_INDEX = "CREATE INDEX IF NOT EXISTS messages_versions ON messages (type, version) WHERE version > 1"
TAKE_LEASE = """
INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?)
ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
WHERE leases.owner = excluded.owner OR leases.expires < ?
"""


class SQLiteLog:
    """Append-only message store with worker positions, leases, a key/value table and the store's tables, on SQLite."""

    dialect = SQLITE

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
        self.synchronous = mode
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock_file = _lock_exclusively(self.path) if exclusive else None
        # The only process on this database: nobody else appends, so there is nothing to follow.
        self.alone = self._lock_file is not None and not os.environ.get(GROUP_LOCK_FD)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # The mode first: a new file's switch to WAL is then written with it (NORMAL: one sync fewer).
        self._db.execute(f"PRAGMA synchronous={mode}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        _create_schema(self._db)
        if self.alone:
            self._db.execute("DELETE FROM leases")  # left by a process that died: it cannot hold them
        # In a serve group the write lock changes hands thousands of times a second. SQLite's
        # busy handler would sleep 1 ms, then 2, 5, 10... for a lock held for 50 µs; the group's
        # writers retry after 50 µs instead (see _begin_immediate).
        self._in_group = self._lock_file is not None and not self.alone
        if self._in_group:
            self._db.execute("PRAGMA busy_timeout=0")
        self._mutex = threading.RLock()
        self._depth = 0  # open transaction blocks: 0 none, 1 the outermost, more are savepoints
        self._appended = 0  # the id of the newest message the open transaction appended (0: none)
        self._listeners: list[Listener] = []
        # The newest id this process has told its listeners about: its own appends as they commit,
        # and what follow() found others appended. follow() tells only of newer ones, so an append
        # of this process wakes the workers once (at its commit), not a second time when follow()
        # next looks and sees it in the log.
        self._newest = 0

    # --- the log ---

    def in_transaction(self) -> bool:
        return this_thread_in_transaction(self._mutex, lambda: self._depth)

    def transaction(self) -> Transaction:
        return Transaction(self, savepoint=True)

    def append(self, type: str, data: Mapping[str, Any] | str, version: int = 1) -> Message:
        row = (_now(), type, encode(data), version)
        with Transaction(self):
            message = message_from_row((self._db.execute(INSERT, row).lastrowid or 0, *row))
            self._appended = message.id
        return message

    def append_many(self, items: Iterable[tuple[str, Mapping[str, Any] | str]], version: int = 1) -> list[Message]:
        timestamp = _now()
        types: list[str] = []
        texts: list[str] = []
        for type, data in items:
            types.append(type)
            texts.append(data if isinstance(data, str) else encode(data))
        if not types:
            return []
        with Transaction(self):
            # One executemany is much faster than a loop; inside this write transaction
            # AUTOINCREMENT hands out consecutive ids, so the last one gives them all.
            self._db.executemany(INSERT, zip(repeat(timestamp), types, texts, repeat(version)))
            last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
            self._appended = last
        # The messages' tuples are zipped in C: a Python loop over the rows took a sixth of a batch of 100.
        ids = range(last - len(types) + 1, last + 1)
        return list(map(message_from_row, zip(ids, repeat(timestamp), types, texts, repeat(version))))

    def after(self, position: int = 0, *, batch_size: int = 1000) -> Iterator[Message]:
        return map(message_from_row, self.rows_after(position, batch_size=batch_size))

    def rows_after(self, position: int = 0, *, batch_size: int = 10000) -> Iterator[Row]:
        while True:
            with self._mutex:
                rows = self._db.execute(SELECT_AFTER, (position, batch_size)).fetchall()
            if not rows:
                return
            yield from rows
            position = rows[-1][0]

    def batch_after(self, position: int, limit: int) -> list[Message]:
        with self._mutex:
            rows = self._db.execute(SELECT_AFTER, (position, limit)).fetchall()
        return [message_from_row(row) for row in rows]

    def version(self) -> int:
        with self._mutex:
            row = self._db.execute("SELECT MAX(id) FROM messages").fetchone()
        return row[0] or 0

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def follow(self, interval: float = 0.005) -> None:
        if self.alone:
            return
        data_version = None
        while True:
            await asyncio.sleep(interval)
            with self._mutex:
                if self._depth:
                    continue
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
                if version == data_version:
                    continue  # nobody else committed since the last look
                data_version = version
                newest = self._db.execute("SELECT MAX(id) FROM messages").fetchone()[0] or 0
                if newest <= self._newest:
                    continue
                self._newest = newest
            self._notify()

    # --- the store's SQL (core/store.py), joining the open transaction ---

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            return self._db.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with Transaction(self):
            return self._db.execute(sql, params).rowcount

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with Transaction(self):
            self._db.executemany(sql, rows)

    def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        names = ", ".join(f'"{column}"' for column in columns)
        self.execute_many(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})', rows)

    def connect_again(self) -> SQLiteLog:
        """Another connection to the same file, for a rebuild on another thread (an in-memory log: itself)."""
        if self.path == ":memory:":
            return self
        return SQLiteLog(self.path, synchronous=self.synchronous)

    # --- worker positions and leases ---

    def position(self, name: str) -> int:
        with self._mutex:
            row = self._db.execute("SELECT position FROM positions WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def has_position(self, name: str) -> bool:
        with self._mutex:
            return self._db.execute("SELECT 1 FROM positions WHERE name = ?", (name,)).fetchone() is not None

    def set_position(self, name: str, position: int) -> None:
        with Transaction(self):
            holder = self._db.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
            if holder is not None and holder[0] != self.owner:
                raise LeaseLost(f"worker {name!r} is leased to {holder[0]}, not to this process ({self.owner})")
            self._db.execute(
                "INSERT INTO positions (name, position) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                (name, position),
            )

    def acquire_lease(self, name: str, ttl: float = DEFAULT_LEASE_SECONDS) -> bool:
        now = time.time()
        with Transaction(self):
            return self._db.execute(TAKE_LEASE, (name, self.owner, now + ttl, now)).rowcount == 1

    def release_lease(self, name: str) -> None:
        with Transaction(self):
            self._db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, self.owner))

    def leases(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        with self._mutex:
            rows = self._db.execute("SELECT name, owner, expires FROM leases ORDER BY name").fetchall()
        return {name: {"owner": owner, "expires_in": round(expires - now, 3)} for name, owner, expires in rows}

    # --- the key/value table ---

    def kv_get(self, key: str) -> str | None:
        with self._mutex:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def kv_set(self, key: str, value: str) -> None:
        with Transaction(self):
            self._db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def kv_delete(self, key: str) -> bool:
        with Transaction(self):
            return self._db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0

    def kv_items(self) -> list[tuple[str, str]]:
        with self._mutex:
            return self._db.execute("SELECT key, value FROM kv ORDER BY key").fetchall()

    def close(self) -> None:
        """Close the database, giving up this process's worker leases and the writer lock."""
        with self._mutex:
            try:
                if self._depth == 0:
                    self._db.execute("DELETE FROM leases WHERE owner = ?", (self.owner,))
            except sqlite3.Error:
                pass  # closing anyway; the leases expire by themselves
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


class Transaction:
    """A write block on an :class:`SQLiteLog`: the outermost takes the write lock, nested ones join it.

    A class rather than a ``@contextmanager`` generator because every append goes
    through it, and this is several microseconds cheaper per append.
    ``savepoint=True`` (what :meth:`SQLiteLog.transaction` gives) makes a nested
    block a savepoint that a failure undoes on its own; the log's internal writes
    just join the enclosing block.
    """

    __slots__ = ("_appended", "_level", "_log", "_savepoint")

    def __init__(self, log: SQLiteLog, *, savepoint: bool = False) -> None:
        self._log = log
        self._savepoint = savepoint
        self._level = 0  # 1: the outermost block; >1: a savepoint; 0: joined the enclosing block

    def __enter__(self) -> None:
        log = self._log
        log._mutex.acquire()
        if log._depth:
            if self._savepoint:
                log._depth += 1
                self._level = log._depth
                self._appended = log._appended
                log._db.execute(f"SAVEPOINT level{self._level}")
            return
        try:
            if log._in_group:
                _begin_immediate(log._db)
            else:
                log._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            log._mutex.release()
            raise
        log._depth = 1
        self._level = 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        log = self._log
        if self._level == 0:
            log._mutex.release()
            return
        if self._level > 1:
            try:
                if exc_type is not None:
                    log._db.execute(f"ROLLBACK TO level{self._level}")
                    log._appended = self._appended
                log._db.execute(f"RELEASE level{self._level}")
            finally:
                log._depth -= 1
                log._mutex.release()
            return
        notify = False
        try:
            if exc_type is None:
                try:
                    log._db.execute("COMMIT")
                    if log._appended:
                        notify = True
                        log._newest = max(log._newest, log._appended)  # told below: follow() must not tell it again
                except BaseException:  # disk full, I/O error: leave no half-open transaction behind
                    if log._db.in_transaction:
                        log._db.execute("ROLLBACK")
                    raise
            else:
                log._db.execute("ROLLBACK")
        finally:
            log._depth = 0
            log._appended = 0
            log._mutex.release()
            if notify:
                log._notify()


def _create_schema(db: sqlite3.Connection) -> None:
    """Create the tables, and bring a log made before messages had versions up to date in place:
    the added column's default (1) is not written into the rows, so the log's rows stay as they were.

    A new database gets every table in one transaction: one commit rather than one per table
    (what every test's fresh log, and every new app, pays).
    """
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone() is None:
        try:
            db.executescript(f"BEGIN IMMEDIATE;{SCHEMA};{VERSIONS_INDEX};COMMIT;")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    if "version" not in columns:
        db.execute("BEGIN IMMEDIATE")
        try:
            if "version" not in {row[1] for row in db.execute("PRAGMA table_info(messages)")}:
                db.execute("ALTER TABLE messages ADD COLUMN version INTEGER NOT NULL DEFAULT 1")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    db.execute(VERSIONS_INDEX)


def _begin_immediate(db: sqlite3.Connection, timeout: float = 10.0) -> None:
    """``BEGIN IMMEDIATE``, retrying while another process holds the write lock: after 50 µs,
    doubling up to 1 ms, for at most ``timeout`` seconds (then SQLite's "database is locked")."""
    pause, deadline = 0.00005, time.monotonic() + timeout
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.001)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def lock_for_group(path: str) -> IO[str]:
    """Take the database for the server processes of one ``serve --processes N``.

    The caller passes the returned file's descriptor to them (``APP_GROUP_LOCK_FD``).
    Holding the lock proves no earlier server is alive, so leases it left are cleared.
    """
    lock_file = _lock_exclusively(path)
    if lock_file is None:
        raise ValueError("an in-memory database cannot be shared between processes")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        _create_schema(db)
        db.execute("DELETE FROM leases")
    lock_file.flush()
    os.set_inheritable(lock_file.fileno(), True)
    return lock_file


def _lock_exclusively(path: str) -> IO[str] | None:
    """Hold an OS lock beside the database so a second writer fails clearly.

    The processes of one ``serve --processes N`` share their supervisor's lock,
    passed down as an inherited file descriptor named by ``APP_GROUP_LOCK_FD``.
    """
    if path == ":memory:":
        return None
    inherited = os.environ.get(GROUP_LOCK_FD)
    if inherited:
        return os.fdopen(int(inherited), "w")
    lock_file = open(f"{path}.lock", "w")  # noqa: SIM115 - held open for the log's lifetime
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.close()
        raise LogLockedError(f"{path} is already in use by another process; one server owns one database") from None
    return lock_file
