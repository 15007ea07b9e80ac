"""The outbox for reset links: a worker mails each requested reset once, through SMTP or to a dev mailbox.

The request is in the log (a ``users/request-reset`` with the token's digest only),
so a crash between the request and the mail loses nothing: the worker picks it up
from its position. The link's token is derived here from the reset id and
``APP_SECRET_KEY`` (tokens.py), never stored. With ``SMTP_URL``
(``smtp://user:password@host:587`` with STARTTLS, or ``smtps://`` for TLS, both
required and verified: smtp.py) the mail goes out; without it the mail waits on
``/dev/mailbox``, a page for an admin on this machine. ``APP_BASE_URL`` is the address the links start with:
with ``SMTP_URL`` it is required (a guessed one would mail live links to whatever answers there).
Without a usable key or base address resets are off: one line when the mailer starts, and
every reset request, for any email, is answered 503 (:func:`resets_off`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from ..core import App, CommandWorker, Context
from ..core.pages import APP_NAME
from .commands import MarkResetSent, RequestReset
from .smtp import MailRefused, send_by_smtp
from .state import UsersState
from .tokens import NoSecretKey, reset_token, secret_key

SMTP_VARIABLE = "SMTP_URL"
BASE_URL_VARIABLE = "APP_BASE_URL"
RESET_PATH = "/password-reset"

logger = logging.getLogger(__name__)


def resets_off(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why password resets cannot work with these settings, or None. The same for every email."""
    try:
        secret_key(environ)
    except NoSecretKey as exc:
        return str(exc)
    if environ.get(SMTP_VARIABLE) and not environ.get(BASE_URL_VARIABLE):
        return (
            f"password resets are off: {SMTP_VARIABLE} is set without {BASE_URL_VARIABLE}, the address"
            f" the mailed links start with — set {BASE_URL_VARIABLE}=https://your.host"
        )
    return None


def reset_link(reset_id: str, base_url: str = "") -> str:
    return f"{base_url}{RESET_PATH}?token={reset_token(secret_key(), reset_id)}"


class Mailbox:
    """The dev mailbox: the reset mails not sent by SMTP, shown on ``/dev/mailbox``."""

    def __init__(self, state: UsersState, environ: Mapping[str, str] = os.environ) -> None:
        self.state = state
        self.environ = environ

    def is_open(self) -> bool:
        return not self.environ.get(SMTP_VARIABLE)

    def mails(self) -> list[dict[str, Any]]:
        mails = []
        for reset in self.state.resets.find(where={"sent": True}, limit=100):
            user = self.state.user(reset["user_id"])
            if user is not None:
                link = reset_link(reset["id"])
                mails.append({"to": user["email"], "at": reset["requested_at"], "link": link})
        return mails


class ResetMailer(CommandWorker):
    """Sends each requested reset link once (at least once across a crash: the mail says it is single-use)."""

    def __init__(self, state: UsersState, environ: Mapping[str, str] = os.environ) -> None:
        super().__init__("users-mailer")
        self.state = state
        self.environ = environ
        self.on("users/request-reset", self.send_reset)

    async def start(self, app: App) -> None:
        problem = resets_off(self.environ)
        if problem is not None:  # once per start, in the process that sends the mail
            logger.warning("users-mailer: %s (every reset request gets a 503)", problem)
        await super().start(app)

    async def send_reset(self, command: RequestReset, ctx: Context) -> None:
        if ctx.replaying:
            return
        reset = self.state.resets.get(command.id)
        user = self.state.user(command.user_id)
        if reset is None or user is None:  # used or ended before its mail went out
            return
        smtp_url = self.environ.get(SMTP_VARIABLE)
        if smtp_url:
            base_url = self.environ.get(BASE_URL_VARIABLE, "").rstrip("/")
            if not base_url:  # requested before the setting went: said at start, and no link to a guessed host
                logger.error("users-mailer: reset mail %s not sent: %s is unset", command.id, BASE_URL_VARIABLE)
                return
            mail = reset_mail(user["email"], reset_link(command.id, base_url), self.environ)
            try:
                await asyncio.to_thread(send_by_smtp, smtp_url, mail)
            except MailRefused as exc:  # a setting to fix, not a moment's outage: one line, and no retry
                logger.error("users-mailer: reset mail for reset %s not sent: %s", command.id, exc)
                return
        ctx.dispatch(MarkResetSent(id=command.id))


def reset_mail(to: str, link: str, environ: Mapping[str, str]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = f"Reset your {APP_NAME} password"
    mail["From"] = environ.get("MAIL_FROM", f"{APP_NAME}@localhost")
    mail["To"] = to
    mail.set_content(
        f"Someone asked to reset the password of your {APP_NAME} account.\n\n"
        f"To choose a new one, open this link within 15 minutes (it works once):\n\n{link}\n\n"
        "If it was not you, ignore this mail: your password stays as it is.\n"
    )
    return mail
