"""The customers state: an in-memory projection of the log, rebuilt on every start.

Each handler applies one accepted command. It checks first and mutates after,
so a refused command (``NotFound``, ``CommandRejected``) changes nothing, and
the app rolls back its transaction, so it never reaches the log either. Values
are kept as the JSON the queries answer (text, numbers, booleans).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core import CommandRejected, Message, NotFound
from ..core.references import References
from .commands import (
    CreateCustomer,
    DeleteCustomer,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateCustomer,
)

SummaryStatus = Literal["pending", "ready", "failed"]


@dataclass
class Customer:
    """One customer, with its summary once the summary worker has one."""

    id: str
    name: str
    email: str
    website: str | None
    notes: str | None
    created_at: str
    updated_at: str
    summary: str | None = None
    summary_status: SummaryStatus = "pending"
    summary_error: str | None = None
    summary_request_id: str | None = None


class CustomersState:
    """Every customer by id, in the order they were created."""

    def __init__(self, references: References) -> None:
        self.items: dict[str, Customer] = {}
        self.references = references  # to refuse deleting an item others refer to

    def get(self, id: str) -> Customer | None:
        return self.items.get(id)

    def require(self, id: str) -> Customer:
        """The customer with this id, or NotFound (404 over HTTP)."""
        customer = self.items.get(id)
        if customer is None:
            raise NotFound(f"no customer with id {id!r}")
        return customer

    # --- state handlers, one per command ---

    def create(self, command: CreateCustomer, message: Message) -> None:
        if command.id in self.items:
            raise CommandRejected(f"a customer with id {command.id!r} already exists")
        values = command.model_dump(mode="json")
        self.items[command.id] = Customer(
            id=command.id,
            name=values["name"],
            email=values["email"],
            website=values["website"],
            notes=values["notes"],
            created_at=message.timestamp,
            updated_at=message.timestamp,
        )

    def update(self, command: UpdateCustomer, message: Message) -> None:
        customer = self.require(command.id)
        values = command.model_dump(mode="json")
        customer.name = values["name"]
        customer.email = values["email"]
        customer.website = values["website"]
        customer.notes = values["notes"]
        customer.updated_at = message.timestamp

    def delete(self, command: DeleteCustomer, message: Message) -> None:
        self.require(command.id)
        self.references.require_unreferenced("customers", command.id)
        del self.items[command.id]

    def request_summary(self, command: RequestSummaryGeneration, message: Message) -> None:
        customer = self.require(command.item_id)
        customer.summary_request_id = command.request_id
        customer.summary_status = "pending"
        customer.summary_error = None

    def set_summary(self, command: SetGeneratedSummary, message: Message) -> None:
        customer = self._awaiting(command.item_id, command.request_id)
        customer.summary = command.summary
        customer.summary_status = "ready"

    def fail_summary(self, command: FailSummaryGeneration, message: Message) -> None:
        customer = self._awaiting(command.item_id, command.request_id)
        customer.summary_error = command.error_message
        customer.summary_status = "failed"

    def _awaiting(self, item_id: str, request_id: str) -> Customer:
        """The customer whose summary request ``request_id`` is still open: one outcome per request."""
        customer = self.require(item_id)
        if customer.summary_request_id != request_id or customer.summary_status != "pending":
            raise CommandRejected(f"summary request {request_id!r} of customer {item_id!r} is not pending")
        return customer
