"""``POST /commands`` on PostgreSQL: the same app on SQLite, and two instances against one.

The app is a fresh one with the default ``posts`` feature (``bench/http_commands.py``'s),
served as users serve it (``python -m APP serve --db ...``: summary worker, metrics and
access log on). The PostgreSQL server is the throwaway one ``bench/postgres.py`` starts
(tests/pg.py: Debian's ``postgresql``, fsync off).

Each round, in this order and seconds apart: ``wrk -c32`` on the app over SQLite, on one
instance over PostgreSQL, then two instances on the same database loaded together (two
``wrk -c16`` at once, their rates added). Then the same for the app without its summary
worker (``feature add posts --no-worker``): the write path alone, since the worker's
reactions to every post share the server's event loop. Reported: the median of the per-round ratios,
with their range: on a shared machine the load swings between rounds, and a ratio taken
within one round cancels most of it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import tempfile
from pathlib import Path
from typing import Any

from bench import wrk
from bench.common import Result, Row, Skipped, load_length, main, median, new_app
from bench.http_commands import APP, BODY, CONNECTIONS, posts_app, serve, stop
from bench.postgres import cluster, missing

SIZES = {"smoke": (1, 1, 128), "full": (5, 5, None)}  # (seconds of load per run, rounds, requests: stop at that many)
NAME = f"POST /commands, wrk -c{CONNECTIONS}"


@functools.cache
def posts_app_without_worker() -> Path:
    return new_app(APP, ("posts", "--no-worker"))


def load(
    url: str, seconds: int, connections: int = CONNECTIONS, *, requests: int | None = None, warming: bool = False
) -> wrk.Load:
    """One wrk run (until ``requests`` are answered, if given); a failed request (a refused connection, an error
    answer) fails the bench, except while warming up. A request slower than the run is a timeout, counted against
    the rate, as bench/wrk.py counts it (a busy machine held six of twelve past the 1 s of a smoke run)."""
    script = wrk.post_script(BODY)
    result = wrk.run(f"{url}/commands", seconds=seconds, connections=connections, script=script, requests=requests)
    if result.failed - result.errors["timeout"] and not warming:
        raise RuntimeError(f"wrk saw failures on {url}: {result.describe()}")
    return result


def together(urls: list[str], seconds: int, requests: int | None = None) -> float:
    """The added rate of loading every url at once, the connections (and requests) split between them."""
    share = requests // len(urls) if requests else None
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        loads = list(pool.map(lambda url: load(url, seconds, CONNECTIONS // len(urls), requests=share), urls))
    return sum(result.rate for result in loads)


def spread(ratios: list[float]) -> str:
    return f"median of {len(ratios)} rounds, range {min(ratios):.2f}–{max(ratios):.2f}×"


def run(size: str) -> list[Row]:
    seconds, rounds, requests = SIZES[size]
    reason = missing() or (None if wrk.find() else "wrk is not installed (apt-get install wrk)")
    if reason is not None:
        return [Skipped(f"{NAME} on PostgreSQL", reason)]
    server = cluster()
    try:
        return [
            *compare(server, posts_app(), "posts", seconds, rounds, requests),
            *compare(server, posts_app_without_worker(), "posts --no-worker", seconds, rounds, requests),
        ]
    finally:
        server.destroy()


def compare(  # server: tests.pg.Cluster
    server: Any, root: Path, label: str, seconds: int, rounds: int, requests: int | None = None
) -> list[Row]:
    processes = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-commands-") as scratch:
            sqlite, sqlite_url = serve("ours", Path(scratch) / "posts.db", root)
            processes.append(sqlite)
            url = server.create_database()
            first, first_url = serve("ours", url, root)  # type: ignore[arg-type]
            second, second_url = serve("ours", url, root)  # type: ignore[arg-type]
            processes += [first, second]
            for target in (sqlite_url, first_url, second_url):
                load(target, 1, requests=requests, warming=True)  # warm: connections open, code paths taken
            rates: dict[str, list[float]] = {"sqlite": [], "postgres": [], "two": []}
            p99: dict[str, list[float]] = {"sqlite": [], "postgres": []}
            for _ in range(rounds):
                for key, target in (("sqlite", sqlite_url), ("postgres", first_url)):
                    result = load(target, seconds, requests=requests)
                    rates[key].append(result.rate)
                    p99[key].append(result.p99_ms)
                rates["two"].append(together([first_url, second_url], seconds, requests))
    finally:
        for process in processes:
            stop(process)
    vs_sqlite = [p / s for p, s in zip(rates["postgres"], rates["sqlite"], strict=True)]
    two_vs_one = [t / o for t, o in zip(rates["two"], rates["postgres"], strict=True)]
    return [
        Result(
            f"{NAME} ({label}): PostgreSQL vs the same app on SQLite",
            median(rates["postgres"]),
            median(rates["sqlite"]),
            "req/s",
            median(vs_sqlite),
            "≥ 0.6×",
            median(vs_sqlite) >= 0.6,
            f"{spread(vs_sqlite)}; {load_length(seconds, requests)} of load per run; "
            f"p99 {median(p99['postgres']):.1f} ms on PostgreSQL, "
            f"{median(p99['sqlite']):.1f} ms on SQLite",
        ),
        Result(
            f"{NAME} ({label}): two instances on one PostgreSQL, together, vs one",
            median(rates["two"]),
            median(rates["postgres"]),
            "req/s",
            median(two_vs_one),
            "≥ 1.0×",
            median(two_vs_one) >= 1.0,
            f"{spread(two_vs_one)}; two `serve` processes on the same database, each loaded with wrk -c"
            f"{CONNECTIONS // 2} at the same time",
        ),
    ]


if __name__ == "__main__":
    main(run)
