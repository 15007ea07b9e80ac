"""The orders state: an in-memory projection of the log, rebuilt on every start.

Each handler applies one accepted command. It checks first and mutates after,
so a refused command (``NotFound``, ``CommandRejected``) changes nothing, and
the app rolls back its transaction, so it never reaches the log either. Values
are kept as the JSON the queries answer (decimals, dates and times as text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core import CommandRejected, Message, NotFound
from ..core.references import References
from .commands import (
    CreateOrder,
    DeleteOrder,
    FailSummaryGeneration,
    OrderFields,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateOrder,
)

SummaryStatus = Literal["pending", "ready", "failed"]


@dataclass
class Order:
    """One order, with its summary once the summary worker has one."""

    id: str
    customer: str
    total: str
    paid: bool
    due: str | None
    status: str
    shipped_at: str | None
    quantity: int
    weight: float
    note: str | None
    created_at: str
    updated_at: str
    summary: str | None = None
    summary_status: SummaryStatus = "pending"
    summary_error: str | None = None
    summary_request_id: str | None = None


class OrdersState:
    """Every order by id, in the order they were created."""

    def __init__(self, references: References) -> None:
        self.items: dict[str, Order] = {}
        self.references = references  # to refuse deleting an item others refer to; our ref fields must name items

    def get(self, id: str) -> Order | None:
        return self.items.get(id)

    def require(self, id: str) -> Order:
        """The order with this id, or NotFound (404 over HTTP)."""
        order = self.items.get(id)
        if order is None:
            raise NotFound(f"no order with id {id!r}")
        return order

    def referring(self, field: str, id: str) -> list[str]:
        """The ids of the orders whose ``field`` refers to ``id`` (to refuse deleting it)."""
        return [order.id for order in self.items.values() if getattr(order, field) == id]

    # --- state handlers, one per command ---

    def create(self, command: CreateOrder, message: Message) -> None:
        if command.id in self.items:
            raise CommandRejected(f"an order with id {command.id!r} already exists")
        self._require_references(command)
        values = command.model_dump(mode="json")
        self.items[command.id] = Order(
            id=command.id,
            customer=values["customer"],
            total=values["total"],
            paid=values["paid"],
            due=values["due"],
            status=values["status"],
            shipped_at=values["shipped_at"],
            quantity=values["quantity"],
            weight=values["weight"],
            note=values["note"],
            created_at=message.timestamp,
            updated_at=message.timestamp,
        )

    def update(self, command: UpdateOrder, message: Message) -> None:
        order = self.require(command.id)
        self._require_references(command)
        values = command.model_dump(mode="json")
        order.customer = values["customer"]
        order.total = values["total"]
        order.paid = values["paid"]
        order.due = values["due"]
        order.status = values["status"]
        order.shipped_at = values["shipped_at"]
        order.quantity = values["quantity"]
        order.weight = values["weight"]
        order.note = values["note"]
        order.updated_at = message.timestamp

    def delete(self, command: DeleteOrder, message: Message) -> None:
        self.require(command.id)
        self.references.require_unreferenced("orders", command.id)
        del self.items[command.id]

    def request_summary(self, command: RequestSummaryGeneration, message: Message) -> None:
        order = self.require(command.item_id)
        order.summary_request_id = command.request_id
        order.summary_status = "pending"
        order.summary_error = None

    def set_summary(self, command: SetGeneratedSummary, message: Message) -> None:
        order = self._awaiting(command.item_id, command.request_id)
        order.summary = command.summary
        order.summary_status = "ready"

    def fail_summary(self, command: FailSummaryGeneration, message: Message) -> None:
        order = self._awaiting(command.item_id, command.request_id)
        order.summary_error = command.error_message
        order.summary_status = "failed"

    def _awaiting(self, item_id: str, request_id: str) -> Order:
        """The order whose summary request ``request_id`` is still open: one outcome per request."""
        order = self.require(item_id)
        if order.summary_request_id != request_id or order.summary_status != "pending":
            raise CommandRejected(f"summary request {request_id!r} of order {item_id!r} is not pending")
        return order

    def _require_references(self, command: OrderFields) -> None:
        """Each ref field names an item that exists (MissingReference, a 422, otherwise)."""
        self.references.require("customers", command.customer, "customer")
