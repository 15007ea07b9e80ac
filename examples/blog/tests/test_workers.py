"""The worker runtime: start, wake-up, fault isolation, bounded shutdown, exactly-once dispatch."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from blog.core import (
    App,
    CommandWorker,
    Context,
    LeaseLost,
    MessageLog,
    TableSpec,
    WorkerAlreadyStarted,
    WorkerError,
    WorkerStopped,
    open_log,
)
from blog.core.log import LogUnreachable
from blog.core.supervisor import WorkerState

from .conftest import NOTES, AddNote, Notes, RemoveNote, register_notes
from .test_group_commit import round_trips

pytestmark = pytest.mark.anyio


class Recorder:
    """A worker that records every call the runtime makes."""

    def __init__(self, name: str, *, fail_work: bool = False, hang_work: bool = False, hang_stop: bool = False) -> None:
        self.name = name
        self.calls: list[str] = []
        self.fail_work = fail_work
        self.hang_work = hang_work
        self.hang_stop = hang_stop

    async def start(self, app: App) -> None:
        self.calls.append("start")

    async def work(self) -> None:
        self.calls.append("work")
        if self.fail_work:
            raise RuntimeError(f"{self.name} is broken")
        if self.hang_work:
            await asyncio.sleep(3600)

    async def stop(self) -> None:
        self.calls.append("stop")
        if self.hang_stop:
            await asyncio.sleep(3600)


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_every_worker_is_started_worked_and_stopped(app: App) -> None:
    workers = [Recorder(f"w{i}") for i in range(3)]
    for worker in workers:
        app.register_worker(worker)
    await app.start_workers()
    await wait_until(lambda: all(w.calls.count("work") >= 2 for w in workers))
    assert await app.stop_workers() == []
    for worker in workers:
        assert worker.calls[0] == "start" and worker.calls[-1] == "stop"
    assert {h.state for h in app.supervisor.handles} == {WorkerState.STOPPED}


async def test_hanging_workers_do_not_make_shutdown_exceed_its_timeout(app: App) -> None:
    hangs_in_work = Recorder("work-hang", hang_work=True)
    hangs_in_stop = Recorder("stop-hang", hang_stop=True)
    healthy = Recorder("healthy")
    for worker in (hangs_in_work, hangs_in_stop, healthy):
        app.register_worker(worker)
    await app.start_workers()
    await wait_until(lambda: "work" in hangs_in_work.calls)
    began = time.monotonic()
    stuck = await app.stop_workers(timeout=0.5)  # the healthy ones must stop within it, on a busy machine too
    assert time.monotonic() - began < 0.5 + 0.25
    assert stuck == ["stop-hang"]
    assert all("stop" in w.calls for w in (hangs_in_work, hangs_in_stop, healthy))


async def test_a_raising_worker_does_not_stop_the_others(app: App) -> None:
    broken, healthy = Recorder("broken", fail_work=True), Recorder("healthy")
    app.register_worker(broken)
    app.register_worker(healthy)
    app.supervisor.backoff_base = 0.01
    await app.start_workers()
    await wait_until(lambda: broken.calls.count("work") >= 3 and healthy.calls.count("work") >= 3)
    handle = next(h for h in app.supervisor.handles if h.name == "broken")
    assert handle.state == WorkerState.FAILED and "broken" in (handle.last_error or "")
    assert await app.stop_workers() == []


async def test_a_worker_waiting_for_the_database_tries_again_within_seconds_and_logs_no_traceback(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh-user trial saw /healthz stay 503 for up to 16 s after the database came back (the worker's
    backoff had grown to 30 s) and a traceback at ERROR for every failed cycle of an outage; a second one,
    a line for every failed cycle: now one when the outage begins, one when it ends."""
    caplog.set_level(logging.INFO, logger="blog.core.supervisor")

    class Outage(Recorder):
        async def work(self) -> None:
            self.calls.append("work")
            if self.calls.count("work") <= 6:
                raise LogUnreachable("lost the database at postgresql://db.example/app")

    waiting = Outage("waiting")
    app.register_worker(waiting)
    app.supervisor.backoff_base = 1.0  # any other error: 1, 2, 4, 8, 16 s between tries
    app.supervisor.unreachable_backoff_cap = 0.05
    began = time.monotonic()
    await app.start_workers()
    await wait_until(lambda: waiting.calls.count("work") >= 7, timeout=5)
    assert time.monotonic() - began < 3
    assert app.supervisor.handles[0].state == WorkerState.RUNNING
    await app.stop_workers()
    lines = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.name.endswith("supervisor")]
    about_it = [line for line in lines if "database" in line[1]]
    assert about_it == [
        (
            "WARNING",
            "worker 'waiting' waits for the database (work()): lost the database at postgresql://db.example/app",
            None,
        ),
        ("INFO", "worker 'waiting' reached the database again", None),
    ]
    # /healthz shows the last error to whoever may read it: the database's address is not in it.
    assert app.supervisor.handles[0].last_error == "work: the database cannot be reached"
    assert app.supervisor.backoff(9) == app.supervisor.backoff_cap  # other errors back off as before


async def test_a_failing_start_is_retried_and_reported(app: App) -> None:
    class FlakyStart(Recorder):
        async def start(self, app: App) -> None:
            self.calls.append("start")
            if self.calls.count("start") < 3:
                raise RuntimeError("not yet")

    flaky = FlakyStart("flaky")
    app.register_worker(flaky)
    app.supervisor.backoff_base = 0.01
    await app.start_workers()
    await wait_until(lambda: "work" in flaky.calls)
    assert flaky.calls.count("start") == 3
    assert app.supervisor.handles[0].failures == 2
    await app.stop_workers()


def test_jitter_stays_within_the_poll_interval_plus_jitter(db_path: Path) -> None:
    for draw in (0.0, 0.25, 0.999999):
        app = App(MessageLog(db_path), poll_interval=1.0, jitter=1.0, random=lambda draw=draw: draw)
        app.register_worker(Recorder("w"))
        delay = app.supervisor.delay(app.supervisor.handles[0])
        assert 1.0 <= delay < 2.0
        assert delay == pytest.approx(1.0 + draw)
        app.log.close()


def test_backoff_is_exponential_and_capped(app: App) -> None:
    delays = [app.supervisor.backoff(n) for n in range(1, 12)]
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert max(delays) == app.supervisor.backoff_cap


async def test_registration_is_refused_for_duplicates_and_after_start(app: App) -> None:
    app.register_worker(Recorder("one"))
    with pytest.raises(WorkerError, match="already registered"):
        app.register_worker(Recorder("one"))
    await app.start_workers()
    with pytest.raises(WorkerAlreadyStarted):
        app.register_worker(Recorder("two"))
    await app.stop_workers()


async def test_an_append_wakes_workers_long_before_the_poll(db_path: Path) -> None:
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    seen: list[str] = []
    watcher = CommandWorker("watcher")
    watcher.on("notes/add", lambda command, ctx: seen.append(command.id))
    app.register_worker(watcher)
    await app.start_workers()
    await wait_until(lambda: app.supervisor.handles[0].cycles >= 1)
    began = time.monotonic()
    app.dispatch(AddNote(id="a", text="hello"))
    await wait_until(lambda: seen == ["a"], timeout=2.0)
    assert time.monotonic() - began < 1.0
    await app.close()


async def test_a_worker_behind_a_stream_of_appends_lets_them_gather_and_wakes_at_once_after_quiet(
    db_path: Path,
) -> None:
    """A cycle per append would pay the cycle's reads and commit for every few messages: after a cycle that
    read ``busy_batch`` messages of others the next starts ``busy_interval`` after it began, with all that came
    meanwhile. Its own commands read back do not make it busy (a trial saw a burst of 4 posts, 8 messages of
    the summary worker's own, delay the next burst)."""
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    handled: dict[str, float] = {}
    watcher = CommandWorker("watcher")
    watcher.busy_interval = 1.0

    @watcher.on("notes/add")
    def echo(command: AddNote, ctx: Context) -> None:
        handled.setdefault(command.id, time.monotonic())
        if not command.id.startswith("echo-"):  # as many messages of its own as it read
            ctx.dispatch(AddNote(id=f"echo-{command.id}", text=command.text))

    app.register_worker(watcher)
    await app.start_workers()
    await wait_until(lambda: app.supervisor.handles[0].cycles >= 1)

    app.dispatch(AddNote(id="alone", text="one"))
    await wait_until(lambda: "alone" in handled)
    sent = time.monotonic()
    app.dispatch(AddNote(id="next", text="one more"))
    await wait_until(lambda: "next" in handled)
    assert handled["next"] - sent < 0.5  # at once: a cycle of one message is not busy

    app.commit([AddNote(id=f"burst-{n}", text="many") for n in range(watcher.busy_batch)])
    await wait_until(lambda: "burst-0" in handled)
    app.dispatch(AddNote(id="during", text="gathered"))
    app.dispatch(AddNote(id="also", text="gathered"))
    await wait_until(lambda: "also" in handled)
    assert handled["during"] - handled["burst-0"] >= 0.8  # waited for the busy interval (a loaded machine: margin)
    assert handled["also"] - handled["during"] < 0.3  # both in the one cycle after it, with the burst's 8 echoes

    sent = time.monotonic()
    app.dispatch(AddNote(id="quiet", text="again"))
    await wait_until(lambda: "quiet" in handled)
    assert handled["quiet"] - sent < 0.5
    await app.close()


def echo_worker(sent: list[str]) -> CommandWorker:
    """Reacts to notes/add by adding an "echo-" note, once, and records the side effect."""
    worker = CommandWorker("echo")

    @worker.on("notes/add")
    def echo(command: AddNote, ctx: Context) -> None:
        if command.id.startswith("echo-"):
            return
        if not ctx.replaying:
            sent.append(command.id)
        ctx.dispatch(AddNote(id=f"echo-{command.id}", text=command.text))

    return worker


async def test_command_worker_dispatches_once_and_resumes_from_its_stored_position(db_path: Path) -> None:
    sent: list[str] = []
    app = App(MessageLog(db_path), poll_interval=0.01, jitter=0.0)
    first_notes = register_notes(app)
    app.register_worker(echo_worker(sent))
    await app.start_workers()
    app.dispatch(AddNote(id="a", text="one"))
    await wait_until(lambda: "echo-a" in first_notes.texts())
    await app.close()

    restarted = App(MessageLog(db_path), poll_interval=0.01, jitter=0.0)
    notes = register_notes(restarted)
    restarted.register_worker(echo_worker(sent))
    await restarted.start_workers()
    restarted.dispatch(AddNote(id="b", text="two"))
    await wait_until(lambda: "echo-b" in notes.texts())
    await restarted.close()

    ids = [m.payload()["id"] for m in MessageLog(db_path).after(0)]
    assert ids == ["a", "echo-a", "b", "echo-b"]
    assert sent == ["a", "b"]


async def test_a_worker_can_read_its_own_log(db_path: Path, tmp_path: Path) -> None:
    inbox = MessageLog(tmp_path / "inbox.db")
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    worker = CommandWorker("inbox", log=inbox)
    worker.on("mail/received", lambda payload, ctx: ctx.dispatch(AddNote(id=payload["id"], text=payload["subject"])))
    app.register_worker(worker)
    await app.start_workers()
    inbox.append("mail/received", {"id": "m1", "subject": "hello"})
    await wait_until(lambda: app.log.version() == 1)
    assert app.log.position("inbox") == 1
    await app.close()
    inbox.close()


async def test_a_stopped_command_worker_refuses_more_work(app: App) -> None:
    worker = CommandWorker("done")
    await worker.start(app)
    await worker.stop()
    with pytest.raises(WorkerStopped):
        await worker.work()


async def test_a_periodic_worker_can_opt_out_of_wake_up_on_append(db_path: Path) -> None:
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    periodic, reactive = Recorder("periodic"), Recorder("reactive")
    periodic.wake_on_append = False
    app.register_worker(periodic)
    app.register_worker(reactive)
    await app.start_workers()
    await wait_until(lambda: periodic.calls.count("work") == 1 and reactive.calls.count("work") == 1)
    app.dispatch(AddNote(id="a", text="hello"))
    await wait_until(lambda: reactive.calls.count("work") == 2)
    await asyncio.sleep(0.05)
    assert periodic.calls.count("work") == 1
    await app.close()


class AppendsInItsFirstCycle(Recorder):
    """Appends a note in its first cycle, as a worker reacting to the log does (then runs once more, for it)."""

    async def start(self, app: App) -> None:
        self.app = app
        await super().start(app)

    async def work(self) -> None:
        await super().work()
        if self.calls.count("work") == 1:
            self.app.dispatch(AddNote(id="first", text="from the first cycle"))


async def test_an_append_wakes_a_worker_once_even_when_the_log_follower_first_looks_after_it(db_path: Path) -> None:
    # The follower (it hears of other processes' appends) first looks 5 ms after the workers start:
    # after this append, which woke the worker at its commit. It must not wake it again for it (a
    # third cycle), which is what made the test above flaky: its own append raced the first look.
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    worker = AppendsInItsFirstCycle("appends")
    app.register_worker(worker)
    await app.start_workers()
    await wait_until(lambda: worker.calls.count("work") >= 2)
    await asyncio.sleep(0.1)  # the follower has looked twenty times
    assert worker.calls.count("work") == 2
    await app.close()


async def test_workers_start_again_after_a_stop(app: App) -> None:
    worker = Recorder("again")
    app.register_worker(worker)
    await app.start_workers()
    await wait_until(lambda: "work" in worker.calls)
    await app.stop_workers()
    worker.calls.clear()
    await app.start_workers()
    await wait_until(lambda: worker.calls[:2] == ["start", "work"])
    await app.stop_workers()


# --- several processes on one log: each App below stands for one process ---


async def serving_app(db_path: Path, sent: list[str]) -> tuple[App, Notes]:
    """What one server process does on start: make the projections current, then start the workers
    (and follow the log)."""
    app = App(MessageLog(db_path), poll_interval=0.01, jitter=0.0, lease_ttl=0.3)
    notes = register_notes(app)
    app.prepare()
    app.register_worker(echo_worker(sent))
    await app.start_workers()
    return app, notes


async def test_a_worker_runs_in_one_process_and_another_takes_it_over_when_it_stops(db_path: Path) -> None:
    sent: list[str] = []
    first, _ = await serving_app(db_path, sent)
    await wait_until(lambda: first.runtime()["runs"] == ["echo"])
    second, notes = await serving_app(db_path, sent)
    await wait_until(lambda: second.runtime()["stands_by_for"] == ["echo"])

    second.dispatch(AddNote(id="a", text="one"))  # the worker in the first process answers...
    await wait_until(lambda: "echo-a" in notes.texts())  # ...and the second reads it from the shared table

    await first.close()  # releases the lease: the second takes the worker over
    await wait_until(lambda: second.runtime()["runs"] == ["echo"])
    second.dispatch(AddNote(id="b", text="two"))
    await wait_until(lambda: "echo-b" in notes.texts())
    await second.close()

    assert [m.payload()["id"] for m in MessageLog(db_path).after(0)] == ["a", "echo-a", "b", "echo-b"]
    assert sent == ["a", "b"]


async def test_a_process_that_lost_a_lease_stops_the_worker_until_it_gets_it_back(db_path: Path) -> None:
    sent: list[str] = []
    app, notes = await serving_app(db_path, sent)
    await wait_until(lambda: app.runtime()["runs"] == ["echo"])
    thief = sqlite3.connect(db_path, isolation_level=None)
    thief.execute("UPDATE leases SET owner = 'another-process', expires = expires + 3600")
    await wait_until(lambda: app.runtime()["stands_by_for"] == ["echo"])
    with pytest.raises(LeaseLost):
        app.log.set_position("echo", 99)  # the fence: no position from a process without the lease

    app.dispatch(AddNote(id="a", text="one"))
    await asyncio.sleep(0.3)
    assert "echo-a" not in notes.texts()  # nobody runs the worker here meanwhile
    thief.execute("DELETE FROM leases")  # the other process let go
    await wait_until(lambda: "echo-a" in notes.texts())
    await app.close()
    assert sent == ["a"]


async def test_a_failing_handler_keeps_what_the_messages_before_it_dispatched(db_path: Path) -> None:
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    app.prepare()  # as serve does: the notes below are appended raw, past the notes table
    worker = CommandWorker("picky")

    @worker.on("notes/add")
    def echo(command: AddNote, ctx: Context) -> None:
        if command.text == "poison":
            raise RuntimeError("cannot handle this one")
        if not command.id.startswith("echo-"):
            ctx.dispatch(AddNote(id=f"echo-{command.id}", text=command.text))

    app.register_worker(worker)
    for id, text in (("a", "one"), ("b", "two"), ("c", "poison"), ("d", "four")):
        app.log.append("notes/add", AddNote(id=id, text=text).model_dump_json())
    await app.start_workers()
    await wait_until(lambda: app.supervisor.handles[0].failures >= 1)
    await app.close()
    echoes = [m.payload()["id"] for m in MessageLog(db_path).after(0) if m.payload()["id"].startswith("echo-")]
    assert echoes == ["echo-a", "echo-b"]  # committed; the worker retries from the failing message
    assert MessageLog(db_path).position("picky") == 2
    reopened = App(MessageLog(db_path))
    assert set(register_notes(reopened).texts()) == {"echo-a", "echo-b"}  # dispatched through the app: in its table


COUNTS = TableSpec("note-counts")


class NoteCounter(CommandWorker):
    """Counts added notes in a table of its own: kept across restarts, rebuilt only when its code changes."""

    tables = (COUNTS,)

    def __init__(self, handled: list[tuple[int, bool]]) -> None:
        super().__init__("note-counter")
        self.counts = self.table(COUNTS)
        self.handled = handled  # (message id, replaying?) of every call
        self.on("notes/add", self.count)

    def count(self, command: AddNote, ctx: Context) -> None:
        self.handled.append((ctx.message.id, ctx.replaying))
        row = self.counts.get("notes") or {"added": 0}
        self.counts.put("notes", {"added": row["added"] + 1})


async def run_counter(db_path: Path, notes: list[str], *, version: str = "1") -> tuple[list[tuple[int, bool]], int]:
    """Serve once: add ``notes``, wait for the counter; returns its calls and its count."""
    handled: list[tuple[int, bool]] = []
    app = App(MessageLog(db_path), poll_interval=0.01, jitter=0.0)
    register_notes(app)
    counter = NoteCounter(handled)
    counter.version = version
    app.register_worker(counter)
    app.prepare()
    await app.start_workers()
    for note in notes:
        app.dispatch(AddNote(id=note, text=note))
    await wait_until(lambda: counter.position == app.log.version())
    count = counter.counts.get("notes")
    await app.close()
    return handled, count["added"] if count else 0


async def test_a_worker_keeps_its_state_in_the_store_and_restarts_without_replay(db_path: Path) -> None:
    assert await run_counter(db_path, ["a", "b"]) == ([(1, False), (2, False)], 2)
    assert await run_counter(db_path, ["c"]) == ([(3, False)], 3)  # messages 1 and 2 are not handled again


async def test_a_worker_whose_code_changed_rebuilds_its_state_calling_nothing(db_path: Path) -> None:
    await run_counter(db_path, ["a", "b"])
    handled, count = await run_counter(db_path, ["c"], version="2")
    assert handled == [(1, True), (2, True), (3, False)] and count == 3


class NewsCounter(NoteCounter):
    """A counter added to an app with history that must act only on what comes after it: ``catch_up = False``."""

    catch_up = False


def add_notes_before(db_path: Path, *ids: str) -> None:
    """The app's history: notes in the log before the worker existed."""
    history = MessageLog(db_path)
    for id in ids:
        history.append("notes/add", AddNote(id=id, text=id).model_dump())
    history.close()


async def test_a_worker_that_does_not_catch_up_builds_its_state_from_history_and_acts_only_on_news(
    db_path: Path,
) -> None:
    add_notes_before(db_path, "a", "b")
    handled: list[tuple[int, bool]] = []
    app = App(MessageLog(db_path), poll_interval=0.01, jitter=0.0)
    register_notes(app)
    counter = NewsCounter(handled)
    app.register_worker(counter)
    app.prepare()
    await app.start_workers()
    await wait_until(lambda: app.log.position(counter.name) == 2)  # stored at its first start
    app.dispatch(AddNote(id="c", text="c"))
    await wait_until(lambda: counter.position == 3)
    assert handled == [(1, True), (2, True), (3, False)]  # the old notes counted, replaying; the new one acted on
    assert counter.counts.get("notes") == {"added": 3}
    await app.close()


async def test_a_rebuild_run_before_the_first_start_of_a_worker_that_does_not_catch_up_is_redone(
    db_path: Path,
) -> None:
    """``projections rebuild`` before the first start (the guide's advice on a big log) built the tables up to
    the stored position, 0, and recorded them as current: found by review, the history was never counted."""
    add_notes_before(db_path, "a", "b")
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    app.prepare()
    handled: list[tuple[int, bool]] = []
    assert await NewsCounter(handled).rebuild_state(app) == 0  # what `projections rebuild worker:...` runs
    counter = NewsCounter(handled)
    await counter.start(app)
    app.dispatch(AddNote(id="c", text="c"))
    await counter.work()
    assert handled == [(1, True), (2, True), (3, False)]
    assert counter.counts.get("notes") == {"added": 3}
    app.log.close()


async def test_a_first_start_that_did_not_catch_up_is_not_repeated_after_a_restart(db_path: Path) -> None:
    """Its position is stored at once: a note added before its first cycle committed is still news after a
    restart, not history (as it would be if the restart counted as a first start again)."""
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    counter = NewsCounter([])
    app.prepare()
    await counter.start(app)  # an empty log: it goes on after message 0
    app.dispatch(AddNote(id="a", text="a"))
    app.log.close()  # a crash before its first cycle

    handled: list[tuple[int, bool]] = []
    restarted = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(restarted)
    again = NewsCounter(handled)
    restarted.prepare()
    await again.start(restarted)
    await again.work()
    assert handled == [(1, False)]
    restarted.log.close()


LENGTHS = TableSpec("note-lengths")


class NoteLengths(CommandWorker):
    """Keeps each note's text length; reads the rows a batch of messages needs in one query."""

    tables = (LENGTHS,)

    def __init__(self) -> None:
        super().__init__("note-lengths", max_attempts=1)
        self.lengths = self.table(LENGTHS)
        self.batches: list[list[str]] = []  # the note ids each prefetch was given
        self.on("notes/add", self.measure)

    def prefetch(self, commands: list[AddNote]) -> None:
        self.batches.append([command.id for command in commands])
        self.preload(LENGTHS, [command.id for command in commands])

    def measure(self, command: AddNote, ctx: Context) -> None:
        seen = self.lengths.get(command.id)
        self.lengths.put(command.id, {"length": len(command.text), "edits": seen["edits"] + 1 if seen else 0})


async def test_a_worker_prefetches_a_batch_and_an_unreadable_message_in_it_fails_alone(db_path: Path) -> None:
    app = App(MessageLog(db_path), poll_interval=30.0, jitter=0.0)
    register_notes(app)
    app.prepare()
    worker = NoteLengths()
    app.register_worker(worker)
    app.log.append("notes/add", AddNote(id="a", text="one").model_dump_json())
    app.log.append("notes/add", {"id": "b"})  # no text: the worker cannot read it
    app.log.append("notes/add", AddNote(id="c", text="three").model_dump_json())
    app.log.append("notes/add", AddNote(id="a", text="four!").model_dump_json())
    await app.start_workers()
    await wait_until(lambda: worker.position == 4)
    await app.close()
    assert worker.batches[0] == ["a", "c", "a"]  # in log order, the unreadable one left out
    reopened = App(MessageLog(db_path))
    lengths = reopened.store.table(LENGTHS)
    assert lengths.get_many(["a", "b", "c"]) == {"a": {"length": 5, "edits": 1}, "c": {"length": 5, "edits": 0}}
    assert [letter.message_id for letter in reopened.dead_letters.list()] == [2]


class Remover(CommandWorker):
    """Removes every note added with an id starting "gone-": each removal reads the note, then deletes it."""

    def __init__(self) -> None:
        super().__init__("remover", poll_interval=30.0)
        self.on("notes/add", self.remove)

    def remove(self, command: AddNote, ctx: Context) -> None:
        if command.id.startswith("gone-"):
            ctx.dispatch(RemoveNote(id=command.id))

    def before_commit(self, commands: list[RemoveNote]) -> None:
        self.app.store.preload(NOTES, [command.id for command in commands])


async def test_a_worker_batch_reads_its_rows_in_one_query_and_takes_no_round_trip_a_message(
    db: str, tmp_path: Path
) -> None:
    """The commands a batch dispatched are applied with the rows ``before_commit`` read in one query, and
    their writes go out together: 20 messages take the round trips 2 take (on PostgreSQL, where each
    is a wait inside the write lock), and no command reads its row on its own (on SQLite too)."""
    app = App(open_log(db), poll_interval=30.0, jitter=0.0)
    notes = register_notes(app)
    app.prepare()
    worker = Remover()
    await worker.start(app)
    connection = getattr(app.log, "_db", None)  # SQLite's statements can be traced
    statements: list[str] = []
    app.dispatch(AddNote(id="first", text="x"))
    await worker.work()  # the statements prepared
    trips = {}
    for size in (2, 20):
        app.dispatch_each([AddNote(id=f"gone-{size}-{n}", text="x") for n in range(size)])
        statements.clear()
        if connection is not None:
            connection.set_trace_callback(statements.append)
        with round_trips(app, tmp_path) as trips[size]:
            await worker.work()
        if connection is not None:
            connection.set_trace_callback(None)
            reads = [sql for sql in statements if sql.startswith("SELECT") and '"state_notes"' in sql]
            assert len(reads) == 1 and " IN (" in reads[0]  # one query for the batch's rows, none one by one
        assert notes.texts() == {"first": "x"} and worker.position == app.log.version() - size
    assert trips[2] == trips[20]
    app.log.close()


async def test_a_position_committed_with_commands_is_fenced_by_the_lease(db: str) -> None:
    """Sent with the COMMIT (PostgreSQL): a position the lease refuses stops the transaction, commands and all."""
    app = App(open_log(db), poll_interval=30.0, jitter=0.0)
    notes = register_notes(app)
    app.prepare()
    other = open_log(db)
    assert other.acquire_lease("echo", ttl=30)
    with pytest.raises(LeaseLost, match="another|leased"):
        app.commit([AddNote(id="a", text="one")], position=("echo", 1))
    assert app.log.version() == 0 and app.log.position("echo") == 0 and notes.texts() == {}
    other.release_lease("echo")
    app.commit([AddNote(id="b", text="two")], position=("echo", 1))
    assert app.log.position("echo") == 1 and notes.texts() == {"b": "two"}
    other.close()
    app.log.close()
