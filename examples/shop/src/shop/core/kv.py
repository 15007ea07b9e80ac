"""A small key/value store (JSON values) in the same database as the log.

For settings and bookkeeping that are not events. State that matters belongs
in the log, where it can be replayed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .log import MessageLog

SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


class KeyValueStore:
    """JSON values by string key, sharing the log's connection and transactions."""

    def __init__(self, log: MessageLog) -> None:
        self._log = log
        self._db = log.connection
        self._db.execute(SCHEMA)

    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        encoded = json.dumps(value)
        with self._log.transaction():
            self._db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, encoded),
            )

    def delete(self, key: str) -> bool:
        """Remove a key; True if it existed."""
        with self._log.transaction():
            cursor = self._db.execute("DELETE FROM kv WHERE key = ?", (key,))
        return cursor.rowcount > 0

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, value in self._db.execute("SELECT key, value FROM kv ORDER BY key").fetchall():
            yield key, json.loads(value)
