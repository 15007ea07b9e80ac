"""The app's command line: ``python -m APP serve | mcp | inspect | projections | kv | log | deadletters``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .core.database_urls import DEFAULT_DB, database_refusal, server_address, server_url_refusal, without_password
from .core.deadletters import UNDECIDED, DeadLetterRefused, DeadLetterStatus, DeadLetterStore
from .core.log import (
    LogLockedError,
    LogUnavailable,
    LogUnreachable,
    MessageLogBackend,
    message_at,
    open_log,
)

# isort: split
# petrock:imports

# petrock:end-imports

if TYPE_CHECKING:
    import httpx

    from .core import App, CommandWorker

# The runtime (every feature, the HTTP stack, logging set-up) is imported inside the commands that use it:
# `--help`, and a command refused before it opens the app, start in a fraction of the time.

PACKAGE = __package__ or "app"

cli = typer.Typer(
    help=f"Run and inspect {PACKAGE}.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help, the same with every typer version (no `<bool>` beside flags)
    context_settings={"help_option_names": ["-h", "--help"]},
)
kv_cli = typer.Typer(help="Read and write the key/value store.", no_args_is_help=True)
log_cli = typer.Typer(help="Read the message log.", no_args_is_help=True)
deadletters_cli = typer.Typer(
    help="Messages a worker gave up on: look, then retry or discard.\n\n"
    "Examples:\n\n"
    f"  python -m {PACKAGE} deadletters list\n\n"
    f"  python -m {PACKAGE} deadletters show 1\n\n"
    f"  python -m {PACKAGE} deadletters retry 1",
    no_args_is_help=True,
)
projections_cli = typer.Typer(
    help="The state tables built from the log: is each current, and rebuild them.\n\n"
    "Examples:\n\n"
    f"  python -m {PACKAGE} projections status\n\n"
    f"  python -m {PACKAGE} projections rebuild posts",
    no_args_is_help=True,
)
cli.add_typer(projections_cli, name="projections")
cli.add_typer(kv_cli, name="kv")
cli.add_typer(log_cli, name="log")
cli.add_typer(deadletters_cli, name="deadletters")
# Command groups of features (`python -m APP users create-admin`); petrock edits the lines between the markers.
# petrock:commands
# petrock:end-commands


def app_root() -> Path:
    """The app's folder (the one holding src/APP): the nearest at or above the current directory, so every
    command finds the app's database from anywhere inside it, as `petrock serve` does; else the current
    directory (an installed wheel)."""
    here = Path.cwd()
    return next((folder for folder in (here, *here.parents) if (folder / "src" / PACKAGE).is_dir()), here)


def _default_db_in_app_root(ctx: typer.Context, db: str) -> str:
    """``--db`` not given: the app's own database, wherever inside the app the command runs; a value
    that cannot be one (a PostgreSQL keyword string) is refused in one line that hides its password."""
    if ctx.get_parameter_source("db").name != "DEFAULT":
        refusal = database_refusal(db)
        if refusal is not None:
            typer.echo(f"error: {refusal}", err=True)
            raise typer.Exit(2)
        return db
    return str(app_root() / db)


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        help="SQLite database file, or a postgresql:// URL.",
        envvar="APP_DB",
        show_default=f"{DEFAULT_DB} in the app's folder",
        callback=_default_db_in_app_root,
    ),
]
LetterId = Annotated[int, typer.Argument(metavar="ID", help="The dead letter's id (see `deadletters list`).")]


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
        bool, typer.Option(help="Serve beyond loopback without APP_API_TOKEN: anyone who can reach it may write.")
    ] = False,
    processes: Annotated[
        int, typer.Option(help="Server processes sharing the port and the database; one per core uses them all.")
    ] = 1,
    log_format: Annotated[
        str, typer.Option(help="Log lines as readable text, or json: one object per line, for a log collector.")
    ] = "text",
    metrics: Annotated[
        bool, typer.Option(help="Count requests, commands and worker cycles, and serve them at GET /metrics.")
    ] = True,
    http: Annotated[
        str,
        typer.Option(
            help="HTTP parser: httptools (C), h11 (pure Python), or auto: httptools when installed.", envvar="APP_HTTP"
        ),
    ] = "auto",
    loop: Annotated[
        str,
        typer.Option(
            help="Event loop: uvloop, asyncio (the standard library's), or auto: uvloop when installed.",
            envvar="APP_LOOP",
        ),
    ] = "auto",
    reuse_port: Annotated[
        bool, typer.Option(hidden=True, help="Share the port with the group's other processes (set by --processes).")
    ] = False,
) -> None:
    """Serve the app over HTTP: rebuild projections whose code changed, start the workers, stop on Ctrl-C/SIGTERM.

    Set APP_API_TOKEN (one token, or several separated by commas) to require it for the API and the pages,
    and APP_METRICS_TOKEN for a scraper that may read /metrics and nothing else (docs/operating.md).
    """
    from .core.auth import METRICS_TOKEN_VARIABLE, TOKEN_VARIABLE, open_bind_refusal, tokens_from_env

    tokens = tokens_from_env()
    metrics_tokens = tokens_from_env(variable=METRICS_TOKEN_VARIABLE)
    refusal = open_bind_refusal(host, tokens, insecure=insecure, metrics_tokens=metrics_tokens)
    if refusal is not None:  # before the server's modules are imported: the refusal is at once
        typer.echo(f"error: {refusal}", err=True)
        raise typer.Exit(1)

    import uvicorn

    from .core.events import max_streams_from_env
    from .core.http import create_http_app
    from .core.limits import server_options
    from .core.logformat import LOG_FORMATS, access_logger, configure_logging, uvicorn_logging
    from .core.ports import listen_refusal
    from .core.protocols import event_loop

    if log_format not in LOG_FORMATS:
        typer.echo(f"error: unknown --log-format {log_format!r} — pass {' or '.join(LOG_FORMATS)}", err=True)
        raise typer.Exit(2)
    configure_logging(log_format)
    announce = _announcer(log_format)
    if processes < 1 or (processes > 1 and reload):
        typer.echo("error: --processes must be 1 or more, and 1 with --reload — pass --processes N alone", err=True)
        raise typer.Exit(2)
    options = {"host": host, "port": port, "timeout_graceful_shutdown": max(1, int(stop_timeout))}
    options.update(uvicorn_logging(log_format))
    try:
        options |= server_options(http=http)  # connection limits and read timeouts (core/limits.py)
        options["loop"] = event_loop(loop)
        max_streams_from_env()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # A group checks its port as it reserves it (core/processes.py); its processes share it.
    if processes == 1 and not reuse_port and (refusal := listen_refusal(host, port)) is not None:
        typer.echo(f"error: {refusal}", err=True)
        raise typer.Exit(1)
    # Said once, by the process the user started: a lone server, or the parent of --processes N.
    missing = _missing_fast_stack(http, loop)
    slow = f"{' and '.join(missing)} not installed: serving on the slower pure-Python stack; {REINSTALL}"
    access = f"{TOKEN_VARIABLE} required" if tokens else f"no {TOKEN_VARIABLE}: open to anyone who can reach it"
    serving = [f"serving {PACKAGE} on http://{host}:{port} (database {without_password(db)}; {access})"]
    serving += [slow] if missing else []
    if processes > 1:
        code = _serve_processes(
            host,
            port,
            db,
            processes,
            stop_timeout,
            metrics=metrics,
            announce=announce,
            access=access,
            notice=slow if missing else None,
        )
        raise typer.Exit(code)
    if reload:
        for line in serving:
            announce(line)
        os.environ.update(
            APP_DB=db, APP_SYNCHRONOUS=synchronous, APP_HOST=host, APP_PORT=str(port), APP_LOG_FORMAT=log_format
        )
        os.environ["APP_METRICS"] = "on" if metrics else "off"
        _exit_quietly_after_shutdown()
        uvicorn.run(f"{PACKAGE}.main:create_asgi_app", factory=True, reload=True, **options)
        return
    app = _open_app(
        db, exclusive=True, synchronous=synchronous, stop_timeout=stop_timeout, metrics=metrics, serving=True
    )
    if not reuse_port:  # said once the database is open: a database that is not says only why
        for line in serving:
            announce(line)
    _exit_quietly_after_shutdown()
    http_app = create_http_app(
        app, on_closed=_leave_stuck_workers_behind, host=host, port=port, access_log=access_logger(log_format)
    )
    if not reuse_port:
        uvicorn.run(http_app, **options)
        announce(f"stopped {PACKAGE}")
    else:  # one of the processes of `serve --processes N`
        from .core.processes import listen_on_shared_port

        sock = listen_on_shared_port(host, port)
        uvicorn.Server(uvicorn.Config(http_app, **options)).run(sockets=[sock])


def _serve_processes(
    host: str,
    port: int,
    db: str,
    processes: int,
    stop_timeout: float,
    *,
    metrics: bool,
    announce: Callable[[str], None],
    access: str,
    notice: str | None = None,
) -> int:
    """Keep ``processes`` servers running on one port and one database (see core/processes.py); ``notice``
    is said after the group's first line (the server processes say nothing of their own)."""
    from .core.metrics import forget_process, multiprocess_directory
    from .core.processes import reserve_port, run_group, share_database, without_option

    reserved = None
    try:
        reserved = reserve_port(host, port)  # first: a port in use is refused before the database is touched
        database = share_database(db)
    except (LogLockedError, OSError) as exc:
        if reserved is not None:
            reserved.close()
        shown = without_password(db)
        typer.echo(f"error: cannot serve on {host}:{port} with database {shown}: {exc} — stop what uses them", err=True)
        return 1
    if database.lock is None:  # PostgreSQL: one line now, not every process failing and restarting
        try:
            open_log(db, bound_answers=True).close()
        except (LogUnavailable, LogUnreachable) as exc:
            reserved.close()
            typer.echo(f"error: {exc}", err=True)
            return 1
    shown = without_password(db)
    announce(f"serving {PACKAGE} on http://{host}:{port} with {processes} processes (database {shown}; {access})")
    if notice is not None:
        announce(notice)
    # The same command line for each, minus --processes: new options reach them without changes here.
    argv = [sys.executable, "-m", PACKAGE, *without_option(sys.argv[1:], "--processes")]
    with contextlib.ExitStack() as stack:
        on_exit = None
        if metrics:  # one directory of metric files for the group: a scrape of any process adds them up
            directory = stack.enter_context(multiprocess_directory(database.env))
            on_exit = functools.partial(forget_process, directory=directory)
        code = run_group(
            argv,
            processes=processes,
            env=database.env,
            pass_fds=database.pass_fds,
            stop_timeout=stop_timeout,
            on_exit=on_exit,
        )
    reserved.close()
    announce(f"stopped {PACKAGE}")
    return code


def _this_python() -> str:
    """The interpreter running this command, as a user would type it here (``.venv/bin/python``), after the
    ``PYTHONPATH`` it was given (an app run from its source tree, ``PYTHONPATH=src``): a hint to run another
    command works when pasted, whatever ``python`` is on the PATH."""
    here, python = Path.cwd(), Path(sys.executable)
    shown = shlex.quote(str(python.relative_to(here)) if python.is_relative_to(here) else str(python))
    path = os.environ.get("PYTHONPATH")
    return f"PYTHONPATH={shlex.quote(path)} {shown}" if path else shown


REINSTALL = "reinstall the app's environment (.venv/bin/pip install -e '.[test]') to get them"


def _missing_fast_stack(http: str, loop: str) -> list[str]:
    """The fast stack's packages that ``auto`` looked for and did not find (the app depends on them,
    so they are missing only from an environment installed before it did, or on Windows: no uvloop)."""
    import importlib.util

    wanted = [("httptools", http), *([("uvloop", loop)] if sys.platform != "win32" else [])]
    return [name for name, choice in wanted if choice == "auto" and importlib.util.find_spec(name) is None]


def _announcer(log_format: str) -> Callable[[str], None]:
    """How serve says it started and stopped: a line on stdout, or a log line in the JSON format."""
    if log_format == "json":
        return logging.getLogger(PACKAGE).info
    return typer.echo


def _open_app(
    db: str,
    *,
    exclusive: bool = False,
    synchronous: str = "NORMAL",
    stop_timeout: float = 5.0,
    metrics: bool = True,
    serving: bool = False,
) -> App:
    """``build_app``, with a database that cannot be opened, or a setting that cannot be used, reported in one line."""
    from .core.summaries import SettingRefused
    from .main import build_app

    try:
        return build_app(
            db,
            exclusive=exclusive,
            synchronous=synchronous,
            stop_timeout=stop_timeout,
            metrics=metrics,
            serving=serving,
        )
    except (LogLockedError, LogUnavailable, LogUnreachable, SettingRefused) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _reading_app(db: str) -> App:
    """The app on an existing database, for tools that read the log through its upcasters."""
    _require_existing(db)
    return _open_app(db, metrics=False)


def _open_log(db: str) -> MessageLogBackend:
    """The log alone (no features), with a database that cannot be opened reported in one line."""
    _require_existing(db)
    try:
        return open_log(db)
    except (LogUnavailable, LogUnreachable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _missing(db: str) -> bool:
    return "://" not in db and db != ":memory:" and not Path(db).exists()


def _require_existing(db: str) -> None:
    """Reading tools look at an existing SQLite file; run from the wrong directory they would make an empty one."""
    if _missing(db):
        typer.echo(
            f"error: no database at {db} — the app has not run here yet (serve creates it), or pass --db PATH",
            err=True,
        )
        raise typer.Exit(1)


@cli.command("mcp")
def mcp_stdio(
    db: DbOption = DEFAULT_DB,
    synchronous: Annotated[
        str, typer.Option(help="SQLite synchronous mode: NORMAL survives crashes, FULL power loss.")
    ] = "NORMAL",
    stop_timeout: Annotated[float, typer.Option(help="Seconds to wait for workers on shutdown.")] = 5.0,
) -> None:
    """Serve the commands and queries as MCP tools on stdin/stdout, for AI agents.

    Runs the app as serve does (projections current, workers started) until the client hangs up;
    logs go to stderr, stdout carries the protocol. A served app answers MCP at /mcp too.
    """
    from .core.logformat import configure_logging
    from .core.mcp import serve_stdio
    from .core.summaries import SettingRefused
    from .main import build_app

    configure_logging("text")
    try:
        app = build_app(db, exclusive=True, synchronous=synchronous, stop_timeout=stop_timeout, serving=True)
    except (LogLockedError, LogUnavailable) as exc:
        typer.echo(f"error: {exc} — stop the server that owns it, or pass another --db", err=True)
        raise typer.Exit(1) from None
    except SettingRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    stuck = asyncio.run(serve_stdio(app))  # Ctrl-C and SIGTERM stop it too (workers stopped, database closed)
    if stuck:
        typer.echo(f"error: worker(s) {', '.join(stuck)} did not stop in time", err=True)
        raise typer.Exit(1)


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
    app = _open_app(db)
    try:
        description = app.describe()
        for worker in description["workers"]:  # where each stands, as recorded (the live state needs --url)
            worker["position"] = app.log.position(worker["name"])
    finally:
        app.log.close()
    if url is not None:
        import httpx

        from .core.auth import tokens_from_env

        refusal = server_url_refusal(url)
        if refusal is not None:
            typer.echo(f"error: {refusal}", err=True)
            raise typer.Exit(2)
        shown = server_address(url)
        tokens = tokens_from_env()
        headers = {"authorization": f"Bearer {tokens[0]}"} if tokens else {}
        response = None
        try:
            response = httpx.get(f"{url.rstrip('/')}/healthz", headers=headers, timeout=5)  # no query: refused above
            health = response.json()
            description["workers"], description["process"] = health["workers"], health.get("process")
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            why = _why_unreadable(response, exc, sent_token=bool(tokens))
            typer.echo(f"error: cannot read worker states from {shown}: {why}", err=True)
            raise typer.Exit(1) from None
    typer.echo(json.dumps(description, indent=2))


@projections_cli.command("status")
def projections_status(
    db: DbOption = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each projection (and each worker's state): current, stale (built by other code) or
    missing, with its rows and the log position it was last rebuilt up to.

    It only reads: on a read-only connection, so a database an upgraded app has not started on
    yet is shown as it is (what the next start adds is named, not made).
    """
    from .core.readonly import NothingToLook, look

    _require_existing(db)
    app = _open_app(":memory:", metrics=False)  # the code's fingerprints; the database is only read, below
    try:
        stored = look(db, app.projections.specs())
        statuses = app.projections.status_of(stored.projections, stored.count)
    except (NothingToLook, LogUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        app.log.close()
    head = stored.head
    if as_json:
        described = [status.describe() for status in statuses]
        typer.echo(json.dumps({"log": head, "projections": described, "behind": stored.behind}, indent=2))
        return
    typer.echo(f"log: {head} messages")
    if stored.behind:
        typer.echo(f"the database predates this version of the app: its next start adds {', '.join(stored.behind)}")
    for status in statuses:
        rows = ", ".join(f"{table} {count}" for table, count in status.rows.items()) or "-"
        built = f"rebuilt up to {status.position} at {status.rebuilt_at}" if status.rebuilt_at else "never built"
        typer.echo(f"{status.name:<28} {status.state.value:<8} rows: {rows}; {built}")
    stale = [status.name for status in statuses if status.state.value != "current"]
    if stale:
        workers = "; worker states only while the app is stopped" if any(n.startswith("worker:") for n in stale) else ""
        typer.echo(
            f"the next start rebuilds {', '.join(stale)}; "
            f"beforehand: {_this_python()} -m {PACKAGE} projections rebuild{workers}"
        )


@projections_cli.command("rebuild")
def projections_rebuild(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Projections or worker states (worker:NAME) to rebuild (default: every projection, "
            "and every worker state built by other code)."
        ),
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Rebuild projections from the whole log, with a progress bar, and swap them in at once.

    Safe while the app serves: the new tables are built beside the old ones, then the
    last messages are applied and the tables swapped under the log's write lock. A
    worker's state (worker:NAME) is rebuilt only while no served process runs the worker,
    so that its next start has nothing to redo.
    """
    from .core.worker_states import worker_states

    _require_existing(db)
    app = _open_app(db)
    try:
        states = worker_states(app)
        known = [projection.name for projection in app.projections]
        unknown = [name for name in names or [] if name not in known and name not in states]
        if unknown:
            every = ", ".join([*known, *states]) or "none"
            typer.echo(f"error: no projection {unknown[0]!r} — projections: {every}", err=True)
            raise typer.Exit(2)
        if names:
            chosen, workers = [n for n in names if n in known], [states[n] for n in names if n in states]
        else:
            stale = {status.name for status in app.projections.status() if status.state.value != "current"}
            chosen, workers = known, [worker for name, worker in states.items() if name in stale]
        if workers:  # their handlers read projections as they are now: those must be current first
            chosen += [name for name in app.projections.needing_rebuild() if name not in chosen]
        if chosen:
            _rebuild_projections(app, chosen)
        for worker in workers:
            _rebuild_worker_state(app, worker)
    finally:
        app.log.close()


def _rebuild_projections(app: App, names: list[str]) -> None:
    from .core.progress import RebuildProgress
    from .core.projections import RebuildFailed

    progress = RebuildProgress(", ".join(names))
    try:
        report = app.projections.rebuild(names, progress=progress)
    except RebuildFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        progress.close()
    rate = report.messages / max(report.seconds, 1e-6)
    refused = f"; {report.refused} refused by today's handlers (see the log)" if report.refused else ""
    typer.echo(
        f"rebuilt {', '.join(report.names)} from {report.messages} messages in {report.seconds:.1f}s "
        f"({rate:,.0f}/s){refused}"
    )


def _rebuild_worker_state(app: App, worker: CommandWorker) -> None:
    from .core.progress import RebuildProgress
    from .core.worker_states import WorkerRunning, rebuild_worker_state

    progress = RebuildProgress(worker.state_name)
    began = time.monotonic()
    try:
        read = rebuild_worker_state(app, worker, progress)
    except WorkerRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        progress.close()
    seconds = time.monotonic() - began
    rate = read / max(seconds, 1e-6)
    typer.echo(f"rebuilt {worker.state_name} from {read} messages in {seconds:.1f}s ({rate:,.0f}/s)")


def _why_unreadable(response: httpx.Response | None, exc: Exception, *, sent_token: bool) -> str:
    """One line on why ``/healthz`` gave no worker states: a missing or refused token says so, not
    ``KeyError: 'workers'``."""
    from .core.auth import TOKEN_VARIABLE

    if response is None:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    wanted = f"set {TOKEN_VARIABLE} to one of the server's tokens"
    if response.status_code == 401:
        return f"HTTP 401: the server refused the token — {wanted}" if sent_token else f"HTTP 401: {wanted}"
    if response.is_success and "workers" not in response.text:
        if not sent_token:
            return f"it shows worker states only to a client with its token — {wanted}"
        return f"HTTP {response.status_code} without worker states: is this the app's server?"
    try:
        said = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        said = response.reason_phrase
    return f"HTTP {response.status_code}: {' '.join(str(said).split())[:200]}"


@kv_cli.command("get")
def kv_get(key: Annotated[str, typer.Argument(metavar="KEY")], db: DbOption = DEFAULT_DB) -> None:
    """Print the JSON value stored under KEY."""
    _require_existing(db)
    app = _open_app(db)
    try:
        value = app.kv.get(key)
    finally:
        app.log.close()
    if value is None:
        typer.echo(f"error: no key {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(value))


@kv_cli.command("set")
def kv_set(
    key: Annotated[str, typer.Argument(metavar="KEY")],
    value: Annotated[str, typer.Argument(metavar="VALUE")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Store VALUE (JSON, or else a plain string) under KEY."""
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = value
    app = _open_app(db)
    try:
        app.kv.set(key, decoded)
    finally:
        app.log.close()


@kv_cli.command("list")
def kv_list(db: DbOption = DEFAULT_DB) -> None:
    """Print every key and its value."""
    if _missing(db) and Path(db).parent == app_root():
        typer.echo(f"no keys (no database yet at {db})")
        return
    _require_existing(db)
    app = _open_app(db)
    try:
        items = list(app.kv.items())
    finally:
        app.log.close()
    if not items:
        typer.echo("no keys")
    for key, value in items:
        typer.echo(f"{key}\t{json.dumps(value)}")


@log_cli.command("tail")
def log_tail(
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many of the newest messages to show.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new messages.")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Print the newest messages as JSON lines, old payloads in today's shape (``version``: the stored one)."""
    app = _reading_app(db)
    log = app.log
    try:
        position = max(0, log.version() - lines)
        while True:
            for stored in log.after(position):
                message = app.upcasters.read(stored)
                typer.echo(
                    json.dumps(
                        {
                            "id": message.id,
                            "timestamp": message.timestamp,
                            "type": message.type,
                            "version": stored.version,
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


@deadletters_cli.command("list")
def deadletters_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include retried and discarded ones.")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Print the dead letters waiting for a decision (id, worker, message, type, attempts, status, error)."""
    statuses = tuple(DeadLetterStatus) if show_all else UNDECIDED
    with _dead_letters(db) as store:
        letters = store.list(statuses=statuses)
    if not letters:
        typer.echo("no dead letters")
    for letter in letters:
        typer.echo(
            f"{letter.id}\t{letter.worker}\tmessage {letter.message_id}\t{letter.type}\t"
            f"{letter.attempts} attempts\t{letter.status.value}\t{letter.error}"
        )


@deadletters_cli.command("show")
def deadletters_show(id: LetterId, db: DbOption = DEFAULT_DB) -> None:
    """Print one dead letter and its message as JSON (an old payload in today's shape)."""
    app = _reading_app(db)
    with _dead_letters(db, log=app.log) as store:
        letter = store.get(id)
        stored = message_at(store.log, letter.message_id)
    shown = letter.describe()
    if stored is not None:
        message = app.upcasters.read(stored)
        shown["message"] = {"id": message.id, "timestamp": message.timestamp, "type": message.type}
        shown["message"] |= {"version": stored.version, "data": message.payload()}
    typer.echo(json.dumps(shown, indent=2))


@deadletters_cli.command("retry")
def deadletters_retry(id: LetterId, db: DbOption = DEFAULT_DB) -> None:
    """Hand the message to its worker once more (at its next cycle); its other effects are not repeated."""
    with _dead_letters(db) as store:
        letter = store.retry(id)
    typer.echo(f"dead letter {id}: {letter.worker} will handle message {letter.message_id} again at its next cycle")


@deadletters_cli.command("discard")
def deadletters_discard(id: LetterId, db: DbOption = DEFAULT_DB) -> None:
    """Acknowledge the dead letter: its worker never handles that message."""
    with _dead_letters(db) as store:
        letter = store.discard(id)
    typer.echo(f"dead letter {id}: discarded; {letter.worker} will not handle message {letter.message_id}")


@contextmanager
def _dead_letters(db: str, log: MessageLogBackend | None = None) -> Iterator[DeadLetterStore]:
    """The dead letters of the database at ``db`` (or of ``log``, closed after); a refused request is one line and exit code 1."""
    log = log or _open_log(db)
    try:
        yield DeadLetterStore(log)
    except DeadLetterRefused as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from None
    finally:
        log.close()


def main() -> None:
    cli(prog_name=f"python -m {PACKAGE}")
