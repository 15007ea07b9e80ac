"""Every benchmark runs end to end at its tiny "smoke" size and prints its rows.

The numbers at this size mean nothing (the targets are checked by ``make bench``); these
tests keep the benchmarks themselves from rotting. They run as a user runs them all,
``python -m bench smoke``: once, every benchmark one after another in one process, each
test reading its benchmark's table from that run. Each app is generated once for the whole
file (``PETROCK_BENCH_APPS``, see bench/common.py's ``new_app``): generating one costs
seconds, and most benchmarks measure the same few apps.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS
from bench.common import SHARED_APPS

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(
    r"^\| (?P<name>[^|]+?) \| (?P<ours>[^|]+?) \| (?P<baseline>[^|]*?) \| (?P<ratio>[^|]*?) \|", re.MULTILINE
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def shared_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The generated apps, made by the first benchmark that asks for each and reused by the others."""
    with pytest.MonkeyPatch.context() as patch:
        apps = tmp_path_factory.mktemp("bench-apps")
        patch.setenv(SHARED_APPS, str(apps))
        yield apps


@pytest.fixture(scope="module")
def smoke_run(request: pytest.FixtureRequest, shared_apps: Path) -> tuple[str, dict[str, str]]:
    """``python -m bench smoke``, once: its whole output (stderr in it, where it happened) and, by benchmark,
    what it printed between its ``--- bench.NAME (smoke)`` line and the next (a traceback, if it crashed).
    When only some of the tests below are selected (``-k``), only their benchmarks run."""
    tests = [item for item in request.session.items if getattr(item, "originalname", None) == SMOKE_TEST]
    selected = {item.callspec.params["name"] for item in tests}
    names = [] if selected >= set(BENCHMARKS) else sorted(selected)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "smoke", *names],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,  # all of them: about 100 s on a loaded 2-core machine
        check=False,
    )
    output = result.stdout.split("\n=== all benchmarks", 1)[0]
    parts = re.split(r"^--- bench\.(\w+) \(smoke\)$", output, flags=re.MULTILINE)
    return result.stdout, dict(zip(parts[1::2], parts[2::2], strict=True))


SMOKE_TEST = "test_benchmark_runs_at_smoke_size_and_prints_a_ratio_or_why_it_skipped"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_at_smoke_size_and_prints_a_ratio_or_why_it_skipped(
    name: str, smoke_run: tuple[str, dict[str, str]]
) -> None:
    output, sections = smoke_run
    assert name in sections, f"python -m bench smoke did not run bench.{name}:\n{output[-5000:]}"
    rows = [row for row in ROW.finditer(sections[name]) if row["name"] != "benchmark"]
    assert rows, f"bench.{name} printed no result rows:\n{sections[name]}"
    for row in rows:
        if row["ours"].startswith("skipped: "):
            assert not row["ours"].startswith("skipped: crashed: "), sections[name]
            assert len(row["ours"]) > len("skipped: "), "a skip must say why"
            continue
        assert re.search(r"\d", row["ours"]), row.group(0)
        if row["ratio"] != "—":
            assert row["ratio"].endswith("×"), row.group(0)


def test_without_wrk_the_http_benchmark_falls_back_to_an_httpx_load_and_says_so(tmp_path: Path) -> None:
    """Without wrk on PATH the HTTP benchmark still measures, with its own load generator, and names it.

    Ours and the baseline only: the other servers' rows come from the same loads, and the run with wrk
    (above) measures every one of them."""
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bench.http_commands", "smoke", "--kinds", "ours,baseline"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "load from httpx (wrk not installed)" in result.stdout
    throughput = r"POST /commands, 32 connections, uvloop \+ httptools: throughput \[1\] \| [\d,.]+ req/s"
    assert re.search(throughput, result.stdout)


def run_scale(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "bench.scale", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_scale_benchmark_builds_a_log_the_app_serves_and_reports_json(tmp_path: Path) -> None:
    """A tiny log built through the app's log API, cached, served: every sampled id answers, as JSON.
    (The smoke preset's short loads; the log's size, wrk's connections and the cache as asked.)"""
    cache = tmp_path / "cache"
    result = run_scale(
        "smoke",
        "--posts",
        "40",
        "--backend",
        "sqlite",
        "--seconds",
        "1",
        "--only",
        "start,get",
        "--connections",
        "4",
        "--json",
        "--cache-dir",
        str(cache),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["wrk"]["connections"] == 4
    (run,) = document["runs"]
    assert (run["backend"], run["posts"], run["messages"], run["cached"]) == ("sqlite", 40, 120, False)
    start, get = run["results"]
    assert start["name"].endswith("start until /healthz 200") and 0 < start["ours"] < 60, start
    if get["kind"] == "skipped":
        assert "wrk" in get["reason"]
    else:
        assert get["note"].startswith("wrk -c4: "), get
        for key in ("get", "get, baseline"):  # every sampled id answers, on the big log and on the baseline's
            (get_load,) = run["loads"][key]
            assert get_load["requests"] > 0 and not any(get_load["errors"].values()), run["loads"]
    (entry,) = cache.iterdir()
    assert len((entry / "ids.txt").read_text().split()) == 40


def test_scale_benchmark_on_postgres_keeps_the_built_cluster_for_the_next_run(tmp_path: Path) -> None:
    """The log goes into a throwaway PostgreSQL server; the next run starts a copy of the kept one."""
    args = ("--posts", "20", "--backend", "postgres", "--only", "rebuild", "--json", "--cache-dir", str(tmp_path))
    runs = []
    for _ in range(2):
        result = run_scale(*args)
        assert result.returncode == 0, result.stderr
        (run,) = json.loads(result.stdout)["runs"]
        (row,) = run["results"]
        if row["kind"] == "skipped":
            pytest.skip(row["reason"])
        assert row["ours"] > 0, row
        runs.append(run)
    assert [run["cached"] for run in runs] == [False, True]
    assert runs[1]["rebuild"]["seconds"] > 0


def test_scale_benchmark_refuses_an_unknown_measure_in_one_line() -> None:
    result = run_scale("--only", "start,speed")
    assert result.returncode == 2
    assert "unknown measure speed — use some of rebuild, worker, start" in result.stderr
    assert "Traceback" not in result.stderr
