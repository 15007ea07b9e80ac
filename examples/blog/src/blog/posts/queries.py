"""The posts queries: ``posts/get`` and ``posts/list``, answered from its table.

Answers are plain dicts, ready for JSON and for the HTML templates (the JSON API sends a list
page's rows as they are stored, without decoding them: core/store.py's ``Page``). ``posts/list``
pages (``offset``, ``limit``; ``total`` counts every match) and sorts by a field
(``?sort=created_at``, ``?sort=-created_at`` for descending; newest first by default),
from the table's indexes, so a page costs the same at a million posts as at ten.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from ..core.queries import MAX_OFFSET, Parameters
from .commands import Id
from .state import Post, PostsState

Sort = Literal[
    "title",
    "-title",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
]


class GetPost(Parameters):
    """One post by id."""

    id: Id


class ListPosts(Parameters):
    """A page of posts: newest first unless ``sort`` names a field (``-`` first for descending)."""

    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    limit: int = Field(20, ge=1, le=1000)
    sort: Sort | None = None


def get_post(state: PostsState, query: GetPost) -> Post:
    """The post with its summary and summary status; NotFound if there is none."""
    return state.require(query.id)


def list_posts(state: PostsState, query: ListPosts) -> Mapping[str, Any]:
    """``{"items": [...], "total": n, "offset": o, "limit": l}``, ``total`` counting every match (a dict;
    for the JSON API, a ``Page`` whose items go out as the table stores them: core/store.py)."""
    return state.items.page(sort=query.sort, offset=query.offset, limit=query.limit)
