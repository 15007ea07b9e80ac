"""Commands: named, validated requests to change state, and their registry.

A command type is ``"feature/verb"`` (``"posts/create"``), its payload a pydantic
model, and its state handler applies an accepted command to the feature's
tables in the store (core/store.py). The executor lives on :class:`~.app.App`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel

from .log import Message

StateHandler = Callable[[BaseModel, Message], None]


class CommandRejected(Exception):
    """A state handler refused a valid command; nothing is appended."""

    status_code = 409


class NotFound(CommandRejected):
    """The command names something that does not exist."""

    status_code = 404


class UnknownCommand(LookupError):
    """No command is registered under that type."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What the app knows about one command type."""

    type: str
    model: type[BaseModel]
    handler: StateHandler | None
    public: bool = True  # False: only the app's own workers dispatch it; HTTP clients get a 404

    @property
    def feature(self) -> str:
        return self.type.split("/", 1)[0]


class CommandRegistry:
    """Command types by name, and by model class for dispatching model instances."""

    def __init__(self) -> None:
        self._by_type: dict[str, CommandSpec] = {}
        self._by_model: dict[type[BaseModel], CommandSpec] = {}

    def register(
        self, type: str, model: type[BaseModel], handler: StateHandler | None = None, *, public: bool = True
    ) -> None:
        """Add a command type; ``handler`` applies it to state (None for log-only commands).

        ``public=False`` keeps it off the HTTP API: for commands only workers may send,
        such as a summary's outcome.
        """
        if "/" not in type:
            raise ValueError(f"command type {type!r} must look like 'feature/verb'")
        if type in self._by_type:
            raise ValueError(f"command {type!r} is already registered")
        spec = CommandSpec(type, model, handler, public)
        self._by_type[type] = spec
        self._by_model[model] = spec

    def get(self, type: str) -> CommandSpec:
        try:
            return self._by_type[type]
        except KeyError:
            raise UnknownCommand(type) from None

    def spec_for(self, command: BaseModel) -> CommandSpec:
        """The spec of a command instance, found by its class."""
        try:
            return self._by_model[type(command)]
        except KeyError:
            raise UnknownCommand(type(command).__name__) from None

    def find(self, type: str) -> CommandSpec | None:
        return self._by_type.get(type)

    def __contains__(self, type: object) -> bool:
        return type in self._by_type

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)
