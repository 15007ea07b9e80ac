"""``POST /commands`` on PostgreSQL: the same app on SQLite, and two instances against one.

The app is a fresh one with the default ``posts`` feature (``bench/http_commands.py``'s),
served as users serve it (``python -m APP serve --db ...``: summary worker, metrics and
access log on). The PostgreSQL server is the throwaway one ``bench/postgres.py`` starts
(tests/pg.py: Debian's ``postgresql``, fsync off).

Each round, in this order and seconds apart: ``wrk -c32`` on the app over SQLite, on one
instance over PostgreSQL, then two instances on the same database loaded together (two
``wrk -c16`` at once, their rates added). Reported: the median of the per-round ratios,
with their range: on a shared machine the load swings between rounds, and a ratio taken
within one round cancels most of it.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
from pathlib import Path

from bench import wrk
from bench.common import Result, Row, Skipped, main, median
from bench.http_commands import BODY, CONNECTIONS, posts_app, serve, stop
from bench.postgres import cluster, missing

SIZES = {"smoke": (2, 1), "full": (8, 5)}  # (seconds of load per run, rounds)
NAME = f"POST /commands, wrk -c{CONNECTIONS}"


def load(url: str, seconds: int, connections: int = CONNECTIONS) -> wrk.Load:
    result = wrk.run(f"{url}/commands", seconds=seconds, connections=connections, script=wrk.post_script(BODY))
    if result.failed:
        raise RuntimeError(f"wrk saw failures on {url}: {result.describe()}")
    return result


def together(urls: list[str], seconds: int) -> float:
    """The added rate of loading every url at once, the connections split between them."""
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        loads = list(pool.map(lambda url: load(url, seconds, CONNECTIONS // len(urls)), urls))
    return sum(result.rate for result in loads)


def spread(ratios: list[float]) -> str:
    return f"median of {len(ratios)} rounds, range {min(ratios):.2f}–{max(ratios):.2f}×"


def run(size: str) -> list[Row]:
    seconds, rounds = SIZES[size]
    reason = missing() or (None if wrk.find() else "wrk is not installed (apt-get install wrk)")
    if reason is not None:
        return [Skipped(f"{NAME} on PostgreSQL", reason)]
    server = cluster()
    processes = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-commands-") as scratch:
            posts_app()
            sqlite, sqlite_url = serve("ours", Path(scratch) / "posts.db")
            processes.append(sqlite)
            url = server.create_database()
            first, first_url = serve("ours", url)  # type: ignore[arg-type]
            second, second_url = serve("ours", url)  # type: ignore[arg-type]
            processes += [first, second]
            for target in (sqlite_url, first_url, second_url):
                load(target, 1)  # warm: connections open, code paths taken
            rates: dict[str, list[float]] = {"sqlite": [], "postgres": [], "two": []}
            p99: dict[str, list[float]] = {"sqlite": [], "postgres": []}
            for _ in range(rounds):
                for key, target in (("sqlite", sqlite_url), ("postgres", first_url)):
                    result = load(target, seconds)
                    rates[key].append(result.rate)
                    p99[key].append(result.p99_ms)
                rates["two"].append(together([first_url, second_url], seconds))
    finally:
        for process in processes:
            stop(process)
        server.destroy()
    vs_sqlite = [p / s for p, s in zip(rates["postgres"], rates["sqlite"], strict=True)]
    two_vs_one = [t / o for t, o in zip(rates["two"], rates["postgres"], strict=True)]
    return [
        Result(
            f"{NAME}: PostgreSQL vs the same app on SQLite",
            median(rates["postgres"]),
            median(rates["sqlite"]),
            "req/s",
            median(vs_sqlite),
            "≥ 0.6×",
            median(vs_sqlite) >= 0.6,
            f"{spread(vs_sqlite)}; {seconds} s of load per run; p99 {median(p99['postgres']):.1f} ms on PostgreSQL, "
            f"{median(p99['sqlite']):.1f} ms on SQLite",
        ),
        Result(
            f"{NAME}: two instances on one PostgreSQL, together, vs one",
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
