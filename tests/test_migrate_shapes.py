"""``petrock migrate jobs`` on the job-shapes corpus (tests/fixtures/job_shapes: the ``depot`` app).

Every job of the corpus bumps a key ``shapes/<shape>`` in the app's key/value store each
cycle, so a probe that serves the app for a second shows each one running at its interval
before the migration and after it. The depot has no ``.petrock.toml`` (it predates them): it
is adopted first. Migrating it once is shared by the tests of this module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .support import app_env, git_snapshot, petrock_in, run_app_tests, tree_snapshot

CORPUS = Path(__file__).parent / "fixtures" / "job_shapes"
IDENTITY = ["-c", "user.name=Test User", "-c", "user.email=test@example.invalid"]

# shape -> the feature's job, and whether petrock converts it (True) or must leave it in place (False).
SHAPES = {
    "plain": ("alpha", "Jobs.start_plain_task", True),
    "sleep-first": ("alpha", "Jobs.start_sleep_first_task", True),
    "class-interval": ("alpha", "Jobs.start_class_interval_task", True),  # sleep(self.TICK_INTERVAL)
    "jobs-interval": ("alpha", "Jobs.start_jobs_interval_task", True),  # sleep(Jobs.TICK_INTERVAL)
    "class-attribute-helper": ("alpha", "Jobs.start_stale_task", True),  # a helper reads self.STALE_AFTER_SECONDS
    "decorated": ("alpha", "Jobs.start_guarded_task", True),
    "documented": ("alpha", "Jobs.start_documented_task", True),  # docstring and comments on the loop
    "for-else": ("alpha", "Jobs.start_for_else_task", True),  # `continue` in a for's else
    "wait-for-timeout": ("alpha", "Jobs.start_timeout_task", True),  # asyncio.wait_for in the body
    "wait-for-sleep": ("alpha", "Jobs.start_waiting_task", True),  # sleeps with wait_for(event.wait(), timeout)
    "same-name-task": ("alpha", "Jobs.start_sync_task", True),
    "same-name-thread": ("alpha", "Jobs.start_sync_thread", True),
    "thread": ("beta", "Jobs.start_pruner_thread", True),  # self._thread = None in __init__
    "event-wait": ("beta", "Jobs.start_heartbeat_thread", True),  # while not self._stop.wait(TICK)
    "nested-function": ("beta", "Jobs.start_nested_thread", True),
    "module-coroutine": ("gamma", "JOBS: refresh_totals", True),
    "jobs-list": ("gamma", "JOBS: prune_cache", True),
    "start-stop-class": ("gamma", "Jobs", False),  # a class with its own start/stop
    "module-state": ("delta", "Jobs.start_recorder_task", True),  # writes a dict another loop reads
    "module-constant": ("delta", "Jobs.start_batch_task", True),
    "adaptive-interval": ("delta", "Jobs.start_reporter_task", False),
    "break": ("delta", "Jobs.start_until_task", False),
    "mutable-class-attribute": ("delta", "Jobs.start_queue_task", False),
    "start-loop-first": ("epsilon", "Jobs.start_ticker_task", True),  # for start in (a, b): start()
    "start-loop-second": ("epsilon", "Jobs.start_tocker_task", True),
    "start-helper": ("epsilon", "Jobs.start_helper_task", True),  # started by a function lifespan calls
    "serve-only": ("epsilon", "Jobs.start_relay_thread", False),  # started by `serve` only, never in tests
    "beside-a-worker": ("zeta", "Jobs.start_tally_task", True),  # the feature has a worker.py already
    "fixed-by-hand": ("zeta", "Jobs.start_later_task", False),  # local state: converted once fixed
    "no-init": ("eta", "Jobs.start_ping_task", True),  # Jobs() without __init__; counted in a file
}

# Serve the app for a while (lifespan: what the jobs' start-up runs), start the relay as `serve` does,
# then print every counter, the workers and how long stopping took.
PROBE = textwrap.dedent(
    """
    import json, os, tempfile, time
    os.environ["DEPOT_TICK"] = "0.05"
    os.environ["DEPOT_PING_FILE"] = ping_file = os.path.join(tempfile.mkdtemp(), "pings")
    from starlette.testclient import TestClient
    from depot.main import build_app, create_server, start_relay

    app = build_app(os.path.join(tempfile.mkdtemp(), "probe.db"))
    with TestClient(create_server(app)):
        start_relay(app)
        time.sleep(1.2)
        for attempt in range(50):  # legacy threads share the app's connection: a read can collide with them
            try:
                counts = {key: value for key, value in app.kv.items() if key.startswith(("shapes/", "delta/"))}
                break
            except Exception:
                time.sleep(0.02)
        counts["shapes/no-init"] = os.path.getsize(ping_file) if os.path.exists(ping_file) else 0
        stopping = time.monotonic()
    stop_seconds = time.monotonic() - stopping
    workers = {h.describe()["name"]: h.describe() for h in app.supervisor.handles}
    print(json.dumps({"counts": counts, "workers": workers, "stop_seconds": stop_seconds}), flush=True)
    os._exit(0)  # the legacy threads never stop: do not wait for them (nor flush, hence flush=True)
    """
)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENTITY, *args], cwd=root, capture_output=True, text=True, check=True).stdout


def copy_app(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.db*"))
    return target


def probe(root: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env=app_env(root, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def depot_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus app as its developers left it: a git repository, no .petrock.toml."""
    root = copy_app(CORPUS, tmp_path_factory.mktemp("depot-original") / "depot")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "The depot, with hand-started jobs")
    return root


@pytest.fixture(scope="session")
def depot_migrated(depot_original: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The corpus app adopted, then migrated in one command (the gate running the app's tests)."""
    root = copy_app(depot_original, tmp_path_factory.mktemp("depot-migrated") / "depot")
    adopted = petrock_in(root, "adopt")
    assert adopted.returncode == 0, adopted.stderr
    # The gate runs the depot's tests: allow for a busy machine.
    command = [sys.executable, "-m", "petrock", "migrate", "jobs", "--json"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, json.loads(result.stdout)


@pytest.fixture(scope="session")
def probed_before(depot_original: Path) -> dict[str, Any]:
    return probe(depot_original)


@pytest.fixture(scope="session")
def probed_after(depot_migrated: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return probe(depot_migrated[0])


def test_the_corpus_has_at_least_twenty_shapes() -> None:
    assert len(SHAPES) >= 20
    jobs_files = "".join(path.read_text() for path in CORPUS.glob("src/depot/*/jobs.py"))
    assert all(f'"shapes/{shape}"' in jobs_files for shape in SHAPES if shape != "no-init")


@pytest.mark.slow
def test_every_shape_runs_at_its_interval_before_the_migration(probed_before: dict[str, Any]) -> None:
    counts = probed_before["counts"]
    assert {shape: counts.get(f"shapes/{shape}", 0) for shape in SHAPES if counts.get(f"shapes/{shape}", 0) < 3} == {}
    assert counts["delta/seen"] >= 2  # the reporter sees the recorder's dict


@pytest.mark.slow
def test_every_shape_still_runs_at_its_interval_after_the_migration(probed_after: dict[str, Any]) -> None:
    counts = probed_after["counts"]
    assert {shape: counts.get(f"shapes/{shape}", 0) for shape in SHAPES if counts.get(f"shapes/{shape}", 0) < 3} == {}
    assert counts["delta/seen"] >= 2, "the migrated recorder and the kept reporter no longer share SEEN"


@pytest.mark.slow
def test_converted_jobs_are_workers_the_app_starts_and_stops_in_bounded_time(
    depot_migrated: tuple[Path, dict[str, Any]], probed_after: dict[str, Any]
) -> None:
    _, report = depot_migrated
    workers = probed_after["workers"]
    migrated = {c["name"] for c in report["converted"]}
    assert migrated <= set(workers)
    assert len(set(workers)) == len(workers) == len(migrated) + 1  # + zeta/audit, written by hand
    assert {"alpha/sync-task", "alpha/sync-thread"} <= migrated  # two `sync` jobs, two names
    assert all(workers[name]["cycles"] >= 3 and workers[name]["state"] == "stopped" for name in migrated), workers
    assert workers["alpha/plain"]["poll_interval"] == 0.05
    assert probed_after["stop_seconds"] < 5


@pytest.mark.slow
def test_the_report_lists_what_converted_and_why_the_rest_stayed(depot_migrated: tuple[Path, dict[str, Any]]) -> None:
    _, report = depot_migrated
    converted = {(c["feature"], c["source"]) for c in report["converted"]}
    kept = {(k["feature"], k["what"]): k["reason"] for k in report["kept"]}
    assert converted == {(feature, job) for feature, job, converts in SHAPES.values() if converts}
    assert {(feature, job) for feature, job, converts in SHAPES.values() if not converts} <= set(kept)
    assert "outside the server's start-up" in kept["epsilon", "Jobs.start_relay_thread"]
    assert "src/depot/main.py:41" in kept["epsilon", "Jobs.start_relay_thread"]
    assert "mutable class attribute" in kept["delta", "Jobs.start_queue_task"]
    assert "`break`" in kept["delta", "Jobs.start_until_task"]
    assert "start and stop" in kept["gamma", "Jobs"]
    assert report["verification"]["ok"] and report["verification"]["checks"] == [
        "compiles",
        "names",
        "builds",
        "app tests",
    ]


@pytest.mark.slow
def test_the_migrated_app_passes_its_own_tests_and_is_committed(depot_migrated: tuple[Path, dict[str, Any]]) -> None:
    root, _ = depot_migrated
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "log", "--format=%s").splitlines()[:2] == [
        "Migrate alpha, beta, delta, epsilon, eta, gamma, zeta jobs to workers",
        "Adopt depot: record it in .petrock.toml for petrock",
    ]
    tests = run_app_tests(root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout


@pytest.mark.slow
def test_the_failures_users_reported_are_gone(depot_migrated: tuple[Path, dict[str, Any]]) -> None:
    root, _ = depot_migrated
    src = root / "src" / "depot"
    alpha, main = (src / "alpha" / "worker.py").read_text(), (src / "main.py").read_text()
    # A Jobs class without __init__ (a KeyError '__init__' once): its worker takes the app like the others.
    eta = (src / "eta" / "worker.py").read_text()
    assert "class PingWorker:" in eta and "    def __init__(self, app: App) -> None:\n        self.app = app\n" in eta
    assert "EtaJobs" not in main
    # Jobs(app) used by a start-up loop: the loop, the instance and nothing else went.
    assert "for start in" not in main and "epsilon = EpsilonJobs(app)" not in main
    assert "from .epsilon.jobs import Jobs as EpsilonJobs" in main  # still used by start_relay
    # Class attributes stay reachable: self.STALE_AFTER_SECONDS and sleep(Jobs.TICK_INTERVAL).
    assert "    STALE_AFTER_SECONDS = 0.0\n" in alpha
    assert '    TICK_INTERVAL = TICK\n    name = "alpha/jobs-interval"\n' in alpha
    assert "    poll_interval = TICK_INTERVAL\n" in alpha and "Jobs.TICK_INTERVAL" not in alpha
    # `continue` in a for's else ends the cycle; the one in the inner loop stays.
    assert '        else:\n            bump(self.app, "shapes/for-else")\n            return  # nobody' in alpha
    # The decorator, the docstring and the comments came along.
    assert "    @log_failures\n    async def work(self) -> None:\n" in alpha
    assert (
        '        """Count the documented cycles for the dashboard."""\n'
        "        # The dashboard reads this counter; keep its key stable.\n"
        "        # until the process exits\n"
    ) in alpha
    # Shared module state is imported from jobs.py, never copied.
    delta = (src / "delta" / "worker.py").read_text()
    assert "from .jobs import BATCH, SEEN, TICK\n" in delta and "SEEN:" not in delta
    # The thread kept in self._thread (None in __init__) converted; the pruner runs in a thread.
    assert "await asyncio.to_thread(self.run_once)" in (src / "beta" / "worker.py").read_text()
    # The relay, started only by `serve`, stays where it is, marked, and does not run in tests.
    assert "# petrock: could not migrate epsilon Jobs.start_relay_thread" in main
    assert "# petrock: could not migrate start_relay_thread: it is started in" in (src / "epsilon/jobs.py").read_text()
    # The feature with a worker.py gets a second module; the first is untouched.
    assert (src / "zeta" / "worker.py").read_text() == (CORPUS / "src/depot/zeta/worker.py").read_text()
    assert "from .worker_2 import TallyWorker" in (src / "zeta" / "register.py").read_text()
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F,E9", "src"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout


@pytest.mark.slow
def test_rerunning_after_fixing_a_marked_job_converts_it(
    depot_migrated: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root = copy_app(depot_migrated[0], tmp_path / "depot")
    jobs = root / "src/depot/zeta/jobs.py"
    before = {name: (root / "src/depot/zeta" / name).read_text() for name in ("worker.py", "worker_2.py")}
    fixed = jobs.read_text().replace("        cycles = 0\n", "").replace("            cycles += 1\n", "")
    jobs.write_text(fixed)
    git(root, "commit", "-qam", "Keep no state in the later loop")

    again = petrock_in(root, "migrate", "jobs", "zeta", "--no-verify-tests")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "zeta: Jobs.start_later_task -> LaterWorker" in again.stdout
    assert {name: (root / "src/depot/zeta" / name).read_text() for name in before} == before
    assert "class LaterWorker:" in (root / "src/depot/zeta/worker_3.py").read_text()
    assert (root / "src/depot/zeta/register.py").read_text().endswith("    app.register_worker(LaterWorker(app))\n")
    assert "zeta.start_later_task()" not in (root / "src/depot/main.py").read_text()
    assert "could not migrate zeta" not in (root / "src/depot/main.py").read_text()


def test_an_app_without_a_manifest_is_pointed_to_adopt(depot_original: Path, tmp_path: Path) -> None:
    root = copy_app(depot_original, tmp_path / "depot")
    before = git_snapshot(root)

    refused = petrock_in(root, "migrate", "jobs")

    assert refused.returncode != 0
    assert refused.stderr.startswith("error: ") and "run `petrock adopt` (or pass --adopt)" in refused.stderr
    assert git_snapshot(root) == before


@pytest.mark.slow
def test_migrate_with_adopt_records_the_app_then_migrates(depot_original: Path, tmp_path: Path) -> None:
    root = copy_app(depot_original, tmp_path / "depot")

    result = petrock_in(root, "migrate", "jobs", "beta", "--adopt", "--no-verify-tests")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("adopted depot: wrote .petrock.toml")
    manifest = (root / ".petrock.toml").read_text()
    assert 'project_name = "depot"' in manifest and "[features.zeta]" in manifest
    assert git(root, "log", "--format=%s").splitlines()[:2] == [
        "Migrate beta jobs to workers",
        "Adopt depot: record it in .petrock.toml for petrock",
    ]
    again = petrock_in(root, "adopt")
    assert again.returncode != 0 and "exists already" in again.stderr


def test_dry_run_runs_the_gate_and_writes_nothing(depot_original: Path, tmp_path: Path) -> None:
    root = copy_app(depot_original, tmp_path / "depot")
    assert petrock_in(root, "adopt").returncode == 0
    before = tree_snapshot(root)

    dry = petrock_in(root, "migrate", "jobs", "gamma", "--dry-run", "--no-verify-tests")

    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "verification passed: compiles, names, builds (" in dry.stdout
    assert "+class RefreshTotalsWorker:" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert tree_snapshot(root) == before
