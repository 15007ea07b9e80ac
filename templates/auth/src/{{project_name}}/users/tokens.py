"""Random secrets handed to browsers (session ids, reset tokens), and the digests kept instead of them.

The store and the log hold only SHA-256 digests: a copy of the database signs no one
in. A reset token is not stored at all, even for the outbox that mails it: it is an
HMAC of the reset's id under ``APP_SECRET_KEY``, so the mailer derives it when it
sends the mail, and nobody without the key can.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

from ..core.auth import MIN_TOKEN_SYMBOLS
from ..core.headers import url_safe_token

KEY_VARIABLE = "APP_SECRET_KEY"
ID_BYTES = 32
ID_LENGTH = 43  # characters of secrets.token_urlsafe(ID_BYTES)
MIN_KEY_LENGTH = 32


class NoSecretKey(RuntimeError):
    """``APP_SECRET_KEY`` is unset or too short, so no reset token can be made."""


def new_secret() -> str:
    """A fresh random value for a cookie."""
    return secrets.token_urlsafe(ID_BYTES)


def digest(secret: str) -> str:
    """What is stored instead of ``secret``."""
    return hashlib.sha256(secret.encode()).hexdigest()


def well_formed(value: str | None) -> str | None:
    """``value`` if it looks like one of our secrets (bounded, URL-safe), else None."""
    return url_safe_token(value, ID_LENGTH)


def secret_key(environ: Mapping[str, str] = os.environ) -> bytes:
    """The server's key for reset tokens: ``APP_SECRET_KEY``, 32+ characters of 6+ different ones
    (``APP_API_TOKEN``'s rule: a key that can be guessed makes reset links for anyone)."""
    key = environ.get(KEY_VARIABLE, "")
    if len(key) < MIN_KEY_LENGTH or len(set(key)) < MIN_TOKEN_SYMBOLS:
        shape = f"{len(key)} characters, {len(set(key))} different" if key else "unset"
        raise NoSecretKey(
            f"password resets are off: {KEY_VARIABLE} is {'weak (' + shape + ')' if key else shape} — set it to"
            f" {MIN_KEY_LENGTH}+ random characters: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key.encode()


def reset_token(key: bytes, reset_id: str) -> str:
    """The token mailed for reset ``reset_id``: derived, never stored."""
    mac = hmac.new(key, f"password reset {reset_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()  # ID_LENGTH characters, like a session id
