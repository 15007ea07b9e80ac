"""Which jobs run with the server: only they are migrated; the others are left, with the reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

from petrock.generators.migrate.jobs import find_jobs
from petrock.generators.migrate.program import read_program
from petrock.generators.migrate.server import command_roots, reach, server_roots
from petrock.generators.migrate.spawns import find_spawns

MAIN = """
import asyncio
import threading
from contextlib import asynccontextmanager

import typer
from starlette.applications import Starlette

cli = typer.Typer()


async def startup_loop():
    while True:
        await asyncio.sleep(1)


def start_on_startup() -> None:
    asyncio.create_task(startup_loop())


def start_from_lifespan(app) -> None:
    threading.Thread(target=lambda: None).start()


@asynccontextmanager
async def lifespan(server):
    start_from_lifespan(server.state.app)
    asyncio.create_task(startup_loop())
    yield


@cli.command()
def backfill() -> None:
    threading.Thread(target=lambda: None).start()


def never_called() -> None:
    threading.Thread(target=lambda: None).start()


server = Starlette(on_startup=[start_on_startup], lifespan=lifespan)
threading.Thread(target=lambda: None, daemon=True).start()
"""


def test_jobs_started_in_the_lifespan_startup_handlers_what_they_call_and_at_import_run_with_the_server(
    tmp_path: Path,
) -> None:
    package = tmp_path / "src" / "shop"
    package.mkdir(parents=True)
    (package / "main.py").write_text(textwrap.dedent(MAIN))
    program = read_program(package, "shop")
    spawns = find_spawns(program)
    server = reach(program, server_roots(program), spawns)
    commands = {how: reach(program, [(function, how)], spawns) for function, how in command_roots(program)}

    jobs = find_jobs(program, spawns, server, commands)

    started = {job.where.rsplit(":", 1)[1]: job.server for job in jobs}
    assert started == {
        "18": True,  # in an on_startup handler
        "22": True,  # in a function the lifespan calls
        "28": True,  # in the lifespan
        "34": False,  # only the `backfill` command
        "38": False,  # nothing calls it
        "42": True,  # at import time of a module the server imports
    }
    reasons = {job.where.rsplit(":", 1)[1]: job.reason for job in jobs if not job.server}
    assert reasons["34"].startswith("only `backfill` command (src/shop/main.py:33) starts it, not the server")
    assert reasons["38"].startswith("nothing the server runs starts it")
