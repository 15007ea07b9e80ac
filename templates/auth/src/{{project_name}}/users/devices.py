"""Device cookies: how sign-in tells a browser that has signed in to an account before from everyone else.

OWASP's answer to lockouts ("Slow Down Online Guessing Attacks with Device Cookies"):
after a right password the browser gets a long-lived cookie bound to that email. Sign-in
attempts that come with one are limited per cookie, not per email, so an attacker who
spends an email's allowance (limits.py) does not keep its owner out.

A cookie holds up to :data:`MAX_DEVICES` entries ``nonce.mac``, one per email signed in
from this browser, newest first: the nonce is random and the mac an HMAC of it and the
email under ``APP_SECRET_KEY``. It names no email and holds no secret, and nothing is
stored: only the key makes one, and only for the email it was made for. Without a usable
``APP_SECRET_KEY`` the key is a random one of this process (its cookies then count as
none after a restart or in another process: the owner is treated as a new browser).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

from ..core.pages import APP_NAME
from .state import email_key
from .tokens import NoSecretKey, secret_key

DEVICE_COOKIE = f"{APP_NAME}_device"
DEVICE_SECONDS = 365 * 24 * 3600
MAX_DEVICES = 5  # accounts remembered per browser
NONCE_BYTES = 16
MAX_COOKIE_LENGTH = MAX_DEVICES * 80


class DeviceCookies:
    """Makes and checks device cookies."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        try:
            self._key = secret_key(environ)
        except NoSecretKey:
            self._key = secrets.token_bytes(32)

    def device(self, cookie: str | None, email: str) -> str | None:
        """The id of the entry of ``cookie`` made for ``email`` (the limits count its failures), or None."""
        for nonce, mac in _entries(cookie):
            if hmac.compare_digest(mac, self._mac(nonce, email)):
                return nonce
        return None

    def signed_in(self, cookie: str | None, email: str) -> str:
        """The cookie to send after a right password for ``email``: a fresh entry for it first, its old
        one dropped (a new count of failures), then the others, at most :data:`MAX_DEVICES` in all."""
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        others = [f"{n}.{m}" for n, m in _entries(cookie) if not hmac.compare_digest(m, self._mac(n, email))]
        return ":".join([f"{nonce}.{self._mac(nonce, email)}", *others][:MAX_DEVICES])

    def _mac(self, nonce: str, email: str) -> str:
        message = f"sign-in device {nonce} {email_key(email)}".encode()
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _entries(cookie: str | None) -> list[tuple[str, str]]:
    """The ``nonce.mac`` pairs of a cookie, ignoring anything malformed (bounded: a browser sends what it likes)."""
    if not cookie or len(cookie) > MAX_COOKIE_LENGTH or not cookie.isascii():
        return []
    pairs = [entry.split(".") for entry in cookie.split(":")[:MAX_DEVICES]]
    return [(pair[0], pair[1]) for pair in pairs if len(pair) == 2 and all(pair) and len(pair[0]) < 40]
