"""References between features: an item's ``ref`` field must name an existing item of
another feature, and an item that others refer to cannot be deleted.

The features' state handlers ask this registry, so both rules hold however a command
arrives (a page, ``POST /commands``, a worker) and a refused command never reaches the
log. It knows features only by name and their ``get`` query, so a feature added later
can refer to one generated before it. While a projection is rebuilt from the log the
checks are skipped: the log holds only commands that passed them when they were made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .commands import CommandRejected, NotFound
from .store import Store

Referrers = Callable[[str], list[str]]  # the ids of the items that refer to an id
MAX_NAMED = 3


class MissingReference(CommandRejected):
    """A ``ref`` field names an item that does not exist."""

    status_code = 422

    def __init__(self, field: str, target: str, item_id: str) -> None:
        super().__init__(f"{field}: there is no {target} item with id {item_id!r}")
        self.field = field


class StillReferenced(CommandRejected):
    """The item to delete is referred to by others; they must go or change first.

    ``referrers`` lists them as ``(feature, ids)``, so a page can name and link them.
    """

    status_code = 409

    def __init__(self, message: str, referrers: list[tuple[str, list[str]]]) -> None:
        super().__init__(message)
        self.referrers = referrers


class References:
    """Which features refer to which, and the checks the state handlers make."""

    def __init__(self, query: Callable[[str, Mapping[str, Any]], Any], store: Store) -> None:
        self._query = query
        self._store = store
        self._referrers: dict[str, list[tuple[str, str, Referrers]]] = {}

    def add(self, target: str, referrer: str, field: str, find: Referrers) -> None:
        """``referrer``'s items refer to ``target``'s through ``field``; ``find(id)`` lists those that do."""
        self._referrers.setdefault(target, []).append((referrer, field, find))

    def require(self, target: str, item_id: str, field: str) -> None:
        """Refuse with :class:`MissingReference` unless ``target`` has an item ``item_id``."""
        if self._store.is_rebuilding:
            return
        try:
            self._query(f"{target}/get", {"id": item_id})
        except NotFound:
            raise MissingReference(field, target, item_id) from None

    def require_unreferenced(self, target: str, item_id: str) -> None:
        """Refuse with :class:`StillReferenced` (409), naming who refers to ``item_id``."""
        if self._store.is_rebuilding:
            return
        for referrer, field, find in self._referrers.get(target, []):
            ids = find(item_id)
            if ids:
                more = f" and {len(ids) - MAX_NAMED} more" if len(ids) > MAX_NAMED else ""
                named = ", ".join(ids[:MAX_NAMED]) + more
                raise StillReferenced(
                    f"{target} item {item_id!r} is referred to by {referrer} {named} (field {field}); "
                    "delete those or point them elsewhere first",
                    [(referrer, ids)],
                )
