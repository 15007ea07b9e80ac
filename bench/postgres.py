"""The PostgreSQL backend: append cost, cross-instance reaction, worker failover.

Runs against a throwaway PostgreSQL server it starts itself (the test suite's, tests/pg.py:
Debian's ``postgresql`` package, fsync off — the same for ours and the baseline).

- Append: ``App.dispatch`` of a validated command on ``PostgresLog`` (lock and newest id,
  insert, NOTIFY, commit) against a bare psycopg loop doing only what the lock requires —
  ``with conn.transaction():`` the lock, then a parametrised ``INSERT`` — and, for scale,
  against the floor: the same statements sent as one query string (one round trip).
  Short rounds alternate; wall clock (the work is split between two processes); the
  median of the per-round ratios. This process and the server share one core while they
  run (Linux): a round trip between two cores cost about four times one on the same core
  here, and the scheduler chose between the two from one round to the next, so the same
  code measured 0.3× or 1.2× of the baseline (docs/benchmarks.md, "The append's server time").
- Reaction: two instances (separate processes, each an App on the same database); B runs
  a worker answering every ``bench/ping`` with a ``bench/pong``; A dispatches pings one at
  a time. Latency = pong's timestamp - ping's timestamp, both stamped by the same machine's
  clock as they were appended.
- Failover: the same two instances; ``kill -9`` the one holding the worker's lease, dispatch
  a ping at once from the survivor, and time until its pong is in the log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, Result, Row, Skipped, app_module, generated_app, main, median, percentile

SIZES = {"smoke": (50, 2, 20, 1), "full": (200, 30, 300, 3)}  # appends per round, rounds, pings, failovers
TYPE = "bench/note"
INSERT = "INSERT INTO messages (timestamp, type, data) VALUES (%s, %s, %s)"


def cluster():  # -> tests.pg.Cluster
    sys.path.insert(0, str(REPO))
    from tests.pg import Cluster, postgres_bin_dir

    server = Cluster(postgres_bin_dir())  # type: ignore[arg-type]
    server.start()
    return server


def missing() -> str | None:
    sys.path.insert(0, str(REPO))
    from tests.pg import psycopg_missing

    return psycopg_missing()


# --- append through the app vs a bare insert under the same lock ---


def app_appender(url: str) -> Callable[[int], None]:
    from pydantic import BaseModel

    core = app_module("core")

    class Note(BaseModel):
        n: int
        text: str

    app = core.App(core.open_log(url))
    app.commands.register(TYPE, Note, lambda command, message: None)
    app.prepare()

    def append(count: int) -> None:
        for n in range(count):
            app.dispatch(Note(n=n, text="a short note of about this size"))

    return append


def grouped_appender(url: str, together: int = 32) -> Callable[[int], None]:
    """``together`` commands at a time through group commit, as concurrent ``POST /commands`` send them."""
    import asyncio

    from pydantic import BaseModel

    core = app_module("core")

    class Note(BaseModel):
        n: int
        text: str

    app = core.App(core.open_log(url))
    app.commands.register(TYPE, Note, lambda command, message: None)
    app.prepare()

    async def dispatch(count: int) -> None:
        for start in range(0, count, together):
            notes = [
                Note(n=n, text="a short note of about this size") for n in range(start, min(count, start + together))
            ]
            await asyncio.gather(*(app.group_commit.dispatch(note) for note in notes))

    return lambda count: asyncio.run(dispatch(count))


def bare_appender(url: str) -> Callable[[int], None]:
    """A bare psycopg insert under the same lock, written the ordinary way: a transaction block."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True)

    def append(count: int) -> None:
        for n in range(count):
            data = json.dumps({"n": n, "text": "a short note of about this size"})
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '5000ms'; LOCK TABLE messages IN EXCLUSIVE MODE")
                conn.execute(INSERT, (_now(), TYPE, data))

    return append


def floor_appender(url: str) -> Callable[[int], None]:
    """The floor: the lock and the insert in one round trip (values bound client-side), nothing else."""
    import psycopg
    from psycopg import sql

    conn = psycopg.connect(url, autocommit=True)
    statement = sql.SQL(
        "BEGIN; SET LOCAL lock_timeout = '5000ms'; LOCK TABLE messages IN EXCLUSIVE MODE; "
        "INSERT INTO messages (timestamp, type, data) VALUES ({}, {}, {}); COMMIT"
    )

    def append(count: int) -> None:
        for n in range(count):
            data = json.dumps({"n": n, "text": "a short note of about this size"})
            conn.execute(statement.format(sql.Literal(_now()), sql.Literal(TYPE), sql.Literal(data)))

    return append


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def rate(append: Callable[[int], None], count: int) -> float:
    began = time.perf_counter()
    append(count)
    return count / (time.perf_counter() - began)


@contextmanager
def one_core(server_pid: int | None) -> Iterator[None]:
    """This process and the server (its postmaster and every process it forked) on one core, then back."""
    if server_pid is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before: dict[int, set[int]] = {}  # the processes pinned so far, and their cores before
    try:
        core = {min(os.sched_getaffinity(0))}
        for pid in [os.getpid(), server_pid, *_children(server_pid)]:
            with suppress(ProcessLookupError):  # a backend that ended meanwhile
                cores = os.sched_getaffinity(pid)
                os.sched_setaffinity(pid, core)  # the backends forked from here on inherit it
                before[pid] = cores
        yield
    finally:
        # The backends forked while it was pinned get the server's cores back (if it was pinned at all).
        forked = {pid: before[server_pid] for pid in _children(server_pid) if server_pid in before}
        for pid, cores in {**forked, **before}.items():
            with suppress(ProcessLookupError):
                os.sched_setaffinity(pid, cores)


def postmaster(server) -> int:  # server: tests.pg.Cluster
    """The server's main process id (the first line of its data directory's ``postmaster.pid``)."""
    return int((server.data / "postmaster.pid").read_text().split()[0])


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def compare_appends(url: str, count: int, rounds: int, server_pid: int | None = None) -> list[Row]:
    with one_core(server_pid):
        return _compare_appends(url, count, rounds)


def _compare_appends(url: str, count: int, rounds: int) -> list[Row]:
    appenders = {
        "ours": app_appender(url),
        "bare": bare_appender(url),
        "floor": floor_appender(url),
        "grouped": grouped_appender(url),
    }
    for append in appenders.values():
        append(10)  # connections warm, statements prepared
    rates: dict[str, list[float]] = {name: [] for name in appenders}
    for _ in range(rounds):  # short rounds, interleaved: the load on a shared machine swings by seconds
        for name, append in appenders.items():
            rates[name].append(rate(append, count))
    ours_rate = median(rates["ours"])
    ratios = [o / b for o, b in zip(rates["ours"], rates["bare"], strict=True)]
    ratio = median(ratios)
    floor_ratio = median(o / f for o, f in zip(rates["ours"], rates["floor"], strict=True))
    grouped = [g / b for g, b in zip(rates["grouped"], rates["bare"], strict=True)]
    return [
        Result(
            name=f"PostgreSQL append: App.dispatch vs a bare psycopg insert under the same lock, {rounds}×{count} msgs",
            ours=ours_rate,
            baseline=median(rates["bare"]),
            unit="msg/s",
            ratio=ratio,
            target="≥ 0.5×",
            met=ratio >= 0.5,
            note=f"median of the per-round ratios, range {min(ratios):.2f}–{max(ratios):.2f}× over {rounds} rounds",
        ),
        Result(
            name="PostgreSQL append: App.dispatch vs the same insert in one round trip",
            ours=ours_rate,
            baseline=median(rates["floor"]),
            unit="msg/s",
            ratio=floor_ratio,
            target="—",
            met=None,
            note=(
                "The floor sends BEGIN, the lock, the INSERT and COMMIT as one query string. An append through "
                "the app takes two round trips: BEGIN + lock + newest id (before validating), then the INSERT "
                "+ setval + NOTIFY + COMMIT."
            ),
        ),
        Result(
            name="PostgreSQL append: 32 commands at once through group commit vs a bare psycopg insert",
            ours=median(rates["grouped"]),
            baseline=median(rates["bare"]),
            unit="msg/s",
            ratio=median(grouped),
            target="—",
            met=None,
            note=(
                f"app.group_commit.dispatch, 32 awaited together (as concurrent POST /commands): one lock and one "
                f"COMMIT per 32; range {min(grouped):.2f}–{max(grouped):.2f}×"
            ),
        ),
    ]


# --- two instances: reaction across them, failover after kill -9 ---

INSTANCE = """
import asyncio, os, sys
from pydantic import BaseModel
from {package} import core

class Ping(BaseModel):
    n: int

class Pong(BaseModel):
    n: int

async def serve() -> None:
    app = core.App(core.open_log(sys.argv[1]), poll_interval=1.0, jitter=0.2)
    app.commands.register("bench/ping", Ping, lambda command, message: None)
    app.commands.register("bench/pong", Pong, lambda command, message: None)
    worker = core.CommandWorker("ponger")

    @worker.on("bench/ping")
    def answer(command: Ping, ctx: core.Context) -> None:
        ctx.dispatch(Pong(n=command.n))

    app.register_worker(worker)
    app.prepare()
    await app.start_workers()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(serve())
"""


class Instance:
    """One app process on the database, running the ``ponger`` worker when it holds the lease."""

    def __init__(self, url: str) -> None:
        root = generated_app()
        script = textwrap.dedent(INSTANCE).format(package=root.name)
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, url], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def ping_app(url: str):
    """Instance A: dispatches pings, runs no worker."""
    from pydantic import BaseModel

    core = app_module("core")

    class Ping(BaseModel):
        n: int

    app = core.App(core.open_log(url))
    app.commands.register("bench/ping", Ping, lambda command, message: None)
    app.prepare()
    return app, Ping


def pong_timestamp(url: str, n: int, timeout: float) -> str | None:
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') "
                "FROM messages WHERE type = 'bench/pong' AND data::jsonb ->> 'n' = %s",
                (str(n),),
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.001)
    return None


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def reaction(url: str, pings: int) -> list[Row]:
    instances = [Instance(url) for _ in range(2)]
    try:
        app, Ping = ping_app(url)
        latencies = []
        for n in range(pings):
            ping = app.dispatch(Ping(n=n))
            answered = pong_timestamp(url, n, timeout=10)
            if answered is None:
                raise RuntimeError(f"no pong for ping {n} within 10 s")
            latencies.append(seconds_between(ping.timestamp, answered) * 1000)
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        return [
            Result(f"cross-instance reaction p50 ({pings} pings)", p50, None, "ms", None, "≤ 20 ms", p50 <= 20),
            Result(f"cross-instance reaction p99 ({pings} pings)", p99, None, "ms", None, "≤ 100 ms", p99 <= 100),
        ]
    finally:
        for instance in instances:
            instance.kill()


def failover(url: str, rounds: int) -> Row:
    import psycopg

    app, Ping = ping_app(url)
    times = []
    n = 10_000
    for _ in range(rounds):
        instances = [Instance(url) for _ in range(2)]
        try:
            n += 1
            app.dispatch(Ping(n=n))
            if pong_timestamp(url, n, timeout=20) is None:
                raise RuntimeError("no instance answered before the kill")
            with psycopg.connect(url) as conn:
                owner = conn.execute("SELECT owner FROM leases WHERE name = 'ponger'").fetchone()[0]
            holder = next(i for i in instances if i.process.pid == int(owner.split(":")[1]))
            holder.kill()
            killed = time.perf_counter()
            n += 1
            app.dispatch(Ping(n=n))
            if pong_timestamp(url, n, timeout=30) is None:
                raise RuntimeError("the survivor never took the worker over")
            times.append(time.perf_counter() - killed)
        finally:
            for instance in instances:
                instance.kill()
    worst = max(times)
    return Result(f"worker failover after kill -9 (worst of {rounds})", worst, None, "s", None, "≤ 10 s", worst <= 10)


def run(size: str) -> list[Row]:
    appends, rounds, pings, failovers = SIZES[size]
    reason = missing()
    if reason is not None:
        return [Skipped("PostgreSQL backend", reason)]
    server = cluster()
    try:
        return [
            *compare_appends(server.create_database(), appends, rounds, postmaster(server)),
            *reaction(server.create_database(), pings),
            failover(server.create_database(), failovers),
        ]
    finally:
        server.destroy()


if __name__ == "__main__":
    main(run)
