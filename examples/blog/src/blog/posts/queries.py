"""The posts queries: ``posts/get`` and ``posts/list``, answered from the state.

Answers are plain dicts (copies of the state), ready for JSON and for the HTML templates.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .commands import Id
from .state import PostsState


class GetPost(BaseModel):
    """One post by id."""

    model_config = ConfigDict(extra="forbid")

    id: Id


class ListPosts(BaseModel):
    """A page of posts, newest first."""

    model_config = ConfigDict(extra="forbid")

    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)


def get_post(state: PostsState, query: GetPost) -> dict[str, Any]:
    """The post with its summary and summary status; NotFound if there is none."""
    return asdict(state.require(query.id))


def list_posts(state: PostsState, query: ListPosts) -> dict[str, Any]:
    """``{"items": [...], "total": n, "offset": o, "limit": l}``, newest first."""
    newest_first = list(reversed(state.items.values()))
    page = newest_first[query.offset : query.offset + query.limit]
    return {
        "items": [asdict(post) for post in page],
        "total": len(newest_first),
        "offset": query.offset,
        "limit": query.limit,
    }
