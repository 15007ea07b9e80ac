"""Queries: named, validated questions about state, and their registry.

A query type is ``"feature/name"`` (``"posts/list"``); its parameters are a
pydantic model (usually a :class:`Parameters`) and its handler reads the feature's
tables in the store. Queries never write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

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
        spec = self.get(type)
        query = params if isinstance(params, spec.model) else spec.model.model_validate(params or {})
        return spec.handler(query)

    def __contains__(self, type: object) -> bool:
        return type in self._by_type

    def __iter__(self) -> Iterator[QuerySpec]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)
