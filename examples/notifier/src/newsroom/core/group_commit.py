"""Group commit: commands that arrive together share one transaction.

``POST /commands`` awaits :meth:`GroupCommit.dispatch` instead of calling
``App.dispatch``. The commands that arrive while a transaction is being written
wait, and go together into the next one: one write lock, one catch-up, one
``COMMIT`` (and on PostgreSQL one ``NOTIFY``) for all of them. The log's write
lock is what limits every instance's writes together (docs/scaling.md), so the
fewer times it is taken, the more commands it lets through.

What each command sees stays as if it had come alone:

- each is validated by its handlers against the store as the commands before
  it in the group left it, and applied in a savepoint of its own: a refused one
  (``CommandRejected``, or a handler's bug) is undone alone and its caller gets
  the error, while the others commit;
- each caller's answer waits for the ``COMMIT`` that makes its command durable;
  if that fails, every caller in the group gets the error and nothing of the
  group is in the log or the tables (kill -9 midway leaves the same);
- ids are handed out in order under the lock, so they commit in order.

The transaction runs on the event loop's own thread, blocking it: the requests
that arrive meanwhile wait in their sockets and are read together afterwards,
which is what forms the next group. On a thread it would overlap with reading
them, but each of its round trips would then wait for the GIL (up to 5 ms while
the loop runs Python), and the write lock, which every instance shares, would
be held that much longer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .log import LogUnreachable, Message
from .projections import ProjectionsUnavailable

if TYPE_CHECKING:
    from .app import App

# PostgreSQL keeps the ids of 64 subtransactions per transaction in shared memory; past that every
# reader's snapshot gets slower (subtransaction overflow). One savepoint per command, so 64 at most.
MAX_GROUP = 64

Outcome = Message | BaseException


class GroupCommit:
    """The commands waiting for the next transaction, and the task that writes them."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._waiting: list[tuple[BaseModel, asyncio.Future[Message]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.groups = 0  # transactions written, and the commands in them: how much grouping happens
        self.grouped = 0

    async def dispatch(self, command: BaseModel) -> Message:
        """Apply and append ``command`` with the others arriving now; returns its message once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        self._waiting.append((command, future))
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write_groups(), name="group commit")
        return await future

    async def _write_groups(self) -> None:
        await asyncio.sleep(0)  # the requests this turn of the loop is reading join the first group
        while self._waiting:
            group = [(command, future) for command, future in self._waiting[:MAX_GROUP] if not future.cancelled()]
            del self._waiting[:MAX_GROUP]
            if not group:
                continue
            try:
                outcomes = commit_each(self.app, [command for command, _ in group])
            except Exception as exc:  # noqa: BLE001 - nothing committed (the database, the projections): all hear why
                outcomes = [exc] * len(group)
            else:
                self.groups += 1
                self.grouped += len(group)
            _answer(group, outcomes)


def commit_each(app: App, commands: list[BaseModel]) -> list[Outcome]:
    """Commit ``commands`` in one transaction, each in a savepoint; a refused one is returned, not raised.

    Failures of the database or of the projections (nothing can commit) are raised
    and fail the whole group. When the held writes are refused as they go out at the
    end (a value the database will not store: an integer past 64 bits), nothing was
    committed, and the commands are committed again one by one, so that only the
    command that wrote the value fails.
    """
    app.projections.require_ready()
    try:
        with app.batch():  # the tables' writes held to the end: one statement batch, not a round trip each
            return [_commit_one(app, command) for command in commands]
    except (LogUnreachable, ProjectionsUnavailable):
        raise
    except Exception:
        if len(commands) == 1:
            raise
        return [_commit_one(app, command) for command in commands]


def _commit_one(app: App, command: BaseModel) -> Outcome:
    try:
        return app.commit([command])[0]
    except (LogUnreachable, ProjectionsUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - refused, or a handler's bug: this command's alone
        return exc


def _answer(group: list[tuple[BaseModel, asyncio.Future[Message]]], outcomes: list[Outcome]) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # the caller went away; its command is committed all the same
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
