"""``petrock migrate jobs`` on the job-shapes corpus (tests/fixtures/job_shapes: the ``depot`` app).

Every job of the corpus bumps a key ``shapes/<shape>`` in the app's key/value store each
cycle, so a probe that serves the app for a second shows each one running at its interval
before the migration and after it. The depot has no ``.petrock.toml`` (it predates them): it
is adopted first. Migrating it once is shared by the tests of this module.
"""

from __future__ import annotations

import json
import re
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

# shape -> the feature's job, and what petrock makes of it: a native worker, or a job hosted as written.
SHAPES = {
    "plain": ("alpha", "Jobs.start_plain_task", "native"),
    "sleep-first": ("alpha", "Jobs.start_sleep_first_task", "native"),
    "class-interval": ("alpha", "Jobs.start_class_interval_task", "native"),  # sleep(self.TICK_INTERVAL)
    "jobs-interval": ("alpha", "Jobs.start_jobs_interval_task", "native"),  # sleep(Jobs.TICK_INTERVAL)
    "class-attribute-helper": ("alpha", "Jobs.start_stale_task", "native"),  # a helper reads self.STALE_AFTER_SECONDS
    "decorated": ("alpha", "Jobs.start_guarded_task", "native"),
    "documented": ("alpha", "Jobs.start_documented_task", "native"),  # docstring and comments on the loop
    "for-else": ("alpha", "Jobs.start_for_else_task", "native"),  # `continue` in a for's else
    "wait-for-timeout": ("alpha", "Jobs.start_timeout_task", "native"),  # asyncio.wait_for in the body
    "wait-for-sleep": ("alpha", "Jobs.start_waiting_task", "native"),  # sleeps with wait_for(event.wait(), timeout)
    "same-name-task": ("alpha", "Jobs.start_sync_task", "native"),
    "same-name-thread": ("alpha", "Jobs.start_sync_thread", "native"),
    "thread": ("beta", "Jobs.start_pruner_thread", "native"),  # self._thread = None in __init__
    "event-wait": ("beta", "Jobs.start_heartbeat_thread", "native"),  # while not self._stop.wait(TICK)
    "nested-function": ("beta", "Jobs.start_nested_thread", "native"),
    "module-coroutine": ("gamma", "gamma_jobs.JOBS: refresh_totals", "native"),
    "jobs-list": ("gamma", "gamma_jobs.JOBS: prune_cache", "native"),
    "start-stop-class": ("gamma", "Jobs.start", "native"),  # its stop() cancels the task it keeps: a JobHandle now
    "module-state": ("delta", "Jobs.start_recorder_task", "native"),  # writes a dict another loop reads
    "module-constant": ("delta", "Jobs.start_batch_task", "native"),
    "adaptive-interval": ("delta", "Jobs.start_reporter_task", "native"),  # its sleep doubles each pass
    "break": ("delta", "Jobs.start_until_task", "native"),
    "mutable-class-attribute": ("delta", "Jobs.start_queue_task", "native"),  # run on the Jobs object itself
    "two-sleeps": ("delta", "Jobs.start_pulse_task", "hosted"),  # sleeps twice in a pass
    "backoff": ("delta", "Jobs.start_backoff_task", "native"),  # except: sleep(computed delay); continue
    "sleep-in-if-else": ("delta", "Jobs.start_either_task", "native"),  # each branch of the last `if` sleeps
    "taskgroup-held": ("delta", "grouped_jobs: task _grouped_loop(app)", "native"),  # a TaskGroup across a yield
    "timer-global": ("delta", "arm_check: timer _check_forever", "native"),  # re-armed in `finally:` via a global
    "every-dict": ("delta", "SCHEDULE.values(): every(TICK) count_scheduled", "native"),  # @every into a dict
    "start-loop-first": ("epsilon", "Jobs.start_ticker_task", "native"),  # for start in (a, b): start()
    "start-loop-second": ("epsilon", "Jobs.start_tocker_task", "native"),
    "start-helper": ("epsilon", "Jobs.start_helper_task", "native"),  # started by a function lifespan calls
    "serve-only": ("epsilon", "Jobs.start_relay_thread", "native"),  # started by `serve` only, never in tests
    "beside-a-worker": ("zeta", "Jobs.start_tally_task", "native"),  # the feature has a worker.py already
    "fixed-by-hand": ("zeta", "Jobs.start_later_task", "native"),  # keeps a counter between passes
    "no-init": ("eta", "Jobs.start_ping_task", "native"),  # Jobs() without __init__; counted in a file
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
def test_migrated_jobs_are_workers_the_app_starts_and_stops_in_bounded_time(
    depot_migrated: tuple[Path, dict[str, Any]], probed_after: dict[str, Any]
) -> None:
    _, report = depot_migrated
    workers = probed_after["workers"]
    migrated = {job["worker"]: job for job in report["jobs"] if job["outcome"] != "left"}
    assert set(migrated) <= set(workers)
    assert len(set(workers)) == len(workers) == len(migrated) + 1  # + zeta/audit, written by hand
    assert {"alpha/sync", "alpha/sync-thread"} <= set(migrated)  # two `sync` jobs, two names
    assert all(workers[name]["state"] == "stopped" for name in migrated), workers
    native = [name for name, job in migrated.items() if job["outcome"] == "native"]
    assert all(workers[name]["cycles"] >= 3 for name in native), workers
    assert workers["alpha/plain"]["poll_interval"] == 0.05
    assert probed_after["stop_seconds"] < 5


@pytest.mark.slow
def test_the_report_has_one_line_per_job_native_or_hosted_with_what_would_make_it_native(
    depot_migrated: tuple[Path, dict[str, Any]],
) -> None:
    _, report = depot_migrated
    outcomes = {(job["place"], job["job"]): job["outcome"] for job in report["jobs"]}
    assert outcomes == {(feature, job): outcome for feature, job, outcome in SHAPES.values()}
    assert report["counts"] == {"native": 35, "hosted": 1, "left": 0}
    hosted = {(job["place"], job["job"]): job for job in report["jobs"] if job["outcome"] == "hosted"}
    assert "sleeps more than once in a pass" in hosted["delta", "Jobs.start_pulse_task"]["reason"]
    assert hosted["delta", "Jobs.start_pulse_task"]["native_when"] == "each pass slept once, at its start or its end"
    assert report["verification"]["ok"] and report["verification"]["checks"] == [
        "compiles",
        "names",
        "builds",
        "serves",
        "app tests",
    ]
    running = report["verification"]["running"]
    assert set(running) == {job["worker"] for job in report["jobs"]}
    assert all(worker["cycles"] >= 1 for worker in running.values()), running


@pytest.mark.slow
def test_the_migrated_app_passes_its_own_tests_and_is_committed(depot_migrated: tuple[Path, dict[str, Any]]) -> None:
    root, _ = depot_migrated
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "log", "--format=%s").splitlines()[:2] == [
        "Migrate alpha, beta, delta, epsilon, eta, gamma, zeta jobs to workers (35 native, 1 hosted)",
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
    assert "EtaJobs" not in main and '            run_with_server(app, "eta/ping")\n' in main
    # Jobs(app) used by a start-up loop: the loop and the instance went, each start is now the worker's.
    assert "for start in" not in main and "epsilon = EpsilonJobs(app)" not in main
    assert (
        '            run_with_server(app, "epsilon/ticker")\n            run_with_server(app, "epsilon/tocker")\n'
        in main
    )
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
    assert "from .jobs import BATCH, SEEN, TICK, Scheduled, count_scheduled\n" in delta and "SEEN:" not in delta
    # The thread kept in self._thread (None in __init__) converted; the pruner runs in a thread.
    assert "await asyncio.to_thread(self.run_once)" in (src / "beta" / "worker.py").read_text()
    # The relay, started only by `serve`, is a worker that `serve` starts: the tests never run it.
    assert '    """Only `serve` starts the mail relay: the tests must never send mail."""\n' in main
    assert '    run_with_server(app, "epsilon/relay")\n' in main
    # A loop keeping a local counter between passes keeps it in an attribute, set when it starts.
    zeta = (src / "zeta" / "worker_2.py").read_text()
    assert "            return\n        self.cycles = 0\n" in zeta and "        self.cycles += 1\n" in zeta
    # The depot's core wakes every worker after each append: migrated workers keep their cadence themselves.
    assert "    @paced\n    async def work(self) -> None:\n" in zeta
    # A loop that can `break` stops doing anything once it would have ended.
    assert "        if self.finished:\n            return\n" in delta
    assert '        if self.app.kv.get("delta/done"):\n            self.finished = True\n            return\n' in delta
    # The feature with a worker.py gets a second module; the first is untouched.
    assert (src / "zeta" / "worker.py").read_text() == (CORPUS / "src/depot/zeta/worker.py").read_text()
    assert "from .worker_2 import LaterWorker, TallyWorker" in (src / "zeta" / "register.py").read_text()
    # Every job of a feature moved out: its jobs.py went, what the workers use moved with them.
    assert not (src / "alpha" / "jobs.py").exists() and not (src / "zeta" / "jobs.py").exists()
    assert "def bump(app: App, key: str) -> None:" in alpha
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F,E9,I", "src"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout


@pytest.mark.slow
def test_a_hosted_job_fixed_by_hand_becomes_native_on_the_next_run(
    depot_migrated: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """docs/MIGRATING.md: put the start line back, drop the HostedJob, fix what kept it hosted, run again."""
    root = copy_app(depot_migrated[0], tmp_path / "depot")
    jobs, register = root / "src/depot/delta/jobs.py", root / "src/depot/delta/register.py"
    before = (root / "src/depot/delta/worker.py").read_text()
    fixed = jobs.read_text().replace(
        'run_with_server(self.app, "delta/pulse", lambda: asyncio.create_task(self._pulse_loop()))',
        "asyncio.create_task(self._pulse_loop())",
    )
    jobs.write_text(fixed.replace("            await asyncio.sleep(TICK / 2)  # settle\n", ""))
    register.write_text(
        re.sub(
            r'    app\.register_worker\(\n        HostedJob\(\n            "delta/pulse".*?\n    \)\n',
            "",
            register.read_text(),
            flags=re.DOTALL,
        )
    )
    git(root, "commit", "-qam", "Sleep once per pulse")

    again = petrock_in(root, "migrate", "jobs", "delta", "--no-verify-tests")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "jobs: 1 native, 0 hosted, 0 left" in again.stdout
    assert "native  delta: Jobs.start_pulse_task -> PulseWorker 'delta/pulse'" in again.stdout
    assert (root / "src/depot/delta/worker.py").read_text() == before  # never overwritten
    assert "class PulseWorker:" in (root / "src/depot/delta/worker_2.py").read_text()
    assert (root / "src/depot/delta/register.py").read_text().endswith("    app.register_worker(PulseWorker(app))\n")
    assert "ReporterWorker" in (root / "src/depot/delta/register.py").read_text()  # native from the first run


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
        "Migrate beta jobs to workers (3 native, 0 hosted)",
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
    assert "verification passed: compiles, names, builds, serves (" in dry.stdout
    assert "+class RefreshTotalsWorker:" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert tree_snapshot(root) == before
