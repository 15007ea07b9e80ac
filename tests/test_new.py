"""`petrock new`: a runnable, committed app, or a clear error and nothing written."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from petrock import __version__, git
from petrock.cli import app
from petrock.generators.new_project import create_project, plan_project

from .support import app_env, new_app, run_app_tests, run_petrock, tree_snapshot

runner = CliRunner()


def test_new_creates_a_committed_app_with_a_manifest(tmp_path: Path) -> None:
    result = run_petrock("new", "blog", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "blog"
    assert "create  src/blog/core/worker.py" in result.stdout
    assert (root / "src/blog/core/log.py").is_file()
    assert git.dirty_files(root) == []
    subjects = subprocess.run(
        ["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert f"Create blog with petrock {__version__}" in subjects

    manifest = tomllib.loads((root / ".petrock.toml").read_text())
    assert manifest["project_name"] == "blog" and manifest["answers"] == {"project_name": "blog"}
    assert manifest["template_version"] == __version__
    generation = manifest["commits"]["project"]
    assert git.show(root, generation, "src/blog/core/app.py") == (root / "src/blog/core/app.py").read_text()
    # Every generated file is recorded by its git blob id, which finds its original content.
    assert git.read_blob(root, manifest["files"]["src/blog/features.py"]) == (root / "src/blog/features.py").read_text()


def test_the_generated_app_passes_its_own_tests(tmp_path: Path) -> None:
    root = new_app(tmp_path)
    result = run_app_tests(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_the_apps_tools_load_uvicorns_protocols_only_to_serve(tmp_path: Path) -> None:
    """Every CLI tool, worker and test run imports the app; only ``serve`` needs uvicorn's protocol modules
    (~45 ms of imports): core/limits.py imports them in server_options."""
    root = new_app(tmp_path)
    code = (
        "import sys, blog.cli, blog.core.http\n"
        "print([name for name in sys.modules if name.startswith(('uvicorn.protocols', 'h11'))])\n"
        "blog.core.limits.server_options()\n"
        "print('uvicorn.protocols.http.h11_impl' in sys.modules)"
    )
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=root, env=app_env(root), capture_output=True, text=True, check=False)
    assert result.stdout.split() == ["[]", "True"], result.stderr


def test_generated_code_is_lint_clean(tmp_path: Path) -> None:
    root = new_app(tmp_path)
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "src", "tests"], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["new", "blog", "--dir", str(tmp_path / "blog"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "create  src/blog/core/app.py" in result.stdout
    assert "dry run: nothing was written" in result.stdout
    assert not (tmp_path / "blog").exists()


def test_no_git_writes_the_files_without_a_repository(tmp_path: Path) -> None:
    result = runner.invoke(app, ["new", "shop", "--dir", str(tmp_path / "shop"), "--no-git", "--json"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "shop/.git").exists()
    assert (tmp_path / "shop/src/shop/main.py").is_file()


def test_an_existing_empty_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "blog").mkdir()
    assert run_petrock("new", "blog", cwd=tmp_path).returncode == 0
    assert (tmp_path / "blog/.petrock.toml").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Blog", "not a valid project name"),
        ("my-blog", "did you mean `my_blog`?"),
        ("2blog", "not a valid project name"),
        ("class", "keyword"),
        ("json", "standard-library module"),
        ("petrock", "reserves"),
        ("../escape", "not a valid project name"),
        ("", "empty"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(tmp_path: Path, name: str, message: str) -> None:
    result = run_petrock("new", name, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_target_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "blog").mkdir()
    (tmp_path / "blog/notes.txt").write_text("mine")
    before = tree_snapshot(tmp_path)
    result = run_petrock("new", "blog", cwd=tmp_path)
    assert result.returncode == 1
    assert "already exists and is not empty" in result.stderr
    assert tree_snapshot(tmp_path) == before


def test_a_failure_while_writing_leaves_no_half_made_directory(tmp_path: Path) -> None:
    """A write that fails part-way (here: a file where a folder must go) removes all this run made."""
    target = tmp_path / "blog"
    plan, manifest = plan_project("blog", target)
    plan.write("README.md/inside.txt", "README.md is a file by then\n")
    with pytest.raises(OSError):
        create_project(plan, manifest)
    assert not target.exists()


def test_a_second_new_of_the_same_app_says_it_exists(tmp_path: Path) -> None:
    """A fresh-user trial ran `petrock new shop` beside the first shop: it said "would be inside the app"."""
    app = new_app(tmp_path)
    before = tree_snapshot(app)
    result = run_petrock("new", app.name, cwd=tmp_path)
    assert result.returncode == 1
    assert f"{app.name} already exists: it is an app" in result.stderr and "inside" not in result.stderr
    assert tree_snapshot(app) == before


def test_an_app_inside_another_app_is_refused(tmp_path: Path) -> None:
    outer = new_app(tmp_path)
    before = tree_snapshot(outer)
    result = run_petrock("new", "inner", cwd=outer / "src")
    assert result.returncode == 1
    assert "would be inside the app at" in result.stderr
    assert tree_snapshot(outer) == before


def test_a_missing_parent_folder_is_refused_unless_parents_is_given(tmp_path: Path) -> None:
    target = tmp_path / "some" / "missing" / "blog"
    result = run_petrock("new", "blog", "--dir", str(target), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: the folder {target.parent} does not exist — create it first, or pass --parents to create it\n"
    )
    assert list(tmp_path.iterdir()) == []
    created = run_petrock("new", "blog", "--dir", str(target), "--parents", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (target / ".petrock.toml").is_file()
