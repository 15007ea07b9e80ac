"""Builds the app: the log, every feature, and the ASGI app that serves them."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from .core import App, open_log
from .core.http import create_http_app
from .core.logformat import access_logger, configure_logging
from .core.metrics import Metrics, NoMetrics
from .features import register_features

DEFAULT_DB = "app.db"


def build_app(
    db: str = DEFAULT_DB,
    *,
    exclusive: bool = False,
    synchronous: str = "NORMAL",
    stop_timeout: float = 5.0,
    metrics: bool = True,
    serving: bool = False,
) -> App:
    """An App on the log at ``db`` with every feature registered (projections not checked yet: ``app.prepare()``, or the first command or query, does it).

    ``db`` is an SQLite file path, or a ``postgresql://`` URL for the PostgreSQL backend.
    ``metrics=False`` records no metrics and serves no ``/metrics``. ``serving`` bounds the wait for a
    PostgreSQL answer (``APP_DB_ANSWER_TIMEOUT``): an app that serves must not wait on a silent database.
    """
    log = open_log(db, exclusive=exclusive, synchronous=synchronous, bound_answers=serving)
    app = App(log, stop_timeout=stop_timeout, metrics=Metrics() if metrics else NoMetrics())
    register_features(app)
    app.check_versions()  # a log this code cannot read is refused before anything runs
    return app


def create_asgi_app() -> Starlette:
    """ASGI factory for ``uvicorn --factory`` (used by ``serve --reload``); settings from the environment."""
    log_format = os.environ.get("APP_LOG_FORMAT", "text")
    configure_logging(log_format)
    app = build_app(
        os.environ.get("APP_DB", DEFAULT_DB),
        exclusive=True,
        synchronous=os.environ.get("APP_SYNCHRONOUS", "NORMAL"),
        metrics=os.environ.get("APP_METRICS", "on") != "off",
        serving=True,
    )
    port = os.environ.get("APP_PORT", "")
    return create_http_app(
        app,
        host=os.environ.get("APP_HOST", "127.0.0.1"),
        port=int(port) if port.isdigit() else None,
        access_log=access_logger(log_format),
    )
