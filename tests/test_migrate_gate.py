"""The gate of ``petrock migrate jobs``: a migration that would break the app writes and commits nothing.

Also what ``--allow-dirty`` may and may not commit. Runs on the legacy shop (tests/fixtures/legacy_app).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from petrock.generators.migrate.verify import verify
from petrock.plan import Plan

from .support import git_snapshot, petrock_in

LEGACY_APP = Path(__file__).parent / "fixtures" / "legacy_app"
IDENTITY = ["-c", "user.name=Test User", "-c", "user.email=test@example.invalid"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    target = tmp_path / "shop"
    shutil.copytree(LEGACY_APP, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.db*"))
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "The shop, with hand-started jobs")
    return target


@pytest.mark.slow
def test_a_migration_that_fails_the_apps_tests_writes_and_commits_nothing(shop: Path) -> None:
    (shop / "tests" / "test_legacy.py").write_text(
        "def test_the_order_jobs_module_is_importable() -> None:\n    import shop.orders.jobs  # noqa: F401\n"
    )
    git(shop, "add", "-A")
    git(shop, "commit", "-qm", "A test that holds on to orders/jobs.py")
    before = git_snapshot(shop)

    for args in (("migrate", "jobs"), ("migrate", "jobs", "--dry-run")):
        # The gate runs the app's tests twice here (after, then before the migration): allow for a busy machine.
        result = subprocess.run(
            [sys.executable, "-m", "petrock", *args], cwd=shop, capture_output=True, text=True, timeout=600, check=False
        )

        assert result.returncode != 0, result.stdout
        problems = result.stderr.splitlines()
        assert problems[0] == (
            "  tests/test_legacy.py::test_the_order_jobs_module_is_importable: failed after the migration: "
            "ModuleNotFoundError: No module named 'shop.orders.jobs'"
        )
        assert problems[-1].startswith("error: the migrated app would not work (1 problems, listed above)")
        assert "verification failed (1 problems): compiles, names, builds, serves, app tests" in result.stdout
        assert git_snapshot(shop) == before


@pytest.mark.slow
def test_only_failures_the_original_does_not_have_are_the_migrations(shop: Path) -> None:
    """The gate runs the failing test files again on the original: what failed there too is not blamed."""
    (shop / "src/shop/marker.py").write_text("VALUE = 1\n")
    (shop / "tests/test_marker.py").write_text(
        "from shop import marker\n\n\ndef test_the_marker_is_one() -> None:\n    assert marker.VALUE == 1\n"
    )
    (shop / "tests/test_broken.py").write_text("def test_was_failing_already() -> None:\n    assert False\n")
    git(shop, "add", "-A")
    git(shop, "commit", "-qm", "A test that fails before any migration")

    harmless = Plan(shop)
    harmless.write("src/shop/notes.py", "NOTE = 'nothing'\n")
    assert [str(p) for p in verify(shop, harmless, "shop").problems] == [
        "tests: the app's tests fail before the migration too (tests/test_broken.py::test_was_failing_already); fix "
        + "them first or pass --no-verify-tests"
    ]

    breaking = Plan(shop)
    breaking.write("src/shop/marker.py", "VALUE = 2\n", edit=True)
    problems = [str(p) for p in verify(shop, breaking, "shop").problems]
    assert problems == ["tests/test_marker.py::test_the_marker_is_one: failed after the migration: assert 2 == 1"]


def test_the_gate_reports_syntax_errors_and_new_undefined_or_unused_names_where_they_are(shop: Path) -> None:
    plan = Plan(shop)
    plan.write("src/shop/orders/worker.py", "class Sweep:\n    def work(self) -> None:\n        continue\n")
    jobs = (shop / "src/shop/catalog/jobs.py").read_text()
    plan.write(
        "src/shop/catalog/jobs.py",
        jobs.replace("self.app.kv.set(", "self.app.kv.put(") + "\ndef f():\n    return gone\n",
        edit=True,
    )
    plan.write("src/shop/newsletter/jobs.py", "import json\n", edit=True)

    verdict = verify(shop, plan, "shop", run_tests=False)

    assert [str(p) for p in verdict.problems] == [
        "src/shop/orders/worker.py:3: SyntaxError: 'continue' not properly in loop",
        "src/shop/catalog/jobs.py:47: undefined name 'gone'",
        "src/shop/newsletter/jobs.py:1: 'json' imported but unused",
    ]
    assert verdict.checks == ["compiles", "names"]  # the build waits for the files to be sound
    assert git(shop, "status", "--porcelain") == ""


def test_the_gate_builds_the_app_and_finds_workers_registered_twice(shop: Path) -> None:
    plan = Plan(shop)
    worker = (
        "from ..core import App\n\n\nclass Sweep:\n    name = 'orders/sweep'\n\n"
        "    async def start(self, app: App) -> None:\n        pass\n\n"
        "    async def work(self) -> None:\n        pass\n\n"
        "    async def stop(self) -> None:\n        pass\n"
    )
    plan.write("src/shop/orders/worker.py", worker)
    register = (shop / "src/shop/orders/register.py").read_text()
    twice = "    from .worker import Sweep\n\n    app.register_worker(Sweep())\n    app.register_worker(Sweep())\n"
    plan.write("src/shop/orders/register.py", register + twice, edit=True)

    verdict = verify(shop, plan, "shop", run_tests=False, expected_workers=["orders/sweep"])

    assert len(verdict.problems) == 1
    problem = str(verdict.problems[0])
    assert problem.startswith("src/shop/orders/register.py:") and "the app does not build" in problem
    assert "orders/sweep" in problem and "registered" in problem


def test_allow_dirty_commits_only_what_petrock_changed(shop: Path) -> None:
    (shop / "README.md").write_text((shop / "README.md").read_text() + "\nWork in progress.\n")
    (shop / "notes.txt").write_text("ideas\n")

    result = petrock_in(shop, "migrate", "jobs", "orders", "--allow-dirty", "--no-verify-tests", "--no-verify-serve")

    assert result.returncode == 0, result.stdout + result.stderr
    committed = git(shop, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(committed) == [
        "src/shop/core/hosted.py",
        "src/shop/main.py",
        "src/shop/orders/jobs.py",
        "src/shop/orders/register.py",
        "src/shop/orders/worker.py",
    ]
    assert sorted(git(shop, "status", "--porcelain").splitlines()) == [" M README.md", "?? notes.txt"]


def test_allow_dirty_refuses_to_edit_a_file_with_uncommitted_changes(shop: Path) -> None:
    main = shop / "src/shop/main.py"
    main.write_text(main.read_text() + "# wip: a new route\n")
    before = git_snapshot(shop)

    result = petrock_in(shop, "migrate", "jobs", "--allow-dirty", "--no-verify-tests")

    assert result.returncode != 0
    assert result.stderr.startswith(
        "error: src/shop/main.py has uncommitted changes and petrock must edit it — commit or stash"
    )
    assert git_snapshot(shop) == before
