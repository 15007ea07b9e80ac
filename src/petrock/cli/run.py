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
    processes: Annotated[
        int, typer.Option(help="Server processes sharing the port and the database (one per core uses them all).")
    ] = 1,
    insecure: Annotated[
        bool, typer.Option(help="Serve beyond loopback without APP_API_TOKEN: anyone who can reach it may write.")
    ] = False,
    log_format: Annotated[
        str, typer.Option(help="The app's log lines: readable text, or json (one object per line, for a collector).")
    ] = "text",
) -> None:
    """Serve the app you are in: make its projections current, start its workers, stop cleanly on Ctrl-C.

    Runs the app's own `python -m APP serve` (with the app's .venv if it has one).

    Examples:

      petrock serve

      petrock serve --port 9000 --db /tmp/blog.db --reload

      petrock serve --processes 2

      petrock serve --log-format json
    """
    from petrock.serve import ServeOptions, prepare, run

    options = ServeOptions(host, port, db, reload, synchronous, stop_timeout, processes, insecure, log_format)
    command = prepare(options)
    raise typer.Exit(run(command, stop_timeout=stop_timeout, echo=typer.echo))


@app.command()
@reports_errors
def selftest(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary directory (the app, its database, logs).")
    ] = False,
) -> None:
    """Check petrock end to end, as a user would, in a temporary directory.

    new -> feature add posts -> the app's tests -> serve on a free 127.0.0.1 port ->
    HTTP commands and queries -> the worker's summary -> SIGTERM -> restart.
    Exits 0 only if every step passes.

    Examples:

      petrock selftest

      petrock selftest --keep
    """
    import contextlib
    import shutil
    import tempfile

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from petrock.selftest import Selftest, StepResult

    marks = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}
    console = Console()
    table = Table(title="petrock selftest", title_justify="left")
    for column, justify in (("#", "right"), ("step", "left"), ("result", "left"), ("time", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("detail", overflow="fold")

    workdir = Path(tempfile.mkdtemp(prefix="petrock-selftest-"))
    console.print(f"petrock selftest in {workdir}", highlight=False)
    # One table: on a terminal it grows a row per finished step; elsewhere it is printed once, at the end.
    live = Live(table, console=console, auto_refresh=False) if console.is_terminal else None

    def add_row(step: StepResult) -> None:
        seconds = f"{step.seconds:.2f} s" if step.status != "skip" else ""
        table.add_row(str(table.row_count + 1), step.name, marks[step.status], seconds, step.detail)
        if live is not None:
            live.refresh()

    try:
        with live or contextlib.nullcontext():
            report = Selftest(workdir, on_step=add_row).run()
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if live is None:
        console.print(table)

    passed = sum(step.status == "pass" for step in report.steps)
    verdict = "[green]passed[/]" if report.passed else "[bold red]failed[/]"
    console.print(f"selftest {verdict}: {passed}/{len(report.steps)} steps in {report.seconds:.1f} s")
    if keep:
        console.print(f"kept {workdir} (server log: {report.server_log})", highlight=False)
    elif not report.passed:
        console.print("run `petrock selftest --keep` to look at the app and its server log")
    raise typer.Exit(0 if report.passed else 1)
