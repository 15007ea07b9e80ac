"""examples/: each is exactly what petrock generates today; their own tests pass (the blog's in test_feature_add)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from petrock.examples import ALL, EXAMPLES, NOTIFIER, Example, build, differences

EXAMPLE_APPS = [example.directory for example in ALL]


def run_example_tests(example: Path, workdir: Path, *tests: str) -> subprocess.CompletedProcess[str]:
    """Run an example's own pytest suite (or ``tests``) in a copy, so the committed example stays untouched."""
    copy = workdir / example.name
    shutil.copytree(example, copy)
    path = os.pathsep.join(filter(None, [str(copy / "src"), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUMMARY_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        env={**env, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_examples_are_committed_without_their_own_git() -> None:
    for name in EXAMPLE_APPS:
        root = EXAMPLES / name
        assert (root / ".petrock.toml").is_file(), name
        assert (root / "README.md").is_file(), name
        assert not (root / ".git").exists(), name


@pytest.mark.slow
@pytest.mark.parametrize("example", ALL, ids=EXAMPLE_APPS)
def test_an_example_is_what_petrock_generates_today(example: Example, tmp_path: Path) -> None:
    fresh = build(example, tmp_path)
    assert differences(EXAMPLES / example.directory, fresh) == [], "examples/ is out of date: run `make examples`"


# The blog example's own tests are not run here: the example is byte for byte what `petrock new blog` and
# `petrock feature add posts` make (the test above), and test_feature_add runs that app's tests. (40 s saved.)


@pytest.mark.slow
def test_the_shop_examples_own_tests_pass(tmp_path: Path) -> None:
    """Typed fields: every field type, a ref between features, their pages and summary workers.

    Only the two features' own test files: the rest are the templates' core tests, which test_feature_add runs
    on an app with every type, a ref and these shapes (the shop is what petrock generates: the test above)."""
    result = run_example_tests(EXAMPLES / "shop", tmp_path, "tests/test_customers.py", "tests/test_orders.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


@pytest.mark.slow
def test_the_notifiers_own_tests_pass(tmp_path: Path) -> None:
    # Its generated tests are petrock's output (golden test), run in the blog example; these are hand-written.
    result = run_example_tests(EXAMPLES / "notifier", tmp_path, "tests/test_notifier.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_hand_written_notifier_is_lint_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *NOTIFIER.hand_written],
        cwd=EXAMPLES / NOTIFIER.directory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_comparison_ignores_recorded_commit_ids_but_not_file_hashes(tmp_path: Path) -> None:
    def manifest(root: Path, commit: str, blob: str) -> Path:
        root.mkdir()
        (root / ".petrock.toml").write_text(
            f'project_name = "blog"\n[commits]\nproject = "{commit}"\n'
            f'[features.posts]\ncommit = "{commit}"\n[files]\n"README.md" = "{blob}"\n'
        )
        (root / "README.md").write_text("# blog\n")
        (root / ".git").mkdir()
        (root / ".git" / "HEAD").write_text(commit)
        return root

    base = manifest(tmp_path / "a", "1" * 40, "a" * 40)
    assert differences(base, manifest(tmp_path / "b", "2" * 40, "a" * 40)) == []
    assert differences(base, manifest(tmp_path / "c", "1" * 40, "b" * 40)) == ["differs  .petrock.toml"]
    (tmp_path / "c" / "extra.py").write_text("")
    (tmp_path / "c" / "README.md").unlink()
    assert differences(base, tmp_path / "c") == ["missing  README.md", "extra    extra.py", "differs  .petrock.toml"]
