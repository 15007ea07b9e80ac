"""A look at the database that writes nothing, for ``projections status``.

Opening the log creates its tables and brings an older database's schema up to date: right for
``serve``, wrong for a command that only reports. A database the app has not run on yet, or one an
upgraded app has not started on, is read here on a read-only connection, as it is: what the next
start would create is named, not created.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from .database_urls import is_postgres, without_password
from .store import COUNTS, TOTAL, TableSpec

LOG_TABLES = ("messages", "positions", "leases", "kv", "projections", COUNTS)


class NothingToLook(RuntimeError):
    """There is no log at that database yet: nothing to report, and nothing was made."""


class _Reader(Protocol):
    param: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def existing(self, names: Iterable[str]) -> set[str]: ...


@dataclass
class Stored:
    """What the database holds for ``projections status``."""

    head: int  # the newest message's id
    projections: dict[str, tuple[str, int, str]]  # name -> (fingerprint, position, rebuilt_at)
    rows: dict[str, int]  # table name -> rows (tables that exist)
    behind: list[str] = field(default_factory=list)  # what the next start adds to an older database

    def count(self, spec: TableSpec) -> int | None:
        return self.rows.get(spec.name)


def look(db: str, specs: Iterable[TableSpec]) -> Stored:
    """Read the log's head, the projections' records and the row counts of ``specs`` at ``db``, writing nothing."""
    with _reader(db) as reader:
        return _look(reader, db, list(specs))


def _look(reader: _Reader, db: str, specs: list[TableSpec]) -> Stored:
    p = reader.param
    existing = reader.existing([*LOG_TABLES, *(spec.physical for spec in specs)])
    if "messages" not in existing:
        raise NothingToLook(
            f"no message log in the database at {without_password(db)} — the app has not run there yet "
            "(serve creates it), or pass --db with the app's database"
        )
    behind = [f"table {name}" for name in LOG_TABLES if name not in existing]
    behind += getattr(reader, "behind", [])
    head = reader.query("SELECT MAX(id) FROM messages")[0][0] or 0
    projections: dict[str, tuple[str, int, str]] = {}
    if "projections" in existing:
        for name, fingerprint, position, rebuilt_at in reader.query(
            "SELECT name, fingerprint, position, rebuilt_at FROM projections"
        ):
            projections[name] = (fingerprint, position, rebuilt_at)
    rows: dict[str, int] = {}
    for spec in specs:
        if spec.physical not in existing:
            continue
        if COUNTS in existing:  # kept by every write: one row read, not a scan
            counted = reader.query(
                f"SELECT n FROM {COUNTS} WHERE tbl = {p} AND col = {p} AND val = {p}", (spec.name, TOTAL, TOTAL)
            )
            rows[spec.name] = counted[0][0] if counted else 0
        else:
            rows[spec.name] = reader.query(f'SELECT COUNT(*) FROM "{spec.physical}"')[0][0]
    return Stored(head, projections, rows, behind)


@contextlib.contextmanager
def _reader(db: str) -> Iterator[_Reader]:
    if is_postgres(db):
        with _postgres(db) as reader:
            yield reader
        return
    with _sqlite(db) as reader:
        yield reader


class _SQLiteReader:
    param = "?"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        columns = {row[1] for row in connection.execute("PRAGMA table_info(messages)")}
        self.behind = ["the messages' version column"] if columns and "version" not in columns else []

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, params).fetchall()

    def existing(self, names: Iterable[str]) -> set[str]:
        wanted = list(names)
        marks = ", ".join("?" for _ in wanted)
        found = self.query(f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", wanted)
        return {name for (name,) in found}


@contextlib.contextmanager
def _sqlite(path: str) -> Iterator[_SQLiteReader]:
    if path == ":memory:" or not Path(path).is_file():
        raise NothingToLook(
            f"no database at {path} — the app has not run here yet (serve creates it), or pass --db PATH"
        )
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise NothingToLook(f"cannot read the database at {path}: {exc}") from None
    try:
        connection.execute("PRAGMA busy_timeout=10000")
        try:
            yield _SQLiteReader(connection)
        except sqlite3.DatabaseError as exc:
            raise NothingToLook(f"cannot read the database at {path}: {exc}") from None
    finally:
        connection.close()


class _PostgresReader:
    param = "%s"

    def __init__(self, connection: Any, schema_version: int) -> None:
        self.connection = connection
        self.behind: list[str] = []
        if self.existing(["messages"]):
            found = (
                self.existing(["schema_version"])
                and connection.execute("SELECT version FROM schema_version").fetchone()
            )
            version = found[0] if found else 0
            if version < schema_version:
                self.behind = [f"schema version {schema_version} (the database has {version})"]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, params).fetchall()

    def existing(self, names: Iterable[str]) -> set[str]:
        return {name for name in names if self.query("SELECT to_regclass(%s)", (name,))[0][0] is not None}


@contextlib.contextmanager
def _postgres(url: str) -> Iterator[_PostgresReader]:
    from .log import LogUnavailable

    try:
        import psycopg

        from .backends.postgres import SCHEMA_VERSION  # type: ignore[import-not-found]
    except ImportError as exc:
        raise LogUnavailable(
            f"the PostgreSQL backend needs its driver ({exc}) — pip install -e '.[postgres]'"
        ) from None
    try:
        connection = psycopg.connect(
            url, autocommit=True, connect_timeout=5, options="-c default_transaction_read_only=on"
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NothingToLook(f"cannot reach the database at {without_password(url)} ({first})") from None
    with connection:
        yield _PostgresReader(connection, SCHEMA_VERSION)
