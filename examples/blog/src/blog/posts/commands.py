"""The posts commands: validated requests to change state, named ``"posts/verb"``.

The app validates a payload against its model before anything reaches the log,
so a command that is in the log was valid. People send create, update and
delete (pages or ``POST /commands``); the summary worker sends the other three.
"""

from __future__ import annotations

from os import urandom
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..core.text import visible_line, visible_text

MAX_LINE_LENGTH = 200
MAX_TEXT_LENGTH = 100_000
MAX_SUMMARY_LENGTH = 2_000
MAX_ERROR_LENGTH = 1_000

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


# A version-4 UUID's bits: new_id writes its 32 hex digits without making a uuid.UUID (a third of the time).
UUID4_CLEARED = ~(0xF000 << 64 | 0xC000 << 48)  # the version and variant bits
UUID4_SET = 0x4000 << 64 | 0x8000 << 48  # version 4, RFC 4122's variant


def new_id() -> str:
    """A fresh random id (what ``uuid4().hex`` gives). It is stored in the message, so a rebuild from
    the log gives every post the same id."""
    return f"{int.from_bytes(urandom(16), 'big') & UUID4_CLEARED | UUID4_SET:032x}"


class Command(BaseModel):
    """Base of the posts commands: unknown fields are refused rather than silently dropped."""

    model_config = ConfigDict(extra="forbid")


class PostFields(Command):
    """The fields people fill in, the same for create and update."""

    title: Line
    content: Text


class CreatePost(PostFields):
    """Create a post; the id is generated unless given."""

    id: Id = Field(default_factory=new_id)


class UpdatePost(PostFields):
    """Replace every field of an existing post."""

    id: Id


class DeletePost(Command):
    """Delete a post."""

    id: Id


class RequestSummaryGeneration(Command):
    """The summary worker will ask the summary API to summarize ``content`` (the post's content)."""

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
