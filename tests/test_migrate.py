"""``petrock migrate jobs`` on the legacy fixture app (tests/fixtures/legacy_app): real files, git, pytest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from .support import REPO, app_env, git, run_petrock, tree_snapshot

LEGACY_APP = Path(__file__).parent / "fixtures" / "legacy_app"


def petrock(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_petrock(*args, cwd=cwd)


def app_python(app: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run Python inside the app, as its developer would: its src on the path, and only the plugins the app
    installs (none): a plugin importing at exit races the legacy jobs' thread, which nothing stops."""
    env = app_env(app, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run(
        [sys.executable, *args], cwd=app, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The legacy app, committed in its own git repository."""
    target = tmp_path / "shop"
    shutil.copytree(LEGACY_APP, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.db*"))
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "The shop, with hand-started jobs")
    return target


@pytest.mark.slow
def test_the_legacy_app_migrates_in_one_command_and_its_tests_still_pass(shop: Path) -> None:
    legacy = app_python(shop, "-m", "pytest", "-p", "no:cacheprovider")
    assert legacy.returncode == 0 and "5 passed" in legacy.stdout, legacy.stdout + legacy.stderr

    result = petrock(shop, "migrate", "jobs")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "verification passed: compiles, names, builds, serves, app tests" in result.stdout
    assert "jobs: 5 native, 0 hosted, 0 left" in result.stdout
    # Its interval doubles from pass to pass: the worker polls at the first and waits out the current one.
    assert "native  catalog: Jobs.start_price_sync -> PriceSyncWorker 'catalog/price-sync'" in result.stdout
    assert "native  catalog: Jobs.start_example_worker -> ExampleWorker 'catalog/example'" in result.stdout
    assert "native  orders: Jobs.start_reminder_thread -> ReminderWorker 'orders/reminder'" in result.stdout
    assert git(shop, "log", "-1", "--format=%s").strip() == (
        "Migrate catalog, newsletter, orders jobs to workers (5 native, 0 hosted)"
    )
    assert git(shop, "status", "--porcelain") == ""
    assert not (shop / "src/shop/orders/jobs.py").exists()
    assert not (shop / "src/shop/newsletter/jobs.py").exists()

    tests = app_python(shop, "-m", "pytest", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout


# Start the workers twice: as a test that builds the app does (nothing starts the jobs), then as the
# server does (its lifespan reaches each job's start line). Print what every migrated worker did.
PROBE = textwrap.dedent(
    """
    import asyncio, json, os, tempfile, time
    os.environ.update(SHOP_LOW_STOCK_INTERVAL="0.05", SHOP_CLEANUP_INTERVAL="0.05",
                      SHOP_REMINDER_INTERVAL="0.05", SHOP_DIGEST_INTERVAL="0.05", SHOP_PRICE_SYNC_INTERVAL="0.05")
    from starlette.testclient import TestClient
    from shop.main import build_app, create_server

    async def workers_alone():
        app = build_app(os.path.join(tempfile.mkdtemp(), "alone.db"))
        app.replay()
        await app.start_workers()
        await asyncio.sleep(0.5)
        await app.close()
        return {h.name: h.cycles for h in app.supervisor.handles}, app.log.path

    alone, path = asyncio.run(workers_alone())
    app = build_app(os.path.join(tempfile.mkdtemp(), "served.db"))
    with TestClient(create_server(app)):
        time.sleep(0.5)
        syncs = app.kv.get("catalog/price-syncs", 0)
    served = {h.name: h.describe() for h in app.supervisor.handles}
    print(json.dumps({"alone": alone, "served": served, "price_syncs": syncs}))
    """
)


@pytest.mark.slow
def test_migrated_jobs_run_with_the_server_and_not_where_only_the_workers_start(shop: Path) -> None:
    assert petrock(shop, "migrate", "jobs", "--no-verify-tests", "--no-verify-serve").returncode == 0

    result = app_python(shop, "-c", PROBE, timeout=60)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    names = {"catalog/example", "catalog/price-sync", "orders/cleanup", "orders/reminder", "newsletter/digest"}
    assert report["alone"] == dict.fromkeys(names, 0)  # built and started, but not served: no job ran
    served = report["served"]
    assert set(served) == names
    assert served["orders/cleanup"]["poll_interval"] == 0.05
    assert all(w["cycles"] >= 2 and w["state"] == "stopped" for w in served.values()), served
    assert report["price_syncs"] >= 2  # waited out its growing interval: 0.05 s, then 0.1 s, ...


def test_user_logic_and_comments_move_verbatim_into_the_worker(shop: Path) -> None:
    assert petrock(shop, "migrate", "jobs", "--no-verify-tests", "--no-verify-serve").returncode == 0
    worker = (shop / "src/shop/orders/worker.py").read_text()

    assert "class CleanupWorker:" in worker
    assert "    # Sleep until the next sweep.\n    poll_interval = CLEANUP_INTERVAL\n" in worker
    assert (
        "    async def work(self) -> None:\n"
        "        # Unpaid orders hold stock: release them once the hold is over.\n"
        "        now = time.time()\n"
    ) in worker
    assert "                continue  # Support asked us never to cancel gift cards: people pay those late.\n" in worker
    assert "await asyncio.to_thread(self.run_once)" in worker
    assert 'logger.exception("sending reminders failed; trying again later")' in worker
    assert "        if not await until_served(app, self):\n            return\n" in worker
    assert "import threading" not in worker  # the thread is gone, so is its import
    register = (shop / "src/shop/orders/register.py").read_text()
    assert register.endswith(
        "    app.register_worker(CleanupWorker(app))\n    app.register_worker(ReminderWorker(app))\n"
    )
    main = (shop / "src/shop/main.py").read_text()
    assert (
        '            run_with_server(app, "orders/cleanup")\n            run_with_server(app, "orders/reminder")\n'
        in main
    )
    assert "OrderJobs" not in main and "newsletter_jobs" not in main
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "src/shop/orders/worker.py", "src/shop/main.py"],
        cwd=shop,
        env=app_env(shop),
        check=False,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout


def test_a_loop_petrock_cannot_read_is_hosted_as_written_and_the_report_says_what_would_make_it_native(
    shop: Path,
) -> None:
    jobs = shop / "src/shop/catalog/jobs.py"
    jobs.write_text(
        jobs.read_text().replace(
            "            await asyncio.sleep(delay)\n",
            "            await asyncio.sleep(delay / 2)\n"
            "            await asyncio.sleep(delay / 2)  # the supplier throttles\n",
        )
    )
    git(shop, "commit", "-qam", "Sleep in two steps")

    result = petrock(shop, "migrate", "jobs", "--json", "--no-verify-tests", "--no-verify-serve")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"native": 4, "hosted": 1, "left": 0}
    (hosted,) = [job for job in report["jobs"] if job["outcome"] == "hosted"]
    assert (hosted["place"], hosted["job"], hosted["worker"]) == (
        "catalog",
        "Jobs.start_price_sync",
        "catalog/price-sync",
    )
    assert hosted["reason"] == "it sleeps more than once in a pass, or inside an `if` (an interval that changes?)"
    assert hosted["native_when"] == "each pass slept once, at its start or its end"
    started = 'run_with_server(self.app, "catalog/price-sync", lambda: asyncio.create_task(self._price_sync_loop()))'
    assert f"        {started}\n" in jobs.read_text()
    assert "delay = min(delay * 2, 10 * PRICE_SYNC_INTERVAL)" in jobs.read_text()  # its loop stays as it was
    register = (shop / "src/shop/catalog/register.py").read_text()
    assert (
        'HostedJob(\n            "catalog/price-sync",\n            was="catalog/jobs.py: Jobs.start_price_sync",'
        in register
    )
    main = (shop / "src/shop/main.py").read_text()
    assert "catalog_jobs.start_price_sync()" in main  # it still starts where it started
    starts = {line["code"]: line["now"] for line in report["start_lines"]}
    assert starts["order_jobs.start_cleanup_task()"] == 'run_with_server(app, "orders/cleanup")'
    # A second run finds nothing more to migrate, and writes nothing.
    before = tree_snapshot(shop)
    again = petrock(shop, "migrate", "jobs")
    assert again.returncode == 0, again.stderr
    assert "nothing to migrate" in again.stdout
    assert tree_snapshot(shop) == before


def test_dry_run_writes_nothing_and_one_feature_can_be_migrated_alone(shop: Path) -> None:
    before = tree_snapshot(shop)
    dry = petrock(shop, "migrate", "jobs", "orders", "--dry-run", "--no-verify-tests", "--no-verify-serve")
    assert dry.returncode == 0, dry.stderr
    assert "+class CleanupWorker:" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert tree_snapshot(shop) == before

    only = petrock(shop, "migrate", "jobs", "orders", "--no-verify-tests", "--no-verify-serve")
    assert only.returncode == 0, only.stderr
    assert "verification passed: compiles, names, builds (the same tree passed" in only.stdout  # not proved twice
    assert git(shop, "log", "-1", "--format=%s").strip() == "Migrate orders jobs to workers (2 native, 0 hosted)"
    assert (shop / "src/shop/newsletter/jobs.py").exists()
    assert "newsletter_jobs.Jobs(app).start_digest_task()" in (shop / "src/shop/main.py").read_text()


def test_a_verdict_kept_by_another_petrock_is_not_taken_as_proof(shop: Path, tmp_path: Path) -> None:
    """A kept verdict proves a tree only to the petrock whose gate made it: one changed since (an upgrade, a fix
    to the gate itself) proves the tree again. Here a copy of this petrock with one more line, its own each run:
    a verdict it kept an earlier run must not answer for it either."""
    args = ("migrate", "jobs", "orders", "--no-verify-tests", "--no-verify-serve")
    dry = petrock(shop, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    changed = tmp_path / "changed"
    shutil.copytree(REPO / "src", changed, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    verify = changed / "petrock/generators/migrate/verify.py"
    verify.write_text(f"{verify.read_text()}\n# changed since: {uuid.uuid4()}\n")

    real = run_petrock(*args, cwd=shop, env={"PYTHONPATH": str(changed), "PETROCK_TEMPLATES": str(REPO / "templates")})

    assert real.returncode == 0, real.stdout + real.stderr
    assert "verification passed: compiles, names, builds (" in real.stdout
    assert "the same tree passed" not in real.stdout  # proved again, by the gate that commits it
    assert git(shop, "log", "-1", "--format=%s").strip() == "Migrate orders jobs to workers (2 native, 0 hosted)"


def test_bad_input_is_refused_with_one_line_and_nothing_written(shop: Path) -> None:
    unknown = petrock(shop, "migrate", "jobs", "accounts")
    assert unknown.returncode != 0
    assert unknown.stderr.startswith("error: feature 'accounts' starts no job by hand")

    (shop / "src/shop/main.py").write_text((shop / "src/shop/main.py").read_text() + "# wip\n")
    dirty = petrock(shop, "migrate", "jobs", "--no-verify-tests")
    assert dirty.returncode != 0
    assert dirty.stderr.startswith("error: the app has uncommitted changes")
    assert (shop / "src/shop/orders/jobs.py").exists()
