"""The orders summary worker: asks for a summary of every new or edited order and records the outcome.

It follows the log as the core's ``CommandWorker``, so its position is
committed in the same transaction as the commands it dispatches and the rows it
writes:

- on ``orders/create``, and on ``orders/update`` when the note changed, it dispatches
  ``orders/request-summary-generation``, exactly once; a newer request supersedes a pending one;
- it keeps one row per order in its ``orders-summary-requests`` table: the note
  last sent for summary, and the request that has no outcome yet, if any;
- after each cycle it calls the summary API for pending requests, a few at a time, and
  dispatches ``orders/set-generated-summary`` or ``orders/fail-summary-generation``.

A restart goes on from the stored position with the table as it was. Only on its
first start, or when this module changes, does it rebuild the table from the log,
calling nothing and dispatching nothing (those effects are in the log already). A
call that ``stop`` cuts short leaves its request pending, so it is made again after
a restart; the state accepts one outcome per request, never two.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypedDict, TypeGuard

from pydantic import ValidationError

from ..core import App, CommandRejected, CommandWorker, Context
from ..core.store import Column, TableSpec
from ..core.summaries import Summarizer, SummaryConfig, SummaryError, make_summarizer
from .commands import (
    MAX_ERROR_LENGTH,
    MAX_SUMMARY_LENGTH,
    CreateOrder,
    DeleteOrder,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateOrder,
    new_id,
)
from .state import Order, OrdersState

logger = logging.getLogger(__name__)

Outcome = SetGeneratedSummary | FailSummaryGeneration
Reaction = CreateOrder | UpdateOrder | DeleteOrder | RequestSummaryGeneration | Outcome

SUMMARY_REQUESTS = TableSpec(
    "orders-summary-requests",
    columns=(Column("pending", "bool"), Column("requested_at")),
)


class SummaryRequest(TypedDict):
    """The worker's row for one order."""

    item_id: str
    content: str  # the note last sent for summary: an edit that keeps it needs no new one
    pending: bool  # a request has no outcome yet
    request_id: str | None
    requested_at: str | None


class SummaryWorker(CommandWorker):
    """Summarizes new orders through the summary API, or offline when ``SUMMARY_API_URL`` is not set."""

    tables = (SUMMARY_REQUESTS,)

    def __init__(
        self,
        orders: OrdersState,
        config: SummaryConfig,
        *,
        name: str = "orders-summaries",
    ) -> None:
        super().__init__(name)
        self.orders = orders
        self.config = config
        self.requests = self.table(SUMMARY_REQUESTS)
        self.summarizer: Summarizer | None = None
        self.in_flight: dict[str, asyncio.Task[None]] = {}  # API calls by request id
        self.batch_items: dict[str, Order] = {}  # the orders the batch being handled created or edited
        # Requests answered as they were made (an immediate summarizer), until their message is handled;
        # any other request makes the next cycle look for pending ones (``look_for_pending``).
        self.answered_at_once: set[str] = set()
        self.look_for_pending = True
        self.on("orders/create", self.request_summary)
        self.on("orders/update", self.request_summary_of_edit)
        self.on("orders/request-summary-generation", self.track_request)
        self.on("orders/set-generated-summary", self.forget_request)
        self.on("orders/fail-summary-generation", self.forget_request)
        self.on("orders/delete", self.forget_item)
        self.every_cycle(self.summarize_pending)

    async def start(self, app: App) -> None:
        """Go on from the stored position (rebuilding the table, calling nothing, if need be), ready to work."""
        if self.summarizer is not None:  # a retried start: close the previous attempt's client
            await self.summarizer.aclose()
        self.summarizer = make_summarizer(self.config)
        self.answered_at_once.clear()
        self.look_for_pending = True  # requests left pending from before, if any
        await super().start(app)

    async def stop(self) -> None:
        """Cancel the API calls in flight (their requests stay pending for the next start) and close the client."""
        await super().stop()
        calls = list(self.in_flight.values())
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        if self.summarizer is not None:
            await self.summarizer.aclose()
            self.summarizer = None

    # --- reacting to the log (while rebuilding too; dispatches are dropped then) ---

    def prefetch(self, commands: list[Reaction]) -> None:
        """Read what this batch of messages is about in one query per table, not one per message:
        the worker's rows, and the orders that were created or edited."""
        self.preload(SUMMARY_REQUESTS, [_item_id(command) for command in commands])
        edited = [command.id for command in commands if isinstance(command, CreateOrder | UpdateOrder)]
        self.batch_items = self.orders.get_many(edited)

    def before_commit(self, commands: list[Reaction]) -> None:
        """Read the orders the batch's requests and outcomes change in one query, under the write lock:
        applying each then reads nothing (on PostgreSQL, a round trip each, inside the lock)."""
        ids = [command.item_id for command in commands if isinstance(command, RequestSummaryGeneration | Outcome)]
        self.app.store.preload(self.orders.items.spec, ids)

    async def request_summary(self, command: CreateOrder | UpdateOrder, ctx: Context) -> None:
        """Ask for a summary of the current note, unless the order was deleted before we got here.

        A summarizer that needs no I/O (the offline one) answers at once: its outcome is
        dispatched with the request and commits with it, saving the worker a write.
        """
        current = self.batch_items.get(command.id)  # read by prefetch; a deleted one is not there
        if current is None or current["note"] is None:
            return
        # An edit read before this request comes back must not ask again.
        self.requests.put(current["id"], {**self._row(current["id"]), "content": current["note"]})
        if ctx.replaying:
            return  # the request, and its outcome, are in the log already
        request = RequestSummaryGeneration(request_id=new_id(), item_id=current["id"], content=current["note"])
        ctx.dispatch(request)
        summarizer = self.summarizer
        if summarizer is not None and getattr(summarizer, "immediate", False):
            ctx.dispatch(await self._outcome(summarizer, request.item_id, request.request_id, request.content))
            self.answered_at_once.add(request.request_id)

    async def request_summary_of_edit(self, command: UpdateOrder, ctx: Context) -> None:
        """An edit that changed the note needs a new summary; other edits keep the old one."""
        if command.note != self._row(command.id)["content"]:
            await self.request_summary(command, ctx)

    def track_request(self, command: RequestSummaryGeneration, ctx: Context) -> None:
        """Remember the request; an older one for the same order is superseded and its call cancelled."""
        row = self._row(command.item_id)
        superseded = row["request_id"] if row["pending"] else None
        if command.request_id in self.answered_at_once:
            self.answered_at_once.discard(command.request_id)  # its outcome is in the log after it
        else:
            self.look_for_pending = True
        self.requests.put(
            command.item_id,
            {
                **row,
                "content": command.content,
                "pending": True,
                "request_id": command.request_id,
                "requested_at": ctx.message.timestamp,
            },
        )
        if superseded is not None:
            self._cancel_call(superseded)

    def forget_request(self, command: SetGeneratedSummary | FailSummaryGeneration, ctx: Context) -> None:
        row = self.requests.get(command.item_id)
        if _settles(row, command.request_id):
            self.requests.put(command.item_id, {**row, "pending": False})

    def forget_item(self, command: DeleteOrder, ctx: Context) -> None:
        """A deleted order needs no summary: drop its row and cancel its call."""
        row = self.requests.get(command.id)
        if row is not None:
            self.requests.delete(command.id)
            if row["pending"]:
                self._cancel_call(row["request_id"])

    def _row(self, item_id: str) -> SummaryRequest:
        row = self.requests.get(item_id)
        if row is None:
            return {"item_id": item_id, "content": "", "pending": False, "request_id": None, "requested_at": None}
        return row  # type: ignore[return-value]

    def _cancel_call(self, request_id: str) -> None:
        if (call := self.in_flight.get(request_id)) is not None:
            call.cancel()

    # --- calling the summary API ---

    def _pending(self, limit: int) -> list[SummaryRequest]:
        """The oldest pending requests."""
        return self.requests.find({"pending": True}, sort="requested_at", limit=limit)  # type: ignore[return-value]

    async def summarize_pending(self, app: App) -> None:
        """Start calls for pending requests, at most ``config.concurrency`` at once (run after every cycle).

        A summarizer that needs no I/O (the offline one) answers new requests as they are
        made (see :meth:`request_summary`); requests left pending from before (made while an
        API was configured, or dispatched by others) are answered right here, a batch at a time,
        recorded in one write. It looks for them only when there may be some: after a start, and
        after a request it did not answer at once (a query a cycle on PostgreSQL, saved).
        """
        summarizer = self.summarizer
        if summarizer is not None and getattr(summarizer, "immediate", False):
            if len(self.answered_at_once) > 4 * self.batch_size:  # ids of commits refused and retried: forget them
                self.answered_at_once.clear()
                self.look_for_pending = True
            if not self.look_for_pending:  # every request since the last look was answered as it was made
                return
            batch = self._pending(self.batch_size)
            if batch:
                self._record([await self._outcome_of(summarizer, request) for request in batch])
            else:
                self.look_for_pending = False
            return
        free = self.config.concurrency - len(self.in_flight)
        if summarizer is None or free <= 0:
            return
        waiting = [r for r in self._pending(free + len(self.in_flight)) if r["request_id"] not in self.in_flight]
        for request in waiting[:free]:
            request_id = str(request["request_id"])
            call = asyncio.create_task(self._summarize(summarizer, request), name=f"{self.name}:{request_id}")
            self.in_flight[request_id] = call
            call.add_done_callback(lambda done, request_id=request_id: self._finished(request_id, done))

    async def _summarize(self, summarizer: Summarizer, request: SummaryRequest) -> None:
        """Make one call and dispatch its outcome. Cancelled by ``stop``, it dispatches nothing."""
        self._record([await self._outcome_of(summarizer, request)])

    async def _outcome_of(self, summarizer: Summarizer, request: SummaryRequest) -> Outcome:
        return await self._outcome(summarizer, request["item_id"], str(request["request_id"]), request["content"])

    async def _outcome(self, summarizer: Summarizer, item_id: str, request_id: str, content: str) -> Outcome:
        """The outcome of summarizing one request: the summary, or why there is none."""
        ids = {"request_id": request_id, "item_id": item_id}
        outcome: Outcome
        try:
            summary = await summarizer.summarize(content, request_id=request_id)
        except SummaryError as exc:
            outcome = FailSummaryGeneration(**ids, error_message=str(exc)[:MAX_ERROR_LENGTH])
        except Exception:
            logger.exception("summary request %s failed unexpectedly", request_id)
            outcome = FailSummaryGeneration(**ids, error_message="unexpected error (see the log)")
        else:
            try:
                outcome = SetGeneratedSummary(**ids, summary=summary[:MAX_SUMMARY_LENGTH])
            except ValidationError:  # e.g. a custom summarizer returned blank text
                outcome = FailSummaryGeneration(**ids, error_message="the summary was unusable")
        return outcome

    def _record(self, outcomes: list[Outcome]) -> None:
        """Dispatch the outcomes and settle their requests in one write; one the state refuses
        (the order is gone) is dropped."""
        app = self.app
        with app.batch():
            app.store.preload(self.orders.items.spec, [outcome.item_id for outcome in outcomes])
            rows = self.requests.get_many(outcome.item_id for outcome in outcomes)
            settled = []
            for outcome, result in zip(outcomes, app.dispatch_each(outcomes), strict=True):
                if isinstance(result, CommandRejected):
                    logger.info("summary request %s dropped: %s", outcome.request_id, result)
                row = rows.get(outcome.item_id)
                if _settles(row, outcome.request_id):
                    settled.append((outcome.item_id, {**row, "pending": False}))
            self.requests.put_many(settled)

    def _finished(self, request_id: str, call: asyncio.Task[None]) -> None:
        """A call ended: free its slot and wake the worker so the next pending request starts now.

        A call that crashed (its outcome could not be recorded) waits for the next poll
        instead, so a lasting failure is not retried in a tight loop.
        """
        self.in_flight.pop(request_id, None)
        crashed = not call.cancelled() and call.exception() is not None
        if crashed:
            logger.error("summary request %s could not be recorded: %r", request_id, call.exception())
        else:
            self.app.supervisor.wake_all()


def _item_id(command: Reaction) -> str:
    """The id of the order a message the worker reacts to is about."""
    return command.id if isinstance(command, CreateOrder | UpdateOrder | DeleteOrder) else command.item_id


def _settles(row: SummaryRequest | None, request_id: str) -> TypeGuard[SummaryRequest]:
    """An outcome of ``request_id`` settles the row if that request is the pending one (a newer one stays pending)."""
    return row is not None and row["pending"] and row["request_id"] == request_id
