"""``POST /commands`` as users run it: a generated app with its ``posts`` feature, under load.

Ours is a fresh app (``petrock new`` + ``petrock feature add posts``) started exactly as
``python -m APP serve`` starts it: its summary worker running, uvicorn's access log on.
The baseline (``bench/http_server.py``) is a bare Starlette endpoint doing one raw SQLite
insert under the same uvicorn settings. They take turns in one run, so the ratio is
measured seconds apart on the same (possibly busy) machine. Both run on each of two server
stacks: ``fast`` (uvloop + httptools, what ``serve`` uses by default) and ``plain`` (asyncio +
h11, ``serve --http h11 --loop asyncio``); a kind ending in ``@plain`` is on the plain one.

Load: ``wrk`` (Debian package ``wrk``), 32 connections, in its own process; without
it, a small httpx load generator in this process (slower, so its numbers are lower
for both sides). After the load stops we time how long the summary worker takes to
record an outcome for every post created during it. ``serve --processes 2`` is
measured beside one process when the app's CLI offers it, and so is ``serve
--no-metrics``: what counting every request and command for ``/metrics`` costs. So is the
same app made with ``feature add posts --no-worker`` (kind ``ours-no-worker``): the request
path alone, the most the whole app could reach if its worker cost nothing.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import wrk as bench_wrk
from bench.common import REPO, Result, Row, free_port, load_length, median, new_app, percentile, table

# (seconds of load per run, rounds: medians of interleaved runs, requests: a run that has this many answers stops)
SIZES = {"smoke": (1, 1, 128), "full": (10, 2, None)}
CONNECTIONS = 32
NAME = f"POST /commands, {CONNECTIONS} connections"
APP = "benchposts"
BODY = '{"type": "posts/create", "payload": {"title": "Hello", "content": "A short post. It has two sentences."}}'
WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{BODY}'
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
CATCH_UP_LIMIT = 120.0  # seconds; a worker slower than this is reported as such


@dataclass(frozen=True)
class Load:
    """What one run under load measured."""

    rate: float  # requests per second
    p99: float  # ms
    catch_up: float | None = None  # seconds from the end of the load until every post was summarized
    cpu_per_request: float | None = None  # µs of the server process's CPU (one-process servers only)


@functools.cache
def posts_app() -> Path:
    """A fresh app with the default ``posts`` feature (summary worker included), made once per run."""
    return new_app(APP, ("posts",))


@functools.cache
def posts_app_without_worker() -> Path:
    """The same app made with ``feature add posts --no-worker``: the request path alone."""
    return new_app(APP, ("posts", "--no-worker"))


def supports_processes() -> bool:
    """Whether the generated app's ``serve`` has ``--processes``."""
    return "--processes" in serve_help()


def supports_stacks() -> bool:
    """Whether the generated app's ``serve`` can run on the plain stack (``--http h11 --loop asyncio``)."""
    return "--http" in serve_help()


def supports_metrics() -> bool:
    """Whether the generated app's ``serve`` can leave its metrics out (``--no-metrics``)."""
    return "--no-metrics" in serve_help()


@functools.cache
def serve_help() -> str:
    env = {"PYTHONPATH": str(posts_app() / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    command = [sys.executable, "-m", APP, "serve", "--help"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout


STACK_OPTIONS = {"fast": [], "plain": ["--http", "h11", "--loop", "asyncio"]}  # serve's default is the fast one


def serve(kind: str, db: Path, root: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start one server and wait until it answers: ``baseline``, ``peer`` (bench/peer_app.py), ``ours``, ``ours-2``,
    each of ours with ``-no-metrics``; any of them with ``@plain`` for the plain stack. Ours is the posts app
    unless ``root`` names another."""
    kind, _, stack = kind.partition("@")
    stack = stack or "fast"
    port = free_port()
    root = root or (posts_app_without_worker() if kind == "ours-no-worker" else posts_app())
    if kind in ("baseline", "peer"):
        server = "bench.http_server" if kind == "baseline" else "bench.peer_app"
        argv = [sys.executable, "-m", server, str(port), str(db), stack]
        env = None
    else:
        argv = [sys.executable, "-m", APP, "serve", "--port", str(port), "--db", str(db)]
        if kind.startswith("ours-2"):
            argv += ["--processes", "2"]
        if kind.endswith("-no-metrics"):
            argv.append("--no-metrics")
        argv += STACK_OPTIONS[stack]
        env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    # Every server process must be up: wrk's keep-alive connections stay with the process that took them.
    expected = 2 if kind.startswith("ours-2") else 1
    pids: set[object] = set()
    deadline = time.monotonic() + 60
    # One client (a new one loads the CA bundle: 30 ms of CPU a look), keeping no connection: a new one each time.
    with httpx.Client(timeout=1, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"{url}/healthz")
                if response.status_code == 200:
                    pids.add(response.json().get("process", {}).get("pid"))
                    if len(pids) >= expected:
                        return process, url
            except httpx.TransportError:
                time.sleep(0.05)
            if process.poll() is not None:
                break
    stop(process)
    raise RuntimeError(f"the {kind} server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wrk(
    url: str, seconds: int, script: Path | None, path: str = "/commands", requests: int | None = None
) -> tuple[float, float, int]:
    """wrk on ``url`` + ``path`` (a GET when no script); returns (requests per second, p99 in ms, requests).
    With ``requests``, it stops once about that many are answered (bench/wrk.py's quota)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-http-quota-") as quota:
        if requests:
            quota.write((script.read_text() if script is not None else "") + bench_wrk.quota_hook(requests, 2))
            quota.flush()
            script = Path(quota.name)
        scripted = ["-s", str(script)] if script is not None else []
        command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency", *scripted]
        result = bench_wrk.execute([*command, f"{url}{path}"], threads=2, timeout=seconds + 60, quota=bool(requests))
    result.check_returncode()
    output = result.stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failed requests:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    found = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no p99 in wrk's output:\n{output}")
    value, unit = found.groups()
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return rate, float(value) * UNITS[unit], requests


def httpx_load(url: str, seconds: int, requests: int | None = None) -> tuple[float, float, int]:
    """The fallback load generator: CONNECTIONS clients posting in a loop for ``seconds``, or until
    ``requests`` are answered."""

    async def client(http: httpx.AsyncClient, until: float, latencies: list[float]) -> None:
        while time.monotonic() < until and (requests is None or len(latencies) < requests):
            began = time.perf_counter()
            response = await http.post("/commands", content=BODY, headers={"Content-Type": "application/json"})
            if response.status_code != 201:
                raise RuntimeError(f"POST /commands answered {response.status_code}: {response.text[:200]}")
            latencies.append((time.perf_counter() - began) * 1000)

    async def run() -> tuple[float, float, int]:
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=CONNECTIONS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
            began = time.monotonic()
            await asyncio.gather(*(client(http, began + seconds, latencies) for _ in range(CONNECTIONS)))
            elapsed = time.monotonic() - began
        return len(latencies) / elapsed, percentile(latencies, 99), len(latencies)

    return asyncio.run(run())


def summarized_all(db: Path) -> bool:
    """Whether every post in the log has a summary outcome (read straight from the database)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        counts = dict(connection.execute("SELECT type, COUNT(*) FROM messages GROUP BY type").fetchall())
    outcomes = counts.get("posts/set-generated-summary", 0) + counts.get("posts/fail-summary-generation", 0)
    return outcomes >= counts.get("posts/create", 0)


def catch_up_time(db: Path) -> float | None:
    """Seconds until the worker has an outcome for every post; None past CATCH_UP_LIMIT."""
    began = time.monotonic()
    while time.monotonic() - began < CATCH_UP_LIMIT:
        if summarized_all(db):
            return time.monotonic() - began
        time.sleep(0.05)
    return None


def measure(kind: str, db: Path, seconds: int, script: Path | None, quota: int | None = None) -> Load:
    process, url = serve(kind, db)
    try:
        cpu_before = cpu_seconds(process.pid)
        try:
            if script is not None:
                rate, p99, requests = wrk(url, seconds, script, requests=quota)
            else:
                rate, p99, requests = httpx_load(url, seconds, quota)
        except RuntimeError as exc:
            raise RuntimeError(f"{kind}: {exc}") from None
        cpu = cpu_seconds(process.pid) - cpu_before
        catch_up = catch_up_time(db) if kind.startswith("ours") and kind != "ours-no-worker" else None
    finally:
        stop(process)
    one_process = not kind.startswith("ours-2")  # the group's parent does no work: its CPU says nothing
    return Load(rate, p99, catch_up, cpu / requests * 1e6 if one_process else None)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(size: str, only: tuple[str, ...] = ()) -> list[Row]:
    """Every kind of server the app supports, or only those of them in ``only`` (which holds ours and the baseline)."""
    seconds, rounds, quota = SIZES[size]
    # Ours without metrics runs right after ours: the 5% it is compared on is less than the machine's drift.
    unmeasured = ["-no-metrics"] if supports_metrics() else []
    kinds = [f"ours{suffix}" for suffix in ["", *unmeasured]] + ["baseline", "ours-no-worker"]
    kinds += ["ours@plain", "baseline@plain"] if supports_stacks() else []
    kinds += [f"ours-2{suffix}" for suffix in ["", *unmeasured]] if supports_processes() else []
    if only:
        kinds = [kind for kind in kinds if kind in only]
    results: dict[str, list[Load]] = {kind: [] for kind in kinds}
    use_wrk = shutil.which("wrk") is not None
    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        script = Path(scratch) / "post.lua"
        script.write_text(WRK_SCRIPT)
        for round in range(rounds):
            for kind in kinds:
                db = Path(scratch) / f"{kind}-{round}.db"
                results[kind].append(measure(kind, db, seconds, script if use_wrk else None, quota))
    return rows(results, load_length(seconds, quota), "wrk" if use_wrk else "httpx (wrk not installed)")


def rows(results: dict[str, list[Load]], length: str, generator: str) -> list[Row]:
    ours = results["ours"]
    ours_rate = median(r.rate for r in ours)
    note = (
        f"load from {generator}; ours = `python -m APP serve` with the posts feature and its summary worker"
        " (metrics on, as served by default)"
    )
    table = stack_rows(results, "fast", "uvloop + httptools", rate_target=0.7, p99_target=2.0, note=note)
    if "ours@plain" in results:
        table += stack_rows(results, "plain", "asyncio + h11", rate_target=0.6, p99_target=3.0)
        plain_rate = median(r.rate for r in results["ours@plain"])
        table.append(
            Result(
                f"{NAME}: ours on the fast stack vs the plain one",
                ours_rate,
                plain_rate,
                "req/s",
                ours_rate / plain_rate,
                "—",
                None,
                "what uvloop + httptools (serve's default) give over `serve --http h11 --loop asyncio`",
            )
        )
    catch_ups = [r.catch_up for r in ours]
    catch_up = max(catch_ups) if None not in catch_ups else None
    table.append(
        Result(
            f"worker catch-up after {length} of load",
            catch_up if catch_up is not None else float("inf"),
            None,
            "s",
            None,
            "≤ 5 s",
            catch_up is not None and catch_up <= 5,
        )
    )
    if "ours-no-worker" in results:
        table += without_worker_rows(results)
    if "ours-no-metrics" in results:
        unmeasured = results["ours-no-metrics"]
        bare = median(r.rate for r in unmeasured)
        table.append(
            Result(
                f"{NAME}: with /metrics vs serve --no-metrics",
                ours_rate,
                bare,
                "req/s",
                ours_rate / bare,
                "≥ 0.95×",
                ours_rate >= 0.95 * bare,
                "what /metrics costs: every request and command counted (prometheus_client), same app otherwise",
            )
        )
        ours_cpu = median(r.cpu_per_request for r in ours if r.cpu_per_request is not None)
        bare_cpu = median(r.cpu_per_request for r in unmeasured if r.cpu_per_request is not None)
        table.append(
            Result(
                "server CPU per POST /commands, with /metrics vs --no-metrics",
                ours_cpu,
                bare_cpu,
                "µs",
                ours_cpu / bare_cpu,
                "≤ 1.05×",
                ours_cpu <= 1.05 * bare_cpu,
                "CPU time of the server process over the requests it answered: steadier than req/s on a busy machine",
            )
        )
    if "ours-2-no-metrics" in results:
        two_rate, two_bare = (median(r.rate for r in results[kind]) for kind in ("ours-2", "ours-2-no-metrics"))
        table.append(
            Result(
                f"{NAME}: with /metrics vs --no-metrics, serve --processes 2",
                two_rate,
                two_bare,
                "req/s",
                two_rate / two_bare,
                "≥ 0.95×",
                two_rate >= 0.95 * two_bare,
                "each process writes its counts to the group's files (prometheus_client's multiprocess mode)",
            )
        )
    if "ours-2" in results:
        two = results["ours-2"]
        two_rate = median(r.rate for r in two)
        table.append(
            Result(
                f"{NAME}: serve --processes 2 vs 1",
                two_rate,
                ours_rate,
                "req/s",
                two_rate / ours_rate,
                "≥ 1.2×",
                two_rate >= 1.2 * ours_rate,
            )
        )
        two_catch_ups = [r.catch_up for r in two]
        table.append(
            Result(
                f"worker catch-up after {length} of load, 2 processes",
                max(two_catch_ups) if None not in two_catch_ups else float("inf"),
                None,
                "s",
                None,
                "≤ 5 s",
                None not in two_catch_ups and max(two_catch_ups) <= 5,  # type: ignore[type-var]
            )
        )
    return table


def stack_rows(
    results: dict[str, list[Load]], stack: str, label: str, *, rate_target: float, p99_target: float, note: str = ""
) -> list[Row]:
    """Throughput and p99 of ours vs the bare baseline on one server stack."""
    suffix = "" if stack == "fast" else f"@{stack}"
    ours, base = results[f"ours{suffix}"], results[f"baseline{suffix}"]
    ours_rate, base_rate = median(r.rate for r in ours), median(r.rate for r in base)
    ours_p99, base_p99 = median(r.p99 for r in ours), median(r.p99 for r in base)
    ours_cpu, base_cpu = (median(r.cpu_per_request for r in loads if r.cpu_per_request) for loads in (ours, base))
    name = f"{NAME}, {label}"
    rate_met, p99_met = ours_rate >= rate_target * base_rate, ours_p99 <= p99_target * base_p99
    return [
        Result(
            f"{name}: throughput",
            ours_rate,
            base_rate,
            "req/s",
            ours_rate / base_rate,
            f"≥ {rate_target}×",
            rate_met,
            note,
        ),
        Result(f"{name}: p99 latency", ours_p99, base_p99, "ms", ours_p99 / base_p99, f"≤ {p99_target:g}×", p99_met),
        Result(
            f"{name}: server CPU per request",
            ours_cpu,
            base_cpu,
            "µs",
            ours_cpu / base_cpu,
            "—",
            None,
            "CPU time of the server process over the requests it answered: steadier than req/s on a busy machine"
            if stack == "fast"
            else "",
        ),
    ]


def without_worker_rows(results: dict[str, list[Load]]) -> list[Row]:
    """The same app made without its summary worker, against bare Starlette: what the request path
    alone reaches, and so the most that cutting the worker's cost could bring the whole app to."""
    alone, bare = results["ours-no-worker"], results["baseline"]
    alone_rate, bare_rate = median(r.rate for r in alone), median(r.rate for r in bare)
    alone_cpu = median(r.cpu_per_request for r in alone if r.cpu_per_request is not None)
    bare_cpu = median(r.cpu_per_request for r in bare if r.cpu_per_request is not None)
    what = f"{NAME}, posts --no-worker vs bare"
    return [
        Result(f"{what}: throughput", alone_rate, bare_rate, "req/s", alone_rate / bare_rate, "—", None),
        Result(
            f"{what}: server CPU per request",
            alone_cpu,
            bare_cpu,
            "µs",
            alone_cpu / bare_cpu,
            "—",
            None,
            "the request path alone (no worker in the process): the ceiling for the whole app's ratio",
        ),
    ]


def cli(argv: list[str] | None = None) -> None:
    """``python -m bench.http_commands [smoke|full] [--kinds KIND,...]``."""
    import argparse

    known = (
        "ours", "baseline", "ours-no-metrics", "ours-no-worker", "ours@plain", "baseline@plain", "ours-2",
        "ours-2-no-metrics",
    )  # fmt: skip
    parser = argparse.ArgumentParser(prog="python -m bench.http_commands", description=__doc__.split("\n", 1)[0])
    parser.add_argument("size", nargs="?", choices=tuple(SIZES), default="full", help="preset (default: full)")
    parser.add_argument(
        "--kinds", default="", help=f"measure only these servers (ours and baseline among them), of: {', '.join(known)}"
    )
    args = parser.parse_args(argv)
    only = tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip())
    unknown = sorted(set(only) - set(known))
    if unknown:
        parser.error(f"unknown kind {', '.join(unknown)} — use some of {', '.join(known)}")
    if only and not {"ours", "baseline"} <= set(only):
        parser.error("--kinds must hold ours and baseline: every other row is compared with them")
    print(table(run(args.size, only)), flush=True)


if __name__ == "__main__":
    cli()
