"""URLs the app prints: the ``--db`` value (which ones are refused, and how it is shown without its
password), and a server's URL given to ``inspect --url`` (which ones are refused, and how it is
shown: its scheme, host and port alone).

A PostgreSQL URL can carry a password in three places: after the user name
(``postgresql://app:secret@host/db``), as a query parameter (``?password=secret``,
which libpq and psycopg accept), and, when its ``@`` is not percent-encoded, spread
over what looks like the host (``app:s3c@ret@host``: libpq then tries to reach the
host ``ret@host``). Every line the app prints shows :func:`without_password` instead.

libpq's other form, keywords (``host=db1 dbname=app password=...``), is refused: it
would otherwise be read as the name of an SQLite file, created and printed. So is a URL
whose password has an unencoded '/', '?', '#' or '%': urllib would read the rest of the
password as the path, query or fragment (and print it), libpq would read it otherwise or fail.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

# --db when none is given: an SQLite file in the app's folder. The command line takes it from here, not
# from main.py (whose DEFAULT_DB, build_app's default, must be the same: test_app checks), so that
# `--help` and the tools that need no app do not import every feature first.
DEFAULT_DB = "app.db"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
HIDDEN = "***"
SECRET_NAME = re.compile(r"passw|secret|token|api_?key", re.IGNORECASE)
QUERY_VALUE = re.compile(r"(?P<name>[^&=;]+)=(?P<value>[^&;]*)")
KEYWORD_SECRET = re.compile(r"(?P<name>\b[A-Za-z_]*(?:passw|secret|token)[A-Za-z_]*)\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S*)")
BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
HOST = re.compile(r"[A-Za-z0-9.-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # a name or address; IPv6 in brackets
SERVER_PATH = re.compile(r"[A-Za-z0-9._~/-]*")
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
    try:
        parts = urlsplit(target)
    except ValueError:  # brackets that hold no IPv6 address
        return "the --db URL cannot be read — check its host (an IPv6 address goes in [brackets])"
    if parts.netloc.count("@") > 1:
        return (
            f"the --db URL {without_password(target)} has an '@' in its user name or password"
            " — write it as %40 there (postgresql://app:p%40ss@host/db)"
        )
    # Past here the URL is not shown at all: where its password ends is what is in doubt.
    if BAD_PERCENT.search(target):
        return "the --db URL has a '%' that is not followed by two hex digits — percent-encode a '%' as %25"
    if "#" in target or "@" in parts.path or _libpq_userinfo(target) != parts.netloc.rpartition("@")[0]:
        return (
            "the --db URL has a '/', '?', '#' or '@' in its user name, password or database name"
            " — percent-encode them there: / as %2F, ? as %3F, # as %23, @ as %40"
        )
    return None


def _libpq_userinfo(target: str) -> str:
    """The user part as libpq reads it: up to the first '@', if no '/' comes before it (urllib also
    stops at '?' and '#': a password with one of those is read differently by the two)."""
    authority = target.split("://", 1)[1]
    user, at, _ = authority.partition("@")
    return user if at and "/" not in user else ""


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


def server_url_refusal(url: str) -> str | None:
    """Why ``url`` cannot be a server's address for ``inspect --url``, in one line showing no more
    of it than :func:`server_address`; or None.

    Only ``http(s)://HOST[:PORT][/PATH]`` is taken: a user part, a query, a fragment or
    ``;parameters`` is what a token would ride in, and the server reads none of them.
    """
    shown = server_address(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # brackets that hold no IPv6 address
        return f"--url {shown} is not a server's address — pass http://HOST:PORT"
    try:
        port_ok = parts.port is not None or not parts.netloc.endswith(":")
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not HOST.fullmatch(parts.hostname or "") or not port_ok:
        return f"--url {shown} is not a server's address — pass http://HOST:PORT"
    if "@" in parts.netloc or "?" in url or "#" in url or not SERVER_PATH.fullmatch(parts.path):
        return (
            f"--url {shown} carries more than the server's address (a user, password, token, query,"
            " fragment or ;parameters), which the server never reads — pass http://HOST:PORT alone,"
            " and a token in APP_API_TOKEN"
        )
    return None


def server_address(url: str) -> str:
    """``scheme://host:port`` of a server's URL, to show people: whatever else it has (a user part,
    a path, a query, a fragment, a port that is no number) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{HIDDEN}://{HIDDEN}"
    host = parts.hostname or ""
    host = HIDDEN if not HOST.fullmatch(host) else f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = f":{HIDDEN}"
    user = f"{HIDDEN}@" if "@" in parts.netloc else ""
    rest = f"/{HIDDEN}" if url.rstrip("/") != f"{parts.scheme}://{parts.netloc}" else ""
    scheme = parts.scheme if parts.scheme in ("http", "https") else HIDDEN
    return f"{scheme}://{user}{host}{port}{rest}"


def _rebuilt(url: str, netloc: str) -> str:
    """``url`` with ``netloc``, and the values of its secret-named query parameters hidden."""
    parts = urlsplit(url)
    query = QUERY_VALUE.sub(_hidden_if_secret, parts.query)
    shown = f"{parts.scheme}://{netloc}{parts.path}"  # urlunsplit drops an empty host (postgresql:///db)
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _hidden_if_secret(found: re.Match[str]) -> str:
    return f"{found['name']}={HIDDEN}" if SECRET_NAME.search(unquote(found["name"])) else found[0]
