"""Group commit (core/group_commit.py): commands arriving together share one transaction.

Each command is still validated on its own, against the state the earlier ones in the
group left, and a refused one fails alone. Runs on every backend the ``app`` fixture
offers (SQLite, and PostgreSQL with ``APP_TEST_DB``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import BaseModel

from shop.core import App, Column, CommandRejected, Message, NotFound, TableSpec

from .conftest import NOTES, AddNote, RemoveNote, register_notes

pytestmark = pytest.mark.anyio


@contextmanager
def round_trips(app: App, tmp_path: Path) -> Iterator[list[int]]:
    """How many times the log's connection waited for PostgreSQL's answer within the block (libpq's trace
    of what it sends and gets: one ``ReadyForQuery`` per query string or pipeline), put in the list when
    the block ends. On SQLite, which has no round trips, the list stays empty."""
    counted: list[int] = []
    pgconn = getattr(getattr(app.log, "_conn", None), "pgconn", None)
    if pgconn is None:
        yield counted
        return
    path = tmp_path / "libpq-trace"
    with path.open("w") as trace:
        pgconn.trace(trace.fileno())
        try:
            yield counted
        finally:
            pgconn.untrace()
    counted.append(sum("ReadyForQuery" in line.split("\t") for line in path.read_text().splitlines()))


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


async def test_a_group_takes_as_many_round_trips_for_thirty_commands_as_for_three(app: App, tmp_path: Path) -> None:
    """The group's writes are held to its end and go out as one statement per table: a command
    costs no round trip of its own while the lock is held (on PostgreSQL; SQLite has none)."""
    notes = register_notes(app)
    await dispatch_together(app, [AddNote(id="first", text="x")])  # the tables made, the statements prepared
    trips = {}
    for size in (3, 30):
        with round_trips(app, tmp_path) as trips[size]:
            answers = await dispatch_together(app, [AddNote(id=f"{size}-{n}", text="x") for n in range(size)])
        assert all(isinstance(answer, Message) for answer in answers)
    assert trips[3] == trips[30] and app.group_commit.groups == 3
    assert len(notes.texts()) == 34


async def test_the_newest_id_is_read_by_a_statement_prepared_once_per_connection(app: App, tmp_path: Path) -> None:
    """On PostgreSQL a transaction reads the newest id by a statement prepared on its connection
    (planning it each time cost a fifth of an append). psycopg may drop every prepared statement (its
    cache's upkeep after a ROLLBACK, DROP or ALTER); the next transaction prepares it again, and the
    one after costs no more."""
    connection = getattr(app.log, "_conn", None)
    if not hasattr(connection, "pgconn"):
        pytest.skip("SQLite has no round trips")
    notes = register_notes(app)

    def prepared() -> set[str]:
        return {name for (name,) in connection.execute("SELECT name FROM pg_prepared_statements").fetchall()}

    assert "petrock_newest_and_xid" in prepared()  # as the connection was made, before any lock is waited for
    app.dispatch(AddNote(id="first", text="x"))
    with round_trips(app, tmp_path) as steady:
        app.dispatch(AddNote(id="second", text="x"))
    connection.execute("DEALLOCATE ALL")  # what psycopg sends after a rollback
    app.dispatch(AddNote(id="third", text="x"))
    assert "petrock_newest_and_xid" in prepared()
    with round_trips(app, tmp_path) as again:
        app.dispatch(AddNote(id="fourth", text="x"))
    assert steady == again == [3]  # BEGIN, the lock and the newest id; the note's row; the message and COMMIT
    assert sorted(notes.texts()) == ["first", "fourth", "second", "third"]


async def test_a_begin_the_database_refuses_leaves_no_failed_transaction_open(app: App) -> None:
    """A refusal as the lock is taken (here the session's search_path no longer finds the table; a
    missing privilege does the same) fails that command only: the connection is not left in a failed
    transaction that would refuse every command after it."""
    connection = getattr(app.log, "_conn", None)
    if not hasattr(connection, "pgconn"):
        pytest.skip("a PostgreSQL session setting")
    import psycopg

    notes = register_notes(app)
    app.dispatch(AddNote(id="first", text="x"))  # the notes table built
    connection.execute("SET search_path = nowhere")
    with pytest.raises(psycopg.errors.UndefinedTable):
        app.dispatch(AddNote(id="refused", text="x"))
    assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    connection.execute("RESET search_path")
    app.dispatch(AddNote(id="kept", text="x"))
    assert notes.texts() == {"first": "x", "kept": "x"}


async def test_a_command_refused_after_a_count_wrote_the_group_out_undoes_only_its_own_writes(app: App) -> None:
    """A read of many rows writes the held ones out first, inside the refused command's savepoint: the
    earlier commands' rows, written out there too, are held again when it rolls back, and still commit."""
    notes = register_notes(app)
    table = app.store.table(NOTES)
    counts: list[int] = []

    def write_count_then_refuse(command: Scribble, message: Message) -> None:
        table.put(command.id, {"id": command.id, "text": "half-done"})
        counts.append(table.count())
        if command.id != "kept":
            raise CommandRejected("refused after a count")

    app.commands.register("notes/scribble", Scribble, write_count_then_refuse)
    commands: list[BaseModel] = [
        AddNote(id="a", text="kept"),
        Scribble(id="kept"),
        AddNote(id="b", text="kept"),
        Scribble(id="refused"),
        AddNote(id="c", text="kept"),
        Scribble(id="refused-too"),
    ]
    answers = await dispatch_together(app, commands)
    assert [type(answer).__name__ for answer in answers] == ["Message", "Message", "Message"] + [
        "CommandRejected",
        "Message",
        "CommandRejected",
    ]
    assert counts == [2, 4, 5]  # each count saw the rows before it in the group, and its own
    assert notes.texts() == {"a": "kept", "kept": "half-done", "b": "kept", "c": "kept"}
    assert table.count() == 4 and app.group_commit.groups == 1


async def test_a_value_that_is_not_json_fails_its_own_command_only(app: App) -> None:
    notes = register_notes(app)
    table = app.store.table(NOTES)

    def write_unencodable(command: Scribble, message: Message) -> None:
        table.put(command.id, {"id": command.id, "text": object()})

    app.commands.register("notes/scribble", Scribble, write_unencodable)
    answers = await dispatch_together(app, [AddNote(id="a", text="kept"), Scribble(id="b"), AddNote(id="c", text="x")])
    assert isinstance(answers[0], Message) and isinstance(answers[2], Message)
    assert isinstance(answers[1], Exception) and not isinstance(answers[1], Message)
    assert notes.texts() == {"a": "kept", "c": "x"} and app.log.version() == 2


SIZES = TableSpec("sizes", columns=(Column("n", "int"),))


class Measure(BaseModel):
    id: str
    n: int  # any integer: the database stores 64 bits


async def test_a_value_the_database_refuses_at_the_group_s_end_fails_its_own_command_only(app: App) -> None:
    """A group's writes go out at its end; one the database refuses there (an integer past 64 bits) rolls
    the whole transaction back. The group is then committed again one by one: only its command fails."""
    notes = register_notes(app)
    app.projections.ensure_tables([SIZES])
    sizes = app.store.table(SIZES)
    app.commands.register(
        "sizes/measure", Measure, lambda command, message: sizes.put(command.id, command.model_dump())
    )
    commands: list[BaseModel] = [AddNote(id="a", text="kept"), Measure(id="big", n=10**20), AddNote(id="c", text="x")]
    answers = await dispatch_together(app, commands)
    assert isinstance(answers[0], Message) and isinstance(answers[2], Message)
    assert isinstance(answers[1], Exception) and not isinstance(answers[1], Message)
    assert notes.texts() == {"a": "kept", "c": "x"} and app.log.version() == 2
    assert sizes.get("big") is None
    with pytest.raises(Exception) as raised:  # dispatch_each returns refusals only: other errors commit nothing
        app.dispatch_each([AddNote(id="d", text="y"), Measure(id="huge", n=-(10**30))])
    assert not isinstance(raised.value, CommandRejected)
    assert "d" not in notes.texts() and app.log.version() == 2
