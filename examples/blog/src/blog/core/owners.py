"""Who is acting: the owner of an owned feature's items (``petrock feature add NAME --owned``).

Every HTTP request (pages, ``/commands``, ``/queries``, ``/mcp``) runs as an
:class:`Actor` taken from its identity (:class:`ActAsRequester`): the signed-in
user, a user's API token (that user), the operator's ``APP_API_TOKEN`` (sees and
changes every item, owns none), or nobody (sees nothing). An owned command
(:class:`OwnedCommand`) gets its ``actor`` from there, never from the payload, and
carries it into the log, so a rebuild gives every item the same owner. Code that
runs outside a request (workers, tests, ``python -m APP``) is the app itself:
it names the actor in the payload and its queries see every item.

Members see and change only their own items; admins and the operator see and
change all of them. Someone else's item is answered as missing (404), so its id
tells nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.types import ASGIApp, Receive, Scope, Send

from .commands import CommandRejected

STORED = {"stored": True}  # validation context of a payload read back from the log


class Actor(BaseModel):
    """Who sends a command or asks a query: a user's id (None for the operator or nobody) and their power."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str | None = Field(None, min_length=1, max_length=64)
    admin: bool = False

    def sees(self, owner: str | None) -> bool:
        return self.admin or (self.user is not None and self.user == owner)


OPERATOR = Actor(admin=True)  # APP_API_TOKEN: every item, but it owns none
NOBODY = Actor()  # an open page (sign-in): no item

_acting: ContextVar[Actor | None] = ContextVar("acting", default=None)


class Forbidden(CommandRejected):
    """The actor may not send this command at all (the operator creating an owned item)."""

    status_code = 403


def current_actor() -> Actor | None:
    """The actor of the request being served; None outside requests (the app's own code)."""
    return _acting.get()


@contextmanager
def acting_as(actor: Actor | None) -> Iterator[None]:
    """Run the block as ``actor`` (None: as the app itself)."""
    token = _acting.set(actor)
    try:
        yield
    finally:
        _acting.reset(token)


def owned_by(actor: Actor | None) -> dict[str, str]:
    """The ``where`` that limits a list to what ``actor`` sees: nothing for admins and the app itself."""
    if actor is None or actor.admin:
        return {}
    return {"owner": actor.user or ""}  # nobody owns "": an anonymous actor sees no item


def actor_of(scope: Scope) -> Actor:
    """The actor of a request, from what the guard found (``scope["user"]``, ``scope["access"]``)."""
    user = scope.get("user")
    if user is not None:
        return Actor(user=user["id"], admin=user.get("role") == "admin")
    return OPERATOR if scope.get("access") == "token" else NOBODY


class OwnedCommand(BaseModel):
    """Base of an owned feature's commands: ``actor`` is who sent it, set by the app, not the client."""

    actor: SkipJsonSchema[Actor]

    @model_validator(mode="before")
    @classmethod
    def _actor_from_the_request(cls, data: Any, info: ValidationInfo) -> Any:
        if not _from_a_request(data, info):
            return data  # the app's own code, or a message read back from the log: as given
        if "actor" in data:
            raise ValueError("actor is who sends the command; it is not part of the payload")
        return {**data, "actor": _acting.get()}


class OwnedCreate(OwnedCommand):
    """Base of an owned feature's create: the new item's ``id`` is made by the app, never sent.

    Ids are shared by every owner, so a client's own id could be someone else's item,
    and "already exists" would tell them it is there (and let them take the ids others
    will use). A random id meets no one's. The app's own code may still give one.
    """

    @model_validator(mode="before")
    @classmethod
    def _id_from_the_app(cls, data: Any, info: ValidationInfo) -> Any:
        if _from_a_request(data, info) and "id" in data:
            raise ValueError("id is made by the app for a new item (the answer has it); it is not part of the payload")
        return data


def _from_a_request(data: Any, info: ValidationInfo) -> bool:
    """Whether a payload comes from a request (an actor is set), not from the app or the log."""
    stored = (info.context or {}).get("stored")
    return _acting.get() is not None and not stored and isinstance(data, Mapping)


class ActAsRequester:
    """ASGI middleware: the request runs as its :func:`actor_of` (innermost, after the guard).

    Code that already acts as someone (a test's :class:`ActingAs`) keeps its actor.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _acting.get() is not None:
            await self.app(scope, receive, send)
            return
        with acting_as(actor_of(scope)):
            await self.app(scope, receive, send)


class ActingAs:
    """An ASGI app served as ``actor`` whoever asks: for tests of an owned feature without sign-in."""

    def __init__(self, app: ASGIApp, actor: Actor) -> None:
        self.app = app
        self.actor = actor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan (and the workers it starts) stay the app's own
            await self.app(scope, receive, send)
            return
        with acting_as(self.actor):
            await self.app(scope, receive, send)


def as_owner(item: Mapping[str, Any], actor: Actor | None) -> bool:
    """Whether ``actor`` may see and change ``item`` (the app itself may)."""
    return actor is None or actor.sees(item.get("owner"))
