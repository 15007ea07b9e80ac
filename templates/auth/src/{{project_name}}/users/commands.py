"""The users commands. None is public: only this feature's pages, its CLI and its mailer send them.

They carry hashes and digests, never a password, a session id or a reset token, so
the log holds nothing that signs anyone in. Times are decided by the sender and
carried in the command, so a rebuild of the tables gives the same expiries.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PasswordHash = Annotated[str, StringConstraints(pattern=r"^\$argon2id\$", max_length=512)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
# A new account's address: plain ASCII (as the features' email fields), so no invisible or
# look-alike character makes a second account that reads as another's. (Email above stays as
# loose as it was: the log's older messages must still be read.)
PLAIN_EMAIL = r"^[A-Za-z0-9_+'-]+(\.[A-Za-z0-9_+'-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
NEW_EMAIL = TypeAdapter(Annotated[str, StringConstraints(strip_whitespace=True, max_length=254, pattern=PLAIN_EMAIL)])
Role = Literal["admin", "member"]
Timestamp = Annotated[str, StringConstraints(max_length=40)]  # ISO 8601, UTC
# The user's password version a password was checked against (state.py counts the changes). Optional
# because older messages lack it; the handlers refuse a command whose version is no longer the user's.
PasswordVersion = int | None


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterUser(Command):
    id: Id
    email: Email
    password_hash: PasswordHash
    role: Role = "member"
    at: Timestamp


class ChangePassword(Command):
    """A new password: every session and every pending reset of the user ends.

    From /account it carries the password version the current password was checked against,
    so a change racing a reset cannot put back a password the reset took away (None: the CLI's).
    """

    user_id: Id
    password_hash: PasswordHash
    at: Timestamp
    password_version: PasswordVersion = None


class RehashPassword(Command):
    """The same password, hashed with today's parameters (at sign-in): sessions stay."""

    user_id: Id
    password_hash: PasswordHash
    password_version: PasswordVersion = None  # refused if the password changed since it was checked


class ChangeRole(Command):
    user_id: Id
    role: Role


class DisableUser(Command):
    user_id: Id


class StartSession(Command):
    id: Id
    digest: Digest
    user_id: Id
    ip: Annotated[str, StringConstraints(max_length=64)]
    user_agent: Annotated[str, StringConstraints(max_length=300)]
    at: Timestamp
    expires: int  # epoch seconds
    password_version: PasswordVersion = None  # the one the password was checked against


class ExtendSession(Command):
    id: Id
    expires: int
    at: Timestamp


class EndSession(Command):
    id: Id


class EndSessions(Command):
    """Sign out everywhere."""

    user_id: Id


class CreateApiToken(Command):
    id: Id
    user_id: Id
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    digest: Digest  # of the token, shown once to its user and never stored
    at: Timestamp
    password_version: PasswordVersion = None  # the user's when the session asking for it was checked


class RevokeApiToken(Command):
    id: Id


class RequestReset(Command):
    id: Id
    user_id: Id
    digest: Digest  # of the token, which is derived from the id (tokens.py) and never stored
    expires: int
    at: Timestamp


class MarkResetSent(Command):
    id: Id


class ResetPassword(Command):
    reset_id: Id
    password_hash: PasswordHash
    at: Timestamp
