"""Group commit (core/group_commit.py): commands arriving together share one transaction.

Each command is still validated on its own, against the state the earlier ones in the
group left, and a refused one fails alone. Runs on every backend the ``app`` fixture
offers (SQLite, and PostgreSQL with ``APP_TEST_DB``).
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from blog.core import App, CommandRejected, Message, NotFound

from .conftest import NOTES, AddNote, RemoveNote, register_notes

pytestmark = pytest.mark.anyio


async def dispatch_together(app: App, commands: list[BaseModel]) -> list[Message | BaseException]:
    """Every command's answer, the commands sent at once (as concurrent requests do)."""
    return await asyncio.gather(*(app.group_commit.dispatch(c) for c in commands), return_exceptions=True)


async def test_one_refused_command_among_fifty_leaves_the_other_forty_nine_committed(app: App) -> None:
    notes = register_notes(app)
    commands: list[BaseModel] = [AddNote(id=f"n{n}", text=f"note {n}") for n in range(50)]
    commands[20] = RemoveNote(id="nothing")  # refused: no such note
    answers = await dispatch_together(app, commands)
    assert isinstance(answers[20], NotFound)
    messages = [answer for answer in answers if isinstance(answer, Message)]
    assert len(messages) == 49 and app.group_commit.groups == 1  # one transaction for all of them
    # Ids in the order the commands were applied, without the refused one's: no gap for a follower to skip.
    assert [m.id for m in messages] == list(range(1, 50))
    assert list(app.log.after(0)) == messages
    assert set(notes.texts()) == {f"n{n}" for n in range(50) if n != 20}


async def test_each_command_sees_the_state_the_earlier_ones_in_its_group_left(app: App) -> None:
    notes = register_notes(app)
    answers = await dispatch_together(
        app, [RemoveNote(id="a"), AddNote(id="a", text="first"), RemoveNote(id="a"), AddNote(id="a", text="again")]
    )
    assert isinstance(answers[0], NotFound)
    assert [a.type for a in answers[1:] if isinstance(a, Message)] == ["notes/add", "notes/remove", "notes/add"]
    assert notes.texts() == {"a": "again"}


class Scribble(BaseModel):
    id: str


async def test_a_command_refused_after_writing_has_its_own_writes_undone(app: App) -> None:
    notes = register_notes(app)
    table = app.store.table(NOTES)

    def write_then_refuse(command: Scribble, message: Message) -> None:
        table.put(command.id, {"id": command.id, "text": "half-done"})
        raise CommandRejected("refused after writing")

    app.commands.register("notes/scribble", Scribble, write_then_refuse)
    answers = await dispatch_together(
        app, [AddNote(id="a", text="kept"), Scribble(id="b"), AddNote(id="c", text="kept")]
    )
    assert isinstance(answers[1], CommandRejected)
    assert notes.texts() == {"a": "kept", "c": "kept"}
    assert [m.type for m in app.log.after(0)] == ["notes/add", "notes/add"]


async def test_commands_arriving_while_a_group_commits_form_the_next_group(app: App) -> None:
    register_notes(app)
    first = asyncio.ensure_future(dispatch_together(app, [AddNote(id=f"a{n}", text="x") for n in range(5)]))
    await asyncio.sleep(0)  # the first group is on its way
    second = await dispatch_together(app, [AddNote(id=f"b{n}", text="x") for n in range(5)])
    assert all(isinstance(m, Message) for m in [*await first, *second])
    assert app.log.version() == 10 and 1 <= app.group_commit.groups <= 2
