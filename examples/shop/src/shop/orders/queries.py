"""The orders queries: ``orders/get`` and ``orders/list``, answered from its table.

Answers are plain dicts, ready for JSON and for the HTML templates (the JSON API sends a list
page's rows as they are stored, without decoding them: core/store.py's ``Page``). ``orders/list``
pages (``offset``, ``limit``; ``total`` counts every match) and sorts by a field
(``?sort=created_at``, ``?sort=-created_at`` for descending; newest first by default),
from the table's indexes, so a page costs the same at a million orders as at ten.
It filters by customer, paid, status (``?customer=...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from ..core.queries import MAX_OFFSET, Parameters
from .commands import Id, StatusChoice
from .state import Order, OrdersState

Sort = Literal[
    "customer",
    "-customer",
    "total",
    "-total",
    "paid",
    "-paid",
    "due",
    "-due",
    "status",
    "-status",
    "shipped_at",
    "-shipped_at",
    "quantity",
    "-quantity",
    "weight",
    "-weight",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
]
FILTERS = {"customer", "paid", "status"}


class GetOrder(Parameters):
    """One order by id."""

    id: Id


class ListOrders(Parameters):
    """A page of orders: newest first unless ``sort`` names a field (``-`` first for descending)."""

    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    limit: int = Field(20, ge=1, le=1000)
    sort: Sort | None = None
    customer: Id | None = None
    paid: bool | None = None
    status: StatusChoice | None = None


def get_order(state: OrdersState, query: GetOrder) -> Order:
    """The order with its summary and summary status; NotFound if there is none."""
    return state.require(query.id)


def list_orders(state: OrdersState, query: ListOrders) -> Mapping[str, Any]:
    """``{"items": [...], "total": n, "offset": o, "limit": l}``, ``total`` counting every match (a dict;
    for the JSON API, a ``Page`` whose items go out as the table stores them: core/store.py)."""
    where = query.model_dump(include=FILTERS, exclude_none=True)
    return state.items.page(where, sort=query.sort, offset=query.offset, limit=query.limit)
