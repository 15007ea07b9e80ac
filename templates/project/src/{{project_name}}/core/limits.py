"""Connection limits for ``serve``: no client holds a connection it does not use.

The read deadlines and the 431 for an oversized head live in the HTTP protocol classes
(protocols.py), for both of uvicorn's parsers; this module reads their settings and
uvicorn's connection limits from the environment.

Settings (environment): ``APP_MAX_CONNECTIONS`` (connections and requests at once per
process; more get a 503), ``APP_HEADER_TIMEOUT``, ``APP_BODY_TIMEOUT`` and
``APP_KEEP_ALIVE`` (seconds).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from .protocols import BODY_TIMEOUT, HEADER_TIMEOUT, MAX_HEAD_BYTES, protocol_class

MAX_CONNECTIONS = 1000
KEEP_ALIVE = 5
SPARE_FILES = 64  # descriptors beyond the connections: the database, logs, the listening socket


def server_options(environ: Mapping[str, str] = os.environ, *, http: str = "auto") -> dict[str, Any]:
    """uvicorn's settings for ``serve``: the protocol (``--http``) with read deadlines, and the connection limits."""
    max_connections = _number(environ, "APP_MAX_CONNECTIONS", int, MAX_CONNECTIONS)
    protocol = partial(
        protocol_class(http),
        header_timeout=_number(environ, "APP_HEADER_TIMEOUT", float, HEADER_TIMEOUT),
        body_timeout=_number(environ, "APP_BODY_TIMEOUT", float, BODY_TIMEOUT),
    )
    raise_open_files_limit(max_connections + SPARE_FILES)
    return {
        "http": protocol,  # uvicorn calls it as it would the protocol class
        "limit_concurrency": max_connections,
        "timeout_keep_alive": _number(environ, "APP_KEEP_ALIVE", int, KEEP_ALIVE),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


def raise_open_files_limit(wanted: int) -> None:
    """Let this process open ``wanted`` files if the system allows it (the soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _number(environ: Mapping[str, str], name: str, kind: Callable[[str], Any], default: Any) -> Any:
    raw = environ.get(name, "")
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, not {raw!r}")
    return value
