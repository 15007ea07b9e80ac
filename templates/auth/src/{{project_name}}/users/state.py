"""The users state: accounts, sessions and password resets, as tables in the store.

Each handler applies one accepted command in the transaction that appends it; a
refused one (``CommandRejected``) rolls both back. The password hash is kept in the
user's row and never leaves this feature: no query or page returns it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ..core import CommandRejected, Message, NotFound
from ..core.projections import Projection
from ..core.store import Column, Store, Table, TableSpec
from . import commands as c

USERS = TableSpec("users", columns=(Column("email_key"), Column("role", counted=True), Column("created_at")))
SESSIONS = TableSpec("users-sessions", columns=(Column("digest"), Column("user_id"), Column("expires", "int")))
RESETS = TableSpec("users-resets", columns=(Column("digest"), Column("user_id"), Column("sent", "bool")))
API_TOKENS = TableSpec("users-api-tokens", columns=(Column("digest"), Column("user_id")))
MANY = 10_000  # a user's sessions or resets: far more than anyone has


def email_key(email: str) -> str:
    """Emails are unique compared case-insensitively: ``Ann@Example.com`` is ``ann@example.com``."""
    return email.strip().casefold()


def password_version(user: dict[str, Any]) -> int:
    """How many times the user's password has been set: 1 at registering, one more at each change or
    reset (a rehash keeps it). A sign-in, a new API token or a rehash carries the version its password
    was checked against, and its handler refuses it if the password changed since (rows made before
    the version was kept count as 1)."""
    return int(user.get("password_version", 1))


class StaleCheck(CommandRejected):
    """The password changed (or the account was disabled) after it was checked: nothing is written."""


class UsersState(Projection):
    tables = (USERS, SESSIONS, RESETS, API_TOKENS)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "users")
        self.users = self.table(USERS)
        self.sessions = self.table(SESSIONS)
        self.resets = self.table(RESETS)
        self.api_tokens = self.table(API_TOKENS)

    def command_handlers(self) -> list[tuple[str, type[BaseModel], Callable[[Any, Message], None]]]:
        """Each users command: its type, its model, and the handler here that applies it."""
        return [
            ("users/register", c.RegisterUser, self.register),
            ("users/change-password", c.ChangePassword, self.change_password),
            ("users/rehash-password", c.RehashPassword, self.rehash_password),
            ("users/change-role", c.ChangeRole, self.change_role),
            ("users/disable", c.DisableUser, self.disable),
            ("users/start-session", c.StartSession, self.start_session),
            ("users/extend-session", c.ExtendSession, self.extend_session),
            ("users/end-session", c.EndSession, self.end_session),
            ("users/end-sessions", c.EndSessions, self.end_sessions),
            ("users/create-api-token", c.CreateApiToken, self.create_api_token),
            ("users/revoke-api-token", c.RevokeApiToken, self.revoke_api_token),
            ("users/request-reset", c.RequestReset, self.request_reset),
            ("users/mark-reset-sent", c.MarkResetSent, self.mark_reset_sent),
            ("users/reset-password", c.ResetPassword, self.reset_password),
        ]

    # --- reading ---

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self.users.get(user_id)

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        return _first(self.users, email_key=email_key(email))

    def session_by_digest(self, digest: str) -> dict[str, Any] | None:
        return _first(self.sessions, digest=digest)

    def sessions_of(self, user_id: str) -> list[dict[str, Any]]:
        return self.sessions.find(where={"user_id": user_id}, limit=MANY)

    def reset_by_digest(self, digest: str) -> dict[str, Any] | None:
        return _first(self.resets, digest=digest)

    def api_token_by_digest(self, digest: str) -> dict[str, Any] | None:
        return _first(self.api_tokens, digest=digest)

    def api_tokens_of(self, user_id: str) -> list[dict[str, Any]]:
        return self.api_tokens.find(where={"user_id": user_id}, limit=MANY)

    def every_user(self) -> list[dict[str, Any]]:
        return self.users.find(sort="email_key", limit=MANY)

    def admins(self) -> int:
        return self.users.count({"role": "admin"})

    # --- handlers ---

    def register(self, command: c.RegisterUser, message: Message) -> None:
        if self.user_by_email(command.email) is not None:
            raise CommandRejected("that email already has an account")
        if self.users.get(command.id) is not None:
            raise CommandRejected(f"user {command.id!r} already exists")
        self.users.put(
            command.id,
            {
                "id": command.id,
                "email": command.email,
                "email_key": email_key(command.email),
                "password_hash": command.password_hash,
                "role": command.role,
                "disabled": False,
                "created_at": command.at,
                "last_login_at": None,
                "password_changed_at": command.at,
                "password_version": 1,
            },
        )

    def change_password(self, command: c.ChangePassword, message: Message) -> None:
        user = self._checked_against(command.user_id, command.password_version, enabled=False)
        self._set_password(user, command.password_hash, command.at)

    def rehash_password(self, command: c.RehashPassword, message: Message) -> None:
        user = self._checked_against(command.user_id, command.password_version, enabled=False)
        self.users.put(user["id"], {**user, "password_hash": command.password_hash})

    def change_role(self, command: c.ChangeRole, message: Message) -> None:
        user = self._existing(command.user_id)
        if user["role"] == "admin" and command.role != "admin" and self.admins() <= 1:
            raise CommandRejected("the last admin cannot stop being one")
        self.users.put(user["id"], {**user, "role": command.role})

    def disable(self, command: c.DisableUser, message: Message) -> None:
        user = self._existing(command.user_id)
        if user["role"] == "admin" and self.admins() <= 1:
            raise CommandRejected("the last admin cannot be disabled")
        self.users.put(user["id"], {**user, "disabled": True, "role": "member"})
        self._end_everything_of(user["id"])

    def start_session(self, command: c.StartSession, message: Message) -> None:
        user = self._checked_against(command.user_id, command.password_version)
        self.sessions.put(
            command.id,
            {
                "id": command.id,
                "digest": command.digest,
                "user_id": command.user_id,
                "ip": command.ip,
                "user_agent": command.user_agent,
                "created_at": command.at,
                "seen_at": command.at,
                "expires": command.expires,
            },
        )
        self.users.put(user["id"], {**user, "last_login_at": command.at})

    def extend_session(self, command: c.ExtendSession, message: Message) -> None:
        session = self.sessions.get(command.id)
        if session is not None:  # signed out meanwhile: nothing to extend
            self.sessions.put(command.id, {**session, "expires": command.expires, "seen_at": command.at})

    def end_session(self, command: c.EndSession, message: Message) -> None:
        self.sessions.delete(command.id)

    def end_sessions(self, command: c.EndSessions, message: Message) -> None:
        for session in self.sessions_of(command.user_id):
            self.sessions.delete(session["id"])

    def create_api_token(self, command: c.CreateApiToken, message: Message) -> None:
        user = self._checked_against(command.user_id, command.password_version)
        self.api_tokens.put(
            command.id,
            {
                "id": command.id,
                "user_id": user["id"],
                "name": command.name,
                "digest": command.digest,
                "created_at": command.at,
            },
        )

    def revoke_api_token(self, command: c.RevokeApiToken, message: Message) -> None:
        self.api_tokens.delete(command.id)

    def request_reset(self, command: c.RequestReset, message: Message) -> None:
        user = self._existing(command.user_id)
        self.resets.put(
            command.id,
            {
                "id": command.id,
                "digest": command.digest,
                "user_id": user["id"],
                "expires": command.expires,
                "requested_at": command.at,
                "sent": False,
            },
        )

    def mark_reset_sent(self, command: c.MarkResetSent, message: Message) -> None:
        reset = self.resets.get(command.id)
        if reset is not None:
            self.resets.put(command.id, {**reset, "sent": True})

    def reset_password(self, command: c.ResetPassword, message: Message) -> None:
        reset = self.resets.get(command.reset_id)
        if reset is None:  # used, or ended by a password change: single use
            raise NotFound("this reset link has been used or has ended")
        self._set_password(self._existing(reset["user_id"]), command.password_hash, command.at)

    def _existing(self, user_id: str) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        return user

    def _checked_against(self, user_id: str, version: int | None, *, enabled: bool = True) -> dict[str, Any]:
        """The user, if its password is still the one checked (``version``; None: nothing was checked)
        and, when ``enabled``, the account is not disabled: checked here, in the transaction that
        writes, so a password change or a ``disable`` that commits during the check always wins."""
        user = self._existing(user_id)
        if enabled and user["disabled"]:
            raise StaleCheck("this account is disabled")
        if version is not None and version != password_version(user):
            raise StaleCheck("the password changed after it was checked")
        return user

    def _set_password(self, user: dict[str, Any], password_hash: str, at: str) -> None:
        changed = {
            "password_hash": password_hash,
            "password_changed_at": at,
            "password_version": password_version(user) + 1,
        }
        self.users.put(user["id"], {**user, **changed})
        self._end_everything_of(user["id"])

    def _end_everything_of(self, user_id: str) -> None:
        """A password change or reset ends every session, API token and pending reset of the user:
        it is how an account is taken back, so a token an intruder made must end with it."""
        for session in self.sessions_of(user_id):
            self.sessions.delete(session["id"])
        for token in self.api_tokens_of(user_id):
            self.api_tokens.delete(token["id"])
        for reset in self.resets.find(where={"user_id": user_id}, limit=MANY):
            self.resets.delete(reset["id"])


def _first(table: Table, **where: Any) -> dict[str, Any] | None:
    found = table.find(where=where, limit=1)
    return found[0] if found else None
