"""Login sessions kept on the server, so signing out ends them everywhere the cookie was copied to.

The cookie holds a random id and nothing else. The database holds the id's SHA-256
(a copy of the database gives no one a working cookie), the fingerprint of the token
that was used to sign in, and when the session expires. A session ends when it
expires, when its browser signs out, when someone signs out everywhere, or when its
token is no longer in ``APP_API_TOKEN`` (a rotation ends the sessions of the old one).

The records are in the key/value table (``sessions/<hash>``) of the log's database,
so every process and machine serving the app sees a sign-out at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Collection

from .headers import url_safe_token
from .kv import KeyValueStore

# The scope key of a request's "is its session still on?" check, for responses that outlive
# the request's own check (event streams, events.py); auth.py sets it for session requests.
STILL_ALLOWED = "still_allowed"

SESSION_SECONDS = 7 * 24 * 3600
KEY_PREFIX = "sessions/"
ID_BYTES = 32
ID_LENGTH = 43  # characters of secrets.token_urlsafe(ID_BYTES)
PRUNE_EVERY_SECONDS = 3600.0


class Sessions:
    """Starts, checks and ends login sessions stored in ``kv``."""

    def __init__(
        self,
        kv: KeyValueStore,
        *,
        seconds: int = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.seconds = seconds
        self.clock = clock
        self._pruned_at = float("-inf")

    def start(self, token_fingerprint: str, live_fingerprints: Collection[str] = ()) -> str:
        """A new session for someone who signed in with the token of ``token_fingerprint``; returns the cookie value.

        Now and then the records of ended sessions are removed (expired, or made with a
        token that is not in ``live_fingerprints`` any more).
        """
        session_id = secrets.token_urlsafe(ID_BYTES)
        now = self.clock()
        self.kv.set(_key(session_id), {"token": token_fingerprint, "expires": int(now + self.seconds)})
        if now - self._pruned_at > PRUNE_EVERY_SECONDS:
            self._pruned_at = now
            self.prune({*live_fingerprints, token_fingerprint})
        return session_id

    def valid(self, cookie: str | None, live_fingerprints: Collection[str]) -> bool:
        """Whether ``cookie`` names a session that has not ended and whose token is still accepted."""
        session_id = url_safe_token(cookie, ID_LENGTH)
        if session_id is None:
            return False
        record = self.kv.get(_key(session_id))
        return _live(record, live_fingerprints, self.clock())

    def end(self, cookie: str | None) -> None:
        """End the session of ``cookie`` (signing out); an unknown or malformed one is ignored."""
        session_id = url_safe_token(cookie, ID_LENGTH)
        if session_id is not None:
            self.kv.delete(_key(session_id))

    def end_all(self) -> int:
        """End every session ("sign out everywhere"); returns how many there were."""
        keys = [key for key, _ in self.kv.items() if key.startswith(KEY_PREFIX)]
        for key in keys:
            self.kv.delete(key)
        return len(keys)

    def prune(self, live_fingerprints: Collection[str]) -> int:
        """Remove the records of sessions that have ended; returns how many."""
        now = self.clock()
        ended = [
            key
            for key, record in self.kv.items()
            if key.startswith(KEY_PREFIX) and not _live(record, live_fingerprints, now)
        ]
        for key in ended:
            self.kv.delete(key)
        return len(ended)


def _key(session_id: str) -> str:
    return KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def _live(record: object, live_fingerprints: Collection[str], now: float) -> bool:
    if not isinstance(record, dict):
        return False
    expires = record.get("expires")
    return isinstance(expires, int) and now < expires and record.get("token") in live_fingerprints
