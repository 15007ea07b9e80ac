"""A small hand-written feature: notes with a command, queries and an HTML page.

Used by the crash, fuzz and security tests where a feature with strict command
models is needed; it talks to the App only, as generated features do.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from ..core import App, Column, CommandRejected, Message, NotFound, Projection, Store, TableSpec


class Author(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    email: str | None = Field(default=None, max_length=120)


class AddNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9-]+$")
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=10_000)
    tags: list[str] = Field(default_factory=list, max_length=5)
    priority: int = Field(default=0, ge=0, le=10)
    score: float = 0.0
    author: Author | None = None


class GetNote(BaseModel):
    id: str


class ListNotes(BaseModel):
    prefix: str = ""
    limit: int = Field(default=100_000, ge=1, le=100_000)


NOTES = TableSpec("notes", columns=(Column("id"),))


class Notes(Projection):
    """Notes by id, in the store's ``notes`` table; a second note with the same id is refused."""

    tables = (NOTES,)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "notes")
        self.items = self.table(NOTES)

    def add(self, command: AddNote, message: Message) -> None:
        if self.items.get(command.id) is not None:
            raise CommandRejected(f"note {command.id!r} already exists")
        self.items.put(command.id, {**command.model_dump(), "message_id": message.id})

    def get(self, query: GetNote) -> dict[str, object]:
        note = self.items.get(query.id)
        if note is None:
            raise NotFound(f"no note {query.id!r}")
        return note

    def list(self, query: ListNotes) -> dict[str, int]:
        """Note ids with the id of the message that created each, in id order."""
        ids: dict[str, int] = {}
        while len(ids) < query.limit:
            page = self.items.find(sort="id", offset=len(ids), limit=min(1000, query.limit - len(ids)))
            ids.update((note["id"], note["message_id"]) for note in page)
            if not page:
                break
        return {id: message_id for id, message_id in ids.items() if id.startswith(query.prefix)}


def register(app: App) -> None:
    notes = Notes(app.store)
    app.add_feature("notes", Path(__file__).parent / "templates")
    app.projections.add(notes)
    app.commands.register("notes/add", AddNote, notes.add)
    app.queries.register("notes/get", GetNote, notes.get)
    app.queries.register("notes/list", ListNotes, notes.list)

    async def page(request: Request) -> Response:
        note = notes.items.get(request.path_params["id"])
        if note is None:
            return Response("no such note", status_code=404)
        return app.pages.render("notes/note.html", note=note)

    async def index(request: Request) -> Response:
        return app.pages.render("notes/index.html", notes=notes.items.find(limit=1000))

    app.add_route("/notes", index, name="notes")
    app.add_route("/notes/{id}", page, name="note")
    app.add_link("Notes", "/notes")
