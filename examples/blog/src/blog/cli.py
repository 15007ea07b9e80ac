"""The app's command line: ``python -m APP serve | inspect | kv | log``."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Annotated

import typer

from .core.auth import TOKEN_VARIABLE, open_bind_refusal, tokens_from_env
from .core.log import LogLockedError, MessageLog
from .main import DEFAULT_DB, build_app

PACKAGE = __package__ or "app"

cli = typer.Typer(help=f"Run and inspect {PACKAGE}.", no_args_is_help=True, add_completion=False)
kv_cli = typer.Typer(help="Read and write the key/value store.", no_args_is_help=True)
log_cli = typer.Typer(help="Read the message log.", no_args_is_help=True)
cli.add_typer(kv_cli, name="kv")
cli.add_typer(log_cli, name="log")

DbOption = Annotated[str, typer.Option("--db", help="SQLite database file.", envvar="APP_DB")]


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless you mean it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    db: DbOption = DEFAULT_DB,
    reload: Annotated[bool, typer.Option(help="Restart when source files change (development).")] = False,
    synchronous: Annotated[
        str, typer.Option(help="SQLite synchronous mode: NORMAL survives crashes, FULL power loss.")
    ] = "NORMAL",
    stop_timeout: Annotated[float, typer.Option(help="Seconds to wait for workers on shutdown.")] = 5.0,
    insecure: Annotated[
        bool, typer.Option(help=f"Serve beyond loopback without {TOKEN_VARIABLE}: anyone who can reach it may write.")
    ] = False,
) -> None:
    """Serve the app over HTTP: replay the log, start the workers, stop them cleanly on Ctrl-C/SIGTERM.

    Set APP_API_TOKEN (one token, or several separated by commas) to require it for the API and the pages.
    """
    import uvicorn

    from .core.http import create_http_app

    tokens = tokens_from_env()
    refusal = open_bind_refusal(host, tokens, insecure=insecure)
    if refusal is not None:
        typer.echo(f"error: {refusal}", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    access = f"{TOKEN_VARIABLE} required" if tokens else f"no {TOKEN_VARIABLE}: open to anyone who can reach it"
    typer.echo(f"serving {PACKAGE} on http://{host}:{port} (database {db}; {access})")
    options = {"host": host, "port": port, "timeout_graceful_shutdown": max(1, int(stop_timeout)), "log_level": "info"}
    if reload:
        os.environ.update(APP_DB=db, APP_SYNCHRONOUS=synchronous)
        _exit_quietly_after_shutdown()
        uvicorn.run(f"{PACKAGE}.main:create_asgi_app", factory=True, reload=True, **options)
        return
    try:
        app = build_app(db, exclusive=True, synchronous=synchronous, stop_timeout=stop_timeout)
    except LogLockedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _exit_quietly_after_shutdown()
    uvicorn.run(create_http_app(app, on_closed=_leave_stuck_workers_behind), **options)
    typer.echo(f"stopped {PACKAGE}")


def _leave_stuck_workers_behind(stuck: list[str]) -> None:
    """Bound the exit once the database is closed.

    A worker that ignores cancellation, or a thread that never returns (``asyncio.to_thread``),
    would keep the event loop or the interpreter from ever finishing. A normal exit comes well
    before this watchdog fires; a stuck one is cut short with exit code 1.
    """
    if stuck:
        typer.echo(f"error: worker(s) {', '.join(stuck)} did not stop in time; exiting without them", err=True)

    def leave() -> None:
        typer.echo("error: shutdown is still waiting for a worker after the database closed; exiting", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    watchdog = threading.Timer(0.5 if stuck else 1.0, leave)
    watchdog.daemon = True
    watchdog.start()


def _exit_quietly_after_shutdown() -> None:
    """uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler
    that was installed before it; a no-op handler there makes a clean stop exit 0."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)


@cli.command()
def inspect(
    db: DbOption = DEFAULT_DB,
    url: Annotated[
        str | None, typer.Option(help="A running server (http://127.0.0.1:8080) to ask for live worker states.")
    ] = None,
) -> None:
    """Print the registered features, commands, queries, workers and routes as JSON."""
    app = build_app(db)
    try:
        description = app.describe()
    finally:
        app.log.close()
    if url is not None:
        import httpx

        tokens = tokens_from_env()
        headers = {"authorization": f"Bearer {tokens[0]}"} if tokens else {}
        try:
            health = httpx.get(f"{url.rstrip('/')}/healthz", headers=headers, timeout=5)
            description["workers"] = health.json()["workers"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            typer.echo(f"error: cannot read worker states from {url}: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(json.dumps(description, indent=2))


@kv_cli.command("get")
def kv_get(key: str, db: DbOption = DEFAULT_DB) -> None:
    """Print the JSON value stored under KEY."""
    app = build_app(db)
    try:
        value = app.kv.get(key)
    finally:
        app.log.close()
    if value is None:
        typer.echo(f"error: no key {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(value))


@kv_cli.command("set")
def kv_set(key: str, value: str, db: DbOption = DEFAULT_DB) -> None:
    """Store VALUE (JSON, or else a plain string) under KEY."""
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = value
    app = build_app(db)
    try:
        app.kv.set(key, decoded)
    finally:
        app.log.close()


@kv_cli.command("list")
def kv_list(db: DbOption = DEFAULT_DB) -> None:
    """Print every key and its value."""
    app = build_app(db)
    try:
        for key, value in app.kv.items():
            typer.echo(f"{key}\t{json.dumps(value)}")
    finally:
        app.log.close()


@log_cli.command("tail")
def log_tail(
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many of the newest messages to show.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new messages.")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Print the newest messages as JSON lines."""
    log = MessageLog(db)
    try:
        position = max(0, log.version() - lines)
        while True:
            for message in log.after(position):
                typer.echo(
                    json.dumps(
                        {
                            "id": message.id,
                            "timestamp": message.timestamp,
                            "type": message.type,
                            "data": message.payload(),
                        }
                    )
                )
                position = message.id
            if not follow:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        log.close()


def main() -> None:
    cli(prog_name=f"python -m {PACKAGE}")
