"""``petrock serve`` and ``petrock selftest``: running apps rather than generating them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from petrock.cli import app
from petrock.cli.output import reports_errors


@app.command()
@reports_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless you mean it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    db: Annotated[
        Path | None, typer.Option("--db", help="SQLite database file (default: app.db in the app's root).")
    ] = None,
    reload: Annotated[bool, typer.Option("--reload", help="Restart when source files change (development).")] = False,
    synchronous: Annotated[
        str, typer.Option(help="SQLite synchronous mode: NORMAL survives a process crash, FULL also power loss.")
    ] = "NORMAL",
    stop_timeout: Annotated[float, typer.Option(help="Seconds the workers get to stop on shutdown.")] = 5.0,
) -> None:
    """Serve the app you are in: replay its log, start its workers, stop cleanly on Ctrl-C.

    Runs the app's own `python -m APP serve` (with the app's .venv if it has one).

    Examples:

      petrock serve

      petrock serve --port 9000 --db /tmp/blog.db --reload
    """
    from petrock.serve import ServeOptions, prepare, run

    options = ServeOptions(host, port, db, reload, synchronous, stop_timeout)
    command = prepare(options)
    raise typer.Exit(run(command, stop_timeout=stop_timeout, echo=typer.echo))
