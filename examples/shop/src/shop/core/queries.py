"""Queries: named, validated questions about state, and their registry.

A query type is ``"feature/name"`` (``"posts/list"``); its parameters are a
pydantic model (usually a :class:`Parameters`) and its handler reads the feature's
tables in the store. Queries never write. :meth:`QueryRegistry.run_json` answers as
JSON, with a list page's rows as the store keeps them (store.py's :class:`~.store.Page`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import to_json

from .store import Page, answering_json

QueryHandler = Callable[[Any], Any]
# The largest ``offset`` a list query takes: beyond any table, and far inside the 64-bit integers
# SQLite and PostgreSQL compare it with (a larger one was a 500 and a traceback, not a 400).
MAX_OFFSET = 1_000_000_000


class Parameters(BaseModel):
    """Base of a query's parameters: an unknown one is refused, naming those the query takes."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_only(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in set(data) - set(cls.model_fields))
            if unknown:
                takes = ", ".join(cls.model_fields) or "no parameters"
                raise ValueError(f"unknown parameter {unknown[0]!r}; this query takes {takes}")
        return data


class UnknownQuery(LookupError):
    """No query is registered under that type."""


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """What the app knows about one query type."""

    type: str
    model: type[BaseModel]
    handler: QueryHandler

    @property
    def feature(self) -> str:
        return self.type.split("/", 1)[0]


class QueryRegistry:
    """Query types by name."""

    def __init__(self) -> None:
        self._by_type: dict[str, QuerySpec] = {}

    def register(self, type: str, model: type[BaseModel], handler: QueryHandler) -> None:
        if "/" not in type:
            raise ValueError(f"query type {type!r} must look like 'feature/name'")
        if type in self._by_type:
            raise ValueError(f"query {type!r} is already registered")
        self._by_type[type] = QuerySpec(type, model, handler)

    def get(self, type: str) -> QuerySpec:
        try:
            return self._by_type[type]
        except KeyError:
            raise UnknownQuery(type) from None

    def run(self, type: str, params: Mapping[str, Any] | BaseModel | None = None) -> Any:
        """Validate the parameters and answer the query (raises pydantic's ValidationError)."""
        with answering_json(False):  # plain dicts, also for a query that another one's handler asks
            return self._answer(type, params)

    def run_json(self, type: str, params: Mapping[str, Any] | BaseModel | None = None) -> bytes:
        """``run``'s answer encoded as JSON (compact): a list page's rows go into it as the store keeps them."""
        with answering_json():
            answer = self._answer(type, params)
        if isinstance(answer, Page):
            return answer.json()
        return to_json(answer, fallback=_plain)

    def _answer(self, type: str, params: Mapping[str, Any] | BaseModel | None) -> Any:
        spec = self.get(type)
        query = params if isinstance(params, spec.model) else spec.model.model_validate(params or {})
        return spec.handler(query)

    def __contains__(self, type: object) -> bool:
        return type in self._by_type

    def __iter__(self) -> Iterator[QuerySpec]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)


def _plain(value: Any) -> Any:
    """What ``to_json`` encodes in place of a value it does not know: a page in a handler's own answer, as a dict."""
    if isinstance(value, Page):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
