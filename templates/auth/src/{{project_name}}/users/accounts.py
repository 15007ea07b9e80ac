"""What the pages and the CLI do with accounts: register, sign in, sessions, password changes and resets.

Every change is a command through ``app.dispatch``, so it is in the log (as hashes)
and in the tables at once, for every process serving the app.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..core import App, NotFound
from . import passwords
from .commands import (
    NEW_EMAIL,
    ChangePassword,
    ChangeRole,
    CreateApiToken,
    DisableUser,
    EndSession,
    EndSessions,
    ExtendSession,
    RegisterUser,
    RehashPassword,
    RequestReset,
    ResetPassword,
    RevokeApiToken,
    Role,
    StartSession,
)
from .state import StaleCheck, UsersState, password_version
from .tokens import digest, new_secret, reset_token, secret_key, well_formed

SESSION_SECONDS = 14 * 24 * 3600  # sliding: every use (at most once an hour) pushes the end back
EXTEND_AFTER_SECONDS = 3600
RESET_SECONDS = 15 * 60
USED_OR_ENDED = "This link has expired or has been used. Ask for a new one."


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie value for the browser (never stored) and the user."""

    cookie: str
    user: dict[str, Any]


@dataclass(frozen=True)
class LiveSession:
    """A session a request came with: its id (not the cookie), its user, and whether it was just extended."""

    id: str
    user: dict[str, Any]
    extended: bool


class Accounts:
    """Accounts over the users tables; ``clock`` is epoch seconds (tests move it)."""

    def __init__(self, app: App, state: UsersState, *, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.state = state
        self.clock = clock

    def register(self, email: str, password: str, *, role: Role = "member") -> dict[str, Any]:
        """A new account; ``CommandRejected`` if the email has one, ``ValueError`` if the password breaks a rule."""
        email = NEW_EMAIL.validate_python(email)  # a ValidationError for an address that is not plain ASCII
        user_id = str(uuid.uuid4())
        command = RegisterUser(
            id=user_id, email=email, password_hash=passwords.hash_password(password), role=role, at=self._now()
        )
        self.app.dispatch(command)
        return self._user(user_id)

    def sign_in(self, email: str, password: str, *, ip: str, user_agent: str) -> SignedIn | None:
        """A session for the user if the password is right and the account is enabled, else None.

        As slow for an unknown email as for a wrong password, and the same answer. The check takes
        a while (argon2): a password change, reset or ``disable`` that commits meanwhile wins, and
        this sign-in gets the same None as a wrong password (state.py refuses a session, or a rehash,
        for a password version that is no longer the user's).
        """
        user = self.state.user_by_email(email)
        ok, new_hash = passwords.check(password, user["password_hash"] if user else None)
        if user is None or not ok or user["disabled"]:
            return None
        version = password_version(user)
        cookie = new_secret()
        now = self.clock()
        try:
            if new_hash is not None:  # the hashing parameters changed since it was stored
                self.app.dispatch(RehashPassword(user_id=user["id"], password_hash=new_hash, password_version=version))
            self.app.dispatch(
                StartSession(
                    id=str(uuid.uuid4()),
                    digest=digest(cookie),
                    user_id=user["id"],
                    ip=ip[:64],
                    user_agent=user_agent[:300],
                    at=self._now(),
                    expires=int(now + SESSION_SECONDS),
                    password_version=version,
                )
            )
        except StaleCheck:
            return None
        return SignedIn(cookie, self._user(user["id"]))

    def session_user(self, cookie: str | None) -> LiveSession | None:
        """The live session of ``cookie`` and its user, extending the session now and then; None if there is none."""
        value = well_formed(cookie)
        if value is None:
            return None
        self.app.projections.require_ready()  # never a row of a half-built or stale table
        session = self.state.session_by_digest(digest(value))
        now = self.clock()
        if session is None or session["expires"] <= now:
            return None
        user = self.state.user(session["user_id"])
        if user is None or user["disabled"]:
            return None
        extended = now + SESSION_SECONDS - session["expires"] > EXTEND_AFTER_SECONDS
        if extended:
            self.app.dispatch(ExtendSession(id=session["id"], expires=int(now + SESSION_SECONDS), at=self._now()))
        return LiveSession(session["id"], public(user), extended)

    def sign_out(self, cookie: str | None) -> None:
        value = well_formed(cookie)
        session = self.state.session_by_digest(digest(value)) if value else None
        if session is not None:
            self.app.dispatch(EndSession(id=session["id"]))

    def sessions_of(self, user_id: str) -> list[dict[str, Any]]:
        """The user's live sessions, newest first (no digest: the page needs none)."""
        now = self.clock()
        return [
            {key: value for key, value in session.items() if key != "digest"}
            for session in self.state.sessions_of(user_id)
            if session["expires"] > now
        ]

    def revoke(self, user_id: str, session_id: str) -> bool:
        """End one of the user's own sessions; False if it is not theirs (or gone)."""
        if not _owns(self.state.sessions.get(session_id), user_id):
            return False
        self.app.dispatch(EndSession(id=session_id))
        return True

    def sign_out_everywhere(self, user_id: str) -> None:
        self.app.dispatch(EndSessions(user_id=user_id))

    def create_api_token(self, user_id: str, name: str, *, password_version: int | None = None) -> str:
        """A new API token for the user's programs; returned once, stored only as its digest.

        A page passes the password version of the user as the request's session found it: if the
        password changed since (which ends every token) or the account was disabled, ``StaleCheck``
        and no token.
        """
        token = new_secret()
        command = CreateApiToken(
            id=str(uuid.uuid4()),
            user_id=user_id,
            name=name,
            digest=digest(token),
            at=self._now(),
            password_version=password_version,
        )
        self.app.dispatch(command)
        return token

    def api_tokens_of(self, user_id: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in t.items() if k != "digest"} for t in self.state.api_tokens_of(user_id)]

    def revoke_api_token(self, user_id: str, token_id: str) -> bool:
        """Revoke one of the user's own tokens; False if it is not theirs (or gone)."""
        if not _owns(self.state.api_tokens.get(token_id), user_id):
            return False
        self.app.dispatch(RevokeApiToken(id=token_id))
        return True

    def token_user(self, bearer: str) -> dict[str, Any] | None:
        """The enabled user whose API token ``bearer`` is, or None."""
        value = well_formed(bearer)
        if value is None:
            return None
        self.app.projections.require_ready()
        token = self.state.api_token_by_digest(digest(value))
        user = self.state.user(token["user_id"]) if token else None
        return public(user) if user is not None and not user["disabled"] else None

    def change_password(self, user_id: str, current: str, new: str) -> str | None:
        """Change the password (every session ends); returns why not, or None when done."""
        user = self.state.user(user_id)
        ok, _ = passwords.check(current, user["password_hash"] if user else None)
        if user is None or not ok:
            return "The current password is not right."
        try:
            password_hash = passwords.hash_password(new)
        except ValueError as exc:
            return str(exc)
        change = ChangePassword(
            user_id=user_id, password_hash=password_hash, at=self._now(), password_version=password_version(user)
        )
        try:
            self.app.dispatch(change)
        except StaleCheck:  # a reset (or another change) committed while this one was checking
            return "The current password is not right."
        return None

    def set_password(self, user_id: str, new: str) -> None:
        """Set a password without the current one (an operator's CLI); every session ends."""
        self.app.dispatch(ChangePassword(user_id=user_id, password_hash=passwords.hash_password(new), at=self._now()))

    def change_role(self, user_id: str, role: Role) -> None:
        self.app.dispatch(ChangeRole(user_id=user_id, role=role))

    def disable(self, user_id: str) -> None:
        self.app.dispatch(DisableUser(user_id=user_id))

    def request_reset(self, email: str) -> None:
        """Record a reset for the account of ``email`` (the mailer sends the link); nothing for an unknown one.

        ``NoSecretKey`` first, for every email alike: a refusal only for existing accounts would tell them apart.
        """
        key = secret_key()
        user = self.state.user_by_email(email)
        if user is None or user["disabled"]:
            return
        reset_id = str(uuid.uuid4())
        token = reset_token(key, reset_id)
        self.app.dispatch(
            RequestReset(
                id=reset_id,
                user_id=user["id"],
                digest=digest(token),
                expires=int(self.clock() + RESET_SECONDS),
                at=self._now(),
            )
        )

    def valid_reset(self, token: str | None) -> dict[str, Any] | None:
        """The pending, unexpired reset of ``token``, or None."""
        value = well_formed(token)
        reset = self.state.reset_by_digest(digest(value)) if value else None
        if reset is None or reset["expires"] <= self.clock():
            return None
        return reset

    def reset_password(self, token: str | None, new: str) -> str | None:
        """Use the reset (once) to set ``new``; returns why not, or None when done."""
        reset = self.valid_reset(token)
        if reset is None:
            return USED_OR_ENDED
        try:
            password_hash = passwords.hash_password(new)
        except ValueError as exc:
            return str(exc)
        try:
            self.app.dispatch(ResetPassword(reset_id=reset["id"], password_hash=password_hash, at=self._now()))
        except NotFound:  # another use of the link committed while this one hashed: it lost, as a later use would
            return USED_OR_ENDED
        return None

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self.state.user(user_id)
        assert user is not None
        return public(user)

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")


def public(user: dict[str, Any]) -> dict[str, Any]:
    """A user as pages and requests see it: everything but the password hash."""
    return {key: value for key, value in user.items() if key != "password_hash"}


def _owns(row: dict[str, Any] | None, user_id: str) -> bool:
    """Whether a session or token row exists and is the user's: nobody ends another's."""
    return row is not None and row["user_id"] == user_id
