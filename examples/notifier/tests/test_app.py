"""The App: dispatching commands into the log and the store, answering queries, starting without replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from newsroom import core
from newsroom.core import App, MessageLog, NotFound
from newsroom.main import build_app

from .conftest import AddNote, RemoveNote, register_notes


def test_dispatch_applies_state_and_appends(app: App) -> None:
    notes = register_notes(app)
    message = app.dispatch(AddNote(id="a", text="hello"))
    assert notes.texts() == {"a": "hello"}
    assert message.type == "notes/add" and message.payload() == {"id": "a", "text": "hello"}
    assert app.query("notes/get", {"id": "a"}) == {"id": "a", "text": "hello"}


def test_invalid_payload_is_rejected_before_anything_is_written(app: App) -> None:
    register_notes(app)
    with pytest.raises(ValidationError):
        app.dispatch_payload("notes/add", {"id": "a", "text": ""})
    assert app.log.version() == 0


def test_a_refused_command_is_not_in_the_log(app: App) -> None:
    register_notes(app)
    with pytest.raises(NotFound):
        app.dispatch(RemoveNote(id="nope"))
    assert app.log.version() == 0


def test_state_survives_a_restart_without_replay(db_path: Path) -> None:
    first = App(MessageLog(db_path))
    register_notes(first)
    first.dispatch(AddNote(id="a", text="one"))
    first.dispatch(AddNote(id="b", text="two"))
    first.dispatch(RemoveNote(id="a"))
    first.log.close()

    second = App(MessageLog(db_path))
    notes = register_notes(second)
    assert second.prepare() == []  # built by the same code: nothing to rebuild
    assert notes.texts() == {"b": "two"}


def test_a_projection_whose_code_changed_is_rebuilt_from_the_log(db_path: Path) -> None:
    first = App(MessageLog(db_path))
    register_notes(first)
    first.dispatch(AddNote(id="a", text="one"))
    first.dispatch(AddNote(id="b", text="two"))
    first.dispatch(RemoveNote(id="a"))
    first.log.close()

    second = App(MessageLog(db_path))
    notes = register_notes(second)
    notes.version = "2"  # what an edit of its handlers does to the fingerprint
    assert second.prepare() == ["notes"]
    assert notes.texts() == {"b": "two"}
    assert second.prepare() == []


def test_a_second_app_fingerprints_its_projections_without_building_the_schemas_again(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = App(MessageLog(db_path))
    fingerprint = first.projections.fingerprint(register_notes(first))
    first.log.close()

    def built_again(cls: type) -> None:
        raise AssertionError(f"{cls.__name__}'s JSON schema built again")

    monkeypatch.setattr(AddNote, "model_json_schema", classmethod(built_again))
    second = App(MessageLog(db_path))
    assert second.projections.fingerprint(register_notes(second)) == fingerprint
    second.log.close()


def test_describe_lists_what_is_registered(app: App) -> None:
    register_notes(app)
    description = app.describe()
    assert description["features"] == ["notes"]
    assert [c["type"] for c in description["commands"]] == ["notes/add", "notes/remove"]
    assert [q["type"] for q in description["queries"]] == ["notes/get"]


def test_the_generated_app_builds_with_its_features(db_path: Path) -> None:
    app = build_app(str(db_path))
    assert app.describe()["log"]["version"] == 0
    app.log.close()


def test_a_refused_command_in_a_commit_leaves_neither_log_nor_state_changed(app: App) -> None:
    """Two commands in one commit, the second refused: the first's row goes with the rollback too."""
    notes = register_notes(app)
    with pytest.raises(NotFound):
        app.commit([AddNote(id="a", text="one"), RemoveNote(id="missing")])
    assert app.log.version() == 0 and notes.texts() == {}
    app.dispatch(AddNote(id="b", text="two"))
    assert notes.texts() == {"b": "two"}


def test_the_core_exports_resolve_to_the_classes_their_modules_define() -> None:
    from newsroom.core.backends.sqlite import SQLiteLog
    from newsroom.core.worker import CommandWorker

    assert set(core.__all__) <= set(dir(core))
    for name in core.__all__:
        value = getattr(core, name)
        assert value.__name__ in (name, "SQLiteLog") and value.__module__.startswith(core.__name__), name
    assert core.MessageLog is SQLiteLog and core.CommandWorker is CommandWorker
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        core.Nope  # noqa: B018


def test_the_command_line_and_build_app_default_to_the_same_database() -> None:
    from newsroom import cli, main

    assert cli.DEFAULT_DB == main.DEFAULT_DB  # change one, change both (core/database_urls.py, main.py)


def test_the_core_package_imports_each_module_on_first_use() -> None:
    """`python -m newsroom --help` and the tools that need no app import `core.log` and its like, not the
    whole runtime that `core/__init__.py` names (the App, the store, the workers): those load when used."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    probe = "import json, sys, newsroom.core.log; print(json.dumps(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set(json.loads(loaded.stdout))
    assert "newsroom.core.log" in modules
    runtime = {f"{core.__name__}.{name}" for name in ("app", "store", "worker", "projections", "backends.sqlite")}
    assert modules.isdisjoint(runtime | {"pydantic", "starlette"}), sorted(modules & runtime)
