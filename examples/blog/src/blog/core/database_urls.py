"""URLs the app prints: the ``--db`` value (which ones are refused, and how it is shown without its
password), and a server's URL given to ``inspect --url``, shown without credentials.

A PostgreSQL URL can carry a password in three places: after the user name
(``postgresql://app:secret@host/db``), as a query parameter (``?password=secret``,
which libpq and psycopg accept), and, when its ``@`` is not percent-encoded, spread
over what looks like the host (``app:s3c@ret@host``: libpq then tries to reach the
host ``ret@host``). Every line the app prints shows :func:`without_password` instead.

libpq's other form, keywords (``host=db1 dbname=app password=...``), is refused: it
would otherwise be read as the name of an SQLite file, created and printed.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
HIDDEN = "***"
SECRET_NAME = re.compile(r"passw|secret|token|api_?key", re.IGNORECASE)
QUERY_VALUE = re.compile(r"(?P<name>[^&=;]+)=(?P<value>[^&;]*)")
KEYWORD_SECRET = re.compile(r"(?P<name>\b[A-Za-z_]*(?:passw|secret|token)[A-Za-z_]*)\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S*)")
KEYWORD_CONNINFO = re.compile(r"^\s*[A-Za-z_]+\s*=\s*\S*(\s+[A-Za-z_]+\s*=|\s*$)")


def is_postgres(target: str) -> bool:
    return target.startswith(POSTGRES_SCHEMES)


def database_refusal(target: str) -> str | None:
    """Why ``target`` cannot be a ``--db`` value, in one line that never shows its password; or None."""
    if not is_postgres(target):
        if KEYWORD_CONNINFO.match(target):
            return (
                "--db looks like a PostgreSQL keyword string (host=... dbname=...), not an SQLite file"
                " — pass it as a URL: postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
            )
        return None
    if urlsplit(target).netloc.count("@") > 1:
        return (
            f"the --db URL {without_password(target)} has an '@' in its user name or password"
            " — write it as %40 there (postgresql://app:p%40ss@host/db)"
        )
    return None


def without_password(target: str) -> str:
    """The ``--db`` value to show people: every password in it replaced by ``***``.

    The one after the user name, a query parameter named like a secret (``password``,
    ``sslpassword``), and the whole user part when an unencoded ``@`` makes it ambiguous.
    """
    if "://" not in target:
        return KEYWORD_SECRET.sub(lambda found: f"{found['name']}={HIDDEN}", target)
    parts = urlsplit(target)
    user, at, host = parts.netloc.rpartition("@")
    if "@" in user:  # ambiguous: libpq splits at the first '@', urllib at the last
        user = HIDDEN
    elif ":" in user:
        user = f"{user.split(':', 1)[0]}:{HIDDEN}"
    return _rebuilt(target, f"{user}{at}{host}")


def without_credentials(url: str) -> str:
    """A server's URL to show people: its whole user part (``u:token@``, or a token as the user name)
    and the values of query parameters named like a secret (``?access_token=``) replaced by ``***``."""
    if "://" not in url:
        return url
    _, at, host = urlsplit(url).netloc.rpartition("@")
    return _rebuilt(url, f"{HIDDEN}@{host}" if at else host)


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a user part or a query parameter named like a secret."""
    return without_credentials(url) != url


def _rebuilt(url: str, netloc: str) -> str:
    """``url`` with ``netloc``, and the values of its secret-named query parameters hidden."""
    parts = urlsplit(url)
    query = QUERY_VALUE.sub(_hidden_if_secret, parts.query)
    shown = f"{parts.scheme}://{netloc}{parts.path}"  # urlunsplit drops an empty host (postgresql:///db)
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _hidden_if_secret(found: re.Match[str]) -> str:
    return f"{found['name']}={HIDDEN}" if SECRET_NAME.search(unquote(found["name"])) else found[0]
