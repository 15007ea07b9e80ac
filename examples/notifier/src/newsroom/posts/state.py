"""The posts state: one row per post in the store's ``posts`` table.

Each handler applies one accepted command, in the transaction that appends it to
the log. It checks first and writes after: a refused command (``NotFound``,
``CommandRejected``) rolls the transaction back, so neither the log nor the table
changes. A post is kept as the JSON the queries answer (text, numbers, booleans).

The table is rebuilt from the log only when this module (or the models of the
commands it handles) changes: ``python -m newsroom projections status`` tells.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypedDict

from ..core import CommandRejected, Message, NotFound
from ..core.projections import Projection
from ..core.references import References
from ..core.store import Column, Store, TableSpec
from .commands import (
    CreatePost,
    DeletePost,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdatePost,
)

SummaryStatus = Literal["pending", "ready", "failed"]

# The columns lists sort and filter on, each indexed; a filter's column keeps a count per value.
POSTS = TableSpec(
    "posts",
    columns=(
        Column("title", "folded"),
        Column("created_at"),
        Column("updated_at"),
    ),
)


class Post(TypedDict):
    """One post, with its summary once the summary worker has one."""

    id: str
    title: str
    content: str
    created_at: str
    updated_at: str
    summary: str | None
    summary_status: SummaryStatus
    summary_error: str | None
    summary_request_id: str | None


class PostsState(Projection):
    """Every post by id, in the ``posts`` table."""

    tables = (POSTS,)

    def __init__(self, store: Store, references: References) -> None:
        super().__init__(store, "posts")
        self.items = self.table(POSTS)
        self.references = references  # to refuse deleting an item others refer to

    def get(self, id: str) -> Post | None:
        return self.items.get(id)  # type: ignore[return-value]

    def get_many(self, ids: Iterable[str]) -> dict[str, Post]:
        """The posts with these ids that exist, by id, in one query (for a worker's batch)."""
        return self.items.get_many(ids)  # type: ignore[return-value]

    def require(self, id: str) -> Post:
        """The post with this id, or NotFound (404 over HTTP)."""
        post = self.get(id)
        if post is None:
            raise NotFound(f"no post with id {id!r}")
        return post

    # --- state handlers, one per command ---

    def create(self, command: CreatePost, message: Message) -> None:
        # An id given is looked for; one the app generated (none given) is a fresh random one, not
        # read for (a read is a round trip on PostgreSQL, inside the lock every append holds).
        if "id" in command.model_fields_set and self.get(command.id) is not None:
            raise CommandRejected(f"a post with id {command.id!r} already exists")
        values = command.model_dump(mode="json")
        post: Post = {
            "id": command.id,
            "title": values["title"],
            "content": values["content"],
            "created_at": message.timestamp,
            "updated_at": message.timestamp,
            "summary": None,
            "summary_status": "pending",
            "summary_error": None,
            "summary_request_id": None,
        }
        self.items.put(command.id, post)

    def update(self, command: UpdatePost, message: Message) -> None:
        post = self.require(command.id)
        values = command.model_dump(mode="json")
        post["title"] = values["title"]
        post["content"] = values["content"]
        post["updated_at"] = message.timestamp
        self.items.put(command.id, post)

    def delete(self, command: DeletePost, message: Message) -> None:
        self.require(command.id)
        self.references.require_unreferenced("posts", command.id)
        self.items.delete(command.id)

    def request_summary(self, command: RequestSummaryGeneration, message: Message) -> None:
        post = self.require(command.item_id)
        post["summary_request_id"] = command.request_id
        post["summary_status"] = "pending"
        post["summary_error"] = None
        self.items.put(post["id"], post)

    def set_summary(self, command: SetGeneratedSummary, message: Message) -> None:
        post = self._awaiting(command.item_id, command.request_id)
        post["summary"] = command.summary
        post["summary_status"] = "ready"
        self.items.put(post["id"], post)

    def fail_summary(self, command: FailSummaryGeneration, message: Message) -> None:
        post = self._awaiting(command.item_id, command.request_id)
        post["summary_error"] = command.error_message
        post["summary_status"] = "failed"
        self.items.put(post["id"], post)

    def _awaiting(self, item_id: str, request_id: str) -> Post:
        """The post whose summary request ``request_id`` is still open: one outcome per request."""
        post = self.require(item_id)
        if post["summary_request_id"] != request_id or post["summary_status"] != "pending":
            raise CommandRejected(f"summary request {request_id!r} of post {item_id!r} is not pending")
        return post
