"""Whose name petrock's commits carry: the user's git identity, or petrock's own where git knows no one.

A fresh machine has no `user.email` and often a host name git cannot make one from. petrock
still commits what it generates (upgrades need those commits), as `petrock <petrock@localhost>`,
passed to git per command: nothing lands in a config file, so the user's own commits still ask.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .support import git


def nobody(home: Path) -> dict[str, str]:
    """The environment of a machine where git cannot name the user: an empty HOME, no system or
    suite config, no identity variables, and `user.useConfigOnly` so no host name stands in."""
    return without_identity(home) | {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "user.useConfigOnly",
        "GIT_CONFIG_VALUE_0": "true",
    }


def without_identity(home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "EMAIL"}
    return env | {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}


def petrock(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "petrock", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def authors(root: Path, env: dict[str, str] | None = None) -> set[str]:
    log = subprocess.run(
        ["git", "log", "--format=%an <%ae>|%cn <%ce>"], cwd=root, env=env, capture_output=True, check=False
    )
    return set(log.stdout.decode().replace("|", "\n").split("\n")) - {""}


def test_where_git_knows_no_one_petrock_commits_as_itself_and_configures_nothing(tmp_path: Path) -> None:
    env = nobody(tmp_path / "home")
    assert subprocess.run(["git", "var", "GIT_AUTHOR_IDENT"], env=env, capture_output=True, check=False).returncode != 0

    created = petrock(tmp_path, env, "new", "blog")
    assert created.returncode == 0, created.stderr
    app = tmp_path / "blog"
    added = petrock(app, env, "feature", "add", "posts")
    assert added.returncode == 0, added.stderr
    assert authors(app, env) == {"petrock <petrock@localhost>"}

    config = subprocess.run(
        ["git", "config", "--local", "--get-regexp", "^user\\."], cwd=app, env=env, capture_output=True, check=False
    )
    assert config.stdout == b""  # no identity written into the app's .git/config
    # nor into ~/.gitconfig or ~/.config/git: the home gets petrock's caches (~/.cache/petrock) and nothing else
    assert [path.name for path in (tmp_path / "home").iterdir()] in ([], [".cache"])
    assert [path.name for path in (tmp_path / "home" / ".cache").glob("*")] in ([], ["petrock"])
    own = subprocess.run(
        ["git", "commit", "--allow-empty", "-m", "mine"], cwd=app, env=env, capture_output=True, check=False
    )
    assert own.returncode != 0 and b"Please tell me who you are" in own.stderr


def test_where_git_knows_the_user_petrock_commits_as_them(blog_app: Path) -> None:
    user = git(blog_app, "var", "GIT_AUTHOR_IDENT").rsplit(" ", 2)[0]  # the suite's tests/gitconfig
    assert user == "petrock tests <tests@petrock.invalid>"
    assert authors(blog_app) == {user}


def test_an_identity_from_the_environment_counts(tmp_path: Path) -> None:
    """git takes the address from EMAIL when no config names one: petrock must not override it."""
    names = {"GIT_AUTHOR_NAME": "Ada", "GIT_COMMITTER_NAME": "Ada"}
    env = without_identity(tmp_path / "home") | names | {"EMAIL": "ada@example.invalid"}
    assert petrock(tmp_path, env, "new", "blog").returncode == 0
    assert authors(tmp_path / "blog", env) == {"Ada <ada@example.invalid>"}
