"""The baseline server of the ``POST /commands`` benchmark, run in its own process.

``python -m bench.http_server PORT DB [fast|plain]`` serves a bare Starlette endpoint that
decodes the JSON and inserts one row with raw ``sqlite3`` (WAL, ``synchronous=NORMAL``, the
generated app's table), under exactly the uvicorn settings and logging that a generated
app's ``python -m APP serve`` uses: access log on, ``log_level="info"``, the same graceful
shutdown timeout, and the same server stack (``fast``: uvloop + httptools, serve's default;
``plain``: asyncio + h11, ``serve --http h11 --loop asyncio``). Ours needs no stand-in: the
benchmark runs the generated app's own ``serve`` command (see ``bench/http_commands.py``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

STACKS = {"fast": {"http": "httptools", "loop": "uvloop"}, "plain": {"http": "h11", "loop": "asyncio"}}


def baseline(db_path: str) -> Starlette:
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "timestamp TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL)"
    )

    async def post_command(request: Request) -> Response:
        envelope = json.loads(await request.body())
        row = (datetime.now(UTC).isoformat(timespec="microseconds"), envelope["type"], json.dumps(envelope["payload"]))
        db.execute("BEGIN IMMEDIATE")
        id = db.execute("INSERT INTO messages (timestamp, type, data) VALUES (?, ?, ?)", row).lastrowid
        db.execute("COMMIT")
        return JSONResponse({"id": id}, status_code=201)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/commands", post_command, methods=["POST"]), Route("/healthz", healthz)])


def run(app: ASGIApp, port: int, stack: str) -> None:
    """Serve ``app`` as the generated app's ``serve`` does: the same logging set-up, uvicorn options and stack."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = STACKS[stack]
    uvicorn.run(app, host="127.0.0.1", port=port, timeout_graceful_shutdown=5, log_level="info", **options)


if __name__ == "__main__":
    port, db, stack = [*sys.argv[1:4], "fast"][:3]
    run(baseline(db), int(port), stack)
