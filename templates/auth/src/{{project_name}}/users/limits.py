"""How often anyone may try a password, or ask for mail, before a 429 with ``Retry-After``.

Sign-in (:class:`SignInLimits`): at most 10 attempts per 3 minutes per client address and
per email, plus a global cap, without letting an attacker lock an owner out of a browser
they signed in with before (OWASP's device cookies, devices.py):

- every attempt counts per client address: 10 per 3 minutes (Rails 8's
  ``rate_limit to: 10, within: 3.minutes``), whoever sends it;
- an attempt *without* a device cookie for that email also counts per email (10 per
  3 minutes, from all addresses together) and against a cap on all such attempts of
  this process (``APP_SIGNIN_GLOBAL_CAP``, 300 per 3 minutes): many addresses cannot
  guess one account, nor many accounts, quickly;
- an attempt *with* a device cookie for that email (the browser signed in to it
  before) skips those two: it is limited by its address and by the cookie's own
  failures, 10 per 3 minutes, after which the cookie counts as none for the rest of
  the window. So an attacker who spends an email's allowance, or the global one,
  keeps out only browsers that never signed in to it; its owner still signs in.

The answer and the time are the same whether the account exists: the counts look at
the address, the email's digest and the cookie, never at the account. A reset mail is
counted apart (:func:`reset_mails`), so asking for mail never keeps the owner out.
What bounds the work of many addresses at once is also the queue of password checks
(hashing.py), which answers 503 when it is full.

Registering, the current-password check on ``/account`` and reset mails count every
attempt per address and per email (:func:`every_attempt`, :func:`reset_mails`). The
counts are in each server process's memory (core/ratelimit.py); an email is counted
by its digest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from ..core.ratelimit import AttemptLimiter
from .state import email_key
from .tokens import digest

WINDOW_SECONDS = 180.0
PER_ADDRESS = 10
PER_EMAIL = 10  # attempts without a device cookie for the email
FAILURES_PER_DEVICE = 10
GLOBAL_CAP_VARIABLE = "APP_SIGNIN_GLOBAL_CAP"
GLOBAL_CAP = 300  # attempts without a device cookie, all addresses and emails together
EVERYONE = "*"
UNCAPPED = 1 << 62  # AttemptLimiter's count over every client, which these limits do not use


def _limiter(per_client: int, window: float, clock: Callable[[], float]) -> AttemptLimiter:
    return AttemptLimiter(per_client=per_client, overall=UNCAPPED, window=window, clock=clock)


def _email_id(email: str) -> str:
    return digest(email_key(email))


def _longest(*waits: int | None) -> int | None:
    """The longest of the waits asked for, or None when no limit is reached."""
    return max((wait for wait in waits if wait), default=None)


def global_cap(environ: Mapping[str, str] = os.environ) -> int:
    """``APP_SIGNIN_GLOBAL_CAP``: sign-in attempts without a device cookie per 3 minutes, per process."""
    raw = environ.get(GLOBAL_CAP_VARIABLE, "").strip()
    if not raw:
        return GLOBAL_CAP
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{GLOBAL_CAP_VARIABLE} must be a whole number of attempts, 1 or more: {raw[:20]!r}")
    return int(raw)


class SignInLimits:
    """Every attempt per address; without a device cookie also per email and overall; with one, its failures."""

    def __init__(self, *, cap: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_address = _limiter(PER_ADDRESS, WINDOW_SECONDS, clock)
        self.by_email = _limiter(PER_EMAIL, WINDOW_SECONDS, clock)
        self.everyone = _limiter(global_cap() if cap is None else cap, WINDOW_SECONDS, clock)
        self.failures_by_device = _limiter(FAILURES_PER_DEVICE, WINDOW_SECONDS, clock)

    def attempt(self, address: str, email: str, device: str | None = None) -> int | None:
        """Count an attempt, or return the seconds to wait when it is one too many (then it is not counted).

        ``device`` is the id of the request's device cookie for ``email`` (devices.py), if it has one.
        """
        if self.trusts(device):
            wait = self.by_address.retry_after(address)
            if wait is None:
                self.by_address.failed(address)
            return wait
        email_id = _email_id(email)
        wait = _longest(
            self.by_address.retry_after(address),
            self.by_email.retry_after(email_id),
            self.everyone.retry_after(EVERYONE),
        )
        if wait is None:
            self.by_address.failed(address)
            self.by_email.failed(email_id)
            self.everyone.failed(EVERYONE)
        return wait

    def failed(self, device: str | None) -> None:
        """A sign-in :meth:`attempt` let through with ``device`` had a wrong password (or no such account).

        Only a trusted device cookie's failures are counted here: every other attempt was counted whole.
        """
        if device is not None and self.trusts(device):
            self.failures_by_device.failed(device)

    def trusts(self, device: str | None) -> bool:
        """Whether a device cookie is there and has not had its failures in this window."""
        return device is not None and self.failures_by_device.retry_after(device) is None


class EveryAttempt:
    """Every attempt counts, per address and per email, right or wrong."""

    def __init__(self, by_address: AttemptLimiter, by_email: AttemptLimiter) -> None:
        self.by_address = by_address
        self.by_email = by_email

    def attempt(self, address: str, email: str) -> int | None:
        """Count an attempt, or return the seconds to wait when it is one too many (then it is not counted)."""
        email_id = _email_id(email)
        wait = _longest(self.by_address.retry_after(address), self.by_email.retry_after(email_id))
        if wait is None:
            self.by_address.failed(address)
            self.by_email.failed(email_id)
        return wait


def every_attempt(*, clock: Callable[[], float] = time.monotonic) -> EveryAttempt:
    """Registering, and the current password on ``/account``: 10 per address and 10 per email in 3 minutes."""
    return EveryAttempt(_limiter(PER_ADDRESS, WINDOW_SECONDS, clock), _limiter(PER_ADDRESS, WINDOW_SECONDS, clock))


def reset_mails(*, clock: Callable[[], float] = time.monotonic) -> EveryAttempt:
    """Reset requests: 10 per address and 5 per email in 15 minutes (a link's life).

    Counted apart from sign-ins, so a flood of requests limits the mails, not the owner's sign-in.
    """
    window = 15 * 60
    return EveryAttempt(_limiter(PER_ADDRESS, window, clock), _limiter(5, window, clock))
