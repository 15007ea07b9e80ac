"""The two servers the ``POST /commands`` benchmark loads, each run in its own process.

``python -m bench.http_server ours|baseline PORT DB APP_SRC`` serves on 127.0.0.1:PORT
with uvicorn (same settings for both, access log off) until it is terminated.

- ours: the generated app's ``create_http_app`` with a small hand-written "notes"
  feature (a command model and its state handler registered with ``app.commands``).
- baseline: a bare Starlette endpoint that decodes the JSON and inserts the same row
  with raw ``sqlite3`` under the same database settings.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import sys
from datetime import UTC, datetime

import uvicorn
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.common import APP_NAME


class AddNote(BaseModel):
    id: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=200)


def ours(db: str, app_src: str) -> Starlette:
    sys.path.insert(0, app_src)
    core = importlib.import_module(f"{APP_NAME}.core")
    http = importlib.import_module(f"{APP_NAME}.core.http")
    notes: dict[str, str] = {}

    def add(command: AddNote, message: object) -> None:
        notes[command.id] = command.text

    app = core.App(core.MessageLog(db, exclusive=True))
    app.add_feature("notes")
    app.commands.register("notes/add", AddNote, add)
    return http.create_http_app(app)


def baseline(db_path: str, _app_src: str) -> Starlette:
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


SERVERS = {"ours": ours, "baseline": baseline}

if __name__ == "__main__":
    kind, port, db, app_src = sys.argv[1:5]
    uvicorn.run(SERVERS[kind](db, app_src), host="127.0.0.1", port=int(port), log_level="warning", access_log=False)
