"""Unique fields: no two items of a table share a value of a field marked ``unique``.

A feature's state handler asks :func:`require_unique` before it writes, inside the
transaction that appends the command. That transaction holds the log's write lock
(SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's lock on the messages table), so two
commands racing for one value, from any process or machine, are taken one after
the other: the first is appended, the second is refused (:class:`DuplicateValue`,
a 409) and appends nothing.

Values compare as the list's filters compare them: text without regard to case,
amounts as numbers, times as instants; an empty (``None``) value is never taken.
While a projection is rebuilt from the log the check is skipped, like the
references check: the log is what happened, even where it holds a value twice
(written before the field was unique, say).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .commands import CommandRejected
from .store import KEYS, Column, Table, rebuilding

MAX_CANDIDATES = 100  # items sharing the indexed key (text cut at 100 characters) compared in full


class DuplicateValue(CommandRejected):
    """Another item already has this value of a unique field."""

    status_code = 409

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(f"{field}: another item already has {value!r}; choose another value")
        self.field = field


def require_unique(table: Table, field: str, value: Any, item_id: str) -> None:
    """Refuse with :class:`DuplicateValue` when an item of ``table`` other than ``item_id`` has ``value``
    in ``field`` (one of the table's columns: its index finds the candidates)."""
    if value is None or rebuilding.get() is not None:
        return
    same = _comparable(table.spec.column(field))
    wanted = same(value)
    for item in table.find({field: value}, limit=MAX_CANDIDATES):
        if item["id"] != item_id and item.get(field) is not None and same(item[field]) == wanted:
            raise DuplicateValue(field, value)


def _comparable(column: Column) -> Callable[[Any], Any]:
    """What equal values share: the column's key, with folded text compared in full."""
    if column.kind == "folded":
        return lambda value: str(value).casefold()
    return KEYS[column.kind]
