"""Whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` to believe: nobody's, unless you say.

uvicorn believes those headers from 127.0.0.1 by default. On a server reached directly,
every local client is 127.0.0.1, so any of them could claim any address: a new one per
wrong token (escaping the per-address limit) or one that forges a field of the access log.
``serve`` therefore ignores them, and the client's address is the socket's. Behind a
reverse proxy, name it in ``APP_TRUSTED_PROXIES`` (addresses or networks, separated by
commas; ``*`` trusts everyone, only for a proxy that is the sole way in): then the address
the proxy reports counts (docs/deploying.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

TRUSTED_PROXIES_VARIABLE = "APP_TRUSTED_PROXIES"


def proxy_options(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """uvicorn's ``proxy_headers`` settings: off, or on for the proxies in ``APP_TRUSTED_PROXIES``."""
    trusted = ",".join(part.strip() for part in environ.get(TRUSTED_PROXIES_VARIABLE, "").split(",") if part.strip())
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}
