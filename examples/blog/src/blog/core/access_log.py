"""Keep secrets sent in URLs out of the access log, and the log's lines what they claim to be.

A token belongs in the ``Authorization`` header, and a URL carrying one is refused
(auth.py); but uvicorn writes every request's path and query to its access log
before the app has looked at it. This filter blanks the app's tokens wherever they
appear in a logged URL, however percent-encoded, drops a query with a parameter
named like a secret (``access_token``, ``api_key``, ...): ``/queries?[redacted]``, and
blanks any query value shaped like a token (40 or more URL-safe characters in a row,
whatever its name: ``?key=``, ``?auth=``): the app knows only digests of its users' tokens,
so it cannot look for them by value. Ids (32 hex characters) stay readable.

Whatever a client chose (its address as a trusted proxy reports it, the path, the query)
is escaped before it is written: a newline, a terminal escape, a quote or a space
would let it forge a second line, colour the terminal, or add a field that looks real.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import unquote_plus

ACCESS_LOGGER = "uvicorn.access"
SECRET_NAME = re.compile(r"token|secret|passw|api_?key", re.IGNORECASE)
DECODINGS = 3  # a value encoded twice or three times is still found
TOKEN_SHAPED = re.compile(r"[A-Za-z0-9_-]{40,}")  # ours are 43 (secrets.token_urlsafe(32)); ids are 32
# Control, format and separator characters (terminal escapes, newlines, bidi controls,
# spaces), and the quote and backslash that delimit an access line's fields.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
FIELD_DELIMITERS = frozenset('"\\')


def escape_for_log(text: str) -> str:
    """``text`` with each character that could forge or hide part of a log line written as ``\\xNN``."""
    if text.isascii() and text.isprintable() and " " not in text and '"' not in text and "\\" not in text:
        return text  # the usual case
    return "".join(_escaped(char) for char in text)


def _escaped(char: str) -> str:
    if char not in FIELD_DELIMITERS and unicodedata.category(char) not in UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class RedactSecretsInURLs(logging.Filter):
    """Drops the query from the URLs in access-log records when it carries a secret.

    Every request's line passes here: text with nothing encoded in it (no ``%`` or ``+``, the
    usual case) is not decoded again, which takes a third of the filter's time off each line.
    """

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(escape_for_log(self.scrub(arg)) if isinstance(arg, str) else arg for arg in record.args)
        return True

    def scrub(self, text: str) -> str:
        """``text`` (a path and query) with the app's tokens blanked, and its query dropped if it names a secret."""
        text = self._without_secrets(text)
        path, mark, query = text.partition("?")
        if mark and self._names_a_secret(query):
            return f"{path}?[redacted]"
        return f"{path}?{TOKEN_SHAPED.sub('[redacted]', query)}" if mark else text

    def _without_secrets(self, text: str) -> str:
        """The tokens blanked wherever they are, however percent-encoded (then shown decoded)."""
        decoded = text
        for _ in range(DECODINGS):
            if any(secret in decoded for secret in self.secrets):
                for secret in self.secrets:
                    decoded = decoded.replace(secret, "[redacted]")
                return decoded
            if not _encoded(decoded):
                break
            decoded, previous = unquote_plus(decoded), decoded
            if decoded == previous:
                break
        return text

    @staticmethod
    def _names_a_secret(query: str) -> bool:
        for _ in range(DECODINGS):
            if not _encoded(query):
                return any(SECRET_NAME.search(pair.partition("=")[0]) for pair in query.split("&"))
            if any(SECRET_NAME.search(unquote_plus(pair.partition("=")[0])) for pair in query.split("&")):
                return True
            decoded = unquote_plus(query)
            if decoded == query:
                return False
            query = decoded
        return True  # still encoded after three decodings: nobody writes URLs like that by accident


def _encoded(text: str) -> bool:
    """Whether ``unquote_plus`` could change ``text``."""
    return "%" in text or "+" in text


def redact_secrets_in_access_log(secrets: Sequence[str] = ()) -> None:
    """Install the filter on uvicorn's access log once; later calls update the secrets it looks for."""
    logger = logging.getLogger(ACCESS_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, RedactSecretsInURLs):
            existing.secrets = tuple(secret for secret in secrets if secret)
            return
    logger.addFilter(RedactSecretsInURLs(secrets))
