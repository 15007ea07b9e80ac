"""The customers state: one row per customer in the store's ``customers`` table.

Each handler applies one accepted command, in the transaction that appends it to
the log. It checks first and writes after: a refused command (``NotFound``,
``CommandRejected``) rolls the transaction back, so neither the log nor the table
changes. A customer is kept as the JSON the queries answer (text, numbers, booleans).

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
    CreateCustomer,
    DeleteCustomer,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateCustomer,
)

SummaryStatus = Literal["pending", "ready", "failed", "none"]

# The columns lists sort and filter on, each indexed; a filter's column keeps a count per value.
CUSTOMERS = TableSpec(
    "customers",
    columns=(
        Column("name", "folded"),
        Column("email", "folded"),
        Column("website", "folded"),
        Column("created_at"),
        Column("updated_at"),
    ),
)


class Customer(TypedDict):
    """One customer, with its summary once the summary worker has one."""

    id: str
    name: str
    email: str
    website: str | None
    notes: str | None
    created_at: str
    updated_at: str
    summary: str | None
    summary_status: SummaryStatus
    summary_error: str | None
    summary_request_id: str | None


class CustomersState(Projection):
    """Every customer by id, in the ``customers`` table."""

    tables = (CUSTOMERS,)

    def __init__(self, store: Store, references: References) -> None:
        super().__init__(store, "customers")
        self.items = self.table(CUSTOMERS)
        self.references = references  # to refuse deleting an item others refer to

    def get(self, id: str) -> Customer | None:
        return self.items.get(id)  # type: ignore[return-value]

    def get_many(self, ids: Iterable[str]) -> dict[str, Customer]:
        """The customers with these ids that exist, by id, in one query (for a worker's batch)."""
        return self.items.get_many(ids)  # type: ignore[return-value]

    def require(self, id: str) -> Customer:
        """The customer with this id, or NotFound (404 over HTTP)."""
        customer = self.get(id)
        if customer is None:
            raise NotFound(f"no customer with id {id!r}")
        return customer

    # --- state handlers, one per command ---

    def create(self, command: CreateCustomer, message: Message) -> None:
        # An id given is looked for; one the app generated (none given) is a fresh random one, not
        # read for (a read is a round trip on PostgreSQL, inside the lock every append holds).
        if "id" in command.model_fields_set and self.get(command.id) is not None:
            raise CommandRejected(f"a customer with id {command.id!r} already exists")
        values = command.model_dump(mode="json")
        customer: Customer = {
            "id": command.id,
            "name": values["name"],
            "email": values["email"],
            "website": values["website"],
            "notes": values["notes"],
            "created_at": message.timestamp,
            "updated_at": message.timestamp,
            "summary": None,
            "summary_status": "pending" if command.notes is not None else "none",  # "none": nothing to summarize
            "summary_error": None,
            "summary_request_id": None,
        }
        self.items.put(command.id, customer)

    def update(self, command: UpdateCustomer, message: Message) -> None:
        customer = self.require(command.id)
        values = command.model_dump(mode="json")
        customer["name"] = values["name"]
        customer["email"] = values["email"]
        customer["website"] = values["website"]
        customer["notes"] = values["notes"]
        customer["updated_at"] = message.timestamp
        if command.notes is None:  # nothing to summarize any more
            customer.update(summary=None, summary_status="none", summary_error=None)
        elif customer["summary_status"] == "none":  # the summary worker asks for one now
            customer["summary_status"] = "pending"
        self.items.put(command.id, customer)

    def delete(self, command: DeleteCustomer, message: Message) -> None:
        self.require(command.id)
        self.references.require_unreferenced("customers", command.id)
        self.items.delete(command.id)

    def request_summary(self, command: RequestSummaryGeneration, message: Message) -> None:
        customer = self.require(command.item_id)
        customer["summary_request_id"] = command.request_id
        customer["summary_status"] = "pending"
        customer["summary_error"] = None
        self.items.put(customer["id"], customer)

    def set_summary(self, command: SetGeneratedSummary, message: Message) -> None:
        customer = self._awaiting(command.item_id, command.request_id)
        customer["summary"] = command.summary
        customer["summary_status"] = "ready"
        self.items.put(customer["id"], customer)

    def fail_summary(self, command: FailSummaryGeneration, message: Message) -> None:
        customer = self._awaiting(command.item_id, command.request_id)
        customer["summary_error"] = command.error_message
        customer["summary_status"] = "failed"
        self.items.put(customer["id"], customer)

    def _awaiting(self, item_id: str, request_id: str) -> Customer:
        """The customer whose summary request ``request_id`` is still open: one outcome per request."""
        customer = self.require(item_id)
        if customer["summary_request_id"] != request_id or customer["summary_status"] != "pending":
            raise CommandRejected(f"summary request {request_id!r} of customer {item_id!r} is not pending")
        return customer
