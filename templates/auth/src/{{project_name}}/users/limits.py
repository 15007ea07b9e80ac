"""Sign-in attempts: at most 10 per 3 minutes per client address and per email, and a cap for everyone.

Every attempt counts, right or wrong (Rails 8's ``rate_limit to: 10, within: 3.minutes``).
Beyond that the sign-in answers 429 with ``Retry-After``. The counts are in each
server process's memory (core/ratelimit.py); the email is counted by its digest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..core.ratelimit import AttemptLimiter
from .state import email_key
from .tokens import digest

PER_CLIENT = 10
PER_EMAIL = 10
OVERALL = 300
WINDOW_SECONDS = 180.0


class SignInLimits:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_address = AttemptLimiter(per_client=PER_CLIENT, overall=OVERALL, window=WINDOW_SECONDS, clock=clock)
        self.by_email = AttemptLimiter(per_client=PER_EMAIL, overall=OVERALL, window=WINDOW_SECONDS, clock=clock)

    def attempt(self, address: str, email: str) -> int | None:
        """Count an attempt, or return the seconds to wait when it is one too many (then it is not counted)."""
        email_id = digest(email_key(email))
        waits = [wait for wait in (self.by_address.retry_after(address), self.by_email.retry_after(email_id)) if wait]
        if waits:
            return max(waits)
        self.by_address.failed(address)
        self.by_email.failed(email_id)
        return None
