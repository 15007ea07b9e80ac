"""The baseline server of the ``POST /commands`` benchmark, run in its own process.

``python -m bench.http_server PORT DB`` serves a bare Starlette endpoint that decodes the
JSON and inserts one row with raw ``sqlite3`` (WAL, ``synchronous=NORMAL``, the generated
app's table), under exactly the uvicorn settings and logging that a generated app's
``python -m APP serve`` uses: access log on, ``log_level="info"``, the same graceful
shutdown timeout. Ours needs no stand-in: the benchmark runs the generated app's own
``serve`` command (see ``bench/http_commands.py``).
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


if __name__ == "__main__":
    port, db = sys.argv[1:3]
    # What the generated app's `serve` does: the same logging set-up and uvicorn options.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(baseline(db), host="127.0.0.1", port=int(port), timeout_graceful_shutdown=5, log_level="info")
