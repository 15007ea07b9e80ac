"""Every benchmark runs end to end at its tiny "smoke" size and prints its rows.

The numbers at this size mean nothing (the targets are checked by ``make bench``); these
tests keep the benchmarks themselves from rotting: each runs as a user runs it,
``python -m bench.NAME smoke``, against a freshly generated app.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(
    r"^\| (?P<name>[^|]+?) \| (?P<ours>[^|]+?) \| (?P<baseline>[^|]*?) \| (?P<ratio>[^|]*?) \|", re.MULTILINE
)

pytestmark = pytest.mark.slow


def run_benchmark(name: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_at_smoke_size_and_prints_a_ratio_or_why_it_skipped(name: str) -> None:
    rows = [row for row in ROW.finditer(run_benchmark(name)) if row["name"] != "benchmark"]
    assert rows, f"bench.{name} printed no result rows"
    for row in rows:
        if row["ours"].startswith("skipped: "):
            assert len(row["ours"]) > len("skipped: "), "a skip must say why"
            continue
        assert re.search(r"\d", row["ours"]), row.group(0)
        if row["ratio"] != "—":
            assert row["ratio"].endswith("×"), row.group(0)


def test_without_wrk_the_http_benchmark_falls_back_to_an_httpx_load_and_says_so(tmp_path: Path) -> None:
    """Without wrk on PATH the HTTP benchmark still measures, with its own load generator, and names it."""
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bench.http_commands", "smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "load from httpx (wrk not installed)" in result.stdout
    assert re.search(r"POST /commands, 32 connections: throughput \[1\] \| [\d,.]+ req/s", result.stdout)
