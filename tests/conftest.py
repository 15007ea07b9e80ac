"""Shared fixtures: real apps made by the real CLI, generated once per session and copied per test.

``blog_app`` is a fresh ``petrock new blog``; ``blog_with_posts`` has had
``petrock feature add posts`` as well. Both are git repositories with
petrock's commits, safe to change: every test gets its own copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser.support import report_line as browser_report_line
from .image.buildah import report_line as image_report_line
from .pg import pg_cluster, pg_url, postgres_report_line  # noqa: F401 - PostgreSQL fixtures (tests/pg.py)
from .support import fake_summary_api_module, new_app, run_petrock

# Every repository the suite creates, and every petrock it runs, commits as the suite (tests/gitconfig):
# a fresh machine has no git identity, and the runner's own git configuration must not change the tests.
os.environ["GIT_CONFIG_GLOBAL"] = str(Path(__file__).parent / "gitconfig")
os.environ["GIT_CONFIG_NOSYSTEM"] = "1"

# The generated apps' own test runs (ours, and the ones migrate, upgrade and feature field start as their
# gate) load pytest plugins from this venv. An app's venv has no hypothesis: loading its plugin took 2 of
# the 5 seconds each run spent collecting. This pytest read its options already; only the children see it.
os.environ["PYTEST_ADDOPTS"] = " ".join(filter(None, [os.environ.get("PYTEST_ADDOPTS"), "-p no:hypothesispytest"]))
# The children may cache what they compile: with PYTHONDONTWRITEBYTECODE set (some machines set it), every
# pytest child rewrote the assertions of this venv's plugin packages (anyio, xdist) again, 1 s of CPU each.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Apps under tests/fixtures are data for the tests (with test suites of their own), not petrock's tests.
collect_ignore = ["fixtures"]


# The longest files first (summed wall time of their tests in a full `make test` run, longest first):
# `make test` hands whole files to its workers in collection order (`--no-loadscope-reorder`: xdist's
# default reorders them by test count, which had the image tests start at minute 8 of 10 and end last).
# Only the order changes; a file missing here runs after these, as collected. The image tests lead: on
# a fresh machine they first make their base with debootstrap (1 to 3 minutes of downloads), which
# then overlaps the rest.
SLOWEST_FILES = [
    "tests/image/test_image.py",
    "tests/test_migrate_corpus.py",
    "tests/test_feature_field.py",
    "tests/test_auth.py",
    "tests/reliability/test_security.py",
    "tests/test_upgrade_history.py",
    "tests/test_bench_smoke.py",
    "tests/test_feature_add.py",
    "tests/reliability/test_cli_fuzz.py",
    "tests/test_postgres_backend.py",
    "tests/test_docs.py",
    "tests/test_upgrade.py",
    "tests/reliability/test_streams_and_pipelining.py",
    "tests/test_migrate_shapes.py",
    "tests/test_generate.py",
    "tests/browser/test_library.py",
    "tests/test_postgres_instances.py",
    "tests/reliability/test_projections.py",
    "tests/fresh_machine/test_quickstart.py",
    "tests/test_migrate.py",
    "tests/test_new.py",
    "tests/test_selftest.py",
    "tests/test_migrate_gate.py",
    "tests/test_owned.py",
    "tests/test_app_cli.py",
    "tests/test_examples.py",
    "tests/reliability/test_processes.py",
    "tests/browser/test_pages.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: n for n, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOWEST_FILES)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say in one line each why browser, image or PostgreSQL tests skipped (or where the screenshots
    and the base rootfs are)."""
    reports = [report for reports in terminalreporter.stats.values() for report in reports]
    if any(getattr(report, "nodeid", "").startswith("tests/browser/") for report in reports):
        terminalreporter.write_line(browser_report_line())
    if any(getattr(report, "nodeid", "").startswith("tests/image/") for report in reports):
        terminalreporter.write_line(image_report_line())
    if (postgres := postgres_report_line()) is not None and terminalreporter.stats.get("skipped"):
        terminalreporter.write_line(postgres, yellow=True)


@pytest.fixture
def blog_app(tmp_path: Path) -> Path:
    """A freshly generated app named ``blog`` (committed, clean) in this test's tmp dir."""
    return new_app(tmp_path)


@pytest.fixture(scope="session")
def _blog_with_posts_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_app(tmp_path_factory.mktemp("with-posts"))
    result = run_petrock("feature", "add", "posts", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def blog_with_posts(_blog_with_posts_original: Path, tmp_path: Path) -> Path:
    """The ``blog`` app after ``petrock feature add posts`` (committed, clean), copied for this test."""
    target = tmp_path / "blog"
    shutil.copytree(_blog_with_posts_original, target, symlinks=True)
    return target


@pytest.fixture
def fake_summary_api() -> Iterator[Any]:
    """The generated apps' fake OpenAI-compatible summary server (tests/fake_summary_api.py), on 127.0.0.1."""
    with fake_summary_api_module().FakeSummaryAPI() as api:
        yield api
