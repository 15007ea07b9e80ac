"""Upcasters: old payloads in the log read as today's shape, while the log itself never changes.

Every stored message records the version of its payload's schema (``messages.version``;
1 for messages stored before versions existed). When a feature's fields change
(``petrock feature field add|rename|remove|change``), the message types that carry the
field get the next version, and the feature's ``upcasters.py`` gets one step for each: a
pure function from a payload of version N to one of version N + 1.

Whatever reads the log for the app (projection rebuilds, worker delivery, ``log tail``,
``deadletters show``) reads it through :meth:`UpcasterChains.read`, so handlers only
ever see the current shape. An app whose log holds a version its code cannot bring to
the current one (a step is missing, or the log is newer than the code) refuses to start
(:meth:`UpcasterChains.check`), naming the message type and the version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

from .log import LogUnavailable, Message, MessageLogBackend, Row

Payload = dict[str, Any]
Upcast = Callable[[Payload], Payload]


class VersionMismatch(LogUnavailable):
    """The log holds a message version this code cannot read as the current one: a missing step, or a newer version."""


class Upcasters:
    """One feature's upcasting steps, declared in its ``upcasters.py``::

    upcasters = Upcasters()

    @upcasters.step("orders/create", 1)
    def orders_create_v1(payload: Payload) -> Payload:
        return {**payload, "discount": "0"}
    """

    def __init__(self) -> None:
        self.steps: dict[str, dict[int, Upcast]] = {}

    def step(self, type: str, version: int) -> Callable[[Upcast], Upcast]:
        """Register a function turning a ``type`` payload of ``version`` into one of ``version + 1``."""

        def register(upcast: Upcast) -> Upcast:
            steps = self.steps.setdefault(type, {})
            if version in steps:
                raise ValueError(f"{type} already has an upcaster from version {version}")
            steps[version] = upcast
            return upcast

        return register


class UpcasterChains:
    """Every feature's steps, by message type; the current version of a type is one past its last step."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[int, Upcast]] = {}
        self.versions: dict[str, int] = {}  # message type -> the version this code writes (absent: 1)

    def add(self, upcasters: Upcasters) -> None:
        for type, steps in upcasters.steps.items():
            known = self._steps.setdefault(type, {})
            if clash := known.keys() & steps.keys():
                raise ValueError(f"{type} has two upcasters from version {min(clash)}")
            known.update(steps)
            self.versions[type] = max(known) + 1

    def version(self, type: str) -> int:
        """The version of ``type`` that this code writes and its handlers read."""
        return self.versions.get(type, 1)

    def modules(self, types: Iterable[str]) -> list[str]:
        """The modules the steps of ``types`` live in (a projection's fingerprint includes them)."""
        return sorted({step.__module__ for type in types for step in self._steps.get(type, {}).values()})

    def upcast(self, type: str, version: int, payload: Payload) -> Payload:
        """``payload`` of ``type`` at ``version``, brought step by step to the current version."""
        current = self.version(type)
        if version > current:
            raise VersionMismatch(_newer(type, version, current))
        steps = self._steps.get(type, {})
        while version < current:
            step = steps.get(version)
            if step is None:
                raise VersionMismatch(_missing(type, version))
            payload = step(payload)
            version += 1
        return payload

    def read(self, message: Message) -> Message:
        """``message`` as today's handlers expect it (the same object when it is current already)."""
        current = self.versions.get(message.type, 1)
        if message.version == current:
            return message
        data = json.dumps(self.upcast(message.type, message.version, message.payload()))
        return message._replace(data=data, version=current)

    def read_row(self, row: Row) -> Row:
        """Like :meth:`read`, for a plain row (the rebuilds' fast path)."""
        current = self.versions.get(row[2], 1)
        if row[4] == current:
            return row
        return (row[0], row[1], row[2], json.dumps(self.upcast(row[2], row[4], json.loads(row[3]))), current)

    def check(self, log: MessageLogBackend, types: Collection[str]) -> None:
        """Refuse (:class:`VersionMismatch`, one line) a log holding a version of one of ``types`` that this
        code cannot bring to the current one. Cheap: only later versions are indexed."""
        p = log.dialect.param
        for type, newest in log.query("SELECT type, MAX(version) FROM messages WHERE version > 1 GROUP BY type"):
            if type in types and newest > self.version(type):
                raise VersionMismatch(_newer(type, newest, self.version(type)))
        for type in sorted(types):
            steps = self._steps.get(type, {})
            missing = [version for version in range(1, self.version(type)) if version not in steps]
            if not missing:
                continue
            sql = f"SELECT MIN(version) FROM messages WHERE type = {p} AND version <= {p}"
            (oldest,) = log.query(sql, (type, max(missing)))[0]
            if oldest is not None:
                raise VersionMismatch(_missing(type, next(v for v in missing if v >= oldest)))


def _newer(type: str, version: int, current: int) -> str:
    return (
        f"the log holds {type} messages of version {version}, newer than this code's {current} — "
        "run the code that wrote them (a downgrade cannot read them)"
    )


def _missing(type: str, version: int) -> str:
    return (
        f"the log holds {type} messages of version {version}, and no upcaster brings version {version} "
        f"to {version + 1} — restore that step in the feature's upcasters.py"
    )
