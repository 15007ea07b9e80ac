"""The posts state: an in-memory projection of the log, rebuilt on every start.

Each handler applies one accepted command. It checks first and mutates after,
so a refused command (``NotFound``, ``CommandRejected``) changes nothing, and
the app rolls back its transaction, so it never reaches the log either. Values
are kept as the JSON the queries answer (text, numbers, booleans).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core import CommandRejected, Message, NotFound
from ..core.references import References
from .commands import (
    CreatePost,
    DeletePost,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdatePost,
)

SummaryStatus = Literal["pending", "ready", "failed"]


@dataclass
class Post:
    """One post, with its summary once the summary worker has one."""

    id: str
    title: str
    content: str
    created_at: str
    updated_at: str
    summary: str | None = None
    summary_status: SummaryStatus = "pending"
    summary_error: str | None = None
    summary_request_id: str | None = None


class PostsState:
    """Every post by id, in the order they were created."""

    def __init__(self, references: References) -> None:
        self.items: dict[str, Post] = {}
        self.references = references  # to refuse deleting an item others refer to

    def get(self, id: str) -> Post | None:
        return self.items.get(id)

    def require(self, id: str) -> Post:
        """The post with this id, or NotFound (404 over HTTP)."""
        post = self.items.get(id)
        if post is None:
            raise NotFound(f"no post with id {id!r}")
        return post

    # --- state handlers, one per command ---

    def create(self, command: CreatePost, message: Message) -> None:
        if command.id in self.items:
            raise CommandRejected(f"a post with id {command.id!r} already exists")
        values = command.model_dump(mode="json")
        self.items[command.id] = Post(
            id=command.id,
            title=values["title"],
            content=values["content"],
            created_at=message.timestamp,
            updated_at=message.timestamp,
        )

    def update(self, command: UpdatePost, message: Message) -> None:
        post = self.require(command.id)
        values = command.model_dump(mode="json")
        post.title = values["title"]
        post.content = values["content"]
        post.updated_at = message.timestamp

    def delete(self, command: DeletePost, message: Message) -> None:
        self.require(command.id)
        self.references.require_unreferenced("posts", command.id)
        del self.items[command.id]

    def request_summary(self, command: RequestSummaryGeneration, message: Message) -> None:
        post = self.require(command.item_id)
        post.summary_request_id = command.request_id
        post.summary_status = "pending"
        post.summary_error = None

    def set_summary(self, command: SetGeneratedSummary, message: Message) -> None:
        post = self._awaiting(command.item_id, command.request_id)
        post.summary = command.summary
        post.summary_status = "ready"

    def fail_summary(self, command: FailSummaryGeneration, message: Message) -> None:
        post = self._awaiting(command.item_id, command.request_id)
        post.summary_error = command.error_message
        post.summary_status = "failed"

    def _awaiting(self, item_id: str, request_id: str) -> Post:
        """The post whose summary request ``request_id`` is still open: one outcome per request."""
        post = self.require(item_id)
        if post.summary_request_id != request_id or post.summary_status != "pending":
            raise CommandRejected(f"summary request {request_id!r} of post {item_id!r} is not pending")
        return post
