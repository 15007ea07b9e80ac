"""The customers commands: validated requests to change state, named ``"customers/verb"``.

The app validates a payload against its model before anything reaches the log,
so a command that is in the log was valid. People send create, update and
delete (pages or ``POST /commands``); the summary worker sends the other three.
"""

from __future__ import annotations

from os import urandom
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..core.text import visible_line, visible_text, visible_url

MAX_LINE_LENGTH = 200
MAX_TEXT_LENGTH = 100_000
MAX_SUMMARY_LENGTH = 2_000
MAX_ERROR_LENGTH = 1_000
# A plain address (only a mail that arrives proves it): nothing a mailto: link reads as more (?cc=, &body=).
EMAIL_PATTERN = r"^[A-Za-z0-9_+'-]+(\.[A-Za-z0-9_+'-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
# No user name before the host (https://good.example@evil.example/ goes to evil.example), no escapes in it.
URL_PATTERN = r"^https?://[^\s/?#@%\\]+([/?#]\S*)?$"

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Line = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LINE_LENGTH),
    AfterValidator(visible_line),
]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_LENGTH),
    AfterValidator(visible_text),
]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254, pattern=EMAIL_PATTERN)]
Url = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2_000, pattern=URL_PATTERN), AfterValidator(visible_url)
]


# A version-4 UUID's bits: new_id writes its 32 hex digits without making a uuid.UUID (a third of the time).
UUID4_CLEARED = ~(0xF000 << 64 | 0xC000 << 48)  # the version and variant bits
UUID4_SET = 0x4000 << 64 | 0x8000 << 48  # version 4, RFC 4122's variant


def new_id() -> str:
    """A fresh random id (what ``uuid4().hex`` gives). It is stored in the message, so a rebuild from
    the log gives every customer the same id."""
    return f"{int.from_bytes(urandom(16), 'big') & UUID4_CLEARED | UUID4_SET:032x}"


class Command(BaseModel):
    """Base of the customers commands: unknown fields are refused rather than silently dropped."""

    model_config = ConfigDict(extra="forbid")


class CustomerFields(Command):
    """The fields people fill in, the same for create and update."""

    name: Line
    email: Email
    website: Url | None = None
    notes: Text | None = None


class CreateCustomer(CustomerFields):
    """Create a customer; the id is generated unless given."""

    id: Id = Field(default_factory=new_id)


class UpdateCustomer(CustomerFields):
    """Replace every field of an existing customer."""

    id: Id


class DeleteCustomer(Command):
    """Delete a customer."""

    id: Id


class RequestSummaryGeneration(Command):
    """The summary worker will ask the summary API to summarize ``content`` (the customer's notes)."""

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
