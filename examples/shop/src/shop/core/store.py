"""The store: state kept as rows in tables beside the log, written in the transaction that appends.

A state handler reads and writes its rows through a :class:`Table` (``get``,
``put``, ``delete``, ``find``, ``count``)::

    POSTS = TableSpec("posts", columns=(Column("title", "folded"), Column("status", counted=True)))

    class PostsState(Projection):
        tables = (POSTS,)

        def create(self, command: CreatePost, message: Message) -> None:
            posts = self.table(POSTS)
            if posts.get(command.id) is not None:
                raise CommandRejected("a post with that id already exists")
            posts.put(command.id, {"id": command.id, "title": command.title, ...})

The writes join the transaction that appends the command's message: a refused
command changes no row, a committed one is visible at once to every process and
machine, and a crash (kill -9) leaves the log and the tables consistent.

Each table row is an item's JSON plus one indexed column per :class:`Column`,
typed so values order as what they are (amounts as numbers, times as times, text
without regard to case). ``find`` filters on columns by equality, sorts by one
column (empty values last, either way) and pages; ``count`` answers from counts
the database keeps per value of a ``counted`` column, so a total never scans.

``page`` is what a list query answers. While the answer goes out as JSON as it
stands (``GET /queries/...``, :func:`answering_json`), it is a :class:`Page`, which
keeps its rows as the JSON the table stores and writes them into the answer
unchanged: decoding each row only to encode it again was most of a list's cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic_core import from_json, to_json

if TYPE_CHECKING:
    from .log import MessageLogBackend

ColumnKind = Literal["text", "folded", "int", "real", "decimal", "bool", "time"]
FOLDED_LENGTH = 100  # text sorts by its first 100 characters, case folded
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
COUNTS = "state_counts"
TOTAL = ""  # the ``col`` (and ``val``) of a table's row count in the counts table
MAX_IDS_PER_QUERY = 500  # ids in one ``get_many`` query (SQLite allows 32,766 parameters)
MAX_FILTER_CAPACITY = 1 << 22  # ids a rebuild's first filter is made for (8 MB); it grows past that if need be

# Where an item's value goes in its column: the JSON value the handler stored -> the column's value.
KEYS: dict[str, Callable[[Any], Any]] = {
    "text": str,  # exact: choices, ids, ISO dates and timestamps (which order right as text)
    "folded": lambda value: str(value).casefold()[:FOLDED_LENGTH],  # names and titles: case does not matter
    "int": int,
    "real": float,
    "decimal": Decimal,  # JSON keeps amounts as text; they order as numbers
    "bool": bool,
    "time": lambda value: datetime.fromisoformat(value).timestamp(),  # any offset: seconds since the epoch
}


class StoreError(ValueError):
    """A table was declared or used wrongly (a programming error, not a user's)."""


@dataclass(frozen=True, slots=True)
class Column:
    """An indexed column of a table, filled from the item's ``field``.

    ``counted`` keeps a count per value (for filters, so a filtered total is one row).
    """

    field: str
    kind: ColumnKind = "text"
    counted: bool = False

    @property
    def name(self) -> str:
        return f"k_{self.field}"

    def key(self, item: Mapping[str, Any]) -> Any:
        value = item.get(self.field)
        return None if value is None else KEYS[self.kind](value)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table of items by id: its name and the columns that lists filter and sort on."""

    name: str
    columns: tuple[Column, ...] = ()

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise StoreError(f"table name {self.name!r}: use lowercase letters, digits, '_' and '-'")
        fields = [column.field for column in self.columns]
        if len(set(fields)) != len(fields):
            raise StoreError(f"table {self.name!r} declares a column twice")
        for field in fields:
            if not re.match(r"^[a-z][a-z0-9_]{0,62}$", field):
                raise StoreError(f"table {self.name!r}: column {field!r} is not a lowercase identifier")

    @property
    def physical(self) -> str:
        """The table's name in the database."""
        return "state_" + self.name.replace("-", "_")

    def column(self, field: str) -> Column:
        for column in self.columns:
            if column.field == field:
                return column
        known = ", ".join(column.field for column in self.columns) or "none"
        raise StoreError(f"table {self.name!r} has no column {field!r} (columns: {known})")

    def describe(self) -> list[list[Any]]:
        """What the fingerprint of a projection takes from its tables."""
        return [self.name, *([c.field, c.kind, c.counted] for c in self.columns)]


@dataclass(frozen=True, slots=True)
class Select:
    """One page of rows: equality conditions, an order (``None``: newest first) and a window."""

    where: tuple[tuple[Column, Any], ...] = ()
    order: Column | None = None
    descending: bool = False
    offset: int = 0
    limit: int = 100
    nulls: Literal["any", "not-null", "null"] = "any"  # rows whose ``order`` column is (not) empty
    by_order_index: bool = False  # walk the order's index and filter (vs. the filters' index, then sort)


class Rows(Protocol):
    """Where a table's rows live: SQL on the log's connection, or a buffer in front of it."""

    def get(self, spec: TableSpec, id: str) -> dict[str, Any] | None: ...

    def get_many(self, spec: TableSpec, ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def put(self, spec: TableSpec, id: str, item: Mapping[str, Any]) -> None: ...

    def put_many(self, spec: TableSpec, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None: ...

    def delete(self, spec: TableSpec, id: str) -> bool: ...

    def select(self, spec: TableSpec, select: Select) -> list[dict[str, Any]]: ...

    def select_json(self, spec: TableSpec, select: Select) -> list[str]:
        """``select``'s rows as the JSON text the table stores, not decoded."""
        ...

    def count(self, spec: TableSpec, where: Sequence[tuple[Column, Any]], *, not_null: Column | None = None) -> int: ...

    def counted(self, spec: TableSpec, column: Column | None, key: Any) -> int: ...


class Table:
    """A table of items by id, bound to where its rows are read and written."""

    def __init__(self, spec: TableSpec, rows: Callable[[], Rows]) -> None:
        self.spec = spec
        self._rows = rows

    @property
    def name(self) -> str:
        return self.spec.name

    def get(self, id: str) -> dict[str, Any] | None:
        """The item with this id, or None."""
        return self._rows().get(self.spec, id)

    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The items with these ids that exist, by id, in the order asked: one query where ``get`` would take one each."""
        return self._rows().get_many(self.spec, ids)

    def put(self, id: str, item: Mapping[str, Any]) -> None:
        """Store ``item`` (JSON-ready values) under ``id``, replacing any item there; joins the open transaction."""
        self._rows().put(self.spec, id, item)

    def put_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """``put`` each ``(id, item)``, in one statement batch."""
        self._rows().put_many(self.spec, items)

    def delete(self, id: str) -> bool:
        """Remove the item; True if there was one."""
        return self._rows().delete(self.spec, id)

    def find(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        sort: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """A page of items whose columns equal ``where``'s values, ordered by the column ``sort`` names
        (``-title`` for descending; empty values last either way), newest first when ``sort`` is None."""
        return [from_json(row) for row in self.find_json(where, sort=sort, offset=offset, limit=limit)]

    def find_json(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        sort: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[str]:
        """``find``'s items as the JSON text the table stores (one object each), not decoded."""
        return self._find_json(self._conditions(where), sort, offset, limit)

    def _find_json(
        self,
        conditions: tuple[tuple[Column, Any], ...],
        sort: str | None,
        offset: int,
        limit: int,
        matches: int | None = None,  # how many rows match, if the caller has counted them already
    ) -> list[str]:
        rows = self._rows()
        if sort is None:
            return rows.select_json(self.spec, Select(conditions, offset=offset, limit=limit))
        column = self.spec.column(sort.removeprefix("-"))
        descending = sort.startswith("-")
        by_index = self._walk_order_index(rows, conditions, offset + limit, matches)
        page = rows.select_json(
            self.spec,
            Select(conditions, column, descending, offset, limit, nulls="not-null", by_order_index=by_index),
        )
        if len(page) == limit:
            return page
        # The items without a value come after the others: the page reaches into them.
        if page or not offset:
            empty_offset = 0
        else:
            empty_offset = offset - rows.count(self.spec, conditions, not_null=column)
        return page + rows.select_json(
            self.spec, Select(conditions, column, offset=max(0, empty_offset), limit=limit - len(page), nulls="null")
        )

    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """How many items match ``where`` (every item when empty): one row read for at most one counted column."""
        return self._count(self._conditions(where))

    def _count(self, conditions: tuple[tuple[Column, Any], ...]) -> int:
        rows = self._rows()
        if not conditions:
            return rows.counted(self.spec, None, None)
        if len(conditions) == 1 and conditions[0][0].counted:
            return rows.counted(self.spec, *conditions[0])
        return rows.count(self.spec, conditions)

    def page(
        self, where: Mapping[str, Any] | None = None, *, sort: str | None = None, offset: int = 0, limit: int = 100
    ) -> dict[str, Any] | Page:
        """``{"items": [...], "total": n, "offset": o, "limit": l}``: what a list query answers; a
        :class:`Page` with the same keys and values while the answer goes out as JSON (:func:`answering_json`)."""
        conditions = self._conditions(where)
        total = self._count(conditions)
        # With one counted filter, the total is the count that choosing how to sort would read again.
        matches = total if len(conditions) == 1 and conditions[0][0].counted else None
        rows = self._find_json(conditions, sort, offset, limit, matches)
        if json_answer.get():
            return Page(rows, total, offset, limit)
        return {"items": [from_json(row) for row in rows], "total": total, "offset": offset, "limit": limit}

    def _conditions(self, where: Mapping[str, Any] | None) -> tuple[tuple[Column, Any], ...]:
        if not where:
            return ()
        conditions = []
        for field, value in where.items():
            column = self.spec.column(field)
            conditions.append((column, KEYS[column.kind](value)))
        return tuple(conditions)

    def _walk_order_index(
        self, rows: Rows, conditions: Sequence[tuple[Column, Any]], reach: int, matches: int | None = None
    ) -> bool:
        """Sorted and filtered: walk the sort column's index and skip what does not match, or
        take the matches from the filter's index and sort them?

        Walking costs about ``reach * total / matches`` rows, sorting about ``matches``;
        the counts say which is less.
        """
        counted = [(column, key) for column, key in conditions if column.counted]
        if not counted:
            return False
        if matches is None:
            matches = min(rows.counted(self.spec, column, key) for column, key in counted)
        return matches * matches > reach * rows.counted(self.spec, None, None)


# True while a query's answer is encoded as JSON as it stands (see :func:`answering_json`).
json_answer: ContextVar[bool] = ContextVar("json_answer", default=False)


@contextmanager
def answering_json(on: bool = True) -> Iterator[None]:
    """Within it, :meth:`Table.page` answers a :class:`Page` (with ``on`` False: a dict, as outside it),
    for the code that encodes the answer as JSON (:meth:`Page.json`)."""
    token = json_answer.set(on)
    try:
        yield
    finally:
        json_answer.reset(token)


class Page(MutableMapping[str, Any]):
    """A list query's answer, ``{"items": [...], "total": n, "offset": o, "limit": l}``, whose items stay
    the JSON text the table stores until something reads them.

    :meth:`json` writes the stored text into the answer as it is: it is what encoding the decoded items
    would give (the store wrote it with the same encoder, ``to_json``). Reading ``items``, or changing
    anything, decodes them once; from then on it is an ordinary answer, encoded as any other. A query
    handler that changes its page, or merges it into its own answer (``{**page, ...}``, ``page | {...}``),
    works as with a dict.
    """

    __slots__ = ("_answer", "_rows")

    def __init__(self, rows: list[str], total: int, offset: int, limit: int) -> None:
        self._rows: list[str] | None = rows
        self._answer: dict[str, Any] = {"items": None, "total": total, "offset": offset, "limit": limit}

    def _decoded(self) -> dict[str, Any]:
        if self._rows is not None:
            self._answer["items"] = [from_json(row) for row in self._rows]
            self._rows = None
        return self._answer

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key] if key == "items" else self._answer[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._decoded()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._answer)

    def __len__(self) -> int:
        return len(self._answer)

    def __repr__(self) -> str:
        return f"Page({self._decoded()!r})"

    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __or__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        return {**self, **other}

    def __ror__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        return {**other, **self}

    def json(self) -> bytes:
        """The answer as JSON (compact, as ``to_json`` writes it), the untouched rows as they are stored."""
        if self._rows is None:
            return to_json(self._answer)
        rest = to_json({key: value for key, value in self._answer.items() if key != "items"}).decode()[1:]
        if not self._rows:
            return f'{{"items":[],{rest}'.encode()
        parts = list(self._rows)  # one join and one encode of the page: it is most of the answer's bytes
        parts[0] = '{"items":[' + parts[0]
        parts[-1] = f"{parts[-1]}],{rest}"
        return ",".join(parts).encode()


# --- SQL, shared by the backends (each gives its dialect) ---


class Dialect(Protocol):
    """What differs between the databases' SQL for store tables (backends/*_tables.py)."""

    param: str  # the placeholder: ``?`` or ``%s``
    seq: str  # the column that orders rows by when they were first stored
    works_aside: bool  # a rebuild reads the log and writes its rows on other threads (a server's work: no GIL held)

    def create_table(self, spec: TableSpec, physical: str) -> list[str]: ...

    def drop_table(self, physical: str) -> list[str]: ...

    def create_indexes(self, spec: TableSpec, physical: str, token: str) -> list[str]:
        """One index per column; ``token`` keeps the names apart from a table being replaced."""
        ...

    def recount(self, spec: TableSpec, physical: str) -> list[str]:
        """Set the table's counts from its rows (after a rebuild)."""
        ...

    def analyze(self, physical: str) -> list[str]:
        """Gather the planner's statistics of a table just built in one go (before it is swapped in)."""
        ...

    def create_counting(self, spec: TableSpec, physical: str) -> list[str]:
        """Keep the table's counts in step with its writes from now on."""
        ...

    def existing_tables(self, db: Database, names: list[str]) -> set[str]: ...

    def value(self, column: Column | None, key: Any) -> Any:
        """A column value as the driver takes it."""
        ...

    def count_value(self, column: Column, key: Any) -> Any:
        """A value as the counts table keeps it."""
        ...

    def without_index(self, expression: str) -> str:
        """An expression the planner will not answer from an index (a hint; may return it unchanged)."""
        ...

    def tune_for_rebuild(self, db: Database) -> Callable[[], None]:
        """Set the rebuild's connection up for a bulk load; returns what sets it back."""
        ...


class Recount:
    """The statements that set a table's counts from its rows, for every dialect."""

    counted = "{}"  # a counted column's value as the counts table keeps it (SQL; ``{}`` is the column)

    def recount(self, spec: TableSpec, physical: str) -> list[str]:
        """Set the table's counts from its rows (after a rebuild)."""
        name = spec.name
        statements = [
            f"DELETE FROM {COUNTS} WHERE tbl = '{name}'",
            f"INSERT INTO {COUNTS} (tbl, col, val, n) SELECT '{name}', '{TOTAL}', '{TOTAL}', COUNT(*) FROM \"{physical}\"",
        ]
        for column in spec.columns:
            if column.counted:
                key = f'"{column.name}"'
                statements.append(
                    f"INSERT INTO {COUNTS} (tbl, col, val, n) SELECT '{name}', '{column.name}', "
                    f'{self.counted.format(key)}, COUNT(*) FROM "{physical}" WHERE {key} IS NOT NULL GROUP BY {key}'
                )
        return statements


class Database(Protocol):
    """The part of a log backend the store's SQL runs on (joining its open transaction)."""

    dialect: Dialect

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Add ``rows``, none of which ``table`` has yet, the fastest way the database has."""
        ...


class SqlRows:
    """Rows in the database, read and written with SQL on the log's connection.

    ``names`` maps a table to its name in the database (a rebuild writes a shadow table).
    """

    def __init__(self, db: Database, names: Callable[[TableSpec], str] = lambda spec: spec.physical) -> None:
        self.db = db
        self.names = names
        self._sql: dict[tuple[str, str], str] = {}
        self._keys: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {}

    def get(self, spec: TableSpec, id: str) -> dict[str, Any] | None:
        rows = self.db.query(self._statement(spec, "get"), (id,))
        return from_json(rows[0][0]) if rows else None

    def get_many(self, spec: TableSpec, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = list(dict.fromkeys(ids))
        found = {id: from_json(data) for id, data in self._by_ids(spec, "id, data", wanted)}
        return {id: found[id] for id in wanted if id in found}  # in the order asked

    def existing(self, spec: TableSpec, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` the table has."""
        return {id for (id,) in self._by_ids(spec, "id", list(dict.fromkeys(ids)))}

    def _by_ids(self, spec: TableSpec, columns: str, ids: list[str]) -> Iterator[tuple[Any, ...]]:
        for start in range(0, len(ids), MAX_IDS_PER_QUERY):
            chunk = ids[start : start + MAX_IDS_PER_QUERY]
            marks = ", ".join([self.db.dialect.param] * len(chunk))
            yield from self.db.query(f'SELECT {columns} FROM "{self.names(spec)}" WHERE id IN ({marks})', chunk)

    def put(self, spec: TableSpec, id: str, item: Mapping[str, Any]) -> None:
        self.db.execute(self._statement(spec, "put"), self.row(spec, id, item))

    def put_many(self, spec: TableSpec, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        self.db.execute_many(self._statement(spec, "put"), (self.row(spec, id, item) for id, item in items))

    def insert_many(self, spec: TableSpec, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """``put_many`` of items none of which the table has yet (a rebuild's): several times faster on PostgreSQL."""
        columns = ["id", "data", *(column.name for column in spec.columns)]
        self.db.insert_many(self.names(spec), columns, (self.row(spec, id, item) for id, item in items))

    def delete(self, spec: TableSpec, id: str) -> bool:
        return self.db.execute(self._statement(spec, "delete"), (id,)) > 0

    def delete_many(self, spec: TableSpec, ids: Iterable[str]) -> None:
        self.db.execute_many(self._statement(spec, "delete"), ((id,) for id in ids))

    def row(self, spec: TableSpec, id: str, item: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values of a row: id, the item as JSON, and its columns' values."""
        keys = self._keys.get(spec.name)
        if keys is None:
            keys = self._keys[spec.name] = [(column.field, self._column_value(column)) for column in spec.columns]
        values = [None if (value := item.get(field)) is None else key(value) for field, key in keys]
        return (id, to_json(item).decode(), *values)

    def _column_value(self, column: Column) -> Callable[[Any], Any]:
        """From the item's JSON value to what the driver takes for the column."""
        key, adapt = KEYS[column.kind], self.db.dialect.value
        return lambda value: adapt(column, key(value))

    def select(self, spec: TableSpec, select: Select) -> list[dict[str, Any]]:
        return [from_json(data) for data in self.select_json(spec, select)]

    def select_json(self, spec: TableSpec, select: Select) -> list[str]:
        dialect = self.db.dialect
        p = dialect.param
        conditions, params = self._where(select.where, hint=select.by_order_index)
        if select.order is not None and select.nulls != "any":
            conditions.append(f'"{select.order.name}" IS {"NOT " if select.nulls == "not-null" else ""}NULL')
        if select.order is None or select.nulls == "null":
            order = f"{dialect.seq} DESC"
        else:
            direction = " DESC" if select.descending else ""
            order = f'"{select.order.name}"{direction}, {dialect.seq}{direction}'
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f'SELECT data FROM "{self.names(spec)}"{where} ORDER BY {order} LIMIT {p} OFFSET {p}'
        return [data for (data,) in self.db.query(sql, (*params, select.limit, select.offset))]

    def count(self, spec: TableSpec, where: Sequence[tuple[Column, Any]], *, not_null: Column | None = None) -> int:
        conditions, params = self._where(where)
        if not_null is not None:
            conditions.append(f'"{not_null.name}" IS NOT NULL')
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return self.db.query(f'SELECT COUNT(*) FROM "{self.names(spec)}"{clause}', params)[0][0]

    def counted(self, spec: TableSpec, column: Column | None, key: Any) -> int:
        p = self.db.dialect.param
        if column is None:
            params: tuple[Any, ...] = (spec.name, TOTAL, TOTAL)
        else:
            params = (spec.name, column.name, self.db.dialect.count_value(column, key))
        rows = self.db.query(f"SELECT n FROM {COUNTS} WHERE tbl = {p} AND col = {p} AND val = {p}", params)
        return rows[0][0] if rows else 0

    def _where(self, where: Sequence[tuple[Column, Any]], *, hint: bool = False) -> tuple[list[str], list[Any]]:
        dialect = self.db.dialect
        conditions = []
        for column, key in where:
            name = f'"{column.name}"'
            conditions.append(f"{dialect.without_index(name) if hint else name} = {dialect.param}")
        return conditions, [dialect.value(column, key) for column, key in where]

    def _statement(self, spec: TableSpec, kind: str) -> str:
        """The table's get/put/delete statement, built once."""
        sql = self._sql.get((spec.name, kind))
        if sql is None:
            name = self.names(spec)
            p = self.db.dialect.param
            if kind == "get":
                sql = f'SELECT data FROM "{name}" WHERE id = {p}'
            elif kind == "delete":
                sql = f'DELETE FROM "{name}" WHERE id = {p}'
            else:
                columns = ["id", "data", *(f'"{column.name}"' for column in spec.columns)]
                updates = ", ".join(f"{column} = excluded.{column}" for column in columns[1:])
                sql = (
                    f'INSERT INTO "{name}" ({", ".join(columns)}) VALUES ({", ".join([p] * len(columns))}) '
                    f"ON CONFLICT (id) DO UPDATE SET {updates}"
                )
            self._sql[(spec.name, kind)] = sql
        return sql


_MISSING: Any = object()
Change = tuple[TableSpec, "dict[str, Any] | None", bool]  # the item (None: deleted), and whether it was deleted first


class BufferedRows:
    """Writes kept in memory in front of :class:`SqlRows`, written out together by :meth:`flush`.

    A rebuild uses it to turn the three writes of a post's create, summary request
    and summary into one row write; a worker, to write its state in the transaction
    that commits its position (``undoable``: a failed message's writes are taken
    back). ``get`` sees the buffered writes; ``find`` and ``count`` see the database
    only (call :meth:`flush` first where that matters). :meth:`preload` reads many
    rows in one query, for the ``get`` calls that follow; it holds until :meth:`clear`,
    so use it only for rows nothing else writes meanwhile (a worker's own tables).

    The rows come out as the same writes made one by one would leave them, in the
    same order (the newest-first order of lists): a changed row keeps its place, a
    new one goes last, and one deleted and then stored again is a new row.

    ``fresh`` names tables a rebuild fills from empty: every row in them was written
    out by this buffer, so a filter of the ids it wrote answers most lookups of an id
    that is not there (every create's) without asking the database, and the rows it
    has not written yet are added in bulk (:meth:`SqlRows.insert_many`).
    """

    def __init__(
        self, rows: SqlRows, *, undoable: bool = True, fresh: Iterable[str] = (), expected: int = 1 << 16
    ) -> None:
        self.rows = rows
        self._pending: dict[tuple[str, str], Change] = {}
        self._undo: list[tuple[tuple[str, str], Any]] | None = [] if undoable else None
        self._fresh = frozenset(fresh)
        self._written = IdFilter(min(expected, MAX_FILTER_CAPACITY))  # ``expected``: about how many rows it writes
        self._loaded: dict[tuple[str, str], dict[str, Any] | None] = {}  # rows as the database has them
        self._handed: dict[tuple[str, str], Change] = {}  # the writes of the last hand_off (being written)

    def __len__(self) -> int:
        return len(self._pending)

    def get(self, spec: TableSpec, id: str) -> dict[str, Any] | None:
        key = (spec.name, id)
        pending = self._pending.get(key, _MISSING)
        if pending is not _MISSING:
            return pending[1]
        handed = self._handed.get(key, _MISSING)
        if handed is not _MISSING:  # a copy: another thread may be writing it out now
            return None if handed[1] is None else from_json(to_json(handed[1]))
        loaded = self._loaded.get(key, _MISSING)
        if loaded is not _MISSING:
            return loaded
        if spec.name in self._fresh and key not in self._written:
            return None
        return self.rows.get(spec, id)

    def get_many(self, spec: TableSpec, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(ids)
        self.preload(spec, ids)
        return {id: item for id in ids if (item := self.get(spec, id)) is not None}

    def preload(self, spec: TableSpec, ids: Iterable[str]) -> None:
        """Read the rows with these ids in one query, so that ``get`` answers them from memory until :meth:`clear`."""
        name, loaded, pending, handed = spec.name, self._loaded, self._pending, self._handed
        # A row being written out (handed off) is read from memory: the database may not have it yet.
        unread = [
            id for id in ids if (name, id) not in loaded and (name, id) not in pending and (name, id) not in handed
        ]
        if name in self._fresh:  # a rebuild: only the ids it wrote can be there
            unread = [id for id in unread if (name, id) in self._written]
        if not unread:
            return
        found = self.rows.get_many(spec, unread)
        for id in unread:
            loaded[(name, id)] = found.get(id)

    def put(self, spec: TableSpec, id: str, item: Mapping[str, Any]) -> None:
        key = (spec.name, id)
        previous = self._pending.get(key, _MISSING)
        if previous is _MISSING or previous[1] is not None:  # new: it goes last; changed: it keeps its place
            self._remember(key, (spec, dict(item), previous is not _MISSING and previous[2]), previous)
        else:  # deleted, then stored again: a new row, the newest
            del self._pending[key]
            self._remember(key, (spec, dict(item), True), previous)

    def put_many(self, spec: TableSpec, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for id, item in items:
            self.put(spec, id, item)

    def delete(self, spec: TableSpec, id: str) -> bool:
        existed = self.get(spec, id) is not None
        key = (spec.name, id)
        self._remember(key, (spec, None, False), self._pending.get(key, _MISSING))
        return existed

    def select(self, spec: TableSpec, select: Select) -> list[dict[str, Any]]:
        return self.rows.select(spec, select)

    def select_json(self, spec: TableSpec, select: Select) -> list[str]:
        return self.rows.select_json(spec, select)

    def count(self, spec: TableSpec, where: Sequence[tuple[Column, Any]], *, not_null: Column | None = None) -> int:
        return self.rows.count(spec, where, not_null=not_null)

    def counted(self, spec: TableSpec, column: Column | None, key: Any) -> int:
        return self.rows.counted(spec, column, key)

    def mark(self) -> int:
        """A point to :meth:`undo` back to."""
        assert self._undo is not None, "not undoable"
        return len(self._undo)

    def undo(self, mark: int) -> None:
        """Forget the writes made since ``mark`` (a message whose handling failed)."""
        assert self._undo is not None, "not undoable"
        while len(self._undo) > mark:
            key, previous = self._undo.pop()
            if previous is _MISSING:
                del self._pending[key]
            else:
                self._pending[key] = previous

    def flush(self) -> None:
        """Write every buffered change out, in the caller's transaction: deletes, changes, then new rows in order
        (after the last :meth:`hand_off`'s write has ended: its rows are the database's from now on)."""
        self._write(self._pending)
        self._handed = {}
        if self._loaded:  # what was written is what the database has now
            self._loaded.update((key, item) for key, (_, item, _) in self._pending.items())
        self._pending.clear()
        if self._undo is not None:
            self._undo.clear()

    def hand_off(self) -> Callable[[], None]:
        """Take the buffered changes out, for another thread to write them with the call returned (in its
        transaction) while this one goes on buffering: until the next hand-off, ``get`` answers them
        from memory. Hand off again only once that call has returned (a rebuild's, not undoable)."""
        assert self._undo is None, "a rebuild's buffer only (not undoable)"
        self._handed, self._pending = self._pending, {}
        if self._loaded:  # what is being written is what the database will have
            self._loaded.update((key, item) for key, (_, item, _) in self._handed.items())
        return partial(self._write, self._handed)

    def _write(self, pending: dict[tuple[str, str], Change]) -> None:
        deletes: dict[str, tuple[TableSpec, list[str]]] = {}
        puts: dict[str, tuple[TableSpec, list[tuple[str, dict[str, Any]]]]] = {}  # rows that may be there: upserts
        inserts: dict[str, tuple[TableSpec, list[tuple[str, dict[str, Any]]]]] = {}  # rows surely not there
        existing = self._existing_in_fresh_tables(pending)
        for (name, id), (spec, item, again) in pending.items():
            if item is None or again:
                deletes.setdefault(name, (spec, []))[1].append(id)
            if item is None:
                continue
            if name not in self._fresh or (name, id) in existing:
                puts.setdefault(name, (spec, []))[1].append((id, item))
            else:
                inserts.setdefault(name, (spec, []))[1].append((id, item))
                self._written.add((name, id))
        for spec, ids in deletes.values():
            self.rows.delete_many(spec, ids)
        for spec, items in puts.values():
            self.rows.put_many(spec, items)
        for spec, items in inserts.values():
            self.rows.insert_many(spec, items)

    def _existing_in_fresh_tables(self, pending: dict[tuple[str, str], Change]) -> set[tuple[str, str]]:
        """The rows of fresh tables to write out that the database has (written out before, not deleted since)."""
        maybe: dict[str, tuple[TableSpec, list[str]]] = {}
        for key, (spec, item, again) in pending.items():
            if key[0] in self._fresh and item is not None and not again and key in self._written:
                maybe.setdefault(key[0], (spec, []))[1].append(key[1])
        return {(spec.name, id) for spec, ids in maybe.values() for id in self.rows.existing(spec, ids)}

    def clear(self) -> None:
        """Forget the writes not flushed and the rows preloaded."""
        self._pending.clear()
        self._loaded.clear()
        if self._undo is not None:
            self._undo.clear()

    def _remember(self, key: tuple[str, str], change: Change, previous: Any) -> None:
        if self._undo is not None:
            self._undo.append((key, previous))
        self._pending[key] = change


class RebuildRows(BufferedRows):
    """A rebuild's buffer (see :class:`BufferedRows`). A handler's read of many rows (``find``,
    ``count``) sees what the handlers before it wrote, as it did live: the buffered rows are written
    out first (``write_out``), and counts are counted in the table being built, not read from the
    live table's counts. The users feature's checks rest on it (the last admin, a user's sessions)."""

    def __init__(self, rows: SqlRows, *, fresh: Iterable[str], expected: int) -> None:
        super().__init__(rows, undoable=False, fresh=fresh, expected=expected)
        self.write_out: Callable[[], None] = self.flush  # the rebuild sets its writer's, which waits for a hand-off

    def select(self, spec: TableSpec, select: Select) -> list[dict[str, Any]]:
        self.write_out()
        return super().select(spec, select)

    def select_json(self, spec: TableSpec, select: Select) -> list[str]:
        self.write_out()
        return super().select_json(spec, select)

    def count(self, spec: TableSpec, where: Sequence[tuple[Column, Any]], *, not_null: Column | None = None) -> int:
        self.write_out()
        return super().count(spec, where, not_null=not_null)

    def counted(self, spec: TableSpec, column: Column | None, key: Any) -> int:
        self.write_out()
        return self.rows.count(spec, () if column is None else ((column, key),))


class HeldRows(BufferedRows):
    """The writes of one commit's handlers, held and written out at its end: a row that several of its
    commands change (a post's summary request and its summary) is written once, and read from memory.

    Unlike its base, every read of many rows (``find``, ``count``) writes the held rows out first, and a
    read of one row gives a copy, so the handlers see exactly what writing each change at once would have
    shown them. Held writes go out at the end of the commit: an error in writing one (a database error) is
    raised there, not in the handler.

    ``batch``: held for a whole transaction of many commits (:meth:`App.batch`, a group commit, a worker's
    batch), each commit a block (:meth:`begin`, :meth:`end`) whose writes are undone alone when it fails.
    The commits then cost no round trip each for their writes (nor the savepoint each would take), only
    one statement batch per table at the end; :meth:`preload` reads the rows they will read in one query.
    A value that is not JSON is refused at ``put``, in the handler, so that it fails its commit alone.
    """

    def __init__(self, rows: SqlRows, *, batch: bool = False) -> None:
        super().__init__(rows, undoable=batch, expected=1)
        self.batch = batch
        # The open blocks (commits inside commits nest): each one's mark, and what the held rows were when
        # it began if a read of many rows wrote them out during it (that write is in the block's savepoint,
        # undone with it: those rows are then held again).
        self._blocks: list[tuple[int, dict[tuple[str, str], Change] | None]] = []

    def get(self, spec: TableSpec, id: str) -> dict[str, Any] | None:
        """The row as the database would give it back: a copy, through JSON, so a handler that changes
        what it read and does not ``put`` it changes nothing, and values read have the types stored."""
        row = super().get(spec, id)
        return None if row is None else from_json(to_json(row))

    def put(self, spec: TableSpec, id: str, item: Mapping[str, Any]) -> None:
        if self.batch:
            self.rows.row(spec, id, item)  # a value that is not JSON fails here, in its own commit
        super().put(spec, id, item)

    def begin(self) -> None:
        """A commit of the batch begins: what it writes is undone by :meth:`end` if it fails."""
        self._blocks.append((self.mark(), None))

    def end(self, failed: bool) -> None:
        """The commit ended; a failed one's writes are forgotten (the log rolls back its savepoint)."""
        mark, before = self._blocks.pop()
        if not failed:
            return
        if before is None:
            self.undo(mark)
            return
        # Written out in the savepoint just rolled back: what the block found is held again.
        self._pending = before
        assert self._undo is not None
        self._undo.clear()
        self._loaded.clear()  # some were read from, or written into, what was rolled back
        self._blocks = [(0, outer) for _, outer in self._blocks]

    def _write_out(self) -> None:
        """Write the held rows out before a read of many rows, remembering what each open block found."""
        if self._blocks and self._pending:
            self._blocks = [(0, self._as_at(mark) if before is None else before) for mark, before in self._blocks]
        elif self._blocks:
            self._blocks = [(0, before) for _, before in self._blocks]
        self.flush()

    def _as_at(self, mark: int) -> dict[tuple[str, str], Change]:
        """The held rows as they were at ``mark``: the changes since taken back, on a copy."""
        assert self._undo is not None
        held = dict(self._pending)
        for key, previous in reversed(self._undo[mark:]):
            if previous is _MISSING:
                held.pop(key, None)
            else:
                held[key] = previous
        return held

    def select(self, spec: TableSpec, select: Select) -> list[dict[str, Any]]:
        self._write_out()
        return super().select(spec, select)

    def select_json(self, spec: TableSpec, select: Select) -> list[str]:
        self._write_out()
        return super().select_json(spec, select)

    def count(self, spec: TableSpec, where: Sequence[tuple[Column, Any]], *, not_null: Column | None = None) -> int:
        self._write_out()
        return super().count(spec, where, not_null=not_null)

    def counted(self, spec: TableSpec, column: Column | None, key: Any) -> int:
        self._write_out()
        return super().counted(spec, column, key)


class IdFilter:
    """A Bloom filter of (table, id) keys: "not in it" is certain, "in it" is probably (about 0.1% wrong).

    A rebuild of a million items keeps a few megabytes of it, where a set of the ids
    would take a hundred. It grows by adding a filter twice the size of the last when
    that one is full (a scalable Bloom filter). A key's bits come from its ``hash``
    (double hashing); a key not in it is told so by its first unset bit, mostly the first.
    """

    BITS_PER_KEY = 16
    PROBES = 6  # bits per key: with 16 bits a key, about 1 in 1,000 keys not added is "probably in it"

    def __init__(self, capacity: int = 1 << 16) -> None:
        # One filter is looked in fastest: size the first for the keys expected.
        self._filters: list[tuple[bytearray, int]] = []  # (bits, how many)
        self._capacity = max(1, capacity // 2)
        self._count = self._capacity  # full: the first add makes the first filter

    def add(self, key: tuple[str, str]) -> None:
        if self._count >= self._capacity:
            self._capacity *= 2
            size = self._capacity * self.BITS_PER_KEY
            self._filters.append((bytearray(size // 8 + 1), size))
            self._count = 0
        self._count += 1
        bits, size = self._filters[-1]
        digest = hash(key)
        position, step = digest & 0xFFFFFFFF, (digest >> 32 & 0xFFFFFFFF) | 1
        for _ in range(self.PROBES):
            position %= size
            bits[position >> 3] |= 1 << (position & 7)
            position += step

    def __contains__(self, key: object) -> bool:
        digest = hash(key)
        start, step = digest & 0xFFFFFFFF, (digest >> 32 & 0xFFFFFFFF) | 1
        for bits, size in self._filters:
            position = start
            for _ in range(self.PROBES):
                position %= size
                if not bits[position >> 3] & (1 << (position & 7)):
                    break
                position += step
            else:
                return True
        return False


# The rows that handlers on this thread write to while a rebuild runs there (see projections.py).
rebuilding: ContextVar[Rows | None] = ContextVar("rebuilding", default=None)
# The rows held for the commit running on this thread (Store.held), if it holds them.
holding: ContextVar[HeldRows | None] = ContextVar("holding", default=None)


class Store:
    """The app's tables, in the log's database: declared by projections and workers, created on start."""

    def __init__(self, log: MessageLogBackend) -> None:
        self.log = log
        self.rows = SqlRows(log)
        self.specs: dict[str, TableSpec] = {}

    def declare(self, spec: TableSpec) -> None:
        """Make ``spec`` one of the app's tables; the same name twice must mean the same table."""
        known = self.specs.get(spec.name)
        if known is not None and known != spec:
            raise StoreError(f"table {spec.name!r} is declared twice, differently")
        self.specs[spec.name] = spec

    def table(self, spec: TableSpec) -> Table:
        """The table, read and written in the log's transactions (or in a rebuild, on the rebuild's thread)."""
        self.declare(spec)
        return Table(spec, self._current_rows)

    @property
    def is_rebuilding(self) -> bool:
        """True on a thread that is rebuilding a projection: checks against other features are skipped there."""
        return rebuilding.get() is not None

    @contextmanager
    def held(self, hold: bool = True, *, batch: bool = False) -> Iterator[None]:
        """Within it, the tables' writes are held (:class:`HeldRows`) and written out when it ends without
        an error, in the caller's transaction; after an error they are dropped with the transaction.

        ``batch``: the rows are held for many commits, each a nested ``held()`` whose writes are undone
        alone when it fails. Inside a batch every ``held()`` is such a commit; outside one, ``hold=False``
        holds nothing (a commit of one command writes at once).
        """
        if rebuilding.get() is not None:
            yield
            return
        current = holding.get()
        if current is not None:
            if not current.batch:
                yield
                return
            current.begin()  # one commit of the batch
            try:
                yield
            except BaseException:
                current.end(failed=True)
                raise
            current.end(failed=False)
            return
        if not (hold or batch):
            yield
            return
        rows = HeldRows(self.rows, batch=batch)
        token = holding.set(rows)
        try:
            yield
            rows.flush()
        finally:
            holding.reset(token)

    def preload(self, spec: TableSpec, ids: Iterable[str]) -> None:
        """In a batch (:meth:`held` with ``batch``), read these rows in one query: the commits' ``get`` of
        one then asks nothing. Outside a batch it does nothing."""
        rows = holding.get()
        if rows is not None and rows.batch and rebuilding.get() is None:
            rows.preload(spec, ids)

    def _current_rows(self) -> Rows:
        rows = rebuilding.get()
        if rows is None:
            rows = holding.get()
        return self.rows if rows is None else rows
