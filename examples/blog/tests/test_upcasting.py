"""Versioned messages and upcasters: old payloads read as today's shape, and a log the code cannot read refused."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from blog.core import App, CommandWorker, open_log
from blog.core.upcasting import Payload, UpcasterChains, Upcasters, VersionMismatch

from .conftest import AddNote, Notes, register_notes

# The notes once called their text `body` (version 1); today it is `text` (version 2).
upcasters = Upcasters()


@upcasters.step("notes/add", 1)
def notes_add_v1(payload: Payload) -> Payload:
    return {"id": payload["id"], "text": payload["body"]}


def register_notes_at_version_2(app: App) -> Notes:
    notes = register_notes(app)
    app.upcasters.add(upcasters)
    return notes


def test_old_messages_are_rebuilt_through_the_upcasters_and_new_ones_stored_at_the_current_version(db: str) -> None:
    old = App(open_log(db))
    old.log.append("notes/add", {"id": "a", "body": "from version 1"})
    old.log.close()

    app = App(open_log(db))
    notes = register_notes_at_version_2(app)
    app.check_versions()
    assert app.prepare() == ["notes"]
    assert notes.texts() == {"a": "from version 1"}
    message = app.dispatch(AddNote(id="b", text="from version 2"))
    stored = list(app.log.after(0))
    assert [(m.version, m.payload()) for m in stored] == [
        (1, {"id": "a", "body": "from version 1"}),  # the log is never rewritten
        (2, {"id": "b", "text": "from version 2"}),
    ]
    assert message.version == 2
    assert json.loads(app.upcasters.read(stored[0]).data) == {"id": "a", "text": "from version 1"}
    app.log.close()


def test_a_log_newer_than_the_code_is_refused_in_one_line_naming_type_and_version(db: str) -> None:
    app = App(open_log(db))
    register_notes(app)
    app.log.append("notes/add", {"id": "a", "text": "x"}, 2)
    newer = r"^the log holds notes/add messages of version 2, newer than this code's 1"
    with pytest.raises(VersionMismatch, match=newer):
        app.check_versions()
    app.log.close()


def test_a_missing_step_for_a_stored_version_is_refused(db: str) -> None:
    later = Upcasters()
    later.step("notes/add", 2)(lambda payload: payload)  # version 2 -> 3, but nothing for 1 -> 2
    app = App(open_log(db))
    register_notes(app)
    app.upcasters.add(later)
    app.check_versions()  # no version-1 message yet: nothing to refuse
    app.log.append("notes/add", {"id": "a", "body": "x"})
    with pytest.raises(VersionMismatch, match=r"version 1, and no upcaster brings version 1 to 2"):
        app.check_versions()
    app.log.close()


@pytest.mark.anyio
async def test_a_worker_is_handed_old_messages_in_todays_shape(app: App) -> None:
    register_notes_at_version_2(app)
    seen: list[dict[str, str]] = []
    worker = CommandWorker("seen")
    worker.on("notes/add", lambda command, ctx: seen.append({"text": command.text, "version": ctx.message.version}))
    app.register_worker(worker)
    app.log.append("notes/add", {"id": "a", "body": "old"})
    await app.start_workers()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await app.close()
    assert seen == [{"text": "old", "version": 2}]


def test_a_workers_state_fingerprint_covers_the_upcasters_of_the_types_it_handles() -> None:
    """A new or edited step changes what the worker's handlers see: its tables are rebuilt at its next start."""
    worker = CommandWorker("seen")
    worker.on("notes/add", lambda command, ctx: None)
    unrelated = Upcasters()
    unrelated.step("other/add", 1)(lambda payload: payload)
    plain, with_notes, with_other = UpcasterChains(), UpcasterChains(), UpcasterChains()
    with_notes.add(upcasters)
    with_other.add(unrelated)
    assert worker.state_fingerprint(plain) != worker.state_fingerprint(with_notes)
    assert worker.state_fingerprint(plain) == worker.state_fingerprint(with_other)  # not a type it handles
