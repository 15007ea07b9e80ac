"""``petrock migrate jobs`` on the legacy fixture app (tests/fixtures/legacy_app): real files, git, pytest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .support import app_env, git, run_petrock, tree_snapshot

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

    assert result.returncode == 0, result.stderr
    assert "verification passed: compiles, names, builds, app tests" in result.stdout
    assert "catalog: Jobs.start_example_worker -> ExampleWorker" in result.stdout
    assert "orders: Jobs.start_reminder_thread -> ReminderWorker" in result.stdout
    assert git(shop, "log", "-1", "--format=%s").strip() == "Migrate catalog, newsletter, orders jobs to workers"
    assert git(shop, "status", "--porcelain") == ""
    assert not (shop / "src/shop/orders/jobs.py").exists()
    assert not (shop / "src/shop/newsletter/jobs.py").exists()

    tests = app_python(shop, "-m", "pytest", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout


@pytest.mark.slow
def test_migrated_loops_run_as_workers_started_and_stopped_by_the_app(shop: Path) -> None:
    assert petrock(shop, "migrate", "jobs", "--no-verify-tests").returncode == 0
    probe = textwrap.dedent(
        """
        import asyncio, json, os, tempfile
        os.environ.update(SHOP_LOW_STOCK_INTERVAL="0.05", SHOP_CLEANUP_INTERVAL="0.05",
                          SHOP_REMINDER_INTERVAL="0.05", SHOP_DIGEST_INTERVAL="0.05", SHOP_PRICE_SYNC_INTERVAL="60")
        from shop.main import build_app

        async def main():
            app = build_app(os.path.join(tempfile.mkdtemp(), "probe.db"))
            app.replay()
            await app.start_workers()
            await asyncio.sleep(0.5)
            stuck = await app.close()
            print(json.dumps({"workers": [h.describe() for h in app.supervisor.handles], "stuck": stuck}))

        asyncio.run(main())
        """
    )
    result = app_python(shop, "-c", probe, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    workers = {w["name"]: w for w in report["workers"]}
    assert set(workers) == {"catalog/example", "orders/cleanup", "orders/reminder", "newsletter/digest"}
    assert workers["orders/cleanup"]["poll_interval"] == 0.05
    assert all(w["cycles"] >= 2 and w["state"] == "stopped" for w in workers.values()), workers
    assert report["stuck"] == []


def test_user_logic_and_comments_move_verbatim_into_the_worker(shop: Path) -> None:
    assert petrock(shop, "migrate", "jobs", "--no-verify-tests").returncode == 0
    worker = (shop / "src/shop/orders/worker.py").read_text()

    assert "class CleanupWorker:" in worker
    assert "    poll_interval = CLEANUP_INTERVAL\n" in worker
    assert "    # Sleep until the next sweep.\n    poll_interval = CLEANUP_INTERVAL" in worker
    assert (
        "    async def work(self) -> None:\n"
        "        # Unpaid orders hold stock: release them once the hold is over.\n"
        "        now = time.time()\n"
    ) in worker
    assert "                continue  # Support asked us never to cancel gift cards: people pay those late.\n" in worker
    assert "await asyncio.to_thread(self.run_once)" in worker
    assert 'logger.exception("sending reminders failed; trying again later")' in worker
    assert "import threading" not in worker  # the thread is gone, so is its import
    register = (shop / "src/shop/orders/register.py").read_text()
    assert register.endswith(
        "    app.register_worker(CleanupWorker(app))\n    app.register_worker(ReminderWorker(app))\n"
    )
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "src/shop/orders/worker.py", "src/shop/main.py"],
        cwd=shop,
        env=app_env(shop),
        check=False,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout


def test_what_cannot_be_converted_stays_marked_and_listed(shop: Path) -> None:
    result = petrock(shop, "migrate", "jobs", "--json", "--no-verify-tests")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(k["feature"], k["what"]) for k in report["kept"]] == [("catalog", "Jobs.start_price_sync")]
    jobs = (shop / "src/shop/catalog/jobs.py").read_text()
    assert "    # petrock: could not migrate start_price_sync: " in jobs
    assert "async def _price_sync_loop(self) -> None:" in jobs
    assert "start_example_worker" not in jobs  # converted, so gone from here
    main = (shop / "src/shop/main.py").read_text()
    assert "# petrock: could not migrate catalog Jobs.start_price_sync" in main
    assert "catalog_jobs.start_price_sync()" in main
    assert "order_jobs" not in main and "newsletter_jobs" not in main and "OrderJobs" not in main
    removed = {line["code"] for line in report["removed_lines"]}
    assert removed == {
        "catalog_jobs.start_example_worker()",
        "order_jobs = OrderJobs(app)",
        "order_jobs.start_cleanup_task()",
        "order_jobs.start_reminder_thread()",
        "newsletter_jobs.Jobs(app).start_digest_task()",
    }
    # A second run converts nothing more and does not mark twice.
    again = petrock(shop, "migrate", "jobs", "--no-verify-tests")
    assert again.returncode == 0, again.stderr
    assert (shop / "src/shop/catalog/jobs.py").read_text().count("could not migrate") == 1


def test_dry_run_writes_nothing_and_one_feature_can_be_migrated_alone(shop: Path) -> None:
    before = tree_snapshot(shop)
    dry = petrock(shop, "migrate", "jobs", "orders", "--dry-run", "--no-verify-tests")
    assert dry.returncode == 0, dry.stderr
    assert "+class CleanupWorker:" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert tree_snapshot(shop) == before

    only = petrock(shop, "migrate", "jobs", "orders", "--no-verify-tests")
    assert only.returncode == 0, only.stderr
    assert git(shop, "log", "-1", "--format=%s").strip() == "Migrate orders jobs to workers"
    assert (shop / "src/shop/newsletter/jobs.py").exists()
    assert "newsletter_jobs.Jobs(app).start_digest_task()" in (shop / "src/shop/main.py").read_text()


def test_bad_input_is_refused_with_one_line_and_nothing_written(shop: Path) -> None:
    unknown = petrock(shop, "migrate", "jobs", "accounts")
    assert unknown.returncode != 0
    assert unknown.stderr.startswith("error: feature 'accounts' has no jobs.py")

    (shop / "src/shop/main.py").write_text((shop / "src/shop/main.py").read_text() + "# wip\n")
    dirty = petrock(shop, "migrate", "jobs", "--no-verify-tests")
    assert dirty.returncode != 0
    assert dirty.stderr.startswith("error: the app has uncommitted changes")
    assert (shop / "src/shop/orders/jobs.py").exists()
