"""The PostgreSQL backend of the message log: one database, many machines.

Point every instance of the app at the same ``postgresql://`` URL (``--db`` or
``APP_DB``). The rules of ``core/log.py`` hold across machines:

- A write transaction takes ``LOCK TABLE messages IN EXCLUSIVE MODE`` (readers are
  not blocked) with a ``lock_timeout``; the App then validates each command against
  the store's tables (as every instance shares them) and appends. Only one writer holds
  the lock, so it numbers its messages itself and they commit in id order: a reader of
  ``id > position`` never skips a message that commits late (the sequence-gap problem;
  docs/scaling.md). Its appends are staged and sent with the COMMIT; the store's writes
  run at once (inside a savepoint when a nested block may undo them). If the connection
  dies at COMMIT, the commit is checked and, if lost, redone on a new connection
  (``_recover``), store writes included.
- The appending transaction sends ``NOTIFY messages`` with the newest id; every
  instance ``LISTEN``s on a dedicated connection (re-listened after a reconnect)
  and also polls every few seconds, so a lost notification delays, never stalls.
- Worker leases are rows with an expiry in the database's clock; the lease row is
  locked (``FOR UPDATE``) by the transaction that commits a worker's position, so
  a process that lost its lease cannot commit (``LeaseLost``).
- While the database is unreachable every call raises :class:`LogUnreachable`
  (commands answer 503); the next call reconnects by itself.

Needs psycopg 3: ``pip install -e '.[postgres]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from ..database_urls import without_password
from ..log import (
    DEFAULT_LEASE_SECONDS,
    CommitOutcomeUnknown,
    LeaseLost,
    Listener,
    LogUnavailable,
    LogUnreachable,
    Message,
    Row,
    encode,
    message_from_row,
    this_thread_in_transaction,
)
from ..outages import OutageLog
from .postgres_tables import POSTGRES
from .postgres_tables import SCHEMA as TABLES_SCHEMA
from .silence import ANSWER_TIMEOUT, SilenceWatch, WatchedConnection

logger = logging.getLogger(__name__)

CHANNEL = "messages"
SELECT_NEWEST = "SELECT COALESCE(MAX(id), 0) FROM messages"
# Read as the write lock is taken: the newest id, and the transaction's own id, by which a commit
# whose answer was lost is found committed or not (_recover).
SELECT_NEWEST_AND_XID = "SELECT COALESCE(MAX(id), 0), pg_current_xact_id()::text FROM messages"
# Prepared on each connection (_lock_and_read_newest says why).
PREPARE_NEWEST_AND_XID = f"PREPARE petrock_newest_and_xid AS {SELECT_NEWEST_AND_XID}"
EXECUTE_NEWEST_AND_XID = "EXECUTE petrock_newest_and_xid"
SAME_MESSAGE = "SELECT 1 FROM messages WHERE id = %s AND timestamp = %s::timestamptz AND type = %s AND data = %s"
# NULL for an id the database has not handed out (yet again, after a crash), where pg_xact_status raises.
XACT_STATUS = (
    "SELECT CASE WHEN %(xid)s::xid8 < pg_snapshot_xmax(pg_current_snapshot()) THEN pg_xact_status(%(xid)s::xid8) END"
)
SCHEMA_VERSION = 3
# Each entry brings the schema from version i to i + 1; append, never edit, so that a
# database made by an older app is brought up to date on the next start.
MIGRATIONS = [
    """
    CREATE TABLE messages (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        timestamp timestamptz NOT NULL,
        type text NOT NULL,
        data text NOT NULL
    );
    CREATE TABLE positions (name text PRIMARY KEY, position bigint NOT NULL);
    CREATE TABLE leases (name text PRIMARY KEY, owner text NOT NULL, expires timestamptz NOT NULL);
    CREATE TABLE kv (key text PRIMARY KEY, value text NOT NULL);
    """,
    TABLES_SCHEMA,
    # Messages record their payload's schema version (core/upcasting.py). A constant default adds
    # the column without rewriting a row; the partial index lists the types with later versions.
    """
    ALTER TABLE messages ADD COLUMN version integer NOT NULL DEFAULT 1;
    CREATE INDEX messages_versions ON messages (type, version) WHERE version > 1;
    """,
]
# Any constant; serialises concurrent first starts while they create the schema.
MIGRATION_LOCK = 0x70657472  # "petr"

# Timestamps come back as the same ISO text the SQLite backend stores.
SELECT_AFTER = (
    "SELECT id, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), type, data, version "
    "FROM messages WHERE id > %s ORDER BY id LIMIT %s"
)
# Sent with the COMMIT in one query string, values bound by psycopg (_bind); a bigger batch goes
# first as arrays, in a round trip of its own.
INSERT_VALUES = "INSERT INTO messages (id, timestamp, type, data, version) OVERRIDING SYSTEM VALUE VALUES "
MAX_INLINE_MESSAGES = 200
INSERT_MANY = (
    "INSERT INTO messages (id, timestamp, type, data, version) OVERRIDING SYSTEM VALUE "
    "SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::integer[])"
)
# The fence and the write in one statement: the lease row stays locked until the transaction
# ends, and while another process owns the lease nothing is written (no row comes back).
STORE_POSITION = """
WITH holder AS (SELECT owner FROM leases WHERE name = %(name)s FOR UPDATE)
INSERT INTO positions (name, position)
SELECT %(name)s, %(position)s WHERE NOT EXISTS (SELECT 1 FROM holder WHERE owner <> %(owner)s)
ON CONFLICT (name) DO UPDATE SET position = excluded.position
RETURNING 1
"""
# The store's upsert of one row by id (core/store.py), which execute_many sends for many rows at once.
ONE_ROW_UPSERT = re.compile(
    r"^(INSERT INTO \S+ \(id, [^)]*\)) VALUES (\((?:%s, )*%s\))( ON CONFLICT \(id\) .*)$", re.DOTALL
)
MAX_ROWS_PER_UPSERT = 500
# The same fence sent with the COMMIT, in its query string: while another process owns the lease the
# position is NULL, which the column refuses, so the error stops the COMMIT after it (LeaseLost).
STORE_POSITION_OR_FAIL = """
WITH holder AS (SELECT owner FROM leases WHERE name = %(name)s FOR UPDATE)
INSERT INTO positions (name, position)
SELECT %(name)s, CASE WHEN NOT EXISTS (SELECT 1 FROM holder WHERE owner <> %(owner)s) THEN %(position)s END
ON CONFLICT (name) DO UPDATE SET position = excluded.position
"""
STORE_POSITION_HOLDER = "SELECT 1 FROM leases WHERE name = %(name)s AND owner <> %(owner)s"
MESSAGE_ROW = "(%s, %s, %s, %s, %s)"
UPSERT_KV = "INSERT INTO kv (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
TAKE_LEASE = """
INSERT INTO leases (name, owner, expires) VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
WHERE leases.owner = excluded.owner OR leases.expires < clock_timestamp()
RETURNING 1
"""


class PostgresLog:
    """Append-only message store with worker positions, leases, a key/value table and the store's tables, on PostgreSQL."""

    dialect = POSTGRES

    def __init__(
        self,
        url: str,
        *,
        exclusive: bool = False,
        lock_timeout: float = 5.0,
        poll_interval: float = 2.0,
        connect_timeout: float = 5.0,
        answer_timeout: float | None = ANSWER_TIMEOUT,
    ) -> None:
        # ``exclusive`` is accepted for the interface's sake: sharing one database between
        # instances is what this backend is for.
        self.url = url
        self.path = without_password(url)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock_timeout = lock_timeout
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self.recover_timeout = 10.0  # how long a commit whose answer was lost tries to reconnect and find out
        self.outage = OutageLog(logger, f"the database at {self.path}")  # one warning per outage, not per attempt
        self._mutex = threading.RLock()
        self._depth = 0  # open transaction blocks: 0 none, 1 the outermost, more are nested
        # The open transaction's writes: appends, positions and kv sent with its COMMIT; the store's
        # SQL ("sql") already run. All are sent again if the COMMIT's answer is lost (_recover).
        self._staged: list[tuple[str, tuple[Any, ...]]] = []
        self._newest = 0  # the newest id in the log when the open transaction took the lock
        self._xid = ""  # the open transaction's id in the database (pg_current_xact_id)
        self._messages = 0  # messages staged in the open transaction
        self._savepoints: list[list[Any]] = []  # nested blocks: [level, savepoint taken?]
        self._known = 0  # the newest id this instance has told its listeners about
        self._appended = False
        self._listeners: list[Listener] = []
        self._closed = False
        self._conn: psycopg.Connection[Any] | None = None
        self._binder: psycopg.ClientCursor[Any] | None = None  # for _bind, made once per connection
        self._watch: SilenceWatch | None = None  # breaks a wait for an answer that is overdue (silence.py)
        with self._mutex:
            conn = self._conn = self._connect(report=False)  # the caller says it, once, as an error
            self._migrate(conn)
            # The identity's sequence, named once here (setval with each commit keeps it in step).
            (self._sequence,) = conn.execute("SELECT pg_get_serial_sequence('messages', 'id')").fetchone()
            self._check_privileges(conn)
            _prepare(conn)
            if answer_timeout is not None:  # armed after the migration, which may wait for another instance's
                conn.watch = self._watch = SilenceWatch(answer_timeout, self._probe, on_silence=self._fell_silent)

    # --- connections ---

    def _connect(self, *, report: bool = True) -> psycopg.Connection[Any]:
        """A new connection; a failure is :class:`LogUnreachable`, and (``report``) part of the outage's log.

        While the database is silent (it left an answer overdue, silence.py) none is tried: the
        refusal is at once, where a connection through a pooler would wait again.
        """
        if self._silent:
            self.outage.failed(self._silence())
            raise self._not_answering()
        try:
            conn = WatchedConnection.connect(self.url, **self._connection_options())
        except psycopg.OperationalError as exc:
            if report:
                self.outage.failed(_first_line(exc))
            raise LogUnreachable(
                f"cannot reach the database at {self.path} ({_first_line(exc)}) — "
                "check that PostgreSQL is running there and the URL is right"
            ) from None
        self.outage.succeeded()
        conn.watch = self._watch
        return conn

    def _connection_options(self, role: str = "") -> dict[str, Any]:
        """What every connection of this instance is opened with; ``role`` names a connection of its own."""
        return {
            "autocommit": True,
            "connect_timeout": max(1, int(self.connect_timeout)),
            # which instance a session belongs to, in pg_stat_activity
            "application_name": f"{self.owner} {role}" if role else self.owner,
        }

    @property
    def _silent(self) -> bool:
        """The database left an answer overdue and has not answered since (silence.py)."""
        return self._watch is not None and self._watch.silent

    def _silence(self) -> str:
        assert self._watch is not None
        return f"no answer within {self._watch.seconds:g} s"

    def _not_answering(self) -> LogUnreachable:
        return LogUnreachable(f"the database at {self.path} is not answering ({self._silence()})")

    def _fell_silent(self) -> None:
        """Called on the watch's thread when it broke a wait: the outage's first line says why."""
        self.outage.failed(self._silence())

    def _probe(self) -> None:
        """Ask a silent database a question on a connection of its own (on the watch's thread). A host gone
        from the network fails it within seconds (TCP keepalives and ``tcp_user_timeout``); a pooler holding
        it until PostgreSQL is back answers it then."""
        with psycopg.connect(
            self.url,
            **self._connection_options(),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=10_000,  # ms: a question the other end never acknowledges
        ) as conn:
            conn.execute("SELECT 1")

    def _connection(self) -> psycopg.Connection[Any]:
        """The write/read connection, reconnected when the last one broke (the mutex is held)."""
        if self._closed:
            raise LogUnreachable(f"the log at {self.path} is closed")
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._depth:  # a new connection would run the rest of the transaction outside it
                raise LogUnreachable(f"lost the database at {self.path} during a transaction")
            self._conn = self._connect()
            _prepare(self._conn)
        return self._conn

    def _bind(self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> str:
        """``sql`` with its parameters bound by psycopg (client-side binding, quoted as the server
        would), to send with other statements in one query string. The cursor that binds is made
        once per connection: a new ``ClientCursor`` each time took about as long as the binding."""
        binder = self._binder
        if binder is None or binder.connection is not conn:
            binder = self._binder = psycopg.ClientCursor(conn)
        return binder.mogrify(sql, params)

    def _lost(self, exc: BaseException) -> LogUnreachable:
        """Drop the broken connection; the next call opens a new one (the mutex is held)."""
        if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            return LogUnreachable(f"the database at {self.path} is busy: {_first_line(exc)}")
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
        if self._silent:
            return self._not_answering()
        return LogUnreachable(f"lost the database at {self.path}: {_first_line(exc)}")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a query; outside a transaction a broken connection is replaced and the query retried once."""
        with self._mutex:
            for attempt in (1, 2):
                try:
                    return self._connection().execute(sql, params).fetchall()
                except psycopg.OperationalError as exc:
                    lost = self._lost(exc)
                    if self._depth or attempt == 2:
                        raise lost from None
        raise AssertionError("unreachable")

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> psycopg.Cursor[Any]:
        """Run a statement inside the open transaction, or on its own (autocommit)."""
        with self._mutex:
            try:
                return self._connection().execute(sql, params)
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from None

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Create or bring up to date the schema; concurrent first starts wait for each other."""
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                version = row[0] if row else 0
                if version > SCHEMA_VERSION:
                    raise LogUnavailable(
                        f"the database at {self.path} has schema version {version}, newer than this app's "
                        f"{SCHEMA_VERSION} — run a newer version of the app"
                    )
                for migration in MIGRATIONS[version:]:
                    conn.execute(migration)
                if row is None:
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
                elif version < SCHEMA_VERSION:
                    conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.errors.InsufficientPrivilege as exc:  # PostgreSQL 15 lets only a schema's owner create in it
            raise LogUnavailable(
                f"the database user may not create the log's tables at {self.path} ({_first_line(exc)}) — "
                "run the app once as the schema's owner, or grant its user CREATE on the schema"
            ) from None

    def _check_privileges(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse to start, in one line, as a user that may not write the tables another user created:
        every command would fail with a 500 while ``/healthz`` said all was well."""
        rows = conn.execute(MISSING_PRIVILEGES, {"sequence": self._sequence})
        missing = [f"{privilege} on {name}" for name, privilege in rows]
        if missing:
            raise LogUnavailable(
                f"the database user may not write the log's tables at {self.path} (no {', no '.join(missing)}) — "
                "grant it SELECT, INSERT, UPDATE and DELETE on the app's tables, and USAGE and UPDATE on the "
                "sequence of messages"
            )

    # --- the log ---

    def in_transaction(self) -> bool:
        return this_thread_in_transaction(self._mutex, lambda: self._depth)

    def transaction(self) -> Transaction:
        return Transaction(self)

    def append(self, type: str, data: Mapping[str, Any] | str, version: int = 1) -> Message:
        with Transaction(self):
            return self._stage(_now(), type, encode(data), version)

    def append_many(self, items: Iterable[tuple[str, Mapping[str, Any] | str]], version: int = 1) -> list[Message]:
        timestamp = _now()
        rows = [(type, encode(data)) for type, data in items]
        if not rows:
            return []
        with Transaction(self):
            return [self._stage(timestamp, type, text, version) for type, text in rows]

    def _stage(self, timestamp: str, type: str, text: str, version: int) -> Message:
        """Give a message the next id and keep it for the COMMIT (the mutex and the table lock are held).

        Holding the lock, this instance is the only writer: the id after the newest is its
        own, so the message goes to the database with the COMMIT, in the same round trip.
        """
        self._messages += 1
        row = (self._newest + self._messages, timestamp, type, text, version)
        self._staged.append(("message", row))
        self._appended = True
        return message_from_row(row)

    def after(self, position: int = 0, *, batch_size: int = 1000) -> Iterator[Message]:
        return map(message_from_row, self.rows_after(position, batch_size=batch_size))

    def rows_after(self, position: int = 0, *, batch_size: int = 10000) -> Iterator[Row]:
        while True:
            rows = self._read(SELECT_AFTER, (position, batch_size))
            if not rows:
                return
            yield from rows  # type: ignore[misc]
            position = rows[-1][0]

    def batch_after(self, position: int, limit: int) -> list[Message]:
        return [message_from_row(row) for row in self._read(SELECT_AFTER, (position, limit))]

    def version(self) -> int:
        return self._read("SELECT COALESCE(MAX(id), 0) FROM messages")[0][0]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def follow(self, interval: float = 0.005) -> None:
        """Tell the listeners of every NOTIFY from a dedicated LISTEN connection, and poll every poll interval.

        ``interval`` is the SQLite backend's polling period; here notifications do
        that job and :attr:`poll_interval` is only the safety net.
        """
        backoff = 0.1
        outage = OutageLog(logger, f"the database at {self.path} for LISTEN")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, **self._connection_options("listen")
                ) as listener:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.1
                    outage.succeeded()
                    self._hear_of_appends()  # whatever was appended while we were not listening
                    while True:
                        newest = 0
                        async for notify in listener.notifies(timeout=self.poll_interval, stop_after=1):
                            newest = max(newest, int(notify.payload or 0))
                        if newest == 0 or newest > self._known:  # a poll, or news from another instance
                            self._hear_of_appends()
            except psycopg.OperationalError as exc:
                outage.failed(_first_line(exc))  # reconnecting
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)

    def _hear_of_appends(self) -> None:
        """Call the listeners if the log has messages newer than the newest they heard of."""
        try:
            newest = self.version()
        except LogUnreachable as exc:  # the connection's outage log has said so
            logger.debug("%s", exc)
            return
        if newest > self._known:
            self._known = newest
            self._notify()

    # --- the store's SQL (core/store.py), joining the open transaction ---

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read(sql, tuple(params))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with Transaction(self):
            savepoints = self._savepoints_to_take()
            if not savepoints:
                rowcount = self._write(sql, tuple(params)).rowcount
            else:  # the savepoints and the write in one query string: one round trip
                try:
                    conn = self._connection()
                    cursor = conn.execute("; ".join([*savepoints, self._bind(conn, sql, tuple(params))]))
                    while cursor.nextset():  # to the write's result, the last
                        pass
                    rowcount = cursor.rowcount
                except psycopg.OperationalError as exc:
                    raise self._lost(exc) from None
            self._staged.append(("sql", (sql, tuple(params))))
            return rowcount

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run ``sql`` once per row. The store's upserts of rows with different ids go as one statement of
        many rows, their savepoints in the same query string: one round trip (psycopg's ``executemany``
        sends them in a pipeline, at least two, and the savepoint one more), and the lock is held less."""
        rows = [tuple(row) for row in rows]
        if not rows:
            return
        one_row = ONE_ROW_UPSERT.match(sql)
        if one_row is not None and len({row[0] for row in rows}) == len(rows):
            self._upsert_many(*one_row.groups(), rows)
            return
        with Transaction(self):
            for savepoint in self._savepoints_to_take():
                self._write(savepoint)
            try:
                self._connection().cursor().executemany(sql, rows)
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from None
            self._staged.append(("sql-many", (sql, rows)))

    def _upsert_many(self, head: str, row: str, tail: str, rows: list[tuple[Any, ...]]) -> None:
        """One upsert statement of many rows (ids all different), with the savepoints to take, in one query
        string; bound a row at a time (psycopg parses ``row``, the same each time, once)."""
        with Transaction(self):
            savepoints = self._savepoints_to_take()
            try:
                conn = self._connection()
                for start in range(0, len(rows), MAX_ROWS_PER_UPSERT):
                    chunk = rows[start : start + MAX_ROWS_PER_UPSERT]
                    values = ", ".join([self._bind(conn, row, values) for values in chunk])
                    statement = f"{head} VALUES {values}{tail}"
                    conn.execute("; ".join([*savepoints, statement]))
                    savepoints = []
                    self._staged.append(("sql", (statement, None)))
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from None

    def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """With COPY: several times faster than an INSERT a row, at both ends of the connection."""
        rows = [tuple(row) for row in rows]
        if not rows:
            return
        names = ", ".join(f'"{column}"' for column in columns)
        sql = f'COPY "{table}" ({names}) FROM STDIN'
        with Transaction(self):
            for savepoint in self._savepoints_to_take():
                self._write(savepoint)
            try:
                _copy(self._connection(), sql, rows)
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from None
            self._staged.append(("copy", (sql, rows)))

    def _savepoints_to_take(self) -> list[str]:
        """Before a write runs, a savepoint for each open nested block, so a failing one undoes only its own:
        the statements to send first (the blocks count them as taken)."""
        statements = []
        for block in self._savepoints:
            if not block[1]:
                statements.append(f"SAVEPOINT level{block[0]}")
                block[1] = True
        return statements

    def connect_again(self) -> PostgresLog:
        """Another connection to the same database, for a rebuild on another thread (where a long
        statement is no silence: it holds no event loop)."""
        return PostgresLog(
            self.url, lock_timeout=self.lock_timeout, poll_interval=self.poll_interval, answer_timeout=None
        )

    # --- worker positions and leases ---

    def position(self, name: str) -> int:
        rows = self._read("SELECT position FROM positions WHERE name = %s", (name,))
        return rows[0][0] if rows else 0

    def has_position(self, name: str) -> bool:
        return bool(self._read("SELECT 1 FROM positions WHERE name = %s", (name,)))

    def set_position(self, name: str, position: int) -> None:
        with self._mutex:
            if self._depth:
                self._staged.append(("position", (name, position)))
                return
            try:
                self._store_position(self._connection(), name, position)
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from None

    def _store_position(self, conn: psycopg.Connection[Any], name: str, position: int) -> None:
        arguments = {"name": name, "position": position, "owner": self.owner}
        if conn.execute(STORE_POSITION, arguments).fetchone() is None:
            self._lease_lost(conn, name)

    def _lease_lost(self, conn: psycopg.Connection[Any], name: str) -> None:
        holder = conn.execute("SELECT owner FROM leases WHERE name = %s", (name,)).fetchone()
        raise LeaseLost(f"worker {name!r} is leased to {holder and holder[0]}, not to this process ({self.owner})")

    def _write_staged(self, conn: psycopg.Connection[Any], *, again: bool = False) -> None:
        """Send the open transaction's staged writes, then NOTIFY and COMMIT (the mutex and the lock are held).

        ``again``: on a new connection after the first COMMIT was lost, the store's SQL runs again too.
        """
        messages = self._staged_messages()
        if len(messages) > MAX_INLINE_MESSAGES:
            conn.execute(INSERT_MANY, [list(column) for column in zip(*messages, strict=True)])
        statements = []
        for kind, args in self._staged:
            if kind == "position":  # fenced by the lease, sent with the COMMIT
                name, position = args
                arguments = {"name": name, "position": position, "owner": self.owner}
                statements.append(self._bind(conn, STORE_POSITION_OR_FAIL, arguments))
            elif kind == "kv":
                conn.execute(UPSERT_KV, args)
            elif kind == "kv-delete":
                conn.execute("DELETE FROM kv WHERE key = %s", args)
            elif kind == "sql" and again:
                conn.execute(*args)
            elif kind == "sql-many" and again:
                conn.cursor().executemany(*args)
            elif kind == "copy" and again:
                _copy(conn, *args)
        if messages:
            if len(messages) <= MAX_INLINE_MESSAGES:  # bound a row at a time: psycopg parses MESSAGE_ROW once
                statements.append(INSERT_VALUES + ", ".join([self._bind(conn, MESSAGE_ROW, row) for row in messages]))
            # The identity is kept in step for anyone inserting without an id; the NOTIFY is
            # delivered to every listener when (and only if) the transaction commits.
            newest = int(messages[-1][0])
            sequence = self._sequence.replace("'", "''")
            statements += [f"SELECT setval('{sequence}', {newest})", f"NOTIFY {CHANNEL}, '{newest}'"]
        # The positions, messages, setval, NOTIFY and COMMIT as one query string: one round trip while the
        # lock is held. An error in it (a position refused) stops it before the COMMIT.
        try:
            conn.execute("; ".join([*statements, "COMMIT"]))
        except psycopg.errors.NotNullViolation as exc:
            if exc.diag.table_name != "positions":
                raise
            _rollback(conn)
            for name in [args[0] for kind, args in self._staged if kind == "position"]:
                if conn.execute(STORE_POSITION_HOLDER, {"name": name, "owner": self.owner}).fetchone() is not None:
                    self._lease_lost(conn, name)
            raise LeaseLost(f"a worker position was refused: {_first_line(exc)}") from None

    def _recover(self, newest_when_locked: int, xid: str) -> None:
        """After the connection broke while committing: make the transaction's writes durable exactly once.

        Reconnects (trying for up to :attr:`recover_timeout` seconds, long enough for a server
        restart) and takes the lock, so the lost transaction has ended. It committed if the
        database says so (``pg_xact_status`` of its id) and its first message is in the log as it
        was sent. Neither alone is proof: once it was aborted, another instance may append under
        the same message ids; and a crash forgets the transaction ids it had handed out without
        writing them to disk, so the lost transaction's id may be another's by now (both seen in
        a test that restarts the database under load). If it did not commit, and nothing was
        appended since it took the lock, the same writes (same ids, same text, the same store
        SQL) are sent again: what the handlers decided still holds.

        Raises :class:`LogUnreachable` when it did not commit and cannot be sent again (another
        instance appended since: a 503, nothing appended), and :class:`CommitOutcomeUnknown` when
        the database could not be asked (a 504: it may have committed).
        """
        first = self._staged_messages()[0]
        what = self._describe_staged()
        deadline = time.monotonic() + self.recover_timeout
        while True:
            try:
                conn = self._conn = self._connect()
                _prepare(conn)
                break
            except LogUnreachable:
                if time.monotonic() > deadline or self._silent:
                    logger.error("the outcome of %s is unknown: the database stayed unreachable", what)
                    raise CommitOutcomeUnknown(_UNKNOWN) from None
                time.sleep(0.05)
        outcome: str | None = None  # how it was recovered
        not_committed: str | None = None  # or why it was not
        try:
            cursor = conn.execute(f"BEGIN; {_lock_statement(self.lock_timeout)}; {SELECT_NEWEST}")
            for _ in range(3):
                cursor.nextset()
            (newest,) = cursor.fetchone()
            (status,) = conn.execute(XACT_STATUS, {"xid": xid}).fetchone()
            if status == "committed" and conn.execute(SAME_MESSAGE, first[:4]).fetchone() is not None:
                conn.execute("COMMIT")  # only the lock was taken
                outcome = "it had committed"
            elif newest == newest_when_locked:
                self._write_staged(conn, again=True)
                outcome = "it had not: sent it again"
            else:
                not_committed = "another instance appended since"
        except LeaseLost:  # the position was refused as the writes were sent again, so nothing committed
            not_committed = "its worker's lease is another process's now"
        except (psycopg.Error, LogUnreachable) as exc:
            logger.error("the outcome of %s is unknown: %s", what, _first_line(exc))
            _rollback(conn)
            raise CommitOutcomeUnknown(_UNKNOWN) from None
        if not_committed is not None:
            logger.error("%s was not committed: %s", what, not_committed)
            _rollback(conn)
            raise LogUnreachable(_NOT_COMMITTED)
        logger.warning("recovered a commit whose answer was lost with the connection to %s (%s)", self.path, outcome)

    def _staged_messages(self) -> list[tuple[Any, ...]]:
        """The rows of the messages the open transaction appends, in id order."""
        return [row for kind, row in self._staged if kind == "message"]

    def _describe_staged(self) -> str:
        """The open transaction's messages, for an operator: "messages 25-27 (posts/create, posts/delete)"."""
        rows = self._staged_messages()
        ids = f"message {rows[0][0]}" if len(rows) == 1 else f"messages {rows[0][0]}-{rows[-1][0]}"
        return f"{ids} ({', '.join(dict.fromkeys(row[2] for row in rows))})"

    def acquire_lease(self, name: str, ttl: float = DEFAULT_LEASE_SECONDS) -> bool:
        # The database's clock decides expiry, so machines with skewed clocks agree.
        return self._write(TAKE_LEASE, (name, self.owner, ttl)).fetchone() is not None

    def release_lease(self, name: str) -> None:
        self._write("DELETE FROM leases WHERE name = %s AND owner = %s", (name, self.owner))

    def leases(self) -> dict[str, dict[str, Any]]:
        rows = self._read(
            "SELECT name, owner, EXTRACT(EPOCH FROM expires - clock_timestamp())::float8 FROM leases ORDER BY name"
        )
        return {name: {"owner": owner, "expires_in": round(left, 3)} for name, owner, left in rows}

    # --- the key/value table ---

    def kv_get(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM kv WHERE key = %s", (key,))
        return rows[0][0] if rows else None

    def kv_set(self, key: str, value: str) -> None:
        with self._mutex:
            if self._depth:
                self._staged.append(("kv", (key, value)))
                return
            self._write(UPSERT_KV, (key, value))

    def kv_delete(self, key: str) -> bool:
        with self._mutex:
            if not self._depth:
                return self._write("DELETE FROM kv WHERE key = %s", (key,)).rowcount > 0
            staged = [kind for kind, args in self._staged if kind in ("kv", "kv-delete") and args[0] == key]
            existed = staged[-1] == "kv" if staged else self.kv_get(key) is not None
            self._staged.append(("kv-delete", (key,)))
            return existed

    def kv_items(self) -> list[tuple[str, str]]:
        return self._read("SELECT key, value FROM kv ORDER BY key")  # type: ignore[return-value]

    def close(self) -> None:
        """Give up this process's worker leases (so another instance takes over at once) and disconnect."""
        with self._mutex:
            if self._conn is not None and not self._conn.closed:
                with contextlib.suppress(psycopg.Error):
                    if self._depth == 0:
                        self._conn.execute("DELETE FROM leases WHERE owner = %s", (self.owner,))
                self._conn.close()
            self._conn = None
            self._closed = True
            if self._watch is not None:
                self._watch.close()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


class Transaction:
    """A write block on a :class:`PostgresLog`: the outermost begins and locks, nested ones join it.

    Beginning is one round trip: ``BEGIN``, the lock and the newest id. Appends inside
    are staged and sent with the ``COMMIT``, another round trip; the store's SQL runs
    at once. A nested block that raises drops its own staged writes, and rolls back to
    its savepoint when the store wrote inside it (the savepoint is taken then, lazily).
    """

    __slots__ = ("_appended", "_level", "_log", "_messages", "_staged")

    def __init__(self, log: PostgresLog) -> None:
        self._log = log
        self._level = 0

    def __enter__(self) -> None:
        log = self._log
        log._mutex.acquire()
        self._appended, self._staged, self._messages = log._appended, len(log._staged), log._messages
        if log._depth:
            log._depth += 1
            self._level = log._depth
            log._savepoints.append([self._level, False])
            return
        try:
            self._begin(log)
        except psycopg.OperationalError as exc:
            error = log._lost(exc)
            log._mutex.release()
            raise error from None
        except BaseException:
            log._mutex.release()
            raise
        self._level = log._depth = 1

    def _begin(self, log: PostgresLog) -> None:
        """Begin, lock and read the newest id. A connection found broken before anything ran
        (a database restart) is replaced once."""
        for attempt in (1, 2):
            conn = log._connection()
            try:
                cursor = _lock_and_read_newest(conn, log.lock_timeout)
                break
            except psycopg.OperationalError as exc:
                if not conn.broken or attempt == 2:
                    _rollback(conn)  # a lock timeout: the transaction is open and failed
                    raise
                log._lost(exc)
            except psycopg.Error:  # refused (a permission, a missing statement): leave no failed transaction open
                _rollback(conn)
                raise
        try:
            for _ in range(3):  # past the results of BEGIN, SET and LOCK
                cursor.nextset()
            log._newest, log._xid = cursor.fetchone()
            log._messages = 0
        except BaseException:
            _rollback(conn)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        log = self._log
        try:
            if self._level > 1:
                log._depth -= 1
                _, savepoint = log._savepoints.pop()
                if exc_type is not None:  # undo this block's writes only
                    if savepoint:
                        log._write(f"ROLLBACK TO SAVEPOINT level{self._level}")
                    del log._staged[self._staged :]
                    log._appended, log._messages = self._appended, self._messages
                return
            self._end(log, committing=exc_type is None)
        except psycopg.OperationalError as error:
            raise log._lost(error) from None
        finally:
            log._mutex.release()

    def _end(self, log: PostgresLog, *, committing: bool) -> None:
        notify = False
        conn = log._conn
        try:
            if conn is None:
                raise LogUnreachable(f"lost the database at {log.path} during a transaction")
            if not committing:
                _rollback(conn)
                return
            try:
                log._write_staged(conn)
                notify = log._appended
            except psycopg.OperationalError as exc:
                if not (log._appended and conn.broken):
                    _rollback(conn)
                    raise
                # Committed or not? Find out, and finish the job (or raise what the caller must hear).
                log._lost(exc)
                log._recover(log._newest, log._xid)
                notify = True
            except BaseException:
                _rollback(conn)
                raise
        finally:
            log._depth = 0
            if notify:
                log._known = max(log._known, log._newest + log._messages)
            log._appended = False
            log._messages = 0
            log._staged.clear()
            log._savepoints.clear()
            if notify:
                log._notify()


# What a command's caller hears when its commit's answer was lost (a 503, and a 504).
_NOT_COMMITTED = "lost the database while committing; nothing was committed: safe to send again"
_UNKNOWN = (
    "lost the database while committing, and it did not come back in time to tell whether the command was "
    "committed: look for it before sending it again"
)


# What the app does to its tables: it only appends to messages; the others (its own, and the store's
# state_* tables) it also updates and deletes from; with each commit it moves the sequence of message ids.
MISSING_PRIVILEGES = """
SELECT c.relname::text, p.privilege
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p(privilege)
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  AND (c.relname IN ('positions', 'leases', 'kv', 'projections') OR c.relname LIKE 'state\\_%%'
       OR (c.relname = 'messages' AND p.privilege IN ('SELECT', 'INSERT')))
  AND NOT has_table_privilege(c.oid, p.privilege)
UNION ALL
SELECT %(sequence)s::text, p.privilege FROM unnest(ARRAY['USAGE', 'UPDATE']) AS p(privilege)
WHERE NOT has_sequence_privilege(%(sequence)s::text, p.privilege)
"""


def _lock_statement(timeout: float) -> str:
    """Become the only writer until the transaction ends; readers go on (EXCLUSIVE, not ACCESS EXCLUSIVE)."""
    return f"SET LOCAL lock_timeout = '{int(timeout * 1000)}ms'; LOCK TABLE messages IN EXCLUSIVE MODE"


def _prepare(conn: psycopg.Connection[Any]) -> None:
    """Prepare the newest id's read on a new connection, before any transaction waits for the lock.

    The read is prepared because planning ``MAX(id)`` for every transaction cost the server about
    45 µs, a fifth of an append (docs/benchmarks.md, "The append's server time").
    """
    with contextlib.suppress(psycopg.Error):  # a broken connection is found out at its next use
        conn.execute(PREPARE_NEWEST_AND_XID)


def _lock_and_read_newest(conn: psycopg.Connection[Any], timeout: float) -> psycopg.Cursor[Any]:
    """``BEGIN``, the write lock, then the newest id and the transaction's own id: one round trip.

    The read is the statement :func:`_prepare` made. psycopg may deallocate every prepared statement
    on its connection (its own cache's upkeep, after a ``ROLLBACK``, ``DROP`` or ``ALTER``); a begin
    that finds it missing rolls back, prepares it and queues for the lock again.
    """
    statement = f"BEGIN; {_lock_statement(timeout)}; {EXECUTE_NEWEST_AND_XID}"
    try:
        return conn.execute(statement)
    except psycopg.errors.InvalidSqlStatementName:
        _rollback(conn)
    conn.execute(PREPARE_NEWEST_AND_XID)
    return conn.execute(statement)


def _rollback(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(psycopg.OperationalError):
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")


def _copy(conn: psycopg.Connection[Any], sql: str, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor().copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
