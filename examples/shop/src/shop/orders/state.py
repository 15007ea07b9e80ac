"""The orders state: one row per order in the store's ``orders`` table.

Each handler applies one accepted command, in the transaction that appends it to
the log. It checks first and writes after: a refused command (``NotFound``,
``CommandRejected``) rolls the transaction back, so neither the log nor the table
changes. A order is kept as the JSON the queries answer (decimals, dates and times as text).

The table is rebuilt from the log only when this module (or the models of the
commands it handles) changes: ``python -m shop projections status`` tells.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypedDict

from ..core import CommandRejected, Message, NotFound
from ..core.projections import Projection
from ..core.references import References
from ..core.store import Column, Store, TableSpec
from .commands import (
    CreateOrder,
    DeleteOrder,
    FailSummaryGeneration,
    OrderFields,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateOrder,
)

SummaryStatus = Literal["pending", "ready", "failed", "none"]
MAX_REFERRING = 100  # ids named when refusing to delete an item others refer to

# The columns lists sort and filter on, each indexed; a filter's column keeps a count per value.
ORDERS = TableSpec(
    "orders",
    columns=(
        Column("customer", "text", counted=True),
        Column("total", "decimal"),
        Column("paid", "bool", counted=True),
        Column("due", "text"),
        Column("status", "text", counted=True),
        Column("shipped_at", "time"),
        Column("quantity", "int"),
        Column("weight", "real"),
        Column("created_at"),
        Column("updated_at"),
    ),
)


class Order(TypedDict):
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
    summary: str | None
    summary_status: SummaryStatus
    summary_error: str | None
    summary_request_id: str | None


class OrdersState(Projection):
    """Every order by id, in the ``orders`` table."""

    tables = (ORDERS,)

    def __init__(self, store: Store, references: References) -> None:
        super().__init__(store, "orders")
        self.items = self.table(ORDERS)
        self.references = references  # to refuse deleting an item others refer to; our ref fields must name items

    def get(self, id: str) -> Order | None:
        return self.items.get(id)  # type: ignore[return-value]

    def get_many(self, ids: Iterable[str]) -> dict[str, Order]:
        """The orders with these ids that exist, by id, in one query (for a worker's batch)."""
        return self.items.get_many(ids)  # type: ignore[return-value]

    def require(self, id: str) -> Order:
        """The order with this id, or NotFound (404 over HTTP)."""
        order = self.get(id)
        if order is None:
            raise NotFound(f"no order with id {id!r}")
        return order

    def referring(self, field: str, id: str) -> list[str]:
        """The ids of the orders whose ``field`` refers to ``id`` (to refuse deleting it)."""
        return [order["id"] for order in self.items.find({field: id}, limit=MAX_REFERRING)]

    # --- state handlers, one per command ---

    def create(self, command: CreateOrder, message: Message) -> None:
        # An id given is looked for; one the app generated (none given) is a fresh random one, not
        # read for (a read is a round trip on PostgreSQL, inside the lock every append holds).
        if "id" in command.model_fields_set and self.get(command.id) is not None:
            raise CommandRejected(f"an order with id {command.id!r} already exists")
        self._require_references(command)
        values = command.model_dump(mode="json")
        order: Order = {
            "id": command.id,
            "customer": values["customer"],
            "total": values["total"],
            "paid": values["paid"],
            "due": values["due"],
            "status": values["status"],
            "shipped_at": values["shipped_at"],
            "quantity": values["quantity"],
            "weight": values["weight"],
            "note": values["note"],
            "created_at": message.timestamp,
            "updated_at": message.timestamp,
            "summary": None,
            "summary_status": "pending" if command.note is not None else "none",  # "none": nothing to summarize
            "summary_error": None,
            "summary_request_id": None,
        }
        self.items.put(command.id, order)

    def update(self, command: UpdateOrder, message: Message) -> None:
        order = self.require(command.id)
        self._require_references(command)
        values = command.model_dump(mode="json")
        order["customer"] = values["customer"]
        order["total"] = values["total"]
        order["paid"] = values["paid"]
        order["due"] = values["due"]
        order["status"] = values["status"]
        order["shipped_at"] = values["shipped_at"]
        order["quantity"] = values["quantity"]
        order["weight"] = values["weight"]
        order["note"] = values["note"]
        order["updated_at"] = message.timestamp
        if command.note is None:  # nothing to summarize any more
            order.update(summary=None, summary_status="none", summary_error=None)
        elif order["summary_status"] == "none":  # the summary worker asks for one now
            order["summary_status"] = "pending"
        self.items.put(command.id, order)

    def delete(self, command: DeleteOrder, message: Message) -> None:
        self.require(command.id)
        self.references.require_unreferenced("orders", command.id)
        self.items.delete(command.id)

    def request_summary(self, command: RequestSummaryGeneration, message: Message) -> None:
        order = self.require(command.item_id)
        order["summary_request_id"] = command.request_id
        order["summary_status"] = "pending"
        order["summary_error"] = None
        self.items.put(order["id"], order)

    def set_summary(self, command: SetGeneratedSummary, message: Message) -> None:
        order = self._awaiting(command.item_id, command.request_id)
        order["summary"] = command.summary
        order["summary_status"] = "ready"
        self.items.put(order["id"], order)

    def fail_summary(self, command: FailSummaryGeneration, message: Message) -> None:
        order = self._awaiting(command.item_id, command.request_id)
        order["summary_error"] = command.error_message
        order["summary_status"] = "failed"
        self.items.put(order["id"], order)

    def _awaiting(self, item_id: str, request_id: str) -> Order:
        """The order whose summary request ``request_id`` is still open: one outcome per request."""
        order = self.require(item_id)
        if order["summary_request_id"] != request_id or order["summary_status"] != "pending":
            raise CommandRejected(f"summary request {request_id!r} of order {item_id!r} is not pending")
        return order

    def _require_references(self, command: OrderFields) -> None:
        """Each ref field names an item that exists (MissingReference, a 422, otherwise)."""
        self.references.require("customers", command.customer, "customer")
