"""A client that leaves mid-request is worth one line in the log, not a traceback.

When a client hangs up before it has sent the whole body, reading it raises
Starlette's ``ClientDisconnect``. Left alone, that becomes a 40-line traceback per
request, which anyone can repeat to flood the server's log. Nobody is there to read
an answer, so none is sent.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .access_log import escape_for_log

logger = logging.getLogger(__name__)


class QuietDisconnects:
    """ASGI middleware: logs a client's early hang-up at INFO, in one line, and ends the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "a client"
            path = escape_for_log(scope["path"])  # decoded from the URL: it may hold a newline
            logger.info("%s left before sending the whole request (%s %s)", escape_for_log(who), scope["method"], path)
