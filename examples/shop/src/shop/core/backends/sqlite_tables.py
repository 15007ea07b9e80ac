"""The SQL of store tables on SQLite (see core/store.py): types, indexes, and the counts triggers keep.

Rows keep SQLite's ``rowid`` in the order they were first stored (an upsert keeps
it), which is the "newest first" order; every column's index ends with it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..store import COUNTS, TOTAL, Column, Recount, TableSpec

if TYPE_CHECKING:
    from ..store import Database

TYPES = {
    "text": "TEXT",
    "folded": "TEXT",
    "int": "INTEGER",
    "real": "REAL",
    "decimal": "REAL",
    "bool": "INTEGER",
    "time": "REAL",
}

# A rebuild's connection settings (see tune_for_rebuild): SQLite caps the map at its build's limit (2 GB).
REBUILD_PRAGMAS = {"mmap_size": 1 << 40, "cache_size": -256 * 1024, "secure_delete": "FAST", "threads": 2}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS projections (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    position INTEGER NOT NULL,
    rebuilt_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {COUNTS} (tbl TEXT NOT NULL, col TEXT NOT NULL, val, n INTEGER NOT NULL, PRIMARY KEY (tbl, col, val));
"""


class SQLiteTables(Recount):
    """What :class:`~.store.SqlRows` and the rebuilds need to know about SQLite."""

    param = "?"
    seq = "rowid"
    works_aside = False  # reading and writing are this process's own CPU: threads would contend for the GIL

    def create_table(self, spec: TableSpec, physical: str) -> list[str]:
        columns = "".join(f', "{column.name}" {TYPES[column.kind]}' for column in spec.columns)
        return [f'CREATE TABLE "{physical}" (id TEXT PRIMARY KEY, data TEXT NOT NULL{columns})']

    def drop_table(self, physical: str) -> list[str]:
        return [f'DROP TABLE IF EXISTS "{physical}"']  # its indexes and triggers go with it

    def create_indexes(self, spec: TableSpec, physical: str, token: str) -> list[str]:
        # An SQLite index ends with the rowid: "WHERE status = ? ORDER BY rowid DESC" is answered from it.
        return [
            f'CREATE INDEX "{physical}__{column.field}__{token}" ON "{physical}" ("{column.name}")'
            for column in spec.columns
        ]

    def analyze(self, physical: str) -> list[str]:
        return []  # SQLite plans from its fixed rules while the database has never been analyzed: keep them

    def create_counting(self, spec: TableSpec, physical: str) -> list[str]:
        """Triggers that keep the table's counts in step with every insert, update and delete."""
        name = spec.name
        counted = [column for column in spec.columns if column.counted]

        def add(row: str, column: Column) -> str:
            key = f'{row}."{column.name}"'
            return (
                f"INSERT INTO {COUNTS} (tbl, col, val, n) SELECT '{name}', '{column.name}', {key}, 1 "
                f"WHERE {key} IS NOT NULL ON CONFLICT (tbl, col, val) DO UPDATE SET n = n + 1;"
            )

        def remove(row: str, column: Column) -> str:
            return (
                f"UPDATE {COUNTS} SET n = n - 1 "
                f"WHERE tbl = '{name}' AND col = '{column.name}' AND val = {row}.\"{column.name}\";"
            )

        total = f"UPDATE {COUNTS} SET n = n {{}} 1 WHERE tbl = '{name}' AND col = '{TOTAL}' AND val = '{TOTAL}';"
        statements = [
            f'CREATE TRIGGER "{physical}__insert" AFTER INSERT ON "{physical}" BEGIN '
            + total.format("+")
            + "".join(add("NEW", column) for column in counted)
            + " END",
            f'CREATE TRIGGER "{physical}__delete" AFTER DELETE ON "{physical}" BEGIN '
            + total.format("-")
            + "".join(remove("OLD", column) for column in counted)
            + " END",
        ]
        for column in counted:
            statements.append(
                f'CREATE TRIGGER "{physical}__update_{column.field}" AFTER UPDATE OF "{column.name}" ON "{physical}" '
                f'WHEN OLD."{column.name}" IS NOT NEW."{column.name}" BEGIN '
                + remove("OLD", column)
                + add("NEW", column)
                + " END"
            )
        return statements

    def existing_tables(self, db: Database, names: list[str]) -> set[str]:
        rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows} & set(names)

    def value(self, column: Column | None, key: Any) -> Any:
        # sqlite3 takes no Decimal: an amount's column orders as a float does.
        return float(key) if column is not None and column.kind == "decimal" and key is not None else key

    def count_value(self, column: Column, key: Any) -> Any:
        return self.value(column, key)

    def without_index(self, expression: str) -> str:
        return f"+{expression}"  # SQLite's way of saying "not from an index"

    def tune_for_rebuild(self, db: Database) -> Callable[[], None]:
        """The log read through a memory map (no read call per page), and a page cache that keeps the shadow
        table's id index (random ids: about 50 MB at a million rows) rather than reading its pages back for
        every insert. Freed pages are not zeroed (``secure_delete=FAST``; builds with SECURE_DELETE zero every
        page of the replaced table, through the WAL, inside the swap's write lock: 18-29 s at a million posts):
        a projection holds nothing the log does not. Indexes are sorted on two threads. Connection settings
        only: the log's journal and durability stay as they are. A setting the database does not have is left
        alone (an in-memory database has no memory map: its ``PRAGMA mmap_size`` answers nothing)."""
        previous = {name: rows[0][0] for name in REBUILD_PRAGMAS if (rows := db.query(f"PRAGMA {name}"))}
        for name in previous:
            db.query(f"PRAGMA {name}={REBUILD_PRAGMAS[name]}")

        def restore() -> None:
            for name, value in previous.items():
                setting = "FAST" if name == "secure_delete" and value == 2 else int(value)  # 2 would read as ON
                db.query(f"PRAGMA {name}={setting}")

        return restore


SQLITE = SQLiteTables()
