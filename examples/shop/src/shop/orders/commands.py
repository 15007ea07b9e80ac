"""The orders commands: validated requests to change state, named ``"orders/verb"``.

The app validates a payload against its model before anything reaches the log,
so a command that is in the log was valid. People send create, update and
delete (pages or ``POST /commands``); the summary worker sends the other three.

Amounts are ``Decimal``: a JSON number or string in, a string out (in the log and
in every answer), never a binary float.

Times must carry an offset (``Z`` or ``+02:00``) and are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, date
from decimal import Decimal
from os import urandom
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ..core.text import visible_text

MAX_TEXT_LENGTH = 100_000
MAX_SUMMARY_LENGTH = 2_000
MAX_ERROR_LENGTH = 1_000

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_LENGTH),
    AfterValidator(visible_text),
]
Integer = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # what the databases store: 64 bits
Number = Annotated[float, Field(allow_inf_nan=False)]
Amount = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=30)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda moment: moment.astimezone(UTC))]
StatusChoice = Literal["draft", "paid", "shipped"]


# A version-4 UUID's bits: new_id writes its 32 hex digits without making a uuid.UUID (a third of the time).
UUID4_CLEARED = ~(0xF000 << 64 | 0xC000 << 48)  # the version and variant bits
UUID4_SET = 0x4000 << 64 | 0x8000 << 48  # version 4, RFC 4122's variant


def new_id() -> str:
    """A fresh random id (what ``uuid4().hex`` gives). It is stored in the message, so a rebuild from
    the log gives every order the same id."""
    return f"{int.from_bytes(urandom(16), 'big') & UUID4_CLEARED | UUID4_SET:032x}"


class Command(BaseModel):
    """Base of the orders commands: unknown fields are refused rather than silently dropped."""

    model_config = ConfigDict(extra="forbid")


class OrderFields(Command):
    """The fields people fill in, the same for create and update."""

    customer: Id
    total: Amount
    paid: bool = False
    due: date | None = None
    status: StatusChoice
    shipped_at: UtcDatetime | None = None
    quantity: Integer
    weight: Number
    note: Text | None = None


class CreateOrder(OrderFields):
    """Create an order; the id is generated unless given."""

    id: Id = Field(default_factory=new_id)


class UpdateOrder(OrderFields):
    """Replace every field of an existing order."""

    id: Id


class DeleteOrder(Command):
    """Delete an order."""

    id: Id


class RequestSummaryGeneration(Command):
    """The summary worker will ask the summary API to summarize ``content`` (the order's note)."""

    request_id: Id
    item_id: Id
    content: Text


class FailSummaryGeneration(Command):
    """The summary request failed for good; ``error_message`` says why."""

    request_id: Id
    item_id: Id
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ERROR_LENGTH)]


class SetGeneratedSummary(Command):
    """The summary API answered the request with ``summary``."""

    request_id: Id
    item_id: Id
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_SUMMARY_LENGTH)]
