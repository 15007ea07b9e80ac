"""Background workers: the protocol the app runs, and a helper for the common case.

A worker is any object with three coroutines. The app calls ``start`` once in
the worker's own task, then ``work`` every poll interval (plus jitter) and at
once whenever a message is appended, and ``stop`` on shutdown::

    class Greeter:
        name = "greeter"

        async def start(self, app: App) -> None:
            self.app = app
            self.position = app.log.version()  # only react to what comes next

        async def work(self) -> None:
            for message in self.app.log.after(self.position):
                if message.type == "posts/create":
                    print("new post:", message.payload()["title"])
                self.position = message.id

        async def stop(self) -> None:
            pass

    app.register_worker(Greeter())

Optional attributes: ``name`` (defaults to the class name), ``poll_interval``
and ``jitter`` (seconds; default to the app's), and ``wake_on_append = False``
for a purely periodic worker that should not also run after every append. :class:`CommandWorker` adds
stored positions, replay and exactly-once dispatch on top.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from .log import Message, MessageLog

if TYPE_CHECKING:
    from .app import App


@runtime_checkable
class Worker(Protocol):
    """What the app needs from a background worker."""

    async def start(self, app: App) -> None:
        """Load state, usually by scanning the log; remember the position reached."""

    async def stop(self) -> None:
        """Release resources and cancel in-flight calls; called once on shutdown."""

    async def work(self) -> None:
        """One work cycle: read newer messages, query the app, dispatch commands."""


class WorkerError(Exception):
    """A worker failed; carries the worker's name and, when there is one, the cause."""

    def __init__(self, worker: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(f"worker {worker!r}: {message}")
        self.worker = worker
        self.__cause__ = cause


class WorkerStopped(WorkerError):
    """The worker was asked to do something after it stopped."""


class WorkerAlreadyStarted(WorkerError):
    """Workers cannot be registered or started once the app has started them."""


def worker_name(worker: object) -> str:
    """The name the app knows a worker by: its ``name`` attribute or its class name."""
    return getattr(worker, "name", None) or type(worker).__name__


@dataclass
class Context:
    """What a :class:`CommandWorker` handler gets besides the command.

    ``replaying`` is True while the worker rebuilds its state on start: the
    handler must then skip side effects (API calls, e-mails) because they were
    already done and recorded before. Commands passed to :meth:`dispatch` are
    appended together with the worker's new position, in one transaction.
    """

    app: App
    message: Message
    replaying: bool
    dispatched: list[BaseModel] = field(default_factory=list)

    def dispatch(self, command: BaseModel) -> None:
        """Queue a command for this message; ignored during replay (it is in the log already)."""
        if not self.replaying:
            self.dispatched.append(command)


Handler = Callable[[Any, Context], Awaitable[None] | None]
Periodic = Callable[["App"], Awaitable[None] | None]


class CommandWorker:
    """A worker that reacts to message types, dispatching each result exactly once.

    ::

        notifier = CommandWorker("posts-notifier")

        @notifier.on("posts/set-generated-summary")
        async def announce(command: SetGeneratedSummary, ctx: Context) -> None:
            if not ctx.replaying:
                await send_mail(command.summary)

        app.register_worker(notifier)

    Its position is stored in the app's database and committed in the same
    transaction as the commands a handler dispatched, so a crash never loses or
    repeats them. Side effects a handler performs itself (an e-mail, an API call)
    happen at least once: a crash before the commit repeats them, so send an
    idempotency key where the other side accepts one. Handlers see the validated command model when the type is
    registered with the app, else the decoded payload (a dict).
    """

    def __init__(
        self,
        name: str,
        *,
        log: MessageLog | None = None,
        poll_interval: float | None = None,
        jitter: float | None = None,
    ) -> None:
        self.name = name
        self.poll_interval = poll_interval
        self.jitter = jitter
        self.position = 0
        self.own_log = log
        self._handlers: dict[str, Handler] = {}
        self._periodic: list[Periodic] = []
        self._app: App | None = None
        self._stopped = False

    def on(self, type: str, handler: Handler | None = None) -> Any:
        """Call ``handler(command, ctx)`` for every message of ``type``; usable as a decorator."""

        def add(handler: Handler) -> Handler:
            self._handlers[type] = handler
            return handler

        return add(handler) if handler is not None else add

    def every_cycle(self, task: Periodic) -> Periodic:
        """Also run ``task(app)`` at the end of every work cycle (periodic work)."""
        self._periodic.append(task)
        return task

    @property
    def handled_types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def app(self) -> App:
        if self._app is None:
            raise WorkerError(self.name, "not started")
        return self._app

    @property
    def log(self) -> MessageLog:
        """The log this worker reads: its own if it was given one, else the app's."""
        return self.own_log or self.app.log

    async def start(self, app: App) -> None:
        """Rebuild the handlers' state from the log, up to the stored position."""
        self._app = app
        self._stopped = False
        self.position = app.log.position(self.name)
        for message in self.log.after(0):
            if message.id > self.position:
                break
            await self._handle(message, replaying=True)

    async def work(self) -> None:
        """Handle every message after the stored position, then run periodic tasks."""
        if self._stopped:
            raise WorkerStopped(self.name, "work() called after stop()")
        app = self.app
        handled_up_to = self.position
        for message in self.log.after(self.position):
            if self._stopped:
                break
            if message.type in self._handlers:
                ctx = await self._handle(message, replaying=False)
                app.commit(ctx.dispatched, position=(self.name, message.id))
                handled_up_to = message.id
            self.position = message.id
        if self.position != handled_up_to:
            app.log.set_position(self.name, self.position)
        for task in self._periodic:
            await _maybe_await(task(app))

    async def stop(self) -> None:
        self._stopped = True

    async def _handle(self, message: Message, *, replaying: bool) -> Context:
        ctx = Context(self.app, message, replaying)
        handler = self._handlers.get(message.type)
        if handler is not None:
            await _maybe_await(handler(self._decode(message), ctx))
        return ctx

    def _decode(self, message: Message) -> Any:
        spec = self.app.commands.find(message.type)
        if spec is None:
            return message.payload()
        return spec.model.model_validate_json(message.data)


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result
