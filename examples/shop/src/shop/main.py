"""Builds the app: the log, every feature, and the ASGI app that serves them."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from .core import App, open_log
from .core.http import create_http_app
from .features import register_features

DEFAULT_DB = "app.db"


def build_app(
    db: str = DEFAULT_DB,
    *,
    exclusive: bool = False,
    synchronous: str = "NORMAL",
    stop_timeout: float = 5.0,
) -> App:
    """An App on the log at ``db`` with every feature registered (state not replayed yet).

    ``db`` is an SQLite file path, or a ``postgresql://`` URL for the PostgreSQL backend.
    """
    app = App(open_log(db, exclusive=exclusive, synchronous=synchronous), stop_timeout=stop_timeout)
    register_features(app)
    return app


def create_asgi_app() -> Starlette:
    """ASGI factory for ``uvicorn --factory`` (used by ``serve --reload``); settings from the environment."""
    app = build_app(
        os.environ.get("APP_DB", DEFAULT_DB),
        exclusive=True,
        synchronous=os.environ.get("APP_SYNCHRONOUS", "NORMAL"),
    )
    port = os.environ.get("APP_PORT", "")
    return create_http_app(
        app, host=os.environ.get("APP_HOST", "127.0.0.1"), port=int(port) if port.isdigit() else None
    )
