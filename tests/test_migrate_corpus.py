"""``petrock migrate jobs`` on the corpus written from issue 27 by someone who had not read the converter.

Four apps (tests/fixtures/README.md): ``job_shapes_more`` (41 shapes) and three whole legacy apps,
``legacy_apps/clinic``, ``legacy_apps/newsroom`` and ``legacy_apps/brewery`` (held out: written after
the converter, by someone who never saw it). Each has a ``JOBS.toml``, the answer key: every
job, the code it runs (``defined``), the function that starts it (``started``), and whether the
server starts it. The tests read the key, never a list of their own: every app is migrated once
(the gate compiling, building and serving it), and each test checks one target of the issue on
every app.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .support import petrock_in, run_app_tests

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = {
    "workshop": FIXTURES / "job_shapes_more",
    "clinic": FIXTURES / "legacy_apps" / "clinic",
    "newsroom": FIXTURES / "legacy_apps" / "newsroom",
    "brewery": FIXTURES / "legacy_apps" / "brewery",
}
IDENTITY = ["-c", "user.name=Test User", "-c", "user.email=test@example.invalid"]
NATIVE_TARGET = 0.70


@dataclass
class Migrated:
    name: str
    root: Path
    report: dict[str, Any]
    key: list[dict[str, Any]]  # JOBS.toml's jobs
    dry_run: dict[str, Any]  # what --dry-run said first

    def outcomes(self, job: dict[str, Any]) -> list[str]:
        """What the report says of one job of the key: matched by the code it runs, else by what starts it."""
        for field in ("defined", "started"):
            found = [line["outcome"] for line in self.report["jobs"] if job[field] in line["code"]]
            if found:
                return found
        return []


def _problems(output: str) -> str:
    try:
        return "\n".join(json.loads(output)["verification"]["problems"])
    except (ValueError, KeyError, TypeError):
        return output[-4000:]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENTITY, *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module", params=sorted(CORPUS))
def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Migrated:
    """One app of the corpus, committed in a repository of its own, adopted and migrated in one command."""
    name = request.param
    root = tmp_path_factory.mktemp(name) / name
    shutil.copytree(CORPUS[name], root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.db*"))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", f"The {name}, with hand-started jobs")
    if not (root / ".petrock.toml").exists():
        assert petrock_in(root, "adopt").returncode == 0
    head = git(root, "rev-parse", "HEAD")
    # The gate compiles, builds and serves the app; its tests run once below, in a test of their own.
    command = [sys.executable, "-m", "petrock", "migrate", "jobs", "--json", "--no-verify-tests"]
    dry = subprocess.run([*command, "--dry-run"], cwd=root, capture_output=True, text=True, timeout=600, check=False)
    assert dry.returncode == 0, _problems(dry.stdout) + dry.stderr
    assert git(root, "status", "--porcelain") == "" and git(root, "rev-parse", "HEAD") == head
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, _problems(result.stdout) + result.stderr
    key = tomllib.loads((root / "JOBS.toml").read_text())["job"]
    return Migrated(name, root, json.loads(result.stdout), key, json.loads(dry.stdout))


@pytest.mark.slow
def test_migrate_jobs_exits_0_and_commits(migrated: Migrated) -> None:
    assert migrated.report["commit"] is not None
    assert git(migrated.root, "log", "-1", "--format=%s").startswith("Migrate ")
    assert git(migrated.root, "status", "--porcelain") == ""


@pytest.mark.slow
def test_no_job_the_server_starts_is_left_and_only_those_are_migrated(migrated: Migrated) -> None:
    wrong = {}
    for job in migrated.key:
        outcomes = migrated.outcomes(job)
        if job["server_starts"] and (not outcomes or "left" in outcomes):
            wrong[job["name"]] = outcomes or "not found"
        if not job["server_starts"] and set(outcomes) - {"left"}:
            wrong[job["name"]] = outcomes  # the server never started it: a worker would
    assert wrong == {}
    left = [line for line in migrated.report["jobs"] if line["outcome"] == "left"]
    assert all("start" in line["reason"] for line in left), left  # each says what to do


@pytest.mark.slow
def test_at_least_70_percent_of_the_jobs_the_server_starts_are_native(migrated: Migrated) -> None:
    started = [job for job in migrated.key if job["server_starts"]]
    native = [job["name"] for job in started if migrated.outcomes(job) and set(migrated.outcomes(job)) == {"native"}]
    share = len(native) / len(started)
    counts = migrated.report["counts"]
    print(f"{migrated.name}: {counts['native']} native, {counts['hosted']} hosted, {counts['left']} left; {share:.0%}")
    assert share >= NATIVE_TARGET, sorted({j["name"] for j in started} - set(native))


@pytest.mark.slow
def test_every_migrated_job_ran_while_the_gate_served_the_app(migrated: Migrated) -> None:
    verification = migrated.report["verification"]
    assert verification["ok"] and "serves" in verification["checks"]
    migrated_jobs = {line["worker"] for line in migrated.report["jobs"] if line["outcome"] != "left"}
    guarded = {line["worker"] for line in migrated.report["jobs"] if line["guarded"]}
    ran = {name for name, w in verification["running"].items() if w["cycles"] >= 1 or w["state"] == "running"}
    assert migrated_jobs - guarded <= ran


@pytest.mark.slow
def test_the_apps_own_tests_pass_after_the_migration(migrated: Migrated) -> None:
    """Among them ``tests/test_jobs_manifest.py``: every job the server starts shows its effect while the app
    serves, as before the migration; none runs when the app is only built or serves its API alone."""
    tests = run_app_tests(migrated.root)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]


@pytest.mark.slow
def test_dry_run_showed_the_same_plan_and_gate_and_wrote_nothing(migrated: Migrated) -> None:
    """The fixture ran ``--dry-run`` first (nothing written or committed: checked there), then the migration."""
    dry, real = migrated.dry_run, migrated.report
    for part in ("files", "counts", "jobs", "start_lines"):
        assert dry[part] == real[part], part
    assert dry["verification"]["ok"] and dry["verification"]["checks"] == real["verification"]["checks"]
    assert dry["commit"] is None and dry["dry_run"] is True
