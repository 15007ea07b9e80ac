"""The SQL of store tables on PostgreSQL (see core/store.py): types, indexes, and the counts a trigger keeps.

Each table has a ``seq`` identity column: the order rows were first stored in (an
upsert keeps it), which is the "newest first" order; every column's index ends
with it. Text columns use the "C" collation, so they order as on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..store import COUNTS, TOTAL, Column, Recount, TableSpec

if TYPE_CHECKING:
    from ..store import Database

TYPES = {
    "text": 'text COLLATE "C"',
    "folded": 'text COLLATE "C"',
    "int": "bigint",
    "real": "double precision",
    "decimal": "numeric",
    "bool": "boolean",
    "time": "double precision",
}

# The schema migration (postgres.py's MIGRATIONS) that adds the store's bookkeeping: the projections'
# fingerprints, the counts, and the one trigger function that keeps the counts of every table.
SCHEMA = f"""
CREATE TABLE projections (
    name text PRIMARY KEY,
    fingerprint text NOT NULL,
    position bigint NOT NULL,
    rebuilt_at text NOT NULL
);
CREATE TABLE {COUNTS} (tbl text NOT NULL, col text NOT NULL, val text NOT NULL, n bigint NOT NULL, PRIMARY KEY (tbl, col, val));
CREATE FUNCTION state_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    table_name text := TG_ARGV[0];
    column_name text;
    old_value text;
    new_value text;
    delta integer := CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'DELETE' THEN -1 ELSE 0 END;
BEGIN
    IF delta <> 0 THEN
        INSERT INTO {COUNTS} AS c VALUES (table_name, '{TOTAL}', '{TOTAL}', delta)
        ON CONFLICT (tbl, col, val) DO UPDATE SET n = c.n + delta;
    END IF;
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        column_name := TG_ARGV[i];
        old_value := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) ->> column_name END;
        new_value := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) ->> column_name END;
        IF old_value IS DISTINCT FROM new_value THEN
            IF old_value IS NOT NULL THEN
                UPDATE {COUNTS} SET n = n - 1 WHERE tbl = table_name AND col = column_name AND val = old_value;
            END IF;
            IF new_value IS NOT NULL THEN
                INSERT INTO {COUNTS} AS c VALUES (table_name, column_name, new_value, 1)
                ON CONFLICT (tbl, col, val) DO UPDATE SET n = c.n + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
"""


class PostgresTables(Recount):
    """What :class:`~.store.SqlRows` and the rebuilds need to know about PostgreSQL."""

    param = "%s"
    seq = "seq"
    works_aside = True
    counted = "{}::text"  # the counts table keeps every value as text

    def create_table(self, spec: TableSpec, physical: str) -> list[str]:
        columns = "".join(f', "{column.name}" {TYPES[column.kind]}' for column in spec.columns)
        table = f'"{physical}" (seq bigint GENERATED ALWAYS AS IDENTITY, id text PRIMARY KEY, data text NOT NULL'
        return [f"CREATE TABLE {table}{columns})"]

    def drop_table(self, physical: str) -> list[str]:
        return [f'DROP TABLE IF EXISTS "{physical}"']  # its indexes and trigger go with it

    def create_indexes(self, spec: TableSpec, physical: str, token: str) -> list[str]:
        return [
            f'CREATE INDEX "{physical}__seq__{token}" ON "{physical}" (seq)',
            *(
                f'CREATE INDEX "{physical}__{column.field}__{token}" ON "{physical}" ("{column.name}", seq)'
                for column in spec.columns
            ),
        ]

    def analyze(self, physical: str) -> list[str]:
        # A table filled in one go has no statistics until autovacuum's next pass, up to a minute later; the
        # planner guessed meanwhile, and a filtered, sorted page of 333,334 posts took 380 ms instead of 1.5 ms.
        return [f'ANALYZE "{physical}"']

    def create_counting(self, spec: TableSpec, physical: str) -> list[str]:
        arguments = ", ".join(f"'{value}'" for value in [spec.name, *(c.name for c in spec.columns if c.counted)])
        trigger = f'CREATE TRIGGER "{physical}__count" AFTER INSERT OR UPDATE OR DELETE ON "{physical}"'
        return [f"{trigger} FOR EACH ROW EXECUTE FUNCTION state_count({arguments})"]

    def existing_tables(self, db: Database, names: list[str]) -> set[str]:
        return {name for name in names if db.query("SELECT to_regclass(%s) IS NOT NULL", (f'"{name}"',))[0][0]}

    def value(self, column: Column | None, key: Any) -> Any:
        return key

    def count_value(self, column: Column, key: Any) -> Any:
        # As ``to_jsonb(row) ->> column`` gives it: true/false for booleans, digits for numbers.
        return str(key).lower() if isinstance(key, bool) else str(key)

    def without_index(self, expression: str) -> str:
        return expression  # PostgreSQL's planner weighs the choice itself, from its statistics

    def tune_for_rebuild(self, db: Database) -> Callable[[], None]:
        return lambda: None  # COPY and the server's own memory settings do the job


POSTGRES = PostgresTables()
