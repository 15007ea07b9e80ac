"""Projections: state built from the log into store tables, rebuilt only when the code that builds it changes.

A projection is an object whose handler methods write its tables (core/store.py).
The App calls them in the transaction that appends each command, so the tables
are always as current as the log. Start does not replay: the ``projections``
table records, per projection, a fingerprint of the code that builds it (its
module, its tables, the models of the messages it handles). When that fingerprint
changes, or the projection was never built, :meth:`Projections.rebuild` builds it
again from the log into shadow tables and swaps them in atomically, with progress
reported as it goes. Nothing is served from a half-built table or from rows built
by other code: while a rebuild runs, commands and queries answer 503.

The workers' own state (see worker.py) is recorded here too, as ``worker:NAME``.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import json
import logging
import sqlite3
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .commands import CommandRejected
from .log import Message, MessageLogBackend, Row, message_from_row
from .owners import STORED
from .progress import RebuildProgress
from .store import BufferedRows, RebuildRows, SqlRows, Store, Table, TableSpec, rebuilding
from .upcasting import UpcasterChains, VersionMismatch

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)

Handler = Callable[[Any, Message], None]
Progress = Callable[[int, int], None]  # (messages read so far, messages to read)
FLUSH_EVERY = 20_000  # buffered rows written out per transaction while rebuilding
READ_BATCH = 10_000
VERIFY_EVERY_SECONDS = 1.0
REBUILD_AT_ONCE = 10_000  # messages: a log this short is rebuilt before serving (a fraction of a second)
REBUILD_LEASE = "rebuild:projections"  # one rebuild at a time per database (worker leases live beside it)
# Renewed every RENEW_EVERY_SECONDS, by a timer of its own and before each write: a live rebuilder keeps
# it through a long phase (a slow handler, building indexes), a killed one's is taken over after this.
REBUILD_LEASE_SECONDS = 10.0
RENEW_EVERY_SECONDS = 2.0


class ProjectionsUnavailable(RuntimeError):
    """Commands and queries wait: a projection is being rebuilt, or was built by other code (503)."""

    retry_after = 5


class RebuildFailed(RuntimeError):
    """A stored message cannot be read by the code that rebuilds a projection; nothing was swapped in."""


class ProjectionState(StrEnum):
    CURRENT = "current"  # built by this code, kept current by every append
    STALE = "stale"  # built by other code: rebuild it
    MISSING = "missing"  # never built


class Projection:
    """State kept in store tables by handler methods: subclass it, list ``tables``, write handlers.

    ::

        class OrdersPerCustomer(Projection):
            tables = (TableSpec("orders-per-customer"),)

            def __init__(self, store: Store) -> None:
                super().__init__(store, "orders-per-customer")
                self.counts = self.table(self.tables[0])

            def count(self, command: CreateOrder, message: Message) -> None:
                row = self.counts.get(command.customer) or {"orders": 0}
                self.counts.put(command.customer, {"orders": row["orders"] + 1})

        app.projections.add(stats := OrdersPerCustomer(app.store))
        app.projections.on("orders/create", stats.count)

    A feature's state is one too: its command handlers are its methods. Change
    ``version`` to force a rebuild the code's fingerprint would not see.
    """

    tables: tuple[TableSpec, ...] = ()
    version = "1"

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        for spec in self.tables:
            store.declare(spec)

    def table(self, spec: TableSpec) -> Table:
        return self.store.table(spec)


@dataclass
class Status:
    """What ``projections status`` shows for one projection."""

    name: str
    state: ProjectionState
    fingerprint: str  # of the code running now
    stored_fingerprint: str | None
    position: int | None  # the log position it was last rebuilt up to
    rebuilt_at: str | None
    rows: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {**self.__dict__, "state": self.state.value}


@dataclass
class RebuildReport:
    """What a rebuild did."""

    names: list[str]
    messages: int  # messages read
    applied: int  # handler calls
    refused: int  # messages today's handlers refuse (kept in the log, left out of the state)
    seconds: float


class Projections:
    """The app's projections: which handlers build each, whether each is current, and rebuilds."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._by_name: dict[str, Projection] = {}
        self._extra: dict[str, list[Handler]] = {}  # message type -> handlers besides the command's own
        self._lock = threading.Lock()
        self.unavailable: str | None = None  # why commands and queries wait (None: they don't)
        self.progress: tuple[int, int] | None = None  # (done, total) of the rebuild running now
        self._checked = False
        self._verified_at = 0.0
        self._fingerprints: dict[tuple[str, str], str] = {}
        self.flush_every = FLUSH_EVERY  # rows a rebuild keeps in memory before it writes them out

    # --- registration ---

    def add(self, projection: Projection) -> None:
        if projection.name in self._by_name and self._by_name[projection.name] is not projection:
            raise ValueError(f"projection {projection.name!r} is already registered")
        self._by_name[projection.name] = projection

    def on(self, type: str, handler: Handler) -> Handler:
        """Also call ``handler`` (a method of a registered projection) for every ``type`` message."""
        if _owner(handler) not in self._by_name.values():
            raise ValueError(f"{handler!r} is not a method of a registered projection (app.projections.add it first)")
        self._extra.setdefault(type, []).append(handler)
        return handler

    def handlers(self, type: str) -> list[Handler]:
        """The handlers for ``type`` besides the command's own state handler."""
        return self._extra.get(type, [])

    def __iter__(self) -> Iterator[Projection]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Projection:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name) or "none"
            raise LookupError(f"no projection {name!r} (projections: {known})") from None

    # --- what builds a projection ---

    def appliers(self, projection: Projection) -> dict[str, tuple[Callable[[str], Any], list[Handler]]]:
        """For each message type the projection handles: how to read its payload, and its handlers."""
        appliers: dict[str, tuple[Callable[[str], Any], list[Handler]]] = {}
        for spec in self.app.commands:
            if spec.handler is not None and _owner(spec.handler) is projection:
                appliers[spec.type] = (partial(spec.model.model_validate_json, context=STORED), [spec.handler])
        for type, handlers in self._extra.items():
            own = [handler for handler in handlers if _owner(handler) is projection]
            if own:
                parse, already = appliers.get(type, (self._parser(type), []))
                appliers[type] = (parse, already + own)
        return appliers

    def fingerprint(self, projection: Projection) -> str:
        """A hash of what builds the projection: its code, its tables, the messages it handles and their models."""
        key = (projection.name, projection.version)
        if key not in self._fingerprints:  # the code does not change while the process runs
            self._fingerprints[key] = self._fingerprint(projection)
        return self._fingerprints[key]

    def _fingerprint(self, projection: Projection) -> str:
        appliers = self.appliers(projection)
        modules = {type(projection).__module__}
        for _, handlers in appliers.values():
            modules.update(handler.__module__ for handler in handlers)
        models = {}
        for message_type in sorted(appliers):
            spec = self.app.commands.find(message_type)
            models[message_type] = model_schema(spec.model) if spec is not None else None
        # The upcasters change what old messages say: a new step (or a fixed one) rebuilds too.
        upcasters = self.app.upcasters
        modules.update(upcasters.modules(appliers))
        versions = {message_type: upcasters.version(message_type) for message_type in sorted(appliers)}
        later = {message_type: version for message_type, version in versions.items() if version > 1}
        parts = [[spec.describe() for spec in projection.tables], models, projection.version]
        return code_fingerprint(sorted(modules), *parts, *([later] if later else []))

    # --- state ---

    def status(self) -> list[Status]:
        """Every projection, then every worker's own state (``worker:NAME``), as stored against the code now."""
        return self.status_of(self._stored(), lambda spec: self.app.store.table(spec).count())

    def specs(self) -> list[TableSpec]:
        """The tables of every projection and worker state :meth:`status` reports on."""
        return [spec for _, _, tables in self._entries() for spec in tables]

    def status_of(
        self, stored: dict[str, tuple[str, int, str]], count: Callable[[TableSpec], int | None]
    ) -> list[Status]:
        """:meth:`status` from the ``projections`` rows ``stored`` and the tables' row counts (None: no such
        table), read elsewhere: ``projections status`` reads them on a connection that writes nothing."""
        statuses = []
        for name, fingerprint, tables in self._entries():
            row = stored.get(name)
            if row is None:
                state = ProjectionState.MISSING
            else:
                state = ProjectionState.CURRENT if row[0] == fingerprint else ProjectionState.STALE
            rows = {spec.name: n for spec in tables if (n := count(spec)) is not None}
            statuses.append(Status(name, state, fingerprint, *(row or (None, None, None)), rows=rows))
        return statuses

    def _entries(self) -> list[tuple[str, str, tuple[TableSpec, ...]]]:
        entries = [(p.name, self.fingerprint(p), p.tables) for p in self._by_name.values()]
        for handle in self.app.supervisor.handles:
            worker = handle.worker
            if getattr(worker, "tables", ()):
                fingerprint = worker.state_fingerprint(self.app.upcasters)  # type: ignore[attr-defined]
                entries.append((worker.state_name, fingerprint, worker.tables))  # type: ignore[attr-defined]
        return entries

    def warn_about_state_in_memory(self) -> list[str]:
        """Name the state handlers that are not methods of a registered projection: whatever they
        keep in memory is gone after a restart, since start no longer replays the log."""
        owners = set(map(id, self._by_name.values()))
        types = [spec.type for spec in self.app.commands if spec.handler and id(_owner(spec.handler)) not in owners]
        for type in types:
            logger.warning(
                "the state handler of %s is not a method of a projection: state it keeps in memory is lost "
                "on restart (start does not replay the log; see docs/MIGRATING.md)",
                type,
            )
        return types

    def needing_rebuild(self) -> list[str]:
        """The projections (not the workers' states: each worker rebuilds its own) not built by this code."""
        return [
            status.name
            for status in self.status()
            if status.name in self._by_name and status.state != ProjectionState.CURRENT
        ]

    def stored_fingerprint(self, name: str) -> str | None:
        row = self._stored().get(name)
        return row[0] if row else None

    def record(self, name: str, fingerprint: str, position: int) -> None:
        """Note that ``name`` was built by code with ``fingerprint`` up to ``position`` (joins the transaction)."""
        self._record_on(self.app.log, name, fingerprint, position)

    def _stored(self) -> dict[str, tuple[str, int, str]]:
        rows = self.app.log.query("SELECT name, fingerprint, position, rebuilt_at FROM projections")
        return {name: (fingerprint, position, rebuilt_at) for name, fingerprint, position, rebuilt_at in rows}

    def require_ready(self) -> None:
        """Raise :class:`ProjectionsUnavailable` unless every projection is current (checked once, rebuilt if need be).

        Once a second it also looks whether another process, running other code, has
        rebuilt a projection since: this one then stops answering from it (503) rather
        than serve rows its own code did not build. The rebuild thread itself is let
        through: its handlers may ask other features.
        """
        if self.unavailable is not None and not self.app.store.is_rebuilding:
            raise ProjectionsUnavailable(self.unavailable)
        if not self._checked:
            with self._lock:
                if not self._checked:
                    names = self.needing_rebuild()
                    if names:
                        self.rebuild(names)
                    self._checked = True
                    self._verified_at = time.monotonic()
        elif time.monotonic() - self._verified_at > VERIFY_EVERY_SECONDS and not self.app.store.is_rebuilding:
            self._verified_at = time.monotonic()
            self._verify()

    def _verify(self) -> None:
        stored = self._stored()
        for projection in self._by_name.values():
            row = stored.get(projection.name)
            if row is not None and row[0] != self.fingerprint(projection):
                self.unavailable = (
                    f"the {projection.name} projection was rebuilt by other code (at {row[2]}); "
                    "restart this process with the same code as the others"
                )
                logger.error("%s", self.unavailable)
                raise ProjectionsUnavailable(self.unavailable)

    def mark_checked(self) -> None:
        self._checked = True
        self._verified_at = time.monotonic()

    # --- rebuilding ---

    def rebuild(
        self,
        names: Sequence[str] | None = None,
        *,
        log: MessageLogBackend | None = None,
        progress: Progress | None = None,
        stopping: threading.Event | None = None,
    ) -> RebuildReport:
        """Build the projections ``names`` (all when None) from the whole log and swap them in.

        They are built into shadow tables, in batches (on ``log``: another connection
        to the same database, so the app's own connection stays free), then under the
        log's write lock the messages appended meanwhile are applied, the shadow tables
        replace the live ones and the new fingerprints are recorded, in one transaction.
        Commands and queries answer 503 meanwhile. ``stopping`` ends it early; nothing
        is swapped in then.
        """
        projections = [self.get(name) for name in names] if names else list(self._by_name.values())
        log = log or self.app.log
        started = time.monotonic()
        self.unavailable = _rebuilding([p.name for p in projections])
        # Inside the caller's transaction its write lock keeps other rebuilds out (and waiting there for
        # one would wait on ourselves).
        lease = None if log.in_transaction() else _RebuildLease(log)
        try:
            if lease is not None and lease.take(stopping):  # another process rebuilt meanwhile: what is left?
                projections = self._still_out_of_date(projections)
            try:
                report = self._rebuild(projections, log, progress, stopping, started, lease)
            except _TakenOver:  # this one stalled past its lease: wait for the other, then do what is left
                assert lease is not None
                lease.take(stopping)
                report = self._rebuild(self._still_out_of_date(projections), log, progress, stopping, started, lease)
        except BaseException as exc:
            self.unavailable = f"the rebuild of {', '.join(p.name for p in projections)} did not finish ({exc})"
            raise
        finally:
            self.progress = None
            if lease is not None:
                lease.release()
        self.unavailable = None
        self._checked = True
        return report

    def _still_out_of_date(self, projections: list[Projection]) -> list[Projection]:
        left = set(self.needing_rebuild())
        return [projection for projection in projections if projection.name in left]

    def begin(self) -> list[str]:
        """On start: rebuild now what needs it if the log is short (a new app: no 503 at all);
        else return the projections :meth:`rebuild_in_background` must rebuild, and until it
        has, commands and queries answer 503."""
        self.warn_about_state_in_memory()
        names = self.needing_rebuild()
        if names and self.app.log.version() <= REBUILD_AT_ONCE:
            self.rebuild(names)
            names = []
        if names:
            self.unavailable = _rebuilding(names)
        else:
            self._checked = True
        return names

    async def rebuild_in_background(self, names: Sequence[str], stopping: threading.Event) -> bool:
        """Rebuild on another thread and connection (the event loop goes on serving 503s and /healthz);
        False if it failed or was stopped (the reason stays in :attr:`unavailable`)."""
        log = self.app.log.connect_again()
        progress = RebuildProgress(", ".join(names))
        try:
            await asyncio.to_thread(self.rebuild, names, log=log, progress=progress, stopping=stopping)
        except Exception as exc:  # noqa: BLE001 - reported by /healthz and the 503s; the log says why
            if not stopping.is_set() and not set(names) & set(self.needing_rebuild()):
                logger.warning("%s, but another process has rebuilt them since: serving", self.unavailable or exc)
                self.unavailable = None
                self.mark_checked()
                return True
            logger.error("%s", self.unavailable or exc)
            return False
        finally:
            progress.close()
            if log is not self.app.log:
                log.close()
        return True

    def _rebuild(
        self,
        projections: list[Projection],
        log: MessageLogBackend,
        progress: Progress | None,
        stopping: threading.Event | None,
        started: float,
        lease: _RebuildLease | None = None,
    ) -> RebuildReport:
        if not projections:
            logger.info("another process rebuilt the projections meanwhile: nothing left to rebuild")
            return RebuildReport([], 0, 0, 0, time.monotonic() - started)
        renew = lease.renew if lease is not None else lambda: None
        specs = [spec for projection in projections for spec in projection.tables]
        shadows = {spec.name: f"{spec.physical}__rebuild" for spec in specs}
        sql = SqlRows(log, names=lambda spec: shadows.get(spec.name, spec.physical))
        total = log.version()
        self.progress = (0, total)  # /healthz says how far from the first moment it says "rebuilding"
        buffer = RebuildRows(sql, fresh=shadows, expected=total)  # at most a row per message
        appliers: dict[str, tuple[Callable[[str], Any], list[Handler]]] = {}
        fingerprints = {projection.name: self.fingerprint(projection) for projection in projections}
        for projection in projections:
            for type, (parse, handlers) in self.appliers(projection).items():
                appliers[type] = (parse, appliers.get(type, (parse, []))[1] + handlers)
        with log.transaction():
            for spec in specs:
                for statement in log.dialect.drop_table(shadows[spec.name]):
                    log.execute(statement)
                for statement in log.dialect.create_table(spec, shadows[spec.name]):
                    log.execute(statement)
        applier = _Applier(appliers, self.app.upcasters)
        position = 0
        restore = log.dialect.tune_for_rebuild(log)
        token = rebuilding.set(buffer)
        writer = _Writer(log, buffer, renew)
        buffer.write_out = writer.write_out
        try:
            for rows in _read_ahead(log, min(READ_BATCH, self.flush_every)):
                if stopping is not None and stopping.is_set():
                    raise RebuildFailed("stopped before it finished; the old tables stay until the next start")
                applier.apply(rows)
                position = rows[-1][0]
                if len(buffer) >= self.flush_every:
                    writer.flush()
                total = max(total, position)
                self._report(projections, position, total, progress)
                renew()
            writer.close()
            renew()
            # The two long transactions renew the lease last, before they commit: on SQLite nobody could
            # take it while they held the write lock, and it must not be found expired the moment they end.
            keep = lease.renew_within if lease is not None else lambda: None
            with log.transaction():  # indexes now: building them once is faster than keeping them while writing
                suffix = uuid.uuid4().hex[:8]
                for spec in specs:
                    for statement in log.dialect.create_indexes(spec, shadows[spec.name], suffix):
                        log.execute(statement)
                    for statement in log.dialect.analyze(shadows[spec.name]):  # first queries planned as well
                        log.execute(statement)
                keep()
            renew()
            with log.transaction():  # the write lock: nobody appends while the rest is applied and swapped
                for rows in _batches(log, position):
                    applier.apply(rows)
                    position = rows[-1][0]
                buffer.flush()
                for spec in specs:
                    self._swap(log, spec, shadows[spec.name])
                for projection in projections:
                    self._record_on(log, projection.name, fingerprints[projection.name], position)
                keep()
        finally:
            writer.close(wait_only=True)
            rebuilding.reset(token)
            restore()
        self._report(projections, position, max(total, position), progress)
        seconds = time.monotonic() - started
        names = [projection.name for projection in projections]
        report = RebuildReport(names, applier.read, applier.applied, applier.refused, seconds)
        logger.info(
            "rebuilt %s from %d messages in %.1fs (%d refused by today's handlers)",
            ", ".join(names), applier.read, seconds, applier.refused,
        )  # fmt: skip
        return report

    def _report(self, projections: list[Projection], done: int, total: int, progress: Progress | None) -> None:
        """How far the rebuild is: for /healthz, /metrics (app_projection_rebuild_progress) and the caller."""
        self.progress = (done, total)
        for projection in projections:
            self.app.metrics.rebuild(projection.name, done, total)
        if progress is not None:
            progress(done, total)

    def _swap(self, log: MessageLogBackend, spec: TableSpec, shadow: str) -> None:
        """Replace the live table by its shadow, with its indexes and counts (inside the write lock)."""
        dialect = log.dialect
        for statement in dialect.drop_table(spec.physical):
            log.execute(statement)
        log.execute(f'ALTER TABLE "{shadow}" RENAME TO "{spec.physical}"')
        for statement in dialect.recount(spec, spec.physical):
            log.execute(statement)
        for statement in dialect.create_counting(spec, spec.physical):
            log.execute(statement)

    def _record_on(self, log: MessageLogBackend, name: str, fingerprint: str, position: int) -> None:
        p = log.dialect.param
        log.execute(
            f"INSERT INTO projections (name, fingerprint, position, rebuilt_at) VALUES ({p}, {p}, {p}, {p}) "
            "ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint, position = excluded.position, "
            "rebuilt_at = excluded.rebuilt_at",
            (name, fingerprint, position, datetime.now(UTC).isoformat(timespec="seconds")),
        )

    def reset_tables(self, specs: Sequence[TableSpec]) -> None:
        """Empty tables in place, creating them if need be (a worker rebuilding its own state; joins the transaction)."""
        log = self.app.log
        for spec in specs:
            for statement in log.dialect.drop_table(spec.physical):
                log.execute(statement)
            self._create(log, spec)

    def ensure_tables(self, specs: Sequence[TableSpec]) -> None:
        """Create the tables that do not exist yet (a worker's, on its first start)."""
        log = self.app.log
        existing = log.dialect.existing_tables(log, [spec.physical for spec in specs])
        with log.transaction():
            for spec in specs:
                if spec.physical not in existing:
                    self._create(log, spec)

    def _create(self, log: MessageLogBackend, spec: TableSpec) -> None:
        dialect = log.dialect
        for statement in [
            *dialect.create_table(spec, spec.physical),
            *dialect.create_indexes(spec, spec.physical, uuid.uuid4().hex[:8]),
            *dialect.recount(spec, spec.physical),
            *dialect.create_counting(spec, spec.physical),
        ]:
            log.execute(statement)

    def _parser(self, type: str) -> Callable[[str], Any]:
        spec = self.app.commands.find(type)
        return partial(spec.model.model_validate_json, context=STORED) if spec is not None else json.loads


class _Applier:
    """Hands stored messages to handlers while rebuilding: counts, and says which message broke."""

    def __init__(
        self, appliers: dict[str, tuple[Callable[[str], Any], list[Handler]]], upcasters: UpcasterChains
    ) -> None:
        self.appliers = appliers
        self.upcasters = upcasters
        self.read = self.applied = self.refused = 0

    def apply(self, rows: Sequence[Row]) -> None:
        appliers, versions = self.appliers, self.upcasters.versions
        for row in rows:
            applier = appliers.get(row[2])
            if applier is None:
                continue
            if row[4] != versions.get(row[2], 1):
                row = self._upcast(row)
            parse, handlers = applier
            try:
                command = parse(row[3])
            except ValidationError as exc:
                raise RebuildFailed(
                    f"message {row[0]} ({row[2]}) does not fit today's model: {_first_error(exc)} — "
                    "make the field optional or give it a default, or write an upcaster (see the guide)"
                ) from None
            message = message_from_row(row)
            for handler in handlers:
                try:
                    handler(command, message)
                except CommandRejected as exc:
                    self.refused += 1
                    if self.refused <= 3:
                        logger.warning("rebuild: today's handler refuses message %d (%s): %s", row[0], row[2], exc)
                else:
                    self.applied += 1
        self.read += len(rows)

    def _upcast(self, row: Row) -> Row:
        """An old payload in today's shape, through the feature's upcasters (a failing step names the message)."""
        try:
            return self.upcasters.read_row(row)
        except VersionMismatch:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's step: whatever it raises, name the message
            raise RebuildFailed(
                f"message {row[0]} ({row[2]}, version {row[4]}) fails in its upcaster: {type(exc).__name__}: {exc} — "
                "fix the step in the feature's upcasters.py"
            ) from None


class _TakenOver(RebuildFailed):
    """Another process took the rebuild's lease over: this one stalled past it."""

    def __init__(self) -> None:
        super().__init__("another process took the rebuild over (this one stalled past its lease)")


class _RebuildLease:
    """One rebuild at a time per database. Processes started together with new code (``serve
    --processes N``, or several machines) each find the projections out of date: building them at
    once, they dropped each other's shadow tables, and all but one stayed unavailable. The others
    wait here, then rebuild only what is still out of date (usually nothing).

    The lease is short (:data:`REBUILD_LEASE_SECONDS`) so that a holder killed mid-rebuild is
    replaced in seconds; a timer renews it on a connection of its own, so a live holder keeps it
    however long a phase of the rebuild takes between two writes."""

    def __init__(self, log: MessageLogBackend) -> None:
        self.log = log
        self._renewed = 0.0
        self._lost = threading.Event()
        self._done = threading.Event()
        self._timer: threading.Thread | None = None

    def take(self, stopping: threading.Event | None) -> bool:
        """Take the lease, waiting while another process holds it; True if this one had to wait."""
        self._stop_timer()
        waited = False
        while not self._acquire():
            if not waited:
                holder = self.log.leases().get(REBUILD_LEASE, {}).get("owner", "another process")
                logger.info("waiting while %s rebuilds the projections", holder)
                waited = True
            if stopping is None:
                time.sleep(0.2)
            elif stopping.wait(0.2):
                raise RebuildFailed("stopped while another process rebuilt; the old tables stay until the next start")
        self._renewed = time.monotonic()
        self._start_timer()
        return waited

    def renew(self) -> None:
        """Keep the lease while the rebuild goes on; raise :class:`_TakenOver` if another process has it now."""
        if self._lost.is_set():
            raise _TakenOver
        if time.monotonic() - self._renewed < RENEW_EVERY_SECONDS:
            return
        held = self._acquire()
        if held is None:  # busy: renewed at the next call
            return
        if not held:
            raise _TakenOver
        self._renewed = time.monotonic()

    def renew_within(self) -> None:
        """Renew inside the rebuild's open transaction (it commits with it): last thing before a long one commits."""
        if not self.log.acquire_lease(REBUILD_LEASE, REBUILD_LEASE_SECONDS):
            raise _TakenOver
        self._renewed = time.monotonic()

    def _acquire(self, log: MessageLogBackend | None = None) -> bool | None:
        """Whether the lease is this one's now; None when the database was too busy to say (SQLite past
        its busy timeout while another process holds a long write, such as building indexes)."""
        try:
            return (log or self.log).acquire_lease(REBUILD_LEASE, REBUILD_LEASE_SECONDS)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            return None

    def _start_timer(self) -> None:
        """Renew every RENEW_EVERY_SECONDS on another connection (the rebuild's may be busy for long);
        an in-memory database has no other process to take it."""
        timer_log = self.log.connect_again()
        if timer_log is self.log:
            return
        timer_log.owner = self.log.owner  # the same holder, on a connection of its own
        self._lost.clear()
        self._done.clear()
        self._timer = threading.Thread(target=self._keep, args=(timer_log,), name="rebuild-lease", daemon=True)
        self._timer.start()

    def _keep(self, log: MessageLogBackend) -> None:
        try:
            while not self._done.wait(RENEW_EVERY_SECONDS):
                try:
                    held = self._acquire(log)
                except Exception as exc:  # noqa: BLE001 - a lost connection: the rebuild's own renewals go on
                    logger.warning("could not renew the rebuild's lease: %s", exc)
                    continue
                if held:
                    self._renewed = time.monotonic()
                elif held is False:  # another process has it: the rebuild stops at its next renewal
                    self._lost.set()
                    return
        finally:
            log.close()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            self._done.set()
            timer.join()

    def release(self) -> None:
        self._stop_timer()
        try:
            self.log.release_lease(REBUILD_LEASE)
        except Exception:  # noqa: BLE001 - a lost connection: the lease expires by itself
            logger.warning("could not release the rebuild's lease; it expires in %.0f s", REBUILD_LEASE_SECONDS)


class _Writer:
    """Writes a rebuild's buffered rows out, a transaction each time. Where the database is a server
    (``dialect.works_aside``), on another thread, while the rebuild applies the next messages: the
    buffer answers the rows being written from memory meanwhile, and one write waits for the last.
    ``before_write`` is called before each write (the lease's renewal: a rebuild another process has
    taken over must not write into the shadow tables that one builds now)."""

    def __init__(self, log: MessageLogBackend, buffer: BufferedRows, before_write: Callable[[], None]) -> None:
        self.log, self.buffer, self.before_write = log, buffer, before_write
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rebuild-write") if _works_aside(log) else None
        self._writing: Future[None] | None = None

    def flush(self) -> None:
        if self._pool is None:
            self.write_out()
            return
        self._wait()
        self.before_write()
        self._writing = self._pool.submit(self._write, self.buffer.hand_off())

    def write_out(self) -> None:
        """Write every buffered row out now, on this thread, for a handler's read of many rows."""
        self._wait()
        self.before_write()
        with self.log.transaction():
            self.buffer.flush()

    def _write(self, write: Callable[[], None]) -> None:
        with self.log.transaction():
            write()

    def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()  # its error, if it failed

    def close(self, *, wait_only: bool = False) -> None:
        """Wait for the last write (and raise its error, unless ``wait_only``: another is on its way)."""
        if self._pool is None:
            return
        if wait_only:
            self._pool.shutdown(wait=True)
            return
        self._wait()


def _works_aside(log: MessageLogBackend) -> bool:
    """Whether a rebuild reads and writes on other threads: where the database is a server, unless
    the rebuild runs inside the caller's open transaction (the other threads would wait for its
    lock, and another connection would not see its appends)."""
    return log.dialect.works_aside and not log.in_transaction()


def _rebuilding(names: Sequence[str]) -> str:
    return f"rebuilding the {', '.join(names)} projection{'s' if len(names) > 1 else ''} from the log"


def _batches(log: MessageLogBackend, position: int, size: int = READ_BATCH) -> Iterable[list[Row]]:
    batch: list[Row] = []
    for row in log.rows_after(position, batch_size=size):
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_ahead(log: MessageLogBackend, size: int) -> Iterator[list[Row]]:
    """The whole log in batches, as :func:`_batches` gives them; where the database is a server
    (``dialect.works_aside``), the next batch is read on another connection and thread while the
    caller applies this one, so the server's reading and sending it costs no wall time."""
    reader = log.connect_again() if _works_aside(log) else log
    if reader is log:
        yield from _batches(log, 0, size)
        return
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="rebuild-read") as pool:
            batches = _batches(reader, 0, size)
            ahead = pool.submit(next, batches, None)
            while (rows := ahead.result()) is not None:
                ahead = pool.submit(next, batches, None)
                yield rows
    finally:
        reader.close()


def _owner(handler: Callable[..., Any]) -> Any:
    """The object a bound method belongs to (None for a plain function)."""
    return getattr(handler, "__self__", None)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "payload"
    return f"{where}: {error.get('msg', 'invalid')}"


_CODE: dict[str, str] = {}
_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model.model_json_schema()``, built once per model class in a process (pydantic builds it
    anew on every call, and each App fingerprints its projections). Read it, do not change it."""
    schema = _SCHEMAS.get(model)
    if schema is None:
        schema = _SCHEMAS[model] = model.model_json_schema()
    return schema


def code_fingerprint(modules: Sequence[str], *parts: Any) -> str:
    """A short hash of the code of ``modules`` (comments, docstrings and layout left out) and ``parts``."""
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode())
        digest.update(_normalized_code(sys.modules[name]).encode())
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _normalized_code(module: ModuleType) -> str:
    """The module's syntax tree: editing a comment, a docstring or the layout does not force a rebuild."""
    name = module.__name__
    if name not in _CODE:
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError):  # no source (a compiled module): its name stands for it
            _CODE[name] = name
            return name
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                first = body[0].value if body and isinstance(body[0], ast.Expr) else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    node.body = body[1:] or [ast.Pass()]
        _CODE[name] = ast.dump(tree, annotate_fields=False)
    return _CODE[name]
