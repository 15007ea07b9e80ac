"""The posts summary worker: asks for a summary of every new or edited post and records the outcome.

It follows the log as the core's ``CommandWorker``, so its position is
committed in the same transaction as the commands it dispatches:

- on ``posts/create``, and on ``posts/update`` when the content changed, it dispatches
  ``posts/request-summary-generation``, exactly once; a newer request supersedes a pending one;
- it keeps the requests that have no outcome yet in ``SummaryWorkerState.pending_summaries``,
  rebuilt from the log on start minus those already set or failed;
- after each cycle it calls the summary API for pending requests, a few at a time, and
  dispatches ``posts/set-generated-summary`` or ``posts/fail-summary-generation``.

While it replays the log on start it calls nothing and dispatches nothing: those effects
are in the log already. A call that ``stop`` cuts short leaves its request pending, so it
is made again after a restart; the state accepts one outcome per request, never two.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydantic import ValidationError

from ..core import App, CommandRejected, CommandWorker, Context
from ..core.summaries import Summarizer, SummaryConfig, SummaryError, make_summarizer
from .commands import (
    MAX_ERROR_LENGTH,
    MAX_SUMMARY_LENGTH,
    CreatePost,
    DeletePost,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdatePost,
    new_id,
)
from .state import PostsState

logger = logging.getLogger(__name__)

Outcome = SetGeneratedSummary | FailSummaryGeneration


@dataclass(frozen=True)
class PendingSummary:
    """A summary request with no outcome in the log yet."""

    request_id: str
    item_id: str
    content: str
    requested_at: str


@dataclass
class SummaryWorkerState:
    """What the worker knows, rebuilt from the log on start.

    ``lock`` guards it because API calls finish on their own tasks while the
    worker reads the log; it is never held across an ``await``.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    last_processed_id: int = 0  # the newest message applied to this state
    pending_summaries: dict[str, PendingSummary] = field(default_factory=dict)  # by item id: one open request each
    requested_content: dict[str, str] = field(default_factory=dict)  # item id -> content last sent for summary

    def settle(self, item_id: str, request_id: str) -> None:
        """The request has an outcome: it is no longer pending (a newer request for the item stays)."""
        pending = self.pending_summaries.get(item_id)
        if pending is not None and pending.request_id == request_id:
            del self.pending_summaries[item_id]


class SummaryWorker(CommandWorker):
    """Summarizes new posts through the summary API, or offline when ``SUMMARY_API_URL`` is not set."""

    def __init__(
        self,
        posts: PostsState,
        config: SummaryConfig,
        *,
        name: str = "posts-summaries",
    ) -> None:
        super().__init__(name)
        self.posts = posts
        self.config = config
        self.state = SummaryWorkerState()
        self.summarizer: Summarizer | None = None
        self.in_flight: dict[str, asyncio.Task[None]] = {}  # API calls by request id
        self.on("posts/create", self.request_summary)
        self.on("posts/update", self.request_summary_of_edit)
        self.on("posts/request-summary-generation", self.track_request)
        self.on("posts/set-generated-summary", self.forget_request)
        self.on("posts/fail-summary-generation", self.forget_request)
        self.on("posts/delete", self.forget_item)
        self.every_cycle(self.summarize_pending)

    async def start(self, app: App) -> None:
        """Rebuild the pending requests from the log (calling nothing), then be ready to work."""
        self.state = SummaryWorkerState()
        if self.summarizer is not None:  # a retried start: close the previous attempt's client
            await self.summarizer.aclose()
        self.summarizer = make_summarizer(self.config)
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

    # --- reacting to the log (during replay too; dispatches are dropped then) ---

    def request_summary(self, command: CreatePost | UpdatePost, ctx: Context) -> None:
        """Ask for a summary of the current content, unless the post was deleted before we got here."""
        current = self.posts.get(command.id)
        if current is not None:
            ctx.dispatch(RequestSummaryGeneration(request_id=new_id(), item_id=current.id, content=current.content))
            with self.state.lock:  # an edit read before this request comes back must not ask again
                self.state.requested_content[current.id] = current.content

    def request_summary_of_edit(self, command: UpdatePost, ctx: Context) -> None:
        """An edit that changed the content needs a new summary; other edits keep the old one."""
        if command.content != self.state.requested_content.get(command.id):
            self.request_summary(command, ctx)

    def track_request(self, command: RequestSummaryGeneration, ctx: Context) -> None:
        """Remember the request; an older one for the same post is superseded and its call cancelled."""
        with self._updating(ctx) as state:
            superseded = state.pending_summaries.pop(command.item_id, None)
            state.pending_summaries[command.item_id] = PendingSummary(
                command.request_id, command.item_id, command.content, ctx.message.timestamp
            )
            state.requested_content[command.item_id] = command.content
        if superseded is not None:
            self._cancel_calls([superseded.request_id])

    def forget_request(self, command: SetGeneratedSummary | FailSummaryGeneration, ctx: Context) -> None:
        with self._updating(ctx) as state:
            state.settle(command.item_id, command.request_id)

    def forget_item(self, command: DeletePost, ctx: Context) -> None:
        """A deleted post needs no summary: drop its requests and cancel their calls."""
        with self._updating(ctx) as state:
            dropped = state.pending_summaries.pop(command.id, None)
            state.requested_content.pop(command.id, None)
        if dropped is not None:
            self._cancel_calls([dropped.request_id])

    def _cancel_calls(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            if (call := self.in_flight.get(request_id)) is not None:
                call.cancel()

    @contextmanager
    def _updating(self, ctx: Context) -> Iterator[SummaryWorkerState]:
        with self.state.lock:
            yield self.state
            self.state.last_processed_id = ctx.message.id

    # --- calling the summary API ---

    async def summarize_pending(self, app: App) -> None:
        """Start calls for pending requests, at most ``config.concurrency`` at once (run after every cycle).

        A summarizer that needs no I/O (the offline one) is called right here instead,
        for a batch of requests whose outcomes are recorded in one write.
        """
        summarizer = self.summarizer
        if summarizer is not None and getattr(summarizer, "immediate", False):
            with self.state.lock:
                batch = list(itertools.islice(self.state.pending_summaries.values(), self.batch_size))
            self._record([await self._outcome(summarizer, pending) for pending in batch])
            return
        free = self.config.concurrency - len(self.in_flight)
        if summarizer is None or free <= 0:
            return
        with self.state.lock:
            waiting = [p for p in self.state.pending_summaries.values() if p.request_id not in self.in_flight]
        for pending in waiting[:free]:
            call = asyncio.create_task(self._summarize(summarizer, pending), name=f"{self.name}:{pending.request_id}")
            self.in_flight[pending.request_id] = call
            call.add_done_callback(lambda done, request_id=pending.request_id: self._finished(request_id, done))

    async def _summarize(self, summarizer: Summarizer, pending: PendingSummary) -> None:
        """Make one call and dispatch its outcome. Cancelled by ``stop``, it dispatches nothing."""
        self._record([await self._outcome(summarizer, pending)])

    async def _outcome(self, summarizer: Summarizer, pending: PendingSummary) -> Outcome:
        """The outcome of summarizing one request: the summary, or why there is none."""
        outcome: Outcome
        try:
            summary = await summarizer.summarize(pending.content, request_id=pending.request_id)
        except SummaryError as exc:
            outcome = FailSummaryGeneration(
                request_id=pending.request_id, item_id=pending.item_id, error_message=str(exc)[:MAX_ERROR_LENGTH]
            )
        except Exception:
            logger.exception("summary request %s failed unexpectedly", pending.request_id)
            outcome = FailSummaryGeneration(
                request_id=pending.request_id, item_id=pending.item_id, error_message="unexpected error (see the log)"
            )
        else:
            try:
                outcome = SetGeneratedSummary(
                    request_id=pending.request_id, item_id=pending.item_id, summary=summary[:MAX_SUMMARY_LENGTH]
                )
            except ValidationError:  # e.g. a custom summarizer returned blank text
                outcome = FailSummaryGeneration(
                    request_id=pending.request_id, item_id=pending.item_id, error_message="the summary was unusable"
                )
        return outcome

    def _record(self, outcomes: list[Outcome]) -> None:
        """Dispatch the outcomes in one write; one the state refuses (the post is gone) is dropped."""
        for outcome, result in zip(outcomes, self.app.dispatch_each(outcomes), strict=True):
            if isinstance(result, CommandRejected):
                logger.info("summary request %s dropped: %s", outcome.request_id, result)
        with self.state.lock:
            for outcome in outcomes:
                self.state.settle(outcome.item_id, outcome.request_id)

    def _finished(self, request_id: str, call: asyncio.Task[None]) -> None:
        """A call ended: free its slot and wake the worker so the next pending request starts now.

        A call that crashed (its outcome could not be recorded) waits for the next poll
        instead, so a lasting failure is not retried in a tight loop.
        """
        self.in_flight.pop(request_id, None)
        crashed = not call.cancelled() and call.exception() is not None
        if crashed:
            logger.error("summary request %s could not be recorded: %r", request_id, call.exception())
        elif self.state.pending_summaries:
            self.app.supervisor.wake_all()
