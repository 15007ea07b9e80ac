"""A small key/value store (JSON values) in the same database as the log.

For settings and bookkeeping that are not events. State that matters belongs
in the log (and the store's tables built from it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .log import MessageLogBackend


class KeyValueStore:
    """JSON values by string key, in the log's database and sharing its transactions."""

    def __init__(self, log: MessageLogBackend) -> None:
        self._log = log

    def get(self, key: str, default: Any = None) -> Any:
        value = self._log.kv_get(key)
        return json.loads(value) if value is not None else default

    def set(self, key: str, value: Any) -> None:
        self._log.kv_set(key, json.dumps(value))

    def delete(self, key: str) -> bool:
        """Remove a key; True if it existed."""
        return self._log.kv_delete(key)

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, value in self._log.kv_items():
            yield key, json.loads(value)
