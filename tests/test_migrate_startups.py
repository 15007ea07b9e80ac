"""Which start-up lines run with the server: only jobs started there may become workers."""

from __future__ import annotations

import textwrap
from pathlib import Path

from petrock.generators.migrate.find import find_start_ups
from petrock.generators.migrate.syntax import parse

MAIN = """
import asyncio
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from .orders.jobs import Jobs as OrderJobs


def start_on_startup() -> None:
    OrderJobs(APP).start_startup_task()


def start_from_lifespan(app) -> None:
    OrderJobs(app).start_helper_task()


@asynccontextmanager
async def lifespan(server):
    start_from_lifespan(server.state.app)
    OrderJobs(server.state.app).start_lifespan_task()
    yield


def main() -> None:
    OrderJobs(APP).start_cli_thread()


server = Starlette(on_startup=[start_on_startup])
OrderJobs(APP).start_import_time_thread()
"""


def test_start_ups_in_lifespan_startup_handlers_and_what_they_call_run_with_the_server(tmp_path: Path) -> None:
    package = tmp_path / "src" / "shop"
    (package / "orders").mkdir(parents=True)
    main = package / "main.py"
    main.write_text(textwrap.dedent(MAIN))

    starts = find_start_ups(package, "shop", {main: parse(main)}, {"orders"})

    with_server = {method: sites[0].with_server for (_, method), sites in starts.sites.items()}
    assert with_server == {
        "start_startup_task": True,  # an on_startup handler
        "start_helper_task": True,  # called from the lifespan
        "start_lifespan_task": True,
        "start_cli_thread": False,  # only a command line entry point calls it
        "start_import_time_thread": False,  # runs on import, tests included
    }
    assert starts.sites["orders", "start_cli_thread"][0].where == "src/shop/main.py:26"
