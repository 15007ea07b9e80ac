"""Shared fixtures: one generated app per session, copied per test, and servers that always stop."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import APP_NAME, Server, add_feature, petrock


@pytest.fixture(scope="session")
def app_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``petrock new relapp``, once per session (per xdist worker)."""
    base = tmp_path_factory.mktemp("template")
    result = petrock("new", APP_NAME, cwd=base)
    assert result.returncode == 0, result.stderr
    return base / APP_NAME


@pytest.fixture(scope="session")
def posts_template(app_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated app plus ``petrock feature add posts``, once per session."""
    root = Path(shutil.copytree(app_template, tmp_path_factory.mktemp("posts") / APP_NAME))
    result = petrock("feature", "add", "posts", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def posts_dir(posts_template: Path, tmp_path: Path) -> Path:
    """A private copy of the app with the posts feature."""
    return Path(shutil.copytree(posts_template, tmp_path / APP_NAME))


@pytest.fixture
def app_dir(app_template: Path, tmp_path: Path) -> Path:
    """A private copy of the generated app."""
    return Path(shutil.copytree(app_template, tmp_path / APP_NAME))


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """Make (unstarted) servers; any still running when the test ends is killed."""
    made: list[Server] = []

    def make(app_dir: Path, db: Path, **options: object) -> Server:
        server = Server(app_dir, db, **options)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.kill()


@pytest.fixture(scope="module")
def notes_server(app_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module, running an app with the hand-written ``notes`` feature."""
    base = tmp_path_factory.mktemp("notes")
    app_dir = Path(shutil.copytree(app_template, base / APP_NAME))
    add_feature(app_dir, "notes")
    server = Server(app_dir, base / "app.db").start()
    yield server
    server.kill()
