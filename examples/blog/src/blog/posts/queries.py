"""The posts queries: ``posts/get`` and ``posts/list``, answered from the state.

Answers are plain dicts (copies of the state), ready for JSON and for the HTML templates.
``posts/list`` pages, sorts by any field (``?sort=created_at``, ``?sort=-created_at`` for
descending; newest first by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .commands import Id
from .state import Post, PostsState

SORTABLE = (
    "title",
    "content",
    "created_at",
    "updated_at",
)
SORT_PATTERN = rf"^-?({'|'.join(SORTABLE)})$"
# How values compare where their stored form would not sort right (text ignores case).
SORT_KEYS: dict[str, Callable[[Any], Any]] = {
    "title": str.casefold,
    "content": str.casefold,
}


class GetPost(BaseModel):
    """One post by id."""

    model_config = ConfigDict(extra="forbid")

    id: Id


class ListPosts(BaseModel):
    """A page of posts: newest first unless ``sort`` names a field (``-`` first for descending)."""

    model_config = ConfigDict(extra="forbid")

    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)
    sort: str | None = Field(None, pattern=SORT_PATTERN)


def get_post(state: PostsState, query: GetPost) -> dict[str, Any]:
    """The post with its summary and summary status; NotFound if there is none."""
    return asdict(state.require(query.id))


def list_posts(state: PostsState, query: ListPosts) -> dict[str, Any]:
    """``{"items": [...], "total": n, "offset": o, "limit": l}``, ``total`` counting every match."""
    matches = list(reversed(state.items.values()))
    if query.sort is not None:
        matches = sorted_by(matches, query.sort)
    page = matches[query.offset : query.offset + query.limit]
    return {
        "items": [asdict(post) for post in page],
        "total": len(matches),
        "offset": query.offset,
        "limit": query.limit,
    }


def sorted_by(items: list[Post], sort: str) -> list[Post]:
    """``items`` ordered by the field ``sort`` names (descending with a leading ``-``); empty values last."""
    name = sort.removeprefix("-")
    key = SORT_KEYS.get(name, lambda value: value)
    present = [item for item in items if getattr(item, name) is not None]
    empty = [item for item in items if getattr(item, name) is None]
    return sorted(present, key=lambda item: key(getattr(item, name)), reverse=sort.startswith("-")) + empty
