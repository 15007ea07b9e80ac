"""``bench.scale``'s reads (list, filtered list, get by id) of this checkout's app and another's, side by side.

``python -m bench.versus_reads OTHER [sqlite|postgres] [POSTS] [SECONDS] [ROUNDS]``

The before/after numbers of a change to the read path: both checkouts generate ``bench.scale``'s
app, and each is served as users serve it on its own copy of the log ``bench.scale`` cached for
the other checkout's app: POSTS posts (default 100,000 on SQLite, 333,334 on PostgreSQL, whose
two databases are on one throwaway server). ``python -m bench.scale --posts POSTS --backend B
--only rebuild``, run from the other checkout, makes that log; the cache's key is that app's source,
and a change that leaves the log and the projections' code alone reads it as it is. ``wrk -c32``
loads the two servers in turns, round after round, as ``bench.scale`` does: the list's first page,
the list filtered on the choice field and sorted by another, ``posts/get`` by random ids, and a page
of 20. Beside req/s and p99, each server's CPU per request (from /proc) is reported, and on
PostgreSQL the database server's too: on a shared machine they are the steadiest of the numbers.
The cache itself is only read. Not part of ``make bench`` (it needs a second checkout, e.g.
``git worktree add /tmp/before main``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import scale, scale_log, wrk
from bench.common import REPO, median
from bench.http_commands import cpu_seconds
from bench.served_app import served
from bench.versus_checkout import generate

LOADS = {  # name: (path, random ids appended)
    "list": (scale.LIST, False),
    "filtered": (scale.FILTERED, False),
    "get": (scale.GET, True),
    "list of 20": (f"{scale.LIST}?limit=20", False),
}
POSTS = {"sqlite": 100_000, "postgres": 333_334}
START = 900.0  # seconds: a start that rebuilds the projections (their code changed) takes minutes
SETTLE = 0.5  # seconds after each load before the CPU is read (answers still queued)
Logs = tuple[str, str, Path, Callable[[], list[int]]]  # this server's database, the other's, ids, database pids


def cache_key(backend: str, root: Path, posts: int) -> str:
    if backend == "sqlite":
        return f"sqlite-{posts}-{scale_log.app_key(root)}"
    sys.path.insert(0, str(REPO))
    from tests.pg import postgres_bin_dir

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise SystemExit("error: PostgreSQL is not installed")
    return f"postgres{bin_dir.parent.name}-{posts}-{scale_log.app_key(root)}"


@contextlib.contextmanager
def logs(backend: str, root: Path, posts: int, scratch: Path) -> Iterator[Logs]:
    """Two working copies of the log cached for ``root``'s app; an error saying how to make it if there is none."""
    cache = scale_log.Cache(scale_log.default_cache_dir())
    entry = cache.find(cache_key(backend, root, posts))
    if entry is None:  # checked here: scale_log would build it, and adding to the cache prunes old entries
        raise SystemExit(
            f"error: no cached {backend} log of {posts:,} posts for {root}'s app: run `python -m bench.scale "
            f"--posts {posts} --backend {backend} --only rebuild` from that checkout first"
        )
    if backend == "sqlite":
        copies = [scratch / "this.db", scratch / "other.db"]
        for copy in copies:
            shutil.copyfile(entry / "log.db", copy)
        yield str(copies[0]), str(copies[1]), entry / "ids.txt", list
        return
    import psycopg

    with scale_log.postgres_logs(root, posts, cache, scratch) as (log, _):
        server, _, database = log.target.rpartition("/")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:  # a copy, file by file
            admin.execute(f'CREATE DATABASE "{database}_this" TEMPLATE "{database}"')
        yield f"{log.target}_this", log.target, log.ids_file, log.database_pids


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        raise SystemExit(__doc__.split("\n\n")[1])
    backend = args[1] if len(args) > 1 else "sqlite"
    if backend not in POSTS:
        raise SystemExit(f"error: the backend is sqlite or postgres, not {backend!r}")
    defaults = ["", backend, str(POSTS[backend]), "5", "3"]
    other, _, posts, seconds, rounds = [*args, *defaults[len(args) :]][:5]
    if wrk.find() is None:
        raise SystemExit("error: wrk is not installed (apt-get install wrk)")
    options = list(scale.FIELDS)  # of ``feature add posts``
    cpu: dict[tuple[str, str], list[float]] = {}
    database_cpu: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    p99s: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-versus-reads-") as scratch_dir:
        scratch = Path(scratch_dir)
        checkouts = {"this": REPO, "other": Path(other).resolve()}
        roots = {label: generate(path, scratch / label, options, scale.APP) for label, path in checkouts.items()}
        with (
            logs(backend, roots["other"], int(posts), scratch) as (this_db, other_db, ids, database_pids),
            served(roots["this"], this_db, scratch / "this.log", limit=START) as this,
            served(roots["other"], other_db, scratch / "other.log", limit=START) as that,
        ):
            servers = {"this": this, "other": that}
            for number in range(int(rounds)):
                for load, (path, with_ids) in LOADS.items():
                    for label, server in servers.items():
                        assert server.process is not None
                        script = wrk.paths_script(path, ids) if with_ids else ""
                        pids = database_pids()
                        before, database_before = cpu_seconds(server.process.pid), _total_cpu(pids)
                        result = wrk.run(server.url + path, seconds=int(seconds), script=script)
                        time.sleep(SETTLE)
                        requests = max(1, result.requests)
                        used = (cpu_seconds(server.process.pid) - before) / requests * 1e6
                        key = (load, label)
                        cpu.setdefault(key, []).append(used)
                        database_cpu.setdefault(key, []).append((_total_cpu(pids) - database_before) / requests * 1e6)
                        rates.setdefault(key, []).append(result.rate)
                        p99s.setdefault(key, []).append(result.p99_ms)
                        print(
                            f"round {number + 1} {load:10} {label:5}: {result.rate:7,.0f} req/s, "
                            f"p99 {result.p99_ms:7.1f} ms, {used:6,.0f} µs of server CPU per request "
                            f"({result.describe()}); load average {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
    report(backend, int(posts), seconds, rounds, cpu, database_cpu, rates, p99s)


def report(
    backend: str,
    posts: int,
    seconds: str,
    rounds: str,
    cpu: dict[tuple[str, str], list[float]],
    database_cpu: dict[tuple[str, str], list[float]],
    rates: dict[tuple[str, str], list[float]],
    p99s: dict[tuple[str, str], list[float]],
) -> None:
    on_postgres = backend == "postgres"
    print(f"\nmedians of {rounds} rounds, {backend}, {posts:,} posts, wrk -c32 for {seconds} s per load:\n")
    extra = " + database" if on_postgres else ""
    print(f"| load | this: req/s, p99, CPU/request{extra} | other | CPU ratio (this / other) |")
    print("|---|---|---|---|")
    for load in LOADS:
        cells = []
        for label in ("this", "other"):
            key = (load, label)
            cell = f"{median(rates[key]):,.0f} req/s, {median(p99s[key]):,.1f} ms, {median(cpu[key]):,.0f} µs"
            cells.append(cell + (f" + {median(database_cpu[key]):,.0f} µs" if on_postgres else ""))
        ratio = median(cpu[(load, "this")]) / median(cpu[(load, "other")])
        print(f"| {load} | {cells[0]} | {cells[1]} | {ratio:.2f}× |")


def _total_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


if __name__ == "__main__":
    main()
