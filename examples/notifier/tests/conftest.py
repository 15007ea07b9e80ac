"""Shared fixtures: a real App on a real SQLite file, with a tiny "notes" feature for core tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from newsroom.core import App, Message, MessageLog, NotFound


class AddNote(BaseModel):
    id: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=200)


class RemoveNote(BaseModel):
    id: str


class GetNote(BaseModel):
    id: str


class Notes:
    """The smallest possible feature state: notes by id."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, command: AddNote, message: Message) -> None:
        self.items[command.id] = command.text

    def remove(self, command: RemoveNote, message: Message) -> None:
        if command.id not in self.items:
            raise NotFound(f"no note {command.id!r}")
        del self.items[command.id]

    def get(self, query: GetNote) -> dict[str, str]:
        if query.id not in self.items:
            raise NotFound(f"no note {query.id!r}")
        return {"id": query.id, "text": self.items[query.id]}


def register_notes(app: App) -> Notes:
    notes = Notes()
    app.add_feature("notes")
    app.commands.register("notes/add", AddNote, notes.add)
    app.commands.register("notes/remove", RemoveNote, notes.remove)
    app.queries.register("notes/get", GetNote, notes.get)
    return notes


@pytest.fixture(autouse=True)
def _no_api_token_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their tokens (``create_http_app(app, tokens=[...])``); an exported APP_API_TOKEN must not leak in."""
    monkeypatch.delenv("APP_API_TOKEN", raising=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def app(db_path: Path) -> Iterator[App]:
    app = App(MessageLog(db_path), poll_interval=0.01, jitter=0.01, stop_timeout=1.0)
    yield app
    app.log.close()  # closing twice is harmless
