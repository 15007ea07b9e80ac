"""A limit on guessing the token: failed sign-ins and wrong bearer tokens, per client and overall.

At most ``per_client`` failures a minute from one address, and ``overall`` from all of
them together (many addresses guessing at once). Beyond a client's own allowance every
attempt of that client, right or wrong, gets a 429 with ``Retry-After`` until the oldest
failure leaves the window; beyond the overall cap only wrong ones do, so a flood of
guesses never locks out the people who hold the token.
Rails 8's ``rate_limit to: 10, within: 3.minutes`` is the model. The counts live in the
memory of each server process: with ``serve --processes N`` a client gets N times the
allowance, which still leaves guessing a long random token hopeless.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from starlette.types import Scope

PER_CLIENT = 10
OVERALL = 100
WINDOW_SECONDS = 60.0


class AttemptLimiter:
    """Sliding-window counts of failed attempts; memory stays bounded because refused attempts are not counted."""

    def __init__(
        self,
        *,
        per_client: int = PER_CLIENT,
        overall: int = OVERALL,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def token_wait(self, client: str, *, right: bool) -> int | None:
        """Seconds ``client`` must wait before a token it sent is judged, or None: its own limit
        first; the cap on all clients together slows wrong tokens only (see :meth:`retry_after`)."""
        wait = self.retry_after(client, overall=False)
        if wait is None and not right:
            wait = self.retry_after(client)
        return wait

    def retry_after(self, client: str, *, overall: bool = True) -> int | None:
        """Seconds ``client`` must wait before its next attempt, or None if it may try now.

        ``overall=False`` leaves out the cap on all clients together: a right token is
        checked against the client's own allowance only, so many addresses guessing
        wrong at once cannot lock everyone else out.
        """
        now = self.clock()
        self._forget_before(now - self.window)
        waits = []
        if overall and len(self._all) >= self.overall:
            waits.append(self._all[0] + self.window - now)
        mine = self._failures.get(client)
        if mine is not None and len(mine) >= self.per_client:
            waits.append(mine[0] + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, client: str) -> None:
        """Count a failed attempt by ``client`` (call only for attempts :meth:`retry_after` let through)."""
        now = self.clock()
        self._all.append(now)
        self._failures.setdefault(client, deque()).append(now)

    def _forget_before(self, cutoff: float) -> None:
        while self._all and self._all[0] <= cutoff:
            self._all.popleft()
        for client in [client for client, times in self._failures.items() if times[-1] <= cutoff]:
            del self._failures[client]
        for times in self._failures.values():
            while times[0] <= cutoff:
                times.popleft()


def client_address(scope: Scope) -> str:
    """The address a request came from (a proxy's ``X-Forwarded-For`` counts only from ``APP_TRUSTED_PROXIES``)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
