"""The store: tables beside the log, written in its transactions. One suite for every backend.

Each test runs once per backend the ``db`` fixture offers (SQLite always, PostgreSQL when
``APP_TEST_DB`` names a server). Two logs opened on the same ``db`` stand for two processes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import from_json, to_json

from newsroom.core import App, Column, CommandRejected, Message, Projection, Store, TableSpec, open_log, projections
from newsroom.core.log import MessageLogBackend
from newsroom.core.queries import Parameters, QueryRegistry
from newsroom.core.store import Page, answering_json

from .conftest import AddNote, RemoveNote, register_notes

ORDERS = TableSpec(
    "orders",
    columns=(
        Column("customer", "folded"),
        Column("status", counted=True),
        Column("paid", "bool", counted=True),
        Column("total", "decimal"),
        Column("due"),
        Column("placed_at", "time"),
    ),
)
ORDER_ROWS = [
    {"id": "o1", "customer": "bea", "status": "draft", "paid": False, "total": "9.50", "due": None,
     "placed_at": "2025-01-01T10:00:00Z"},
    {"id": "o2", "customer": "Adam", "status": "paid", "paid": True, "total": "100.00", "due": "2025-03-01",
     "placed_at": "2025-01-01T10:00:00.5Z"},
    {"id": "o3", "customer": "carl", "status": "paid", "paid": True, "total": "25", "due": "2025-02-01",
     "placed_at": "2025-01-01T09:00:00+02:00"},
    {"id": "o4", "customer": "dora", "status": "shipped", "paid": True, "total": "-3", "due": None,
     "placed_at": "2025-01-02T00:00:00Z"},
]  # fmt: skip


def orders_on(log: MessageLogBackend) -> tuple[App, Store]:
    app = App(log)
    app.projections.ensure_tables([ORDERS])
    return app, app.store


@pytest.fixture
def orders(db: str) -> Store:
    _, store = orders_on(open_log(db))
    table = store.table(ORDERS)
    with store.log.transaction():
        for row in ORDER_ROWS:
            table.put(row["id"], row)
    return store


def ids(rows: list[dict]) -> list[str]:
    return [row["id"] for row in rows]


def test_put_get_delete(orders: Store) -> None:
    table = orders.table(ORDERS)
    assert table.get("o1") == ORDER_ROWS[0] and table.get("nope") is None
    with orders.log.transaction():
        table.put("o1", {**ORDER_ROWS[0], "status": "paid"})
        assert table.delete("o4") and not table.delete("o4")
    assert table.get("o1")["status"] == "paid" and table.get("o4") is None


def test_many_rows_in_one_call_each_way(orders: Store) -> None:
    table = orders.table(ORDERS)
    assert ids(list(table.get_many(["o3", "nope", "o1", "o3"]).values())) == ["o3", "o1"]  # found ones only
    many = [(f"n{n}", {"id": f"n{n}", "customer": "x", "status": "draft", "paid": False}) for n in range(1200)]
    with orders.log.transaction():
        table.put_many(many)
    found = table.get_many(id for id, _ in many)  # more ids than one query takes
    assert len(found) == 1200 and found["n1199"]["customer"] == "x"
    assert table.count({"status": "draft"}) == 1201


def test_newest_first_by_default_and_pages(orders: Store) -> None:
    table = orders.table(ORDERS)
    assert ids(table.find()) == ["o4", "o3", "o2", "o1"]
    assert ids(table.find(offset=1, limit=2)) == ["o3", "o2"]
    assert table.find(offset=10) == []  # past the end: an empty page, not an error


def test_values_order_as_what_they_are(orders: Store) -> None:
    table = orders.table(ORDERS)
    assert ids(table.find(sort="customer")) == ["o2", "o1", "o3", "o4"]  # Adam before bea: case does not matter
    assert ids(table.find(sort="total")) == ["o4", "o1", "o3", "o2"]  # -3 < 9.50 < 25 < 100.00: as numbers
    assert ids(table.find(sort="-total")) == ["o2", "o3", "o1", "o4"]
    assert ids(table.find(sort="placed_at")) == ["o3", "o1", "o2", "o4"]  # 07:00Z < 10:00Z < 10:00:00.5Z


def test_empty_values_come_last_both_ways_and_pages_cross_into_them(orders: Store) -> None:
    table = orders.table(ORDERS)
    assert ids(table.find(sort="due")) == ["o3", "o2", "o4", "o1"]
    assert ids(table.find(sort="-due")) == ["o2", "o3", "o4", "o1"]
    assert ids(table.find(sort="due", offset=1, limit=2)) == ["o2", "o4"]
    assert ids(table.find(sort="due", offset=3, limit=2)) == ["o1"]


def test_filters_and_counts(orders: Store) -> None:
    table = orders.table(ORDERS)
    assert table.count() == 4
    assert table.count({"status": "paid"}) == 2 and table.count({"paid": True}) == 3
    assert table.count({"status": "paid", "paid": True}) == 2 and table.count({"status": "nope"}) == 0
    assert ids(table.find({"status": "paid"}, sort="customer")) == ["o2", "o3"]
    assert ids(table.find({"paid": True}, sort="-total", limit=2)) == ["o2", "o3"]
    assert table.page({"paid": True}, limit=1) == {"items": [ORDER_ROWS[3]], "total": 3, "offset": 0, "limit": 1}


def test_counts_follow_every_insert_update_and_delete(orders: Store) -> None:
    table = orders.table(ORDERS)
    with orders.log.transaction():
        table.put("o1", {**ORDER_ROWS[0], "status": "paid", "paid": True})
        table.delete("o2")
        table.put("o5", {**ORDER_ROWS[0], "id": "o5", "status": None})
    assert table.count() == 4
    assert table.count({"status": "paid"}) == 2 and table.count({"status": "draft"}) == 0
    assert table.count({"paid": True}) == 3 and table.count({"paid": False}) == 1


PAGES = [  # (where, sort, offset, limit): newest first, filtered, by numbers, across into the empty values, past the end
    ({}, None, 0, 100),
    ({"paid": True}, "-total", 0, 2),
    ({"status": "paid", "paid": True}, "customer", 1, 5),
    ({}, "due", 1, 2),
    ({}, "-due", 3, 5),
    ({}, "placed_at", 10, 5),
]


@pytest.mark.parametrize(("where", "sort", "offset", "limit"), PAGES)
def test_a_page_answered_as_json_is_the_page_encoded(
    orders: Store, where: dict, sort: str | None, offset: int, limit: int
) -> None:
    table = orders.table(ORDERS)
    plain = table.page(where, sort=sort, offset=offset, limit=limit)
    with answering_json():
        page = table.page(where, sort=sort, offset=offset, limit=limit)
    assert isinstance(page, Page) and not isinstance(plain, Page)
    assert page.json() == to_json(plain)  # the stored rows, as they are: what encoding the items gives
    assert page == plain and dict(page) == plain and page["total"] == plain["total"]


def test_a_filtered_sorted_page_reads_its_filter_s_count_once(orders: Store) -> None:
    table = orders.table(ORDERS)
    connection = getattr(orders.log, "_db", None)
    if not hasattr(connection, "set_trace_callback"):  # SQLite's statements can be traced
        pytest.skip("the statements of this backend are not traced")
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        page = table.page({"status": "paid"}, sort="-customer")
    finally:
        connection.set_trace_callback(None)
    assert ids(page["items"]) == ["o3", "o2"] and page["total"] == 2
    counts = [sql for sql in statements if "FROM state_counts" in sql]
    assert len(counts) == 2  # the filter's count (the total, and how to sort) and the table's (how to sort)


def test_a_page_read_and_changed_is_answered_as_changed(orders: Store) -> None:
    table = orders.table(ORDERS)
    with answering_json():
        page = table.page(sort="customer", limit=2)
    page["items"][0]["customer"] = "Zed"
    page["total"] = 99
    changed = {"items": [{**ORDER_ROWS[1], "customer": "Zed"}, ORDER_ROWS[0]], "total": 99, "offset": 0, "limit": 2}
    assert from_json(page.json()) == changed


def test_a_query_answered_as_json_is_its_answer_encoded(orders: Store) -> None:
    table = orders.table(ORDERS)
    queries = QueryRegistry()
    queries.register("orders/list", Parameters, lambda _: table.page({"paid": True}, sort="due"))
    queries.register("orders/both", Parameters, lambda _: {"paid": table.page({"paid": True}), "o1": table.get("o1")})
    queries.register("orders/merged", Parameters, lambda _: table.page(limit=1) | {"note": "merged"})
    for name in ("orders/list", "orders/both", "orders/merged"):
        assert queries.run_json(name) == to_json(queries.run(name))
    # A query asked by another one's handler answers as it always does: a dict.
    queries.register("orders/asks", Parameters, lambda _: {"dict": type(queries.run("orders/list")) is dict})
    assert queries.run_json("orders/asks") == b'{"dict":true}'


def test_a_rolled_back_transaction_changes_no_row(orders: Store) -> None:
    table = orders.table(ORDERS)
    with pytest.raises(RuntimeError), orders.log.transaction():
        table.put("o1", {**ORDER_ROWS[0], "status": "paid"})
        table.delete("o2")
        raise RuntimeError("refused")
    assert table.get("o1") == ORDER_ROWS[0] and table.get("o2") == ORDER_ROWS[1]
    assert table.count({"status": "paid"}) == 2


def test_a_nested_block_that_fails_undoes_only_its_own_writes(orders: Store) -> None:
    table = orders.table(ORDERS)
    with orders.log.transaction():
        table.put("o1", {**ORDER_ROWS[0], "status": "shipped"})
        with pytest.raises(RuntimeError), orders.log.transaction():
            table.delete("o2")
            table.put("o3", {**ORDER_ROWS[2], "status": "draft"})
            raise RuntimeError("refused")
        table.put("o4", {**ORDER_ROWS[3], "status": "draft"})
    assert [row["status"] for row in table.find(sort="customer")] == ["paid", "shipped", "paid", "draft"]
    assert table.count({"status": "paid"}) == 2 and table.count() == 4


def test_a_second_process_sees_a_write_once_it_commits(db: str, orders: Store) -> None:
    _, theirs = orders_on(open_log(db))
    with orders.log.transaction():
        orders.table(ORDERS).put("o9", {**ORDER_ROWS[0], "id": "o9"})
    assert theirs.table(ORDERS).get("o9") is not None and theirs.table(ORDERS).count() == 5


def test_a_command_and_its_rows_commit_together(db: str) -> None:
    app = App(open_log(db))
    notes = register_notes(app)
    app.dispatch(AddNote(id="a", text="one"))
    with pytest.raises(Exception):  # noqa: B017 - a refused command: NotFound
        app.commit([AddNote(id="b", text="two"), RemoveNote(id="missing")])
    assert notes.texts() == {"a": "one"} and app.log.version() == 1
    other = App(open_log(db))
    assert register_notes(other).texts() == {"a": "one"}  # another process reads the same table


def test_an_unknown_column_is_refused_naming_the_columns(orders: Store) -> None:
    with pytest.raises(ValueError, match="columns: customer, status"):
        orders.table(ORDERS).find(sort="colour")


class PlaceOrder(BaseModel):
    id: str
    customer: str
    status: str | None
    paid: bool = False
    total: str = "0"
    due: str | None = None
    placed_at: str = "2025-01-01T10:00:00Z"


class CancelOrder(BaseModel):
    id: str


class Orders(Projection):
    """Orders by id: a place creates or replaces one, a cancel deletes it."""

    tables = (ORDERS,)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "orders")
        self.orders = self.table(ORDERS)

    def place(self, command: PlaceOrder, message: Message) -> None:
        self.orders.put(command.id, command.model_dump())

    def cancel(self, command: CancelOrder, message: Message) -> None:
        self.orders.delete(command.id)


def stored_rows(app: App) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The orders table row by row, in the order rows were first stored, and its counts (as the database has them)."""
    columns = ", ".join(f'"{column.name}"' for column in ORDERS.columns)
    rows = app.log.query(f"SELECT id, data, {columns} FROM {ORDERS.physical} ORDER BY {app.log.dialect.seq}")
    counts = app.log.query("SELECT col, val, n FROM state_counts WHERE tbl = 'orders' AND n <> 0 ORDER BY col, val")
    return rows, counts


def statements_writing_orders(statements: list[str]) -> int:
    return sum(1 for sql in statements if sql.startswith(f'INSERT INTO "{ORDERS.physical}"'))


class PlaceCounted(PlaceOrder):
    """A place whose handler then counts the orders (a ``find`` or ``count`` inside a commit)."""


def test_commands_committed_together_write_a_row_they_share_once_and_see_each_other(db: str) -> None:
    app = App(open_log(db))
    orders = Orders(app.store)
    app.projections.add(orders)
    counted: list[int] = []

    def place_and_count(command: PlaceCounted, message: Message) -> None:
        orders.place(command, message)
        counted.append(orders.orders.count({"status": "draft"}))
        if command.customer == "nobody":
            raise ValueError("refused after its write")

    app.commands.register("orders/place", PlaceOrder, orders.place)
    app.commands.register("orders/place-counted", PlaceCounted, place_and_count)
    app.prepare()
    statements: list[str] = []
    connection = getattr(app.log, "_db", None)
    traced = hasattr(connection, "set_trace_callback")  # SQLite's statements can be traced
    if traced:
        connection.set_trace_callback(statements.append)
    app.commit(
        [
            PlaceOrder(id="o1", customer="Ann", status="draft"),
            PlaceOrder(id="o1", customer="Ann", status="paid", paid=True),  # the same row, changed
            PlaceCounted(id="o2", customer="Bob", status="draft"),
            PlaceCounted(id="o3", customer="Cy", status="draft"),
        ]
    )
    if traced:
        writes = statements_writing_orders(statements)
        statements.clear()
        app.dispatch(PlaceOrder(id="o0", customer="Al", status="paid"))  # what one row's write traces
        connection.set_trace_callback(None)
        assert writes == 3 * statements_writing_orders(statements)  # o1 once, though two commands wrote it
    assert counted == [1, 2]  # each count saw the writes before it
    assert orders.orders.get("o1")["status"] == "paid" and orders.orders.count({"status": "draft"}) == 2
    assert [row["id"] for row in orders.orders.find()][-3:] == ["o3", "o2", "o1"]
    with pytest.raises(ValueError, match="refused after its write"):  # nothing of that commit stays
        app.commit(
            [
                PlaceOrder(id="o4", customer="Di", status="draft"),
                PlaceCounted(id="o5", customer="nobody", status="draft"),
            ]
        )
    assert orders.orders.get("o4") is None and app.log.version() == 4 + traced


class Peek(BaseModel):
    id: str


def test_a_row_read_in_a_commit_of_several_commands_is_a_copy_as_the_database_gives_it(db: str) -> None:
    app = App(open_log(db))
    orders = Orders(app.store)
    app.projections.add(orders)
    seen: list[Any] = []

    def peek(command: Peek, message: Message) -> None:  # reads, changes what it read, writes nothing
        row = orders.orders.get(command.id)
        seen.append(row["total"])
        row["status"] = "changed without a put"

    app.commands.register("orders/place", PlaceOrder, orders.place)
    app.commands.register("orders/peek", Peek, peek)
    app.prepare()
    app.commit([PlaceOrder(id="o1", customer="Ann", status="draft", total="12.50"), Peek(id="o1"), Peek(id="o1")])
    assert seen == ["12.50", "12.50"]
    assert orders.orders.get("o1")["status"] == "draft"


def test_a_rebuild_stores_the_rows_the_live_handlers_stored_in_their_order(db: str) -> None:
    app = App(open_log(db))
    orders = Orders(app.store)
    app.projections.add(orders)
    app.commands.register("orders/place", PlaceOrder, orders.place)
    app.commands.register("orders/cancel", CancelOrder, orders.cancel)
    app.prepare()

    def place(id: str, status: str | None = "draft", **fields: Any) -> PlaceOrder:
        return PlaceOrder(id=id, customer=f"Customer {id}", status=status, **fields)

    app.commit([place(f"o{n}", total=f"{n}.50", due=f"2025-0{n}-01") for n in range(1, 6)])
    app.dispatch(place("o1", "paid", paid=True, total="99"))  # an update keeps its place
    app.dispatch(CancelOrder(id="o2"))
    app.dispatch(place("o2", "shipped"))  # created again: a new row, the newest
    app.commit([place(f"o{n}", placed_at="2025-01-02T00:00:00+02:00") for n in range(6, 12)])
    app.dispatch(place("o3", None))  # long after it was written out
    app.dispatch(CancelOrder(id="o4"))
    app.dispatch(place("o4", "paid", paid=True))
    app.dispatch(CancelOrder(id="o7"))
    live = stored_rows(app)

    app.projections.flush_every = 3  # written out every few rows, so the handlers also meet rows already written
    report = app.projections.rebuild(["orders"])
    assert report.messages == 18 and report.refused == 0
    assert stored_rows(app) == live
    assert [row[0] for row in live[0]] == ["o1", "o3", "o5", "o2", "o6", "o8", "o9", "o10", "o11", "o4"]
    if db.startswith("postgresql"):  # its first queries are planned from statistics, not from the planner's guesses
        analyzed = "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = %s"
        assert app.log.query(analyzed, (ORDERS.physical,))[0][0] > 0


def test_an_app_on_an_in_memory_database_builds_its_tables() -> None:
    """``--db :memory:`` (a demo, a quick try): its first start rebuilds every projection, on a database
    SQLite gives no memory map to (``PRAGMA mmap_size`` answers nothing there)."""
    app = App(open_log(":memory:"))
    orders = Orders(app.store)
    app.projections.add(orders)
    app.commands.register("orders/place", PlaceOrder, orders.place)
    app.prepare()
    app.dispatch(PlaceOrder(id="o1", customer="Ann", status="draft"))
    assert [row["id"] for row in app.store.table(ORDERS).find()] == ["o1"]


def test_a_rebuild_on_sqlite_frees_pages_without_zeroing_them_and_sets_its_connection_back(db: str) -> None:
    """SQLite built with SECURE_DELETE zeroes every page a DROP frees, through the WAL: the swap's DROP of
    the old table did, under the write lock (18 s at a million posts). The rebuild's connection does not
    (``secure_delete=FAST``: the log keeps every row a projection has) and sorts its indexes on two
    threads; both are set back once the rebuild ends."""
    if db.startswith("postgresql"):
        pytest.skip("SQLite's connection settings")
    app = App(open_log(db))
    settings = ("secure_delete", "threads")
    seen: list[tuple[Any, ...]] = []

    class Looking(Orders):
        def place(self, command: PlaceOrder, message: Message) -> None:
            seen.append(tuple(app.log.query(f"PRAGMA {name}")[0][0] for name in settings))
            super().place(command, message)

    orders = Looking(app.store)
    app.projections.add(orders)
    app.commands.register("orders/place", PlaceOrder, orders.place)
    app.prepare()
    app.commit([PlaceOrder(id=f"o{n}", customer="Ann", status="draft") for n in range(3)])
    before = tuple(app.log.query(f"PRAGMA {name}")[0][0] for name in settings)
    seen.clear()
    app.projections.rebuild(["orders"])
    assert seen == [(2, 2)] * 3  # FAST, two threads
    assert tuple(app.log.query(f"PRAGMA {name}")[0][0] for name in settings) == before
    assert [row[0] for row in stored_rows(app)[0]] == ["o0", "o1", "o2"]


TALLIES = TableSpec("tallies", columns=(Column("n", "int"),))


class Tally(BaseModel):
    id: str


class Tallies(Projection):
    """A count per id: each handler reads the row, changes it and writes it back."""

    tables = (TALLIES,)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "tallies")
        self.rows = self.table(TALLIES)

    def add(self, command: Tally, message: Message) -> None:
        if message.id % 2:
            row = self.rows.get(command.id)
        else:  # a read of many (preloaded, then answered from memory)
            row = self.rows.get_many([command.id, "nobody"]).get(command.id)
        row = row or {"id": command.id, "n": 0, "seen": []}
        row["n"] += 1
        row["seen"].append(message.id)
        self.rows.put(command.id, row)
        if row["n"] % 4 == 0:  # gone, then back with the next one: a new row, the newest
            self.rows.delete(command.id)

    def peek(self, command: Tally, message: Message) -> None:  # reads many, writes nothing
        self.rows.get_many([command.id])


def test_a_rebuild_reads_and_changes_rows_while_they_are_written_out(db: str) -> None:
    """On PostgreSQL a rebuild writes its rows out on another thread while it applies the next
    messages; rows read meanwhile (being written, or written just before) are the same as when the
    writes happen one after the other, and so is the table it swaps in."""
    app = App(open_log(db))
    tallies = Tallies(app.store)
    app.projections.add(tallies)
    app.commands.register("tallies/add", Tally, tallies.add)
    app.prepare()
    for n in range(60):
        app.dispatch(Tally(id=f"t{n * 7 % 5}"))
    query = f"SELECT id, data, k_n FROM {TALLIES.physical} ORDER BY {app.log.dialect.seq}"
    live = app.log.query(query)
    for every in (1, 2, 3, 7):
        app.projections.flush_every = every
        assert app.projections.rebuild(["tallies"]).messages == 60
        assert app.log.query(query) == live, every


class PeekTally(Tally):
    pass


def test_a_row_read_while_its_last_change_is_written_out_is_read_as_changed(db: str) -> None:
    """A read of many rows while the last batch is written out on another thread (PostgreSQL) takes
    that batch's rows from memory, not from the database, which may not have them yet: read from
    there, a row's older value was kept and answered after the next batch (17 rebuilds in 20)."""
    app = App(open_log(db))
    tallies = Tallies(app.store)
    app.projections.add(tallies)
    app.commands.register("tallies/add", Tally, tallies.add)
    app.commands.register("tallies/peek", PeekTally, tallies.peek)
    app.prepare()
    for command in (Tally(id="t"), Tally(id="t"), PeekTally(id="t"), Tally(id="u"), Tally(id="t")):
        app.dispatch(command)
    query = f"SELECT id, data FROM {TALLIES.physical} ORDER BY id"
    live = app.log.query(query)
    assert from_json(live[0][1])["n"] == 3
    app.projections.flush_every = 1
    rebuilt = []
    for _ in range(20):
        app.projections.rebuild(["tallies"])
        rebuilt.append(app.log.query(query))
    assert rebuilt == [live] * 20


def test_a_rebuild_started_inside_an_open_transaction_ends(db: str) -> None:
    """A rebuild asked for inside the caller's transaction (a first command committing while its
    projection is out of date) writes on the caller's thread: another thread's writes would wait
    for that transaction's lock, and the rebuild for them, for ever."""
    app = App(open_log(db))
    tallies = Tallies(app.store)
    app.projections.add(tallies)
    app.commands.register("tallies/add", Tally, tallies.add)
    app.prepare()
    for n in range(9):
        app.dispatch(Tally(id=f"t{n % 2}"))
    query = f"SELECT id, data FROM {TALLIES.physical} ORDER BY id"
    live = app.log.query(query)
    app.projections.flush_every = 1
    ended: list[Any] = []

    def rebuild() -> None:
        with app.log.transaction():
            ended.append(app.projections.rebuild(["tallies"]).messages)

    thread = threading.Thread(target=rebuild, daemon=True)
    thread.start()
    thread.join(30)
    assert ended == [9], "the rebuild inside a transaction did not end within 30 s"
    assert app.log.query(query) == live


MEMBERS = TableSpec("members", columns=(Column("role", counted=True),))


class Join(BaseModel):
    id: str
    role: str


class Demote(BaseModel):
    id: str


class Members(Projection):
    """Checks that read many rows, as the users feature's do: the last admin stays one."""

    tables = (MEMBERS,)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "members")
        self.rows = self.table(MEMBERS)

    def join(self, command: Join, message: Message) -> None:
        admins = [row["id"] for row in self.rows.find(where={"role": "admin"})]
        self.rows.put(command.id, {"id": command.id, "role": command.role, "admins_before": admins})

    def demote(self, command: Demote, message: Message) -> None:
        if self.rows.count({"role": "admin"}) <= 1 or self.rows.count() < 2:
            raise CommandRejected("the last admin stays one")
        self.rows.put(command.id, {**self.rows.get(command.id), "role": "member"})


def test_a_rebuild_s_reads_of_many_rows_see_what_the_handlers_before_them_wrote(db: str) -> None:
    """Live, a handler's ``find`` and ``count`` see every earlier message's rows; in a rebuild they
    must too, not the live table's counts or only the rows written out so far (a demoted admin
    came back an admin: the rebuild refused the demotion, counting from the live table)."""
    app = App(open_log(db))
    members = Members(app.store)
    app.projections.add(members)
    app.commands.register("members/join", Join, members.join)
    app.commands.register("members/demote", Demote, members.demote)
    app.prepare()
    for command in (Join(id="a", role="admin"), Join(id="b", role="admin"), Demote(id="a"), Join(id="c", role="admin")):
        app.dispatch(command)
    app.dispatch(Demote(id="b"))
    with pytest.raises(CommandRejected):
        app.dispatch(Demote(id="c"))
    query = f"SELECT id, data FROM {MEMBERS.physical} ORDER BY id"
    live = app.log.query(query)
    assert [from_json(data)["role"] for _, data in live] == ["member", "member", "admin"]
    for every in (1, 2, 1000):
        app.projections.flush_every = every
        assert app.projections.rebuild(["members"]).refused == 0, every
        assert app.log.query(query) == live, every
        assert app.store.table(MEMBERS).count({"role": "admin"}) == 1, every


def test_processes_starting_together_rebuild_once_and_all_serve(db: str) -> None:
    """Processes started together with new code (``serve --processes N``, several machines) each find
    a projection out of date. They built into the same shadow table at once and dropped each other's:
    all but one stayed unavailable (503) for good. Now one rebuilds while the others wait, and they
    find nothing left to rebuild."""
    applied: list[int] = []

    class Slow(Tallies):
        def add(self, command: Tally, message: Message) -> None:
            applied.append(message.id)
            time.sleep(0.001)  # a rebuild long enough for the others to start meanwhile
            super().add(command, message)

    apps = []
    for _ in range(3):  # three processes: a log each
        app = App(open_log(db))
        tallies = Slow(app.store)
        app.projections.add(tallies)
        app.commands.register("tallies/add", Tally, tallies.add)
        apps.append(app)
    apps[0].prepare()
    for n in range(300):
        apps[0].dispatch(Tally(id=f"t{n % 7}"))
    query = f"SELECT id, data FROM {TALLIES.physical} ORDER BY id"
    live = apps[0].log.query(query)
    apps[0].log.execute("UPDATE projections SET fingerprint = 'older code' WHERE name = 'tallies'")
    applied.clear()
    together = threading.Barrier(len(apps))
    failures: list[BaseException] = []

    def start(app: App) -> None:
        together.wait()
        try:
            app.prepare()
        except BaseException as exc:  # noqa: BLE001 - what a process would die of
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(applied) == 300  # rebuilt once, not once per process
    assert all(app.projections.unavailable is None for app in apps)
    assert apps[2].log.query(query) == live
    assert apps[1].log.leases().get("rebuild:projections") is None  # given back


def rebuilding_apps(
    db: str, count: int, slow: Callable[[str, Message], None]
) -> tuple[list[App], list[tuple[Any, ...]]]:
    """``count`` processes (a log each) whose ``tallies`` projection is out of date, and the live rows."""
    apps = []
    for who in range(count):

        class Slowed(Tallies):
            def add(self, command: Tally, message: Message, who: str = str(who)) -> None:
                slow(who, message)
                super().add(command, message)

        app = App(open_log(db))
        tallies = Slowed(app.store)
        app.projections.add(tallies)
        app.commands.register("tallies/add", Tally, tallies.add)
        app.projections.flush_every = 5
        apps.append(app)
    apps[0].prepare()
    with apps[0].log.transaction():
        for n in range(120):
            apps[0].dispatch(Tally(id=f"t{n % 7}"))
    live = apps[0].log.query(f"SELECT id, data FROM {TALLIES.physical} ORDER BY id")
    apps[0].log.execute("UPDATE projections SET fingerprint = 'older code' WHERE name = 'tallies'")
    return apps, live


def test_a_slow_rebuild_keeps_its_short_lease_and_the_other_process_waits_for_it(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild's lease is short (a killed holder is replaced in seconds), and a timer renews it: a
    rebuild slowed far past it (a handler that takes its time) keeps it, and the other process waits,
    then serves what the first built, instead of taking over and building it a second time."""
    monkeypatch.setattr(projections, "REBUILD_LEASE_SECONDS", 1.0)
    monkeypatch.setattr(projections, "RENEW_EVERY_SECONDS", 0.1)
    armed, stalled = threading.Event(), threading.Event()
    applied = {"0": 0, "1": 0}

    def slow(who: str, message: Message) -> None:
        if not armed.is_set():  # the log being written, not rebuilt
            return
        applied[who] += 1
        if who == "0" and message.id == 60 and not stalled.is_set():
            stalled.set()
            time.sleep(2.5)  # past the lease, twice over

    apps, live = rebuilding_apps(db, 2, slow)
    armed.set()
    stopping = threading.Event()

    async def start(app: App, delay: float) -> bool:
        await asyncio.sleep(delay)
        return await app.projections.rebuild_in_background(["tallies"], stopping)

    async def both() -> list[bool]:
        return await asyncio.gather(start(apps[0], 0), start(apps[1], 0.3))

    assert asyncio.run(both()) == [True, True]
    assert stalled.is_set()
    assert applied == {"0": 120, "1": 0}  # built once, by the one that began
    assert [app.projections.unavailable for app in apps] == [None, None]
    assert apps[1].log.query(f"SELECT id, data FROM {TALLIES.physical} ORDER BY id") == live
    assert apps[1].log.leases().get(projections.REBUILD_LEASE) is None  # given back


def test_waiting_for_the_rebuild_s_lease_outlasts_a_long_write_on_sqlite(db: str) -> None:
    """While the process holding the lease builds indexes (a long write transaction on SQLite), the
    others' looks at the lease find the database busy: they keep waiting, they do not fail."""
    if db.startswith("postgresql"):
        pytest.skip("SQLite's busy timeout")
    apps, live = rebuilding_apps(db, 2, lambda who, message: None)
    holder, waiter = apps
    waiter.log.query("PRAGMA busy_timeout=100")  # a look gives up after 0.1 s, as after 10 s at scale
    assert holder.log.acquire_lease(projections.REBUILD_LEASE, 60)

    def long_write() -> None:
        with holder.log.transaction():
            time.sleep(1.0)
        holder.log.release_lease(projections.REBUILD_LEASE)

    thread = threading.Thread(target=long_write)
    thread.start()
    time.sleep(0.1)
    assert waiter.projections.rebuild(["tallies"]).messages == 120  # once the holder gave the lease back
    thread.join(10)
    assert waiter.projections.unavailable is None
    assert waiter.log.query(f"SELECT id, data FROM {TALLIES.physical} ORDER BY id") == live
