"""How often anyone may try a password, or ask for mail, before a 429 with ``Retry-After``.

Sign-in (:class:`SignInLimits`):

- per client address, 10 attempts per 3 minutes, right or wrong (Rails 8's
  ``rate_limit to: 10, within: 3.minutes``): one address cannot guess much;
- per email, 100 *failed* sign-ins per 3 minutes, from all addresses together: many
  addresses cannot guess one account quickly. Only failures count, and a reset
  mail is counted apart (:func:`reset_mails`), so asking for mail, or a few wrong
  guesses from elsewhere, never keeps the owner out: the right password from
  another address still signs in until someone makes 100 failures in 3 minutes,
  which takes at least 10 addresses (docs/guide.md, "Users and sign-in").

There is no count for all addresses together: it would let anyone with a few dozen
addresses keep everyone out. What bounds the work of many addresses is the
queue of password checks (hashing.py), which answers 503 when it is full.

Registering, the current-password check on ``/account`` and reset mails count every
attempt per address and per email (:func:`every_attempt`, :func:`reset_mails`). The
counts are in each server process's memory (core/ratelimit.py); an email is counted
by its digest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..core.ratelimit import AttemptLimiter
from .state import email_key
from .tokens import digest

WINDOW_SECONDS = 180.0
PER_ADDRESS = 10
FAILURES_PER_EMAIL = 100
UNCAPPED = 1 << 62  # AttemptLimiter's count over every client, which these limits do not use


def _limiter(per_client: int, window: float, clock: Callable[[], float]) -> AttemptLimiter:
    return AttemptLimiter(per_client=per_client, overall=UNCAPPED, window=window, clock=clock)


def _email_id(email: str) -> str:
    return digest(email_key(email))


def _longest(*waits: int | None) -> int | None:
    """The longest of the waits asked for, or None when no limit is reached."""
    return max((wait for wait in waits if wait), default=None)


class SignInLimits:
    """Attempts per address (every one) and failures per email; the caller reports each failure."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_address = _limiter(PER_ADDRESS, WINDOW_SECONDS, clock)
        self.failures_by_email = _limiter(FAILURES_PER_EMAIL, WINDOW_SECONDS, clock)

    def attempt(self, address: str, email: str) -> int | None:
        """Count an attempt, or return the seconds to wait when it is one too many (then it is not counted)."""
        wait = _longest(self.by_address.retry_after(address), self.failures_by_email.retry_after(_email_id(email)))
        if wait is None:
            self.by_address.failed(address)
        return wait

    def failed(self, email: str) -> None:
        """A sign-in :meth:`attempt` let through had a wrong password (or no such account)."""
        self.failures_by_email.failed(_email_id(email))


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
