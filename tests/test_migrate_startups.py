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


CORE_AND_WRAPPED = """
import asyncio
import atexit
import threading
from contextlib import asynccontextmanager

from starlette.applications import Starlette


def blocking_loop(app) -> None:
    while True:
        pass


async def a(app) -> None:
    while True:
        await asyncio.sleep(1)


class SummaryWorker:
    async def work(self) -> None:
        asyncio.create_task(a(None))  # a worker's own call: the runtime's already


def watchdog(stuck) -> None:
    threading.Timer(5, lambda: None).start()  # when the server stops: no background job


def flush() -> None:
    threading.Thread(target=lambda: None).start()


@asynccontextmanager
async def lifespan(server):
    asyncio.create_task(asyncio.to_thread(blocking_loop, server.state.app))
    asyncio.ensure_future(asyncio.gather(a(1), a(2)))
    atexit.register(flush)
    yield


def create_server(app):
    return Starlette(lifespan=lifespan, on_shutdown=[watchdog])
"""


def test_jobs_wrapped_in_to_thread_or_gather_are_found_and_the_runtimes_own_code_is_not(tmp_path: Path) -> None:
    package = tmp_path / "src" / "shop"
    package.mkdir(parents=True)
    (package / "main.py").write_text(textwrap.dedent(CORE_AND_WRAPPED))
    program = read_program(package, "shop")
    spawns = find_spawns(program)
    server = reach(program, server_roots(program), spawns)

    jobs = find_jobs(program, spawns, server, {})

    assert {job.where.rsplit(":", 1)[1]: (job.spawn.kind, job.server) for job in jobs} == {
        "35": ("executor", True),  # create_task(to_thread(blocking_loop, app)): a thread loop
        "36": ("task", True),  # ensure_future(gather(...)): one job
    }
