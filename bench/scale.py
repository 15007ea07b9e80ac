"""Scale: a generated app with a million posts in its log, served as users serve it (issue 25).

The app is ``petrock new`` + ``petrock feature add posts title:str content:text
status:choice:draft,published,archived`` (the summary worker runs on ``content``), served
by ``python -m APP serve`` (one process, default options, 127.0.0.1). Its log is built
through the app's own log API (see bench/scale_log.py) and cached between runs. Measured,
each against the issue's target:

1. full rebuild rate: ``python -m APP projections rebuild`` on the fresh log when the app
   has that command; otherwise the first start, which replays the log (the row says which);
2. start until ``GET /healthz`` answers 200, from spawning the process;
3. resident memory of the server (from /proc) after start and after the list load;
4. ``GET /queries/posts/list`` (first page), 5. the list filtered on the choice field and
   sorted by another field, 6. ``posts/get`` by random ids: p99 under ``wrk -c32``;
7. ``POST /commands`` throughput under ``wrk -c32``.

Beside it runs the baseline: the same app on a new log, empty for its start and memory, then
with 100 posts (created over HTTP) for the same read loads, and taking create rounds in turn
with the big one. What the baseline shows is the part that does not depend on the log's size:
under ``wrk -c32`` one process's mean latency is 32 / its throughput, whatever the storage.

``python -m bench.scale [smoke|full] [--posts N] [--backend sqlite|postgres|both]
[--seconds S] [--only MEASURE,...] [--json] [--cache-dir DIR | --no-cache]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bench import scale_log, wrk
from bench.common import REPO, Result, Row, Skipped, load_length, new_app, table
from bench.served_app import ServedApp, served

APP = "scaleposts"
FIELDS = ("title:str", "content:text", "status:choice:draft,published,archived")
MEASURES = ("rebuild", "worker", "start", "memory", "list", "filtered", "get", "create")
CONNECTIONS = 32
START_LIMIT = 900.0  # seconds; today's replay of 3,000,000 messages on a busy machine takes minutes
IDLE_LIMIT = 300.0  # seconds to let a server finish the answers a load left queued
BASELINE_POSTS = 100  # posts the baseline server gets (over HTTP) for its read loads
LIST = "/queries/posts/list"
FILTERED = "/queries/posts/list?status=published&sort=title"
GET = "/queries/posts/get?id="
READS = (  # key, path, row title, target p99 in ms
    ("list", LIST, "GET list, first page, p99", 20),
    ("filtered", FILTERED, "GET list ?status=published&sort=title, p99", 30),
    ("get", GET, "GET posts/get by random id, p99", 5),
)
CREATE = json.dumps(
    {
        "type": "posts/create",
        "payload": {"title": "Hello", "content": "A short post. It has two sentences.", "status": "draft"},
    }
)


@dataclass(frozen=True)
class Plan:
    """How much to build and measure."""

    posts: dict[str, int]  # by backend
    backends: tuple[str, ...]
    seconds: int  # of each wrk load
    measures: tuple[str, ...] = MEASURES
    cache: bool = True
    requests: int | None = None  # a load that has this many answers stops (within ``seconds``)
    idle_looks: int = 10  # looks at the server, 30 ms apart, that tell it is idle again (ServedApp.wait_idle)
    connections: int = CONNECTIONS  # wrk's, for every load: the targets are at 32


SIZES = {
    "smoke": Plan(
        posts={"sqlite": 100, "postgres": 100}, backends=("sqlite",), seconds=1, cache=False, requests=128, idle_looks=4
    ),
    # The sizes: a million posts (3,000,000 messages) on SQLite, 1,000,000 messages on PostgreSQL.
    "full": Plan(posts={"sqlite": 1_000_000, "postgres": 333_334}, backends=("sqlite", "postgres"), seconds=10),
}


@dataclass
class Run:
    """One backend's results, and the details behind them (for ``--json``)."""

    backend: str
    posts: int
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@functools.cache
def scale_app() -> Path:
    """The app under test, generated once per run by this checkout's petrock."""
    root = new_app(APP, ("posts", *FIELDS))
    sys.path.insert(0, str(root / "src"))  # the log is built through the app's own log module
    return root


@functools.cache
def rebuild_command(root: Path) -> tuple[str, ...] | None:
    """The arguments of the app's ``projections rebuild`` (with ``--db`` if it takes one), or None without it
    (its usage is then an error, on stderr)."""
    usage = scale_log.rebuild_usage(root / "src", root.name)
    if not re.search(r"^Usage:.* projections rebuild\b", usage, re.MULTILINE):
        return None
    takes_db = "--db" in usage
    return ("projections", "rebuild", "--db") if takes_db else ("projections", "rebuild")


@functools.cache
def worker_rebuild_command(root: Path) -> tuple[str, ...] | None:
    """The arguments that rebuild the summary worker's table ahead of a start, or None if the app has none."""
    if not scale_log.rebuilds_worker_states(root / "src", root.name):
        return None
    return ("projections", "rebuild", f"worker:{scale_log.SUMMARY_WORKER}")


def rebuild(root: Path, target: str, command: tuple[str, ...], output: Path) -> float:
    """Seconds that ``python -m APP projections rebuild`` takes on the log at ``target``."""
    args = (*command, target) if command[-1] == "--db" else command
    env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin", "APP_DB": target}
    began = time.perf_counter()
    with output.open("ab") as out:
        result = subprocess.run(
            [sys.executable, "-m", root.name, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=START_LIMIT,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(output.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"projections rebuild failed ({result.returncode}):\n{tail}")
    return time.perf_counter() - began


def check_served(server: ServedApp, log: scale_log.BuiltLog) -> None:
    """The served app sees every post of the log (or the numbers below would be about nothing)."""
    with httpx.Client(base_url=server.url, timeout=START_LIMIT) as http:
        page = http.get(LIST)
        page.raise_for_status()
        total = page.json().get("total")
        if total is not None and total != log.posts:
            raise RuntimeError(f"the app lists {total} posts, the log has {log.posts}: the log was not built right")
        some_id = log.ids_file.read_text().split("\n", 1)[0]
        http.get(GET + some_id).raise_for_status()


def measure(backend: str, posts: int, plan: Plan, cache: scale_log.Cache) -> Run:
    """Build (or fetch) the log, then take every measure ``plan`` asks for on one backend."""
    root = scale_app()
    run = Run(backend, posts)
    wanted = set(plan.measures)
    label = f"{backend}, {posts:,} posts"
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch_dir:
        scratch = Path(scratch_dir)
        logs = scale_log.sqlite_logs if backend == "sqlite" else scale_log.postgres_logs
        with logs(root, posts, cache, scratch) as (log, new_empty_log):
            run.details.update(messages=log.messages, build_seconds=log.build_seconds, cached=log.build_seconds is None)
            command = rebuild_command(root)
            if command is not None:  # always, so that the start below is timed as a start, not as a rebuild
                seconds = rebuild(root, log.target, command, scratch / "rebuild.log")
                what = "`projections rebuild`"
            elif "rebuild" in wanted:
                with served(root, log.target, scratch / "first-start.log", limit=START_LIMIT) as first:
                    seconds = first.started_in
                what = "first start until healthy (replay; the app has no `projections rebuild`)"
            if "rebuild" in wanted:
                rate = log.messages / seconds
                run.details["rebuild"] = {"measured": what, "seconds": seconds}
                run.rows.append(
                    Result(f"{label}: full rebuild", rate, None, "msg/s", None, "≥ 50,000 msg/s", rate >= 50_000, what)
                )
            worker_command = worker_rebuild_command(root)
            if "worker" in wanted and worker_command is not None:
                seconds = rebuild(root, log.target, worker_command, scratch / "rebuild.log")
                rate = log.messages / seconds
                run.details["worker rebuild"] = {"measured": f"`{' '.join(worker_command)}`", "seconds": seconds}
                name, note = f"{label}: worker state rebuild", f"`{' '.join(worker_command)}`"
                run.rows.append(Result(name, rate, None, "msg/s", None, "≥ 50,000 msg/s", rate >= 50_000, note))
            if wanted - {"rebuild"}:
                run.rows.extend(measure_served(root, log, new_empty_log, plan, run.details, label, scratch))
    return run


def measure_served(
    root: Path,
    log: scale_log.BuiltLog,
    new_empty_log: scale_log.EmptyLog,
    plan: Plan,
    details: dict[str, Any],
    label: str,
    scratch: Path,
) -> list[Row]:
    """Start the app on the big log, and beside it the same app on a new log (the baseline), and load them.

    The baseline is empty for its start and memory, then gets BASELINE_POSTS posts over HTTP for
    the read loads: what the same requests cost when the log is small. Between loads the server
    is left to finish what the last one queued: it keeps computing answers for connections wrk
    has closed, which would otherwise land on the next load.
    """
    wanted = set(plan.measures)
    loads = Loads(plan, log.database_pids, enabled=wrk.find() is not None)
    reads = [read for read in READS if read[0] in wanted or (read[0] == "list" and "memory" in wanted)]
    small_ids = scratch / "baseline-ids.txt"
    rss_listed = None
    with served(root, log.target, scratch / "server.log", limit=START_LIMIT) as big:
        started, (rss_started, _) = big.started_in, big.memory_mb()
        check_served(big, log)
        big.wait_idle(IDLE_LIMIT, log.database_pids, plan.idle_looks)
        for key, path, _, _ in reads:
            loads.run(big, key, path, log.ids_file)
            if key == "list":
                rss_listed = big.memory_mb()[0]
        rss_peak = big.memory_mb()[1]
        with served(root, new_empty_log(), scratch / "baseline-server.log", limit=120) as small:
            small_started, (small_rss, _) = small.started_in, small.memory_mb()
            if loads.enabled and reads:
                seed(small, small_ids, log.database_pids, plan.idle_looks)
                for key, path, _, _ in reads:
                    loads.run(small, f"{key}, baseline", path, small_ids)
            # Interleaved rounds, seconds apart: the machine's load drifts, the ratio should not.
            rounds = 2 if plan.seconds >= 4 else 1
            for _ in range(rounds if "create" in wanted else 0):
                for key, server in (("create", big), ("create, baseline", small)):
                    loads.run(server, key, "/commands", seconds=plan.seconds // rounds)
    details["start_seconds"] = {"big log": started, "baseline": small_started}
    details["rss_mb"] = {"after start": rss_started, "peak before creates": rss_peak, "baseline after start": small_rss}
    details["loads"] = {key: [load_details(one) for one in runs] for key, runs in loads.results.items()}
    details["busy after load, s"] = loads.leftovers

    rows: list[Row] = []
    if "start" in wanted:
        ratio = started / small_started
        note = f"baseline: the same app on an empty log; then with {BASELINE_POSTS} posts for the read loads"
        name = f"{label}: start until /healthz 200"
        rows.append(Result(name, started, small_started, "s", ratio, "≤ 1 s", started <= 1, note))
    if "memory" in wanted:
        name = f"{label}: RSS after start"
        rows.append(Result(name, rss_started, small_rss, "MB", rss_started / small_rss, "≤ 150 MB", rss_started <= 150))
        if rss_listed is not None:
            name = f"{label}: RSS after {load_length(plan.seconds, plan.requests)} of wrk on the list"
            rows.append(Result(name, rss_listed, None, "MB", None, "≤ 150 MB", rss_listed <= 150))
    for key, _, title, target in READS:
        if key in wanted:
            ours, baseline = loads.first(key), loads.first(f"{key}, baseline")
            rows.append(latency_row(f"{label}: {title}", ours, baseline, target, plan.connections))
    if "create" in wanted:
        creates = loads.results.get("create"), loads.results.get("create, baseline")
        rows.append(create_row(label, log.posts, *creates, plan.connections))
    return rows


class Loads:
    """The wrk loads of one run, each followed by a wait until the loaded server is idle again."""

    def __init__(self, plan: Plan, database_pids: Callable[[], list[int]], *, enabled: bool) -> None:
        self.seconds = plan.seconds
        self.requests = plan.requests
        self.idle_looks = plan.idle_looks
        self.connections = plan.connections
        self.database_pids = database_pids
        self.enabled = enabled  # wrk is installed
        self.results: dict[str, list[wrk.Load]] = {}
        self.leftovers: dict[str, float] = {}  # seconds each server stayed busy after the load, summed by key

    def run(self, server: ServedApp, key: str, path: str, ids: Path | None = None, seconds: int | None = None) -> None:
        if not self.enabled:
            return
        if path == "/commands":
            script = wrk.post_script(CREATE)
        elif path == GET:
            assert ids is not None
            script = wrk.paths_script(GET, ids)
        else:
            script = ""
        seconds = seconds or self.seconds
        result = wrk.run(
            server.url + path, seconds=seconds, connections=self.connections, script=script, requests=self.requests
        )
        self.results.setdefault(key, []).append(result)
        waited = server.wait_idle(IDLE_LIMIT, self.database_pids, self.idle_looks)
        self.leftovers[key] = round(self.leftovers.get(key, 0) + waited, 3)

    def first(self, key: str) -> wrk.Load | None:
        return self.results.get(key, [None])[0]


def seed(server: ServedApp, ids_file: Path, database_pids: Callable[[], list[int]], idle_looks: int = 10) -> None:
    """Create BASELINE_POSTS posts over HTTP (the same kind the big log holds) and write their ids."""
    batch, sample = next(scale_log.generate(BASELINE_POSTS))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for type, data in batch:
            if type == "posts/create":
                http.post("/commands", json={"type": type, "payload": json.loads(data)}).raise_for_status()
    ids_file.write_text("".join(f"{id}\n" for id in sample))
    server.wait_idle(IDLE_LIMIT, database_pids, idle_looks)  # the summary worker summarizes them


def latency_row(
    name: str, result: wrk.Load | None, baseline: wrk.Load | None, target_ms: float, connections: int
) -> Row:
    """p99 under load, beside the same request's on a small log."""
    if result is None:
        return Skipped(name, "wrk is not installed (apt-get install wrk)")
    p99, notes = p99_floor(result, connections)
    base_p99 = p99_floor(baseline, connections)[0] if baseline is not None else None
    ratio = p99 / base_p99 if base_p99 else None
    if baseline is not None:
        notes.append(f"baseline, {BASELINE_POSTS} posts: {baseline.describe()}")
    met = p99 <= target_ms and result.failed == 0
    return Result(name, p99, base_p99, "ms", ratio, f"≤ {target_ms:g} ms", met, "; ".join(notes))


def p99_floor(result: wrk.Load, connections: int) -> tuple[float, list[str]]:
    """wrk's p99, or the load's length when that is the most that can be said.

    wrk leaves out the requests still unanswered when it stops, one per connection. A connection
    that never got an answer waited the whole load; when those are over 1% of the requests, the
    p99 is beyond the load's length, and that length is shown as its floor. The mean latency that
    the connections and the answers imply (Little's law) is given in the note.
    """
    notes = [f"wrk -c{connections}: {result.describe()}"]
    answered = result.requests - result.errors["status"]
    never_answered = max(0, connections - answered)
    if answered >= connections:  # with fewer, the answers are too few to say
        notes.append(f"mean latency by Little's law {connections * result.seconds * 1000 / answered:,.0f} ms")
    if never_answered > 0.01 * (answered + connections) or result.p99_is_lower_bound:
        notes.append(f"p99 is over the {result.seconds:.0f} s load: {never_answered} connections got no answer")
        return max(result.p99_ms, result.seconds * 1000), notes
    return result.p99_ms, notes


def create_row(
    label: str, posts: int, big: list[wrk.Load] | None, small: list[wrk.Load] | None, connections: int
) -> Row:
    """Throughput with the big log against the same app on a new log, over interleaved rounds."""
    name = f"{label}: POST /commands at {posts:,} posts vs a new log"
    if not big or not small:
        return Skipped(name, "wrk is not installed (apt-get install wrk)")
    big_rate, small_rate = overall_rate(big), overall_rate(small)
    ratio = big_rate / small_rate if small_rate else 0.0
    note = (
        f"wrk -c{connections}, rounds interleaved: {'; '.join(r.describe() for r in big)}; "
        f"on the new log {'; '.join(r.describe() for r in small)}"
    )
    met = ratio >= 0.8 and not any(r.failed for r in (*big, *small))
    return Result(name, big_rate, small_rate, "req/s", ratio, "≥ 0.8×", met, note)


def overall_rate(runs: list[wrk.Load]) -> float:
    return sum(r.rate * r.seconds for r in runs) / sum(r.seconds for r in runs)


def load_details(result: wrk.Load) -> dict[str, Any]:
    return {**asdict(result), "rate": result.rate}


def postgres_missing() -> str | None:
    sys.path.insert(0, str(REPO))
    from tests.pg import psycopg_missing

    return psycopg_missing()


def run_plan(plan: Plan, cache: scale_log.Cache) -> list[Run]:
    runs = []
    for backend in plan.backends:
        posts = plan.posts[backend]
        reason = postgres_missing() if backend == "postgres" else None
        if reason is not None:
            run = Run(backend, posts, rows=[Skipped(f"{backend}, {posts:,} posts", reason)])
        else:
            print(f"--- scale: {backend}, {posts:,} posts ({posts * 3:,} messages)", file=sys.stderr, flush=True)
            run = measure(backend, posts, plan, cache)
        runs.append(run)
    return runs


def run(size: str) -> list[Row]:
    """Entry point of ``python -m bench``: the plan for ``size``, its rows."""
    plan = SIZES[size]
    cache = scale_log.Cache(scale_log.default_cache_dir() if plan.cache else None)
    return [row for one in run_plan(plan, cache) for row in one.rows]


def as_json(runs: list[Run], plan: Plan, load_before: tuple[float, ...]) -> str:
    from bench.__main__ import machine

    def clean(value: Any) -> Any:  # JSON has no infinity
        return None if isinstance(value, float) and not math.isfinite(value) else value

    document = {
        "machine": machine(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "app": {
            "name": APP,
            "fields": list(FIELDS),
            "has projections rebuild": rebuild_command(scale_app()) is not None,
        },
        "wrk": {"connections": plan.connections, "seconds": plan.seconds, "requests": plan.requests},
        "runs": [
            {
                "backend": one.backend,
                "posts": one.posts,
                **one.details,
                "results": [
                    {"kind": type(row).__name__.lower(), **{k: clean(v) for k, v in asdict(row).items()}}
                    for row in one.rows
                ],
            }
            for one in runs
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def parse(argv: list[str]) -> tuple[Plan, scale_log.Cache, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="A generated app with a big log, served as users serve it, measured against issue 25's targets.",
        epilog="examples:\n  python -m bench.scale --posts 100000 --backend sqlite\n"
        "  python -m bench.scale smoke --json\n  python -m bench.scale --backend postgres --only start,memory\n"
        "  python -m bench.scale --backend sqlite --only get --connections 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("size", nargs="?", choices=tuple(SIZES), default="full", help="preset (default: full)")
    parser.add_argument("--posts", type=int, help="posts in the log, 3 messages each (default: the preset's)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), help="default: the preset's")
    parser.add_argument("--seconds", type=int, help="length of each wrk load (default: the preset's)")
    parser.add_argument("--only", help=f"comma-separated measures, of: {', '.join(MEASURES)}")
    parser.add_argument(
        "--connections", type=int, help=f"wrk's connections for every load (default: {CONNECTIONS}, the issue's)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    default_dir = scale_log.default_cache_dir()
    parser.add_argument("--cache-dir", type=Path, help=f"where built logs are kept (default: {default_dir})")
    parser.add_argument("--no-cache", action="store_true", help="build the log afresh and keep nothing")
    args = parser.parse_args(argv)
    plan = SIZES[args.size]
    if args.posts is not None:
        if args.posts < 1:
            parser.error("--posts must be 1 or more")
        plan = replace(plan, posts={"sqlite": args.posts, "postgres": args.posts})
    if args.backend is not None:
        backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
        plan = replace(plan, backends=backends)
    if args.seconds is not None:
        if args.seconds < 1:
            parser.error("--seconds must be 1 or more")
        plan = replace(plan, seconds=args.seconds)
    if args.connections is not None:
        if args.connections < 1:
            parser.error("--connections must be 1 or more")
        plan = replace(plan, connections=args.connections)
    if args.only is not None:
        measures = tuple(name.strip() for name in args.only.split(",") if name.strip())
        unknown = sorted(set(measures) - set(MEASURES))
        if unknown or not measures:
            parser.error(f"unknown measure {', '.join(unknown) or '(none given)'} — use some of {', '.join(MEASURES)}")
        plan = replace(plan, measures=measures)
    root = None if args.no_cache else args.cache_dir or (default_dir if plan.cache else None)
    return plan, scale_log.Cache(root), args.json


def main(argv: list[str] | None = None) -> None:
    plan, cache, as_json_output = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers and clusters are stopped on the way
    load_before = os.getloadavg()
    began = time.perf_counter()
    runs = run_plan(plan, cache)
    if as_json_output:
        print(as_json(runs, plan, load_before))
        return
    for one in runs:
        built = one.details.get("build_seconds")
        how = "from the cache" if one.details.get("cached") else f"built in {built:.0f} s" if built else ""
        print(f"\n### {one.backend}, {one.posts:,} posts ({one.posts * 3:,} messages; log {how})\n")
        print(table(one.rows))
    load_after = os.getloadavg()
    print(
        f"\n({time.perf_counter() - began:.0f} s; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after;"
        f" wrk -c{plan.connections} for {load_length(plan.seconds, plan.requests)} per load)"
    )


if __name__ == "__main__":
    main()
