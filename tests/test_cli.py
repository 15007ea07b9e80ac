"""The petrock command line itself: help, version, error format, import cost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from petrock import __version__
from petrock.cli import app

from .support import new_app, run_petrock, tree_snapshot

runner = CliRunner()


def test_help_lists_the_commands_with_examples() -> None:
    result = run_petrock("--help")
    assert result.returncode == 0
    for command in ("new", "feature"):
        assert command in result.stdout
    assert "petrock new blog" in result.stdout


def test_help_lists_commands_in_the_order_a_user_walks_them() -> None:
    listed = run_petrock("--help").stdout.split("Commands:")[1]
    names = [line.split()[0] for line in listed.splitlines() if line.startswith("  ") and line.split()]
    walk = ["new", "feature", "generate", "serve", "selftest"]
    assert names[: len(walk)] == walk
    assert names[-3:] == ["migrate", "upgrade", "check"]


def test_shell_completion_script_is_offered_for_bash() -> None:
    """`petrock --show-completion` names no shell: typer asks the process tree which one runs it, so
    it is asked from a real bash here, as a user types it. Whoever runs the suite (a shell, make in
    the background, CI) must not matter: `_PETROCK_COMPLETE=source_bash` names the shell outright."""
    in_bash = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m petrock --show-completion; exit $?"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert in_bash.returncode == 0, in_bash.stderr
    assert "_PETROCK_COMPLETE=complete_bash" in in_bash.stdout
    named = run_petrock(env={"_PETROCK_COMPLETE": "source_bash"})
    assert named.stdout.strip() == in_bash.stdout.strip()
    completed = run_petrock(env={"_PETROCK_COMPLETE": "complete_bash", "COMP_WORDS": "petrock fea", "COMP_CWORD": "1"})
    assert completed.stdout.split() == ["feature"]


def _on_a_terminal(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """What ``petrock ARGS`` prints when its stdout is a terminal (a real pseudo-terminal)."""
    import os
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "petrock", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done writing
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_status_words_are_coloured_on_a_terminal_unless_no_color_is_set(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    coloured = _on_a_terminal("new", "blog", "--dry-run", cwd=tmp_path, env=env)
    plain = _on_a_terminal("new", "blog", "--dry-run", cwd=tmp_path, env={**env, "NO_COLOR": "1"})
    piped = run_petrock("new", "blog", "--dry-run", cwd=tmp_path).stdout
    assert "\x1b[" in coloured and "create" in coloured
    assert "\x1b[" not in plain and "create" in plain
    assert "\x1b[" not in piped


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"petrock {__version__}"


def _command_paths(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if not command.hidden:
            yield (*path, name)
            if hasattr(command, "commands"):
                yield from _command_paths(command, (*path, name))


def test_every_usage_line_names_its_arguments_in_capitals() -> None:
    """`petrock feature add [OPTIONS] NAME [FIELD]...`: placeholders as click and man pages write them,
    never typer's `{name}`."""
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("feature", "add") in paths and ("new",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        usage = result.stdout.splitlines()[0]
        assert usage.startswith(f"Usage: petrock {' '.join(path)} "), usage
        placeholders = usage.removeprefix(f"Usage: petrock {' '.join(path)} ").split()
        assert all(word == word.upper() and "{" not in word for word in placeholders), usage
    assert runner.invoke(app, ["feature", "add", "--help"]).stdout.startswith(
        "Usage: petrock feature add [OPTIONS] NAME [FIELD]...\n"
    )


def test_new_help_shows_examples_and_options() -> None:
    result = runner.invoke(app, ["new", "--help"])
    assert result.exit_code == 0
    assert "--dry-run" in result.stdout and "petrock new blog --dir" in result.stdout


def test_help_does_not_import_the_heavy_libraries() -> None:
    probe = (
        "import sys\n"
        "from petrock.cli import app\n"
        "try:\n    app(['--help'], prog_name='petrock')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('copier', 'jinja2', 'starlette', 'rich', 'libcst', 'pydantic') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in output


def test_a_user_error_is_one_line_without_traceback() -> None:
    result = run_petrock("new", "Not-Valid")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_command_exits_non_zero() -> None:
    assert run_petrock("frobnicate").returncode != 0


def test_json_mode_reports_errors_as_json_on_stdout(tmp_path: Path) -> None:
    result = run_petrock("feature", "add", "Bad-Name", "--json", cwd=new_app(tmp_path))
    assert result.returncode == 2
    error = json.loads(result.stdout)
    assert "not a valid feature name" in error["error"] and error["fix"] == "did you mean `bad_name`?"
    assert result.stderr == ""  # JSON only: a script reading both streams gets nothing else


def test_a_dry_run_works_on_a_dirty_tree_and_writes_nothing(tmp_path: Path) -> None:
    root = new_app(tmp_path)
    (root / "notes.txt").write_text("work in progress\n")
    before = tree_snapshot(root)
    result = run_petrock("feature", "add", "posts", "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing was written" in result.stdout
    assert tree_snapshot(root) == before
    refused = run_petrock("feature", "add", "posts", cwd=root)
    assert refused.returncode == 1 and "uncommitted changes (notes.txt)" in refused.stderr
