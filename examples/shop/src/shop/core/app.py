"""The App: one object holding the log, the registries, the pages and the workers.

Features talk to the App (``dispatch``, ``query``, ``register_worker``) and keep
their state in its store (``app.store``, core/store.py), never in memory: every
process reads the same tables, and start does not replay the log. Everything it
needs comes in through its constructor.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from .backends.sqlite import SQLiteLog
from .commands import CommandRegistry, CommandRejected
from .deadletters import DeadLetterStore
from .group_commit import GroupCommit
from .kv import KeyValueStore
from .log import DEFAULT_LEASE_SECONDS, Message, MessageLogBackend
from .metrics import Metrics
from .navigation import Link
from .pages import Pages
from .projections import Projections
from .queries import QueryRegistry
from .references import References
from .store import Store
from .supervisor import ACTIVE_STATES, Supervisor, WorkerState
from .upcasting import UpcasterChains
from .worker import Worker

logger = logging.getLogger(__name__)


class App:
    """An event-sourced application: commands in, appended to the log, state kept in the store."""

    def __init__(
        self,
        log: MessageLogBackend | None = None,
        *,
        poll_interval: float = 1.0,
        jitter: float = 1.0,
        stop_timeout: float = 5.0,
        lease_ttl: float = DEFAULT_LEASE_SECONDS,
        random: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
    ) -> None:
        self.log: MessageLogBackend = log if log is not None else SQLiteLog()
        self.metrics = metrics if metrics is not None else Metrics()  # core/metrics.py: GET /metrics
        self.store = Store(self.log)
        self.projections = Projections(self)
        self.kv = KeyValueStore(self.log)
        self.dead_letters = DeadLetterStore(self.log)
        self.commands = CommandRegistry()
        self.upcasters = UpcasterChains()  # old payloads read as today's shape (core/upcasting.py)
        # POST /commands goes through it: commands arriving together share a transaction (core/group_commit.py)
        self.group_commit = GroupCommit(self)
        self.queries = QueryRegistry()
        self.references = References(self.query, self.store)  # ref fields between features (core/references.py)
        self.pages = Pages()
        self.routes: list[BaseRoute] = []
        self.links: list[Link] = []
        self.pages.environment.globals["links"] = self.links  # the header of every page names them
        self.features: list[str] = []
        # Who may come in: None keeps the APP_API_TOKEN check (auth.py); a users feature
        # (`petrock generate auth`) sets its own middleware factory, called as guard(asgi_app, tokens=, refuse=).
        self.guard: Callable[..., Any] | None = None
        self.stop_timeout = stop_timeout
        self.supervisor = Supervisor(
            self, poll_interval=poll_interval, jitter=jitter, lease_ttl=lease_ttl, random=random
        )

    # --- registration (called from each feature's register.py) ---

    def add_feature(self, name: str, templates: Path | None = None) -> None:
        """Declare a feature, with the folder of its HTML templates if it has pages."""
        self.features.append(name)
        if templates is not None:
            self.pages.add(name, templates)

    def add_route(
        self, path: str, endpoint: Callable[..., Any], *, methods: Sequence[str] = ("GET",), name: str | None = None
    ) -> None:
        self.routes.append(Route(path, endpoint, methods=list(methods), name=name))

    def add_link(self, title: str, path: str, *, feature: str = "", label: str = "id", item_title: str = "") -> None:
        """Show a link in every page's header and on the home page; a ``feature``'s link also shows
        its count and newest items there, named by their ``label`` field (core/navigation.py)."""
        self.links.append(Link(title, path, feature, label, item_title))

    def register_worker(self, worker: Worker) -> None:
        """Add a background worker; refused for duplicates and once workers have started."""
        self.supervisor.register(worker)

    # --- commands and queries ---

    def dispatch(self, command: BaseModel) -> Message:
        """Apply a validated command to state and append it to the log, atomically."""
        return self.commit([command])[0]

    def dispatch_payload(self, type: str, payload: Mapping[str, Any]) -> Message:
        """Validate a raw payload for ``type`` (pydantic ValidationError if invalid), then dispatch."""
        return self.dispatch(self.commands.get(type).model.model_validate(payload))

    def commit(self, commands: Sequence[BaseModel], *, position: tuple[str, int] | None = None) -> list[Message]:
        """Append commands (and a worker position) in one transaction, applying each to the store.

        The state handlers write their tables in the same transaction: one that
        raises (a refused command) rolls it all back, so nothing is appended and no
        row changes. While a projection is rebuilt, commands wait
        (:class:`~.projections.ProjectionsUnavailable`, a 503).
        """
        specs = [self.commands.spec_for(command) for command in commands]
        messages = []
        try:
            self.projections.require_ready()
            # Several commands (a worker's request and its outcome) write a row they share once; in a
            # batch, every commit's writes are held to the batch's end, and undone alone if it fails.
            with self.log.transaction(), self.store.held(len(commands) > 1):
                for spec, command in zip(specs, commands, strict=True):
                    message = self.log.append(spec.type, command.model_dump_json(), self.upcasters.version(spec.type))
                    if spec.handler is not None:
                        spec.handler(command, message)
                    for handler in self.projections.handlers(spec.type):
                        handler(command, message)
                    messages.append(message)
                if position is not None:
                    self.log.set_position(*position)
        except Exception as exc:
            if commands:
                self.metrics.command_refused(exc)  # by reason: not_found, command_rejected, ...
            raise
        self.metrics.commands_appended(messages)
        return messages

    def dispatch_each(self, commands: Sequence[BaseModel]) -> list[Message | CommandRejected]:
        """Dispatch independent commands in one transaction; a refused one is returned, not raised.

        Each command is applied and appended on its own (a savepoint), so one the
        state refuses leaves the others in. For a worker recording many outcomes:
        one write instead of one per command.
        """
        results: list[Message | CommandRejected] = []
        with self.batch():
            for command in commands:
                try:
                    results.append(self.dispatch(command))
                except CommandRejected as exc:
                    results.append(exc)
        return results

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around several :meth:`commit` calls, each undone alone if it fails (a savepoint).

        The tables' writes are held until the batch ends (core/store.py, :class:`~.store.HeldRows`) and
        go out then, a statement batch per table: on PostgreSQL a commit then costs no round trip for
        its writes. Read the rows the commits will read with :meth:`~.store.Store.preload` (one query).
        Inside a batch, go through the store: SQL of your own (``app.log.query``) does not see the
        held writes, and a row it changes is not seen by a ``get`` that preloaded it.
        """
        with self.log.transaction(), self.store.held(batch=True):
            yield

    def query(self, type: str, params: Mapping[str, Any] | BaseModel | None = None) -> Any:
        """Answer a query from the store (a 503 while a projection is rebuilt)."""
        self.projections.require_ready()
        return self.queries.run(type, params)

    def query_json(self, type: str, params: Mapping[str, Any] | BaseModel | None = None) -> bytes:
        """:meth:`query`'s answer as JSON, as the API sends it (list pages spliced from the stored rows)."""
        self.projections.require_ready()
        return self.queries.run_json(type, params)

    def check_versions(self) -> None:
        """Refuse to run on a log holding message versions this code cannot read
        (:class:`~.upcasting.VersionMismatch`, one line naming the type and version)."""
        self.upcasters.check(self.log, {spec.type for spec in self.commands})

    def prepare(self) -> list[str]:
        """Make every projection current before serving: rebuild those whose code changed
        (or that were never built); returns their names. ``serve`` does this on another
        thread (see http.py), answering 503 meanwhile; tests and tools call it, or let
        the first command or query do it."""
        self.projections.warn_about_state_in_memory()
        names = self.projections.needing_rebuild()
        if names:
            self.projections.rebuild(names)
        self.projections.mark_checked()
        return names

    # --- workers ---

    async def start_workers(self) -> None:
        await self.supervisor.start()

    async def stop_workers(self, timeout: float | None = None) -> list[str]:
        """Stop all workers; returns the names of any that did not finish in time."""
        return await self.supervisor.stop(self.stop_timeout if timeout is None else timeout)

    async def close(self) -> list[str]:
        """Stop the workers, then close the database."""
        stuck = await self.stop_workers()
        self.log.close()
        return stuck

    # --- introspection ---

    def runtime(self) -> dict[str, Any]:
        """This process's share of the work: the workers it runs and those it stands by for.

        With ``serve --processes N`` (or several machines) each worker runs in the
        one process holding its lease; the others stand by to take it over.
        """
        handles = self.supervisor.handles
        return {
            "pid": os.getpid(),
            "owner": self.log.owner,
            "runs": [h.name for h in handles if h.state in ACTIVE_STATES],
            "stands_by_for": [h.name for h in handles if h.state == WorkerState.STANDBY],
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of everything registered (``python -m APP inspect``)."""
        return {
            "features": list(self.features),
            "commands": [
                {"type": s.type, "feature": s.feature, "model": s.model.__name__, "schema": s.model.model_json_schema()}
                for s in self.commands
            ],
            "queries": [
                {"type": s.type, "feature": s.feature, "model": s.model.__name__, "schema": s.model.model_json_schema()}
                for s in self.queries
            ],
            "workers": [handle.describe() for handle in self.supervisor.handles],
            "dead_letters": self.dead_letters.counts(),
            "routes": [
                {"path": route.path, "methods": sorted(route.methods or []), "name": route.name}
                for route in self.routes
                if isinstance(route, Route)
            ],
            "log": {"path": self.log.path, "version": self.log.version(), "leases": self.log.leases()},
        }
