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
and ``jitter`` (seconds; default to the app's), ``busy`` (true while the worker is
behind a stream of appends: its cycles then start at most every ``busy_interval``
seconds, 0.05 by default, see core/supervisor.py), and ``wake_on_append = False``
for a purely periodic worker that should not also run after every append.
:class:`CommandWorker` adds stored positions, state kept in the store with them,
and exactly-once dispatch on top.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from .commands import CommandRejected
from .log import Message, MessageLogBackend, message_at
from .owners import STORED
from .projections import Progress, code_fingerprint
from .store import BufferedRows, Rows, Table, TableSpec

if TYPE_CHECKING:
    from .app import App
    from .upcasting import UpcasterChains

logger = logging.getLogger(__name__)
MAX_ERROR_LENGTH = 1_000
REBUILD_BATCH = 2_000  # messages read and decoded at a time while a worker rebuilds its state
FLUSH_EVERY = 10_000  # rows a rebuild writes per transaction
YIELD_EVERY_SECONDS = 0.01  # how long a rebuild at start holds the event loop at most
NOT_BUILT = ""  # the fingerprint of tables not built yet: the next start rebuilds them


@runtime_checkable
class Worker(Protocol):
    """What the app needs from a background worker."""

    async def start(self, app: App) -> None:
        """Load state (from the store; scan the log only to rebuild it); remember the position reached."""

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

    ``replaying`` is True while the worker rebuilds its state from the log (when the
    code that builds the state changed, or on the first start of a worker that does
    not catch up, ``catch_up = False``): the handler must
    then skip side effects (API calls, e-mails) because they were already done and
    recorded before. Commands passed to :meth:`dispatch` are appended together with
    the worker's new position, in one transaction.
    """

    app: App
    message: Message
    replaying: bool
    dispatched: list[BaseModel] = field(default_factory=list)

    def dispatch(self, command: BaseModel) -> None:
        """Queue a command for this message; ignored while rebuilding (it is in the log already)."""
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
    repeats them. State it keeps goes in tables of its own (``tables``, read and
    written with :meth:`table` in its handlers), committed in that transaction too:
    ``start`` loads nothing and goes on from the position. Only on its first start,
    or when the code that builds that state changes, does it rebuild the tables by
    handling every message up to its position again, with ``ctx.replaying`` set.

    Side effects a handler performs itself (an e-mail, an API call) happen at
    least once: a crash before the commit repeats them, so send an idempotency key
    where the other side accepts one. Handlers see the validated command model when
    the type is registered with the app, else the decoded payload (a dict).

    A handler that keeps failing on one message is retried (with the app's backoff)
    up to ``max_attempts`` times, or for ``max_retry_seconds`` since its first failure;
    then the message becomes a dead letter (see deadletters.py) and the worker goes
    on with the next one. ``dead_letter=False`` keeps retrying forever instead, for a
    worker that must never skip a message.
    """

    tables: tuple[TableSpec, ...] = ()
    version = "1"  # change to rebuild the tables even though the code's fingerprint did not change
    busy_batch = 8  # a cycle that read this many messages of others or more was behind a stream of appends (``busy``)
    # On its first start: handle every message already in the log, as new (True), or only those after it (False).
    catch_up = True

    def __init__(
        self,
        name: str,
        *,
        log: MessageLogBackend | None = None,
        poll_interval: float | None = None,
        jitter: float | None = None,
        batch_size: int = 500,
        max_attempts: int = 5,
        max_retry_seconds: float | None = None,
        dead_letter: bool = True,
    ) -> None:
        self.name = name
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.dead_letter = dead_letter
        self.poll_interval = poll_interval
        self.jitter = jitter
        self.position = 0
        self.rebuilding: tuple[int, int] | None = None  # (done, total) while its state rebuilds at start
        self.own_log = log
        self._handlers: dict[str, Handler] = {}
        self._periodic: list[Periodic] = []
        self._app: App | None = None
        self._stopped = False
        self._failing: set[int] = set()  # ids of messages with failed attempts on record
        self._buffer: BufferedRows | None = None  # the handlers' writes, until they commit with the position
        self._handling = False
        # Messages others appended, read by the current cycle, then by the last one; the ids this worker's
        # commits appended, until it reads them back (its own output is not a stream of appends).
        self._others_read = 0
        self._others_read_last_cycle = 0
        self._own_ids: set[int] = set()
        self._in_doubt = False  # a cycle failed: its last commit may have landed (see work())

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
    def busy(self) -> bool:
        """Whether the last cycle read ``busy_batch`` messages or more that others appended (its own
        commands, read back, do not count): the supervisor then starts the next one ``busy_interval``
        after it, so that the messages appended meanwhile are handled as one batch."""
        return self._others_read_last_cycle >= self.busy_batch

    @property
    def handled_types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def app(self) -> App:
        if self._app is None:
            raise WorkerError(self.name, "not started")
        return self._app

    @property
    def log(self) -> MessageLogBackend:
        """The log this worker reads: its own if it was given one, else the app's."""
        return self.own_log or self.app.log

    def table(self, spec: TableSpec) -> Table:
        """One of the worker's ``tables``. What handlers write commits with the worker's position;
        what other code writes (a periodic task, a call-back) joins the transaction it is in."""
        if spec not in self.tables:
            raise WorkerError(self.name, f"table {spec.name!r} is not one of its tables")
        return Table(spec, self._rows)

    def preload(self, spec: TableSpec, ids: Iterable[str]) -> None:
        """Read these rows of one of the worker's tables in one query, for the handlers of the batch
        being handled (call it from :meth:`prefetch`): their ``get`` of one then asks nothing."""
        if spec not in self.tables:
            raise WorkerError(self.name, f"table {spec.name!r} is not one of its tables")
        if self._handling and self._buffer is not None:
            self._buffer.preload(spec, ids)

    def prefetch(self, commands: list[Any]) -> Awaitable[None] | None:
        """Called before the handlers of every batch of messages (a rebuild's too; a retried dead
        letter is a batch of one), with the batch's commands (of handled types, in log order):
        override it to read what they will read in a few queries, not one per message (see
        :meth:`preload`). Does nothing by default."""
        return None

    def before_commit(self, commands: list[BaseModel]) -> None:
        """Called in the transaction that commits a batch's dispatched commands (in log order), the write
        lock held, before they are applied: override it to read the rows their state handlers will read in
        one query per table (``self.app.store.preload(spec, ids)``), so that applying each asks nothing.
        Does nothing by default."""

    def _rows(self) -> Rows:
        if self._handling and self._buffer is not None:
            return self._buffer
        return self.app.store.rows

    async def start(self, app: App) -> None:
        """Go on from the stored position; rebuild the worker's tables first if they were never
        built or the code that builds them changed.

        On its very first start a worker with ``catch_up = False`` goes on from the newest message
        instead: what the log held before it existed is history (its tables are built from it,
        replaying), not news to act on. That position is stored before the tables are built, with
        a mark that they are not: a start cut short, or a rebuild run before it, ends in a rebuild
        up to the same position, and what was appended meanwhile is still news.
        """
        self._stopped = False
        fingerprint = self._open(app)
        if not self.catch_up and not app.log.has_position(self.name):
            self.position = self.log.version()
            with app.log.transaction():
                app.log.set_position(self.name, self.position)
                if self.tables:
                    app.projections.record(self.state_name, NOT_BUILT, self.position)
            logger.info(
                "worker %r: first start, going on after message %d (catch_up = False)", self.name, self.position
            )
        if self.tables and app.projections.stored_fingerprint(self.state_name) != fingerprint:
            await self._rebuild_at_start(fingerprint)

    async def _rebuild_at_start(self, fingerprint: str) -> None:
        """Rebuild in the serving process, saying how far it is (log lines, /healthz's ``rebuilding``)
        and how long it took: a worker that does no work yet is not silent about why."""
        from .progress import RebuildProgress

        lines = RebuildProgress(f"worker {self.name!r}")

        def progress(done: int, total: int) -> None:
            self.rebuilding = (done, total)
            lines(done, total)

        began = time.monotonic()
        self.rebuilding = (0, self.position)
        try:
            read = await self._rebuild_state(fingerprint, progress)
        finally:
            self.rebuilding = None
            lines.close()
        took = time.monotonic() - began
        rate = read / max(took, 1e-6)
        logger.info("worker %r: rebuilt its state from %d messages in %.1fs (%.0f/s)", self.name, read, took, rate)

    async def rebuild_state(self, app: App, progress: Progress | None = None) -> int:
        """Rebuild the worker's tables from the log now, up to its stored position, and return the
        messages read: ``projections rebuild`` does it before a start, so the start has nothing to redo."""
        fingerprint = self._open(app)
        return await self._rebuild_state(fingerprint, progress) if self.tables else 0

    def _open(self, app: App) -> str:
        """Read the stored position and failures, declare the tables; the fingerprint of the code now."""
        self._app = app
        self._read_stored_progress()
        self._buffer = BufferedRows(app.store.rows)
        for spec in self.tables:
            app.store.declare(spec)
        if self.tables:
            app.projections.ensure_tables(self.tables)
        return self.state_fingerprint(app.upcasters)

    @property
    def state_name(self) -> str:
        """The worker's entry in the ``projections`` table."""
        return f"worker:{self.name}"

    def state_fingerprint(self, upcasters: UpcasterChains) -> str:
        """A hash of the code that builds the worker's tables: its handlers' modules, the tables, ``version``,
        and the upcasters its handled types are read through (a new or fixed step changes what they see)."""
        modules = {type(self).__module__, *(handler.__module__ for handler in self._handlers.values())}
        types = self.handled_types
        modules.update(upcasters.modules(types))
        # only types past version 1: a worker of an app without field changes keeps its fingerprint
        later = {type: upcasters.version(type) for type in types if upcasters.version(type) > 1}
        parts = [[spec.describe() for spec in self.tables], self.version]
        return code_fingerprint(sorted(modules), *parts, *([later] if later else []))

    async def _rebuild_state(self, fingerprint: str, progress: Progress | None = None) -> int:
        """Empty the tables and handle every message up to the position again (dead letters left out),
        calling nothing outside: ``ctx.replaying`` is set and dispatches are dropped. Returns the messages read.

        Messages are read and decoded a batch at a time and :meth:`prefetch` is given each batch,
        as :meth:`work` does. A rebuild at start runs in the event loop, so it hands the loop back
        every few milliseconds: the server goes on answering meanwhile.
        """
        app, working = self.app, self._buffer
        logger.info("worker %r: rebuilding its state from the log up to message %d", self.name, self.position)
        never_handled = app.dead_letters.skipped_ids(self.name)
        with app.log.transaction():
            app.projections.reset_tables(self.tables)
        buffer = self._buffer = BufferedRows(app.store.rows, undoable=False, fresh=[t.name for t in self.tables])
        self._handling = True
        reached, read, began = 0, 0, time.monotonic()
        try:
            while reached < self.position:
                messages = [m for m in self.log.batch_after(reached, REBUILD_BATCH) if m.id <= self.position]
                if not messages:
                    break
                handled = [m for m in messages if m.type in self._handlers and m.id not in never_handled]
                for message, command in await self._decode_batch(handled):
                    await self._handle_decoded(message, command, replaying=True)
                    if time.monotonic() - began >= YIELD_EVERY_SECONDS:
                        await asyncio.sleep(0)  # let the server answer meanwhile
                        began = time.monotonic()
                reached, read = messages[-1].id, read + len(messages)
                if len(buffer) >= FLUSH_EVERY:
                    with app.log.transaction():
                        buffer.flush()
                if progress is not None:
                    progress(reached, self.position)
            with app.log.transaction():
                buffer.flush()
                app.projections.record(self.state_name, fingerprint, self.position)
        finally:
            self._handling = False
            self._buffer = working
        return read

    async def work(self) -> None:
        """Redeliver the dead letters an operator asked for, handle every message after
        the stored position, then run periodic tasks.

        The commands dispatched for a batch of messages are committed in one
        transaction with the new position: one write per cycle, not one per message.
        """
        if self._stopped:
            raise WorkerStopped(self.name, "work() called after stop()")
        if self._in_doubt:
            # Under the write lock: a commit whose answer was lost may still be going on in the database.
            with self.app.log.transaction():
                self._read_stored_progress()
        self._others_read = 0
        try:
            await self._redeliver()
            while await self._work_batch():
                pass
            self._others_read_last_cycle = self._others_read
            for task in self._periodic:
                await _maybe_await(task(self.app))
        except BaseException:
            # A commit whose answer was lost (CommitOutcomeUnknown) may have landed: the next cycle goes on
            # from the stored position, not from this one's, or it would dispatch the same commands again.
            self._in_doubt = True
            raise

    def _read_stored_progress(self) -> None:
        """The position and the failures on record, as the last committed transaction left them."""
        app = self.app
        self.position = app.log.position(self.name)
        self._failing = app.dead_letters.failing_ids(self.name)
        self._in_doubt = False

    async def _work_batch(self) -> bool:
        """Handle the next ``batch_size`` messages and commit what they dispatched and wrote; True if more are waiting.

        The batch is read in one query, its payloads decoded first, and :meth:`prefetch` is
        given them, so the handlers find the rows they read already loaded.
        """
        buffer = self._buffer
        assert buffer is not None
        # Per message that dispatched: its id, its commands, and where its writes begin in the buffer.
        dispatched: list[tuple[int, list[BaseModel], int]] = []
        reached = self.position
        self._handling = True
        try:
            messages = self.log.batch_after(self.position, self.batch_size)
            self._count_reads(messages)
            handled = [m for m in messages if m.type in self._handlers]
            decoded = {message.id: (message, command) for message, command in await self._decode_batch(handled)}
            for message in messages:
                if self._stopped:
                    break
                if message.id in decoded:
                    mark = buffer.mark()
                    try:
                        ctx = await self._handle_decoded(*decoded[message.id], replaying=False)
                    except Exception as exc:
                        buffer.undo(mark)
                        if reached != self.position:  # keep what the messages before this one did
                            self._commit(dispatched, reached)
                        dispatched = []
                        if not self._give_up(message, exc):
                            raise  # the supervisor backs off and calls work() again
                        reached = self.position  # past the message, now a dead letter
                        continue
                    if ctx.dispatched:
                        dispatched.append((message.id, ctx.dispatched, mark))
                reached = message.id
            if reached != self.position:
                self._commit(dispatched, reached)
        finally:
            self._handling = False
            buffer.clear()  # written out by a commit, or to be written again from the same position
        return len(messages) >= self.batch_size and not self._stopped

    def _count_reads(self, messages: list[Message]) -> None:
        """Count the messages others appended (for ``busy``), and forget the own ones read back."""
        own = self._own_ids
        self._others_read += sum(1 for message in messages if message.id not in own)
        if own and messages:
            newest = messages[-1].id
            self._own_ids = {id for id in own if id > newest}

    def _commit(self, dispatched: list[tuple[int, list[BaseModel], int]], reached: int) -> None:
        """Commit each message's commands (all or none of them), the handlers' writes and the position,
        in one transaction.

        A message whose commands the app refuses stops the batch there: the ones
        before it are committed with the position just before it, and the refusal
        is raised, so the worker retries from that message.
        """
        app, buffer = self.app, self._buffer
        assert buffer is not None
        refused: CommandRejected | None = None
        appended: list[Message] = []
        with app.batch():  # the state's writes held to its end (core/store.py): a batch, not a round trip each
            if dispatched:
                self.before_commit([command for _, commands, _ in dispatched for command in commands])
            for message_id, commands, mark in dispatched:
                try:
                    appended += app.commit(commands)  # a savepoint inside this transaction
                except CommandRejected as exc:
                    refused, reached = exc, message_id - 1
                    buffer.undo(mark)
                    break
            buffer.flush()
            succeeded = {id for id in self._failing if id <= reached}  # handled after failing before
            if succeeded:
                app.dead_letters.clear_failures(self.name, succeeded)
            app.log.set_position(self.name, reached)
        self.position = reached
        self._own_ids.update(message.id for message in appended)
        self._failing -= succeeded
        if refused is not None:
            raise refused

    # --- failures and dead letters ---

    def _give_up(self, message: Message, exc: Exception) -> bool:
        """Count a failed attempt; when the budget is spent, bury the message and move past it.

        The dead letter and the new position commit together, so the decision is made
        exactly once and survives a crash. Returns False while attempts remain.
        """
        app = self.app
        error = _describe(exc)
        attempts, first_failed_at = app.dead_letters.record_failure(self.name, message.id, error)
        self._failing.add(message.id)
        if not self._budget_spent(attempts, first_failed_at):
            return False
        with app.batch():
            app.dead_letters.bury(self.name, message, attempts, error)
            app.log.set_position(self.name, message.id)
        self.position = message.id
        self._failing.discard(message.id)
        logger.error(
            "worker %r gave up on message %d (%s) after %d attempts: %s; "
            "decide with `deadletters retry|discard` (see `deadletters list`)",
            self.name, message.id, message.type, attempts, error,
        )  # fmt: skip
        return True

    def _budget_spent(self, attempts: int, first_failed_at: str) -> bool:
        if not self.dead_letter:
            return False
        if attempts >= self.max_attempts:
            return True
        if self.max_retry_seconds is None:
            return False
        failing_for = datetime.now(UTC) - datetime.fromisoformat(first_failed_at)
        return failing_for.total_seconds() >= self.max_retry_seconds

    async def _redeliver(self) -> None:
        """Handle once more the dead letters an operator asked to retry; their commands and
        the dead letter's new status commit together, so a retry takes effect exactly once."""
        app = self.app
        for letter in app.dead_letters.retries_for(self.name):
            message = message_at(self.log, letter.message_id)
            buffer = self._buffer
            assert buffer is not None
            self._handling = True
            try:
                if message is None:
                    raise WorkerError(self.name, f"message {letter.message_id} is no longer in the log")
                [(message, command)] = await self._decode_batch([message])  # a batch of one
                ctx = await self._handle_decoded(message, command, replaying=False)
            except Exception as exc:
                buffer.clear()
                error = _describe(exc)
                attempts, first_failed_at = app.dead_letters.record_failure(self.name, letter.message_id, error)
                if self._budget_spent(attempts, first_failed_at):
                    app.dead_letters.bury_again(letter.id, attempts, error)
                    logger.error("worker %r: retry of dead letter %d failed again: %s", self.name, letter.id, error)
                    continue
                raise
            finally:
                self._handling = False
            with app.batch():
                app.dead_letters.clear_failures(self.name, {letter.message_id})
                app.dead_letters.resolve(letter.id)
                app.commit(ctx.dispatched)
                buffer.flush()
            logger.info("worker %r handled dead letter %d on retry", self.name, letter.id)

    async def stop(self) -> None:
        self._stopped = True

    async def _decode_batch(self, messages: list[Message]) -> list[tuple[Message, Any]]:
        """Each message in today's shape with its command, after :meth:`prefetch` was given the
        batch's readable commands: the handlers then find the rows they read already loaded."""
        decoded = [self._read(message) for message in messages]
        commands = [command for _, command in decoded if not isinstance(command, _Unreadable)]
        if commands:
            await _maybe_await(self.prefetch(commands))
        return decoded

    def _read(self, message: Message) -> tuple[Message, Any]:
        """The message in today's shape and its command; a payload that cannot be read gives an
        :class:`_Unreadable`, raised when the message's turn comes (it fails alone)."""
        try:
            message = self.app.upcasters.read(message)  # an old payload in today's shape
            return message, self._decode(message)
        except Exception as exc:  # noqa: BLE001 - this message's failure, counted when it is handled
            return message, _Unreadable(exc)

    async def _handle_decoded(self, message: Message, command: Any, *, replaying: bool) -> Context:
        if isinstance(command, _Unreadable):
            raise command.error
        ctx = Context(self.app, message, replaying)
        handler = self._handlers.get(message.type)
        if handler is not None:
            await _maybe_await(handler(command, ctx))
        return ctx

    def _decode(self, message: Message) -> Any:
        spec = self.app.commands.find(message.type)
        if spec is None:
            return message.payload()
        return spec.model.model_validate_json(message.data, context=STORED)  # as logged, actor included


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A message whose payload could not be upcast or validated: why."""

    error: Exception


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result
