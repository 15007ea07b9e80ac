"""The orders queries: ``orders/get`` and ``orders/list``, answered from the state.

Answers are plain dicts (copies of the state), ready for JSON and for the HTML templates.
``orders/list`` pages, sorts by any field (``?sort=created_at``, ``?sort=-created_at`` for
descending; newest first by default) and filters by customer, paid, status (``?customer=...``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .commands import Id, StatusChoice
from .state import Order, OrdersState

SORTABLE = (
    "customer",
    "total",
    "paid",
    "due",
    "status",
    "shipped_at",
    "quantity",
    "weight",
    "note",
    "created_at",
    "updated_at",
)
SORT_PATTERN = rf"^-?({'|'.join(SORTABLE)})$"
# How values compare where their stored form would not sort right (text ignores case, amounts are numbers).
SORT_KEYS: dict[str, Callable[[Any], Any]] = {
    "total": Decimal,
    "note": str.casefold,
}


class GetOrder(BaseModel):
    """One order by id."""

    model_config = ConfigDict(extra="forbid")

    id: Id


class ListOrders(BaseModel):
    """A page of orders: newest first unless ``sort`` names a field (``-`` first for descending)."""

    model_config = ConfigDict(extra="forbid")

    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)
    sort: str | None = Field(None, pattern=SORT_PATTERN)
    customer: Id | None = None
    paid: bool | None = None
    status: StatusChoice | None = None


def get_order(state: OrdersState, query: GetOrder) -> dict[str, Any]:
    """The order with its summary and summary status; NotFound if there is none."""
    return asdict(state.require(query.id))


def list_orders(state: OrdersState, query: ListOrders) -> dict[str, Any]:
    """``{"items": [...], "total": n, "offset": o, "limit": l}``, ``total`` counting every match."""
    matches = list(reversed(state.items.values()))
    if query.customer is not None:
        matches = [order for order in matches if order.customer == query.customer]
    if query.paid is not None:
        matches = [order for order in matches if order.paid == query.paid]
    if query.status is not None:
        matches = [order for order in matches if order.status == query.status]
    if query.sort is not None:
        matches = sorted_by(matches, query.sort)
    page = matches[query.offset : query.offset + query.limit]
    return {
        "items": [asdict(order) for order in page],
        "total": len(matches),
        "offset": query.offset,
        "limit": query.limit,
    }


def sorted_by(items: list[Order], sort: str) -> list[Order]:
    """``items`` ordered by the field ``sort`` names (descending with a leading ``-``); empty values last."""
    name = sort.removeprefix("-")
    key = SORT_KEYS.get(name, lambda value: value)
    present = [item for item in items if getattr(item, name) is not None]
    empty = [item for item in items if getattr(item, name) is None]
    return sorted(present, key=lambda item: key(getattr(item, name)), reverse=sort.startswith("-")) + empty
