"""A worker written by hand: tell a webhook whenever a post gets its summary.

It is a :class:`CommandWorker`, so the app stores its log position and calls it
for every ``posts/set-generated-summary`` after that position: a restart goes on
from there, and the summaries it already announced are not handled again. A
webhook that fails raises: the message is not marked done, and the app retries the
cycle with backoff until the webhook takes it.
"""

from __future__ import annotations

import logging

import httpx

from ..core import App, CommandWorker, Context
from ..posts.commands import SetGeneratedSummary

logger = logging.getLogger(__name__)


class SummaryNotifier(CommandWorker):
    """Posts ``{"post_id", "title", "summary"}`` to a webhook for each new summary."""

    def __init__(self, webhook_url: str | None, *, timeout: float = 5.0) -> None:
        super().__init__("posts-summary-notifier")
        self.webhook_url = webhook_url
        self.timeout = timeout
        self.client: httpx.AsyncClient | None = None
        self.on("posts/set-generated-summary", self.announce)

    async def start(self, app: App) -> None:
        self.client = httpx.AsyncClient(timeout=self.timeout)
        await super().start(app)

    async def stop(self) -> None:
        await super().stop()
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def announce(self, command: SetGeneratedSummary, ctx: Context) -> None:
        """Send one notification."""
        post = ctx.app.query("posts/get", {"id": command.item_id})
        if not self.webhook_url or self.client is None:
            logger.info("post %s has a summary (set NOTIFY_WEBHOOK_URL to send it somewhere)", command.item_id)
            return
        response = await self.client.post(
            self.webhook_url,
            json={"post_id": command.item_id, "title": post["title"], "summary": command.summary},
            # The log id makes a resend after a crash recognisable: at-least-once, idempotent on the other side.
            headers={"Idempotency-Key": f"{self.name}-{ctx.message.id}"},
        )
        response.raise_for_status()
