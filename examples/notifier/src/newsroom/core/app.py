"""The App: one object holding the log, the registries, the pages and the workers.

Features talk to the App (``dispatch``, ``query``, ``register_worker``), never to
the database. Everything it needs comes in through its constructor.
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
from .commands import CommandRegistry, CommandRejected, StateDiverged, StateHandler
from .deadletters import DeadLetterStore
from .kv import KeyValueStore
from .log import DEFAULT_LEASE_SECONDS, Message, MessageLogBackend, Row, message_from_row
from .metrics import Metrics
from .pages import Pages
from .queries import QueryRegistry
from .references import References
from .supervisor import ACTIVE_STATES, Supervisor, WorkerState
from .worker import Worker

logger = logging.getLogger(__name__)


class App:
    """An event-sourced application: commands in, state rebuilt from the log."""

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
        self.kv = KeyValueStore(self.log)
        self.dead_letters = DeadLetterStore(self.log)
        self.commands = CommandRegistry()
        self.queries = QueryRegistry()
        self.references = References(self.query)  # ref fields between features (core/references.py)
        self.pages = Pages()
        self.routes: list[BaseRoute] = []
        self.links: list[tuple[str, str]] = []
        self.features: list[str] = []
        self.stop_timeout = stop_timeout
        self.diverged: str | None = None  # set when memory stopped matching the log (see commit)
        self._handled = 0  # state handler calls so far, to tell whether a failed batch changed state
        self._appliers: dict[str, tuple[Callable[[str], BaseModel], StateHandler]] = {}
        self._applied = 0
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

    def add_link(self, title: str, path: str) -> None:
        """Show a link on the index page."""
        self.links.append((title, path))

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
        """Append commands (and a worker position) in one transaction, applying each to state.

        A state handler that raises rolls the whole transaction back, so a
        refused command is never in the log. Handlers check before they mutate.
        If anything fails after a handler has changed state (a later command is
        refused, the commit itself fails), memory no longer matches the log: the
        app then refuses every command (:class:`StateDiverged`) until a restart
        replays the log.
        """
        if self.diverged is not None:
            self.metrics.command_refused("state_diverged")
            raise StateDiverged(self.diverged)
        specs = [self.commands.spec_for(command) for command in commands]
        messages = []
        changed_state = False
        try:
            with self.log.transaction():
                for spec, command in zip(specs, commands, strict=True):
                    message = self.log.append(spec.type, command.model_dump_json())
                    if spec.handler is not None:
                        spec.handler(command, message)
                        changed_state = True
                        self._handled += 1
                    messages.append(message)
                if position is not None:
                    self.log.set_position(*position)
        except BaseException as exc:
            if isinstance(exc, Exception) and commands:
                self.metrics.command_refused(exc)  # by reason: not_found, command_rejected, ...
            if changed_state:
                self.diverged = f"state changed for a command that did not commit ({exc!r}); restart to replay the log"
                logger.critical("%s", self.diverged)
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
        """One transaction around several :meth:`commit` calls (each a savepoint).

        If the transaction fails after any of them changed state (the database went
        away before COMMIT), memory no longer matches the log: the App is diverged,
        as in :meth:`commit`.
        """
        handled = self._handled
        try:
            with self.log.transaction():
                yield
        except BaseException as exc:
            if self._handled != handled:
                self.diverged = f"state changed for commands that did not commit ({exc!r}); restart to replay the log"
                logger.critical("%s", self.diverged)
            raise

    def query(self, type: str, params: Mapping[str, Any] | BaseModel | None = None) -> Any:
        return self.queries.run(type, params)

    def replay(self) -> int:
        """Rebuild every feature's state from the log; returns how many messages were applied.

        From then on the log keeps this state current: each write transaction first
        applies what other processes appended (see ``core/log.py``).
        """
        # The hot loop of start-up: look each type's parser and handler up once, not per row.
        self._appliers = {
            spec.type: (spec.model.model_validate_json, spec.handler) for spec in self.commands if spec.handler
        }
        self._applied = 0
        self.log.set_applier(self._apply_rows)
        self.log.catch_up()
        return self._applied

    def _apply_rows(self, rows: Sequence[Row]) -> None:
        """Apply messages this process has not seen (the log calls this, in order) to state."""
        appliers = self._appliers
        applied = 0
        for row in rows:
            applier = appliers.get(row[2])
            if applier is not None:
                parse, handler = applier
                handler(parse(row[3]), message_from_row(row))
                applied += 1
        self._applied += applied

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
