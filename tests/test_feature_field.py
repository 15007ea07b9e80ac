"""``petrock feature field add|rename|remove|change`` on a generated app with real orders in its log.

Each change is a real subprocess of the CLI in a real git app; after each, the app is
started again (its own ``build_app`` + ``prepare`` in a subprocess) on the same database:
the projection is rebuilt from the log, the old messages are read through the upcasters
the change wrote, and the log's rows are what they were, byte for byte.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .support import app_env, free_port, git, petrock_in, refused_without_a_trace, run_app_tests, run_petrock

ORDERS = 2_500  # over one batch of a worker's rebuild (2,000) and five pages of the listing: each change rebuilds it
LAST = ORDERS - 1
POSITION = ORDERS - 3  # the summary worker's: the last three orders are still to summarize
BURIED = 4  # the message (o3's create) the summary worker gave up on: a dead letter from before the changes

# Run inside the app: put ORDERS orders in the log, a worker position and a dead letter beside them.
SEED = """
import sys
from shop.core.log import message_at
from shop.main import build_app
from shop.orders.commands import CreateOrder
app = build_app(sys.argv[1])
app.prepare()
for first in range(0, int(sys.argv[2]), 200):  # a few hundred per transaction (PostgreSQL's savepoints)
    with app.batch():
        for n in range(first, min(first + 200, int(sys.argv[2]))):
            app.dispatch(CreateOrder(id=f"o{n}", title=f"Order {n}", qty=n, note=f"note {n}"))
app.log.set_position("orders-summaries", int(sys.argv[3]))
if int(sys.argv[2]) > int(sys.argv[4]):
    app.dead_letters.bury("orders-summaries", message_at(app.log, int(sys.argv[4])), 5, "seeded: the API refused it")
app.log.close()
"""
# Run inside the app: start it on the database (rebuilding what changed) and print every order.
RESTART = """
import json, sys
from shop.main import build_app
app = build_app(sys.argv[1])
rebuilt = app.prepare()
first = app.query("orders/list", {"limit": 1})
items = []
while len(items) < first["total"]:
    items += app.query("orders/list", {"limit": 500, "offset": len(items), "sort": "created_at"})["items"]
dropped = ("created_at", "updated_at", "summary", "summary_status", "summary_error", "summary_request_id")
orders = {item["id"]: {k: v for k, v in item.items() if k not in dropped and k != "id"} for item in items}
print(json.dumps({"rebuilt": rebuilt, "orders": orders, "position": app.log.position("orders-summaries")}))
app.log.close()
"""
# Run inside the app: what decides whether each projection and worker state is rebuilt at the next start.
FINGERPRINTS = """
import json, sys
from shop.main import build_app
app = build_app(sys.argv[1])
print(json.dumps({status.name: status.fingerprint for status in app.projections.status()}))
app.log.close()
"""
# Run inside the app: its workers, until the summary worker has handled the rest of the log (old messages, upcast).
WORK = """
import asyncio, json, sys, time
from shop.main import build_app

async def work() -> None:
    app = build_app(sys.argv[1])
    app.prepare()
    await app.start_workers()
    last = [f"o{n}" for n in range(int(sys.argv[2]), int(sys.argv[3]))]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        statuses = [app.query("orders/get", {"id": id})["summary_status"] for id in last]
        if "pending" not in statuses:
            break
        await asyncio.sleep(0.1)
    dead = [letter.message_id for letter in app.dead_letters.list()]
    position = app.log.position("orders-summaries")
    await app.close()
    print(json.dumps({"statuses": statuses, "dead": dead, "position": position}))

asyncio.run(work())
"""


def in_app(root: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=root,
        env=app_env(root),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def restart(root: Path, db: str) -> dict:
    result = in_app(root, RESTART, db)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def fingerprints(root: Path, db: str) -> dict[str, str]:
    result = in_app(root, FINGERPRINTS, db)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def app_cli(root: Path, db: str, *args: str) -> str:
    """``python -m shop ARGS --db DB``: a reader of the log, as an operator runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "shop", *args, "--db", db],
        cwd=root,
        env=app_env(root),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def log_rows(root: Path, db: str) -> list[tuple]:
    """The log's rows as stored (id, timestamp, type, data): a change must never rewrite them."""
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return conn.execute("SELECT id, timestamp::text, type, data FROM messages ORDER BY id").fetchall()
    with sqlite3.connect(root / db) as conn:
        return conn.execute("SELECT id, timestamp, type, data FROM messages ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def _shop_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("shop")
    assert run_petrock("new", "shop", cwd=parent).returncode == 0
    root = parent / "shop"
    added = petrock_in(root, "feature", "add", "orders", "title:str", "qty:int", "note:text")
    assert added.returncode == 0, added.stderr
    return root


@pytest.fixture
def shop(_shop_original: Path, tmp_path: Path) -> Path:
    """An app with an ``orders`` feature (title:str qty:int note:text, summarized note), committed and clean."""
    import shutil

    target = tmp_path / "shop"
    shutil.copytree(_shop_original, target, symlinks=True)
    return target


def change(root: Path, *args: str, verify: bool = False) -> str:
    """``petrock feature field ARGS`` (the gate runs the app's tests only with ``verify``: slow on a busy machine)."""
    result = subprocess.run(
        [sys.executable, "-m", "petrock", "feature", "field", *args, *([] if verify else ["--no-verify-tests"])],
        cwd=root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    return result.stdout


def expected(n: int, **fields: object) -> dict[str, object]:
    return {"title": f"Order {n}", "qty": n, "note": f"note {n}"} | fields


STUB = 'raise NotImplementedError("write the title conversion in this upcaster")'


@dataclass(frozen=True)
class Changes:
    """The five changes, made once by the real CLI, and the user's step after the last: the commit after each,
    and what each change printed."""

    root: Path
    branch: str  # at filled
    commits: dict[str, str]  # generated, add, rename, remove, qty, title (the stub), filled (the user's step)
    printed: dict[str, str]


@pytest.fixture(scope="module")
def five_changes_made(_shop_original: Path, tmp_path_factory: pytest.TempPathFactory) -> Changes:
    """petrock never opens the app's database: a change writes the same code whatever the backend, so the changes
    are made once, the first through the whole gate (the app's tests, on SQLite: they do not use the database
    under test), and each backend's test walks these commits with its own log, restarting the app after each."""
    import shutil

    root = tmp_path_factory.mktemp("changed") / "shop"
    shutil.copytree(_shop_original, root, symlinks=True)
    commits = {"generated": git(root, "rev-parse", "HEAD").strip()}
    # The changes are made beside a log, as in an app in use (each test then seeds its own).
    seeded = in_app(root, SEED, "app.db", "3", "0", str(BURIED))
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    printed = {}
    for name, args, verify in [
        ("add", ("add", "orders", "discount:decimal", "--default", "0"), True),
        ("rename", ("rename", "orders", "note", "comment"), False),  # the summarized field: the summary worker follows
        ("remove", ("remove", "orders", "discount"), False),
        ("qty", ("change", "orders", "qty:decimal"), False),  # a safe type change: int -> decimal (a string, exact)
        ("title", ("change", "orders", "title:int"), False),  # a custom change: a stub the user fills in
    ]:
        printed[name] = change(root, *args, verify=verify)
        commits[name] = git(root, "rev-parse", "HEAD").strip()
    upcasters = root / "src/shop/orders/upcasters.py"
    upcasters.write_text(upcasters.read_text().replace(STUB, 'return {**payload, "title": len(payload["title"])}'))
    git(root, "commit", "-qam", "Titles become their length")
    commits["filled"] = git(root, "rev-parse", "HEAD").strip()
    return Changes(root, git(root, "branch", "--show-current").strip(), commits, printed)


@pytest.fixture
def changed(five_changes_made: Changes, tmp_path: Path) -> Changes:
    """This test's own copy of the changed app (its history included), at the generated commit."""
    import shutil

    target = tmp_path / "shop"
    shutil.copytree(five_changes_made.root, target, symlinks=True, ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    at(target, five_changes_made.commits["generated"])
    return Changes(target, five_changes_made.branch, five_changes_made.commits, five_changes_made.printed)


def at(root: Path, commit: str) -> None:
    """The app's code as ``commit`` has it (the database beside it stays), compiled afresh: a file rewritten
    within the second, at the same size, must not run from a stale cache."""
    import shutil

    git(root, "switch", "-q", "--detach", commit)
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache)


def five_changes(changes: Changes, db: str, *, gate: bool) -> None:
    """The five changes on ``db``, one commit after another. ``gate``: also the checks of the app's code (the
    stub's failing test, the tests the changes wrote, ruff, ``check``), which is the same on both backends, so
    they run once, with SQLite."""
    shop, commits, printed = changes.root, changes.commits, changes.printed
    seeded = in_app(shop, SEED, db, str(ORDERS), str(POSITION), str(BURIED))
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    rows = log_rows(shop, db)
    assert len(rows) == ORDERS
    assert restart(shop, db)["rebuilt"] == []

    # 1. add, with a default for the orders already in the log (its gate ran the app's whole suite)
    assert "checked: compiles, names, builds, app tests (commit" in printed["add"]
    at(shop, commits["add"])
    state = restart(shop, db)
    assert state["rebuilt"] == ["orders"] and state["position"] == POSITION
    assert len(state["orders"]) == ORDERS
    assert state["orders"]["o7"] == expected(7, discount="0")
    assert log_rows(shop, db) == rows

    # 2. rename the summarized field: the summary worker follows
    at(shop, commits["rename"])
    assert 'current["comment"]' in (shop / "src/shop/orders/worker.py").read_text()
    state = restart(shop, db)
    assert state["orders"]["o7"] == {"title": "Order 7", "qty": 7, "comment": "note 7", "discount": "0"}
    assert log_rows(shop, db) == rows

    # 3. remove: old messages keep the value in the log, the feature no longer shows it
    at(shop, commits["remove"])
    state = restart(shop, db)
    assert state["orders"]["o7"] == {"title": "Order 7", "qty": 7, "comment": "note 7"}

    # 4. a safe type change: int -> decimal (a string, exact)
    at(shop, commits["qty"])
    state = restart(shop, db)
    assert state["orders"]["o7"]["qty"] == "7" and state["orders"][f"o{LAST}"]["qty"] == str(LAST)

    # 5. a custom change: a stub the user fills in; its frozen-payload test fails until then
    assert "write the conversion in src/shop/orders/upcasters.py (v5_change_title)" in printed["title"]
    at(shop, commits["title"])
    assert STUB in (shop / "src/shop/orders/upcasters.py").read_text()
    if gate:
        failing = run_app_tests(shop, "-q", "tests/test_orders_upcasters.py")
        assert failing.returncode != 0 and "NotImplementedError" in failing.stdout
    stubbed = fingerprints(shop, db)
    at(shop, commits["filled"])  # the user's step: the upcaster's body, and nothing else
    assert git(shop, "diff", "--name-only", commits["title"], "HEAD").split() == ["src/shop/orders/upcasters.py"]
    # Only the upcaster's body changed: the projection and the summary worker's own state are both rebuilt.
    filled = fingerprints(shop, db)
    for name in ("orders", "worker:orders-summaries"):
        assert filled[name] != stubbed[name], name
    state = restart(shop, db)
    assert state["orders"]["o7"] == {"title": 7, "qty": "7", "comment": "note 7"}
    assert state["position"] == POSITION and len(state["orders"]) == ORDERS
    assert log_rows(shop, db) == rows

    # The readers of the log show old messages in today's shape, with the version they were stored at.
    (letter,) = [line.split("\t") for line in app_cli(shop, db, "deadletters", "list").splitlines()]
    assert letter[1:4] == ["orders-summaries", f"message {BURIED}", "orders/create"]
    shown = json.loads(app_cli(shop, db, "deadletters", "show", letter[0]))["message"]
    assert (shown["version"], shown["data"]) == (1, {"id": "o3", "title": 7, "qty": "3", "comment": "note 3"})
    (newest,) = [json.loads(line) for line in app_cli(shop, db, "log", "tail", "-n", "1").splitlines()]
    assert (newest["version"], newest["data"]) == (
        1,
        {"id": f"o{LAST}", "title": len(f"Order {LAST}"), "qty": str(LAST), "comment": f"note {LAST}"},
    )
    # The summary worker reads the rest of the log through the upcasters: every order summarized, no new dead letter.
    worked = in_app(shop, WORK, db, str(POSITION), str(ORDERS))
    assert worked.returncode == 0, worked.stderr[-2000:]
    after = json.loads(worked.stdout.splitlines()[-1])
    assert (after["statuses"], after["dead"]) == (["ready"] * (ORDERS - POSITION), [BURIED])
    assert after["position"] > ORDERS  # past the last order's create, and its own commands

    git(shop, "switch", "-q", changes.branch)  # where the user is: the five changes and their own step, committed
    assert git(shop, "rev-parse", "HEAD").strip() == commits["filled"]
    if gate:
        # The gate of the first change ran the app's whole suite; the five changes (and the user's step) wrote
        # only the feature's own tests, so those run here, as the app has them now.
        changed = git(shop, "diff", "--name-only", commits["generated"], "HEAD", "--", "tests").split()
        assert "tests/test_orders_upcasters.py" in changed, changed
        passed = run_app_tests(shop, "-q", "-x", *changed)
        assert passed.returncode == 0, passed.stdout[-3000:]
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "."], cwd=shop, capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0, lint.stdout
        assert petrock_in(shop, "check").returncode == 0

    # Undoing the last change (and the user's step) gives the old state back through a rebuild.
    git(shop, "revert", "--no-edit", "HEAD")
    git(shop, "revert", "--no-edit", "-m", "1", commits["title"])
    state = restart(shop, db)
    assert state["rebuilt"] == ["orders"] and state["orders"]["o7"] == {
        "title": "Order 7",
        "qty": "7",
        "comment": "note 7",
    }


@pytest.mark.slow
def test_five_field_changes_on_sqlite_keep_the_log_and_rebuild_from_it(changed: Changes) -> None:
    five_changes(changed, "app.db", gate=True)


@pytest.mark.slow
def test_five_field_changes_on_postgresql_keep_the_log_and_rebuild_from_it(changed: Changes, pg_url: str) -> None:
    five_changes(changed, pg_url, gate=False)


def test_a_required_field_without_a_default_is_refused_naming_both_ways_out(shop: Path) -> None:
    error = refused_without_a_trace(shop, "feature", "field", "add", "orders", "discount:decimal")
    assert "--default VALUE" in error and "`discount:decimal:optional`" in error


def test_a_field_with_a_default_of_its_own_gives_it_to_the_old_messages(shop: Path) -> None:
    """The guide's way to add a field clients may leave out. A fresh-user trial found the old messages
    got null instead, which today's model refuses: the gate turned the change down."""
    change(shop, "add", "orders", "discount:decimal:default=0")
    assert '"discount": "0"' in (shop / "src/shop/orders/upcasters.py").read_text()
    upcasted = run_app_tests(shop, "-q", "tests/test_orders_upcasters.py")  # an old payload, read by today's model
    assert upcasted.returncode == 0, upcasted.stdout[-3000:]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("add", "orders", "qty:int:optional"), "already has a field 'qty'"),
        (("add", "orders", "discount:decimal", "--default", "lots"), "not a valid decimal"),
        (("add", "nope", "x:int:optional"), "no feature 'nope'"),
        (("rename", "orders", "missing", "other"), "has no field 'missing'"),
        (("rename", "orders", "title", "qty"), "already has a field 'qty'"),
        (("rename", "orders", "title", "id"), "used by the generated code"),
        (("remove", "orders", "note"), "summary worker of orders summarizes note"),
        (("change", "orders", "qty:int"), "already int"),
        (("change", "orders", "note:int"), "must stay text"),
        (("add", "orders", "code:str:unique", "--default", "x"), "cannot all share --default x"),
    ],
)
def test_a_change_that_cannot_be_made_is_refused_in_one_line_and_writes_nothing(
    shop: Path, args: tuple[str, ...], says: str
) -> None:
    assert says in refused_without_a_trace(shop, "feature", "field", *args)


def test_a_dry_run_shows_the_change_and_writes_nothing(shop: Path) -> None:
    before = git(shop, "rev-parse", "HEAD"), git(shop, "status", "--porcelain")
    result = petrock_in(shop, "feature", "field", "rename", "orders", "title", "name", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)
    assert planned["dry_run"] is True and planned["commit"] is None
    assert planned["messages"] == {"orders/create": 2, "orders/update": 2}
    statuses = {f["path"]: f["status"] for f in planned["files"]}
    assert statuses["src/shop/orders/upcasters.py"] == "create" and statuses["src/shop/orders/state.py"] == "update"
    assert (git(shop, "rev-parse", "HEAD"), git(shop, "status", "--porcelain")) == before
    # making a field unique changes no model: every stored message reads as before, so no stub
    unique = petrock_in(shop, "feature", "field", "change", "orders", "title:str:unique", "--dry-run", "--json")
    assert unique.returncode == 0, unique.stderr
    assert json.loads(unique.stdout)["stub"] is None
    assert (git(shop, "rev-parse", "HEAD"), git(shop, "status", "--porcelain")) == before


@pytest.mark.slow
def test_a_change_the_apps_tests_reject_is_not_written(shop: Path) -> None:
    # A test of the user's own that insists on the old field name: the gate runs it and refuses. The app is
    # only the gate's input here, so it keeps just the orders' tests and this one (the gate runs them all).
    for path in (shop / "tests").glob("test_*.py"):
        if not path.name.startswith("test_orders"):
            path.unlink()
    (shop / "tests/test_mine.py").write_text(
        "from shop.orders.commands import CreateOrder\n\n\n"
        "def test_orders_have_a_title() -> None:\n"
        '    assert "title" in CreateOrder.model_fields\n'
    )
    git(shop, "add", "-A")
    git(shop, "commit", "-qm", "My own test")
    error = refused_without_a_trace(shop, "feature", "field", "rename", "orders", "title", "name")
    assert "tests/test_mine.py::test_orders_have_a_title" in error and "nothing was written" in error


def test_a_log_with_a_version_the_code_does_not_know_is_refused_at_start_in_one_line(shop: Path) -> None:
    seeded = in_app(shop, SEED, "app.db", "3", "0", str(BURIED))
    assert seeded.returncode == 0, seeded.stderr
    with sqlite3.connect(shop / "app.db") as db:
        db.execute("UPDATE messages SET version = 2 WHERE id = 2")  # as a newer app would have written it
    for args in (["inspect"], ["log", "tail"], ["serve", "--port", str(free_port())]):
        result = subprocess.run(
            [sys.executable, "-m", "shop", *args, "--db", "app.db"],
            cwd=shop,
            env=app_env(shop),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        assert "orders/create messages of version 2, newer than this code's 1" in result.stderr


def test_a_postgresql_log_made_before_versions_gains_the_column_in_place(shop: Path, pg_url: str) -> None:
    import psycopg

    assert in_app(shop, SEED, pg_url, "2", "0", str(BURIED)).returncode == 0
    with psycopg.connect(pg_url) as conn:  # the schema as an app of petrock 0.5 left it
        conn.execute("DROP INDEX messages_versions")
        conn.execute("ALTER TABLE messages DROP COLUMN version")
        conn.execute("UPDATE schema_version SET version = 2")
    rows = log_rows(shop, pg_url)
    tail = subprocess.run(
        [sys.executable, "-m", "shop", "log", "tail", "--db", pg_url],
        cwd=shop,
        env=app_env(shop),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["version"] for line in tail.stdout.splitlines()] == [1, 1]
    assert log_rows(shop, pg_url) == rows
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (3,)
