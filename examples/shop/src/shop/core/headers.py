"""Reading what clients send in headers and cookies: strict, bounded ASCII, or nothing at all.

Every value here is the client's to choose, before any authentication. ``"²".isdigit()``
is true and ``int()`` of 5,000 digits raises, so a loose parse turns one odd header into
a 500 and a traceback. These helpers answer None for anything malformed; the caller then
ignores the value or refuses the request with a 400, never a 500.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_DIGITS = 18  # any such number fits in a signed 64-bit integer
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")  # what secrets.token_urlsafe() makes


def whole_number(value: str | None, max_digits: int = MAX_DIGITS) -> int | None:
    """``value`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits (spaces around allowed)."""
    if value is None:
        return None
    value = value.strip()
    if not 0 < len(value) <= max_digits or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def url_safe_token(value: str | None, length: int) -> str | None:
    """``value`` if it is exactly ``length`` URL-safe base64 characters (a session id), else None."""
    if value is None or len(value) != length or not TOKEN_CHARACTERS.fullmatch(value):
        return None
    return value


def origin_host(origin: str) -> str | None:
    """The ``host[:port]`` of an ``Origin`` header (lowercase); None when it has none or is malformed."""
    if len(origin) > 2048 or not origin.isascii():
        return None
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # "http://[": an unclosed IPv6 bracket
        return None
    return netloc.lower() or None
