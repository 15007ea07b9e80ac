"""The generated app's own command line, `python -m APP`, as its developer meets it.

`-h` is `--help`; help is plain text under every typer version (the newest one included,
which is what a fresh app's .venv gets); every command finds the app's database from any
folder inside the app, as `petrock serve` does; an empty key/value store says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .support import app_env, free_port, new_app, run_petrock


def app_cli(root: Path, *args: str, cwd: Path | None = None, pythonpath: str = "") -> subprocess.CompletedProcess[str]:
    env = app_env(root)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env["PYTHONPATH"]]))
    return subprocess.run(
        [sys.executable, "-m", "blog", *args],
        cwd=cwd or root,
        env=env | {"COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def blog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_app(tmp_path_factory.mktemp("app-cli"))


@pytest.fixture(scope="module")
def newest_typer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The newest typer from the package index, in a folder to put first on PYTHONPATH."""
    target = tmp_path_factory.mktemp("newest-typer")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts", "--target", str(target), "typer"]
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300, check=False)
    if installed.returncode != 0:
        pytest.skip(f"cannot install the newest typer from the package index: {installed.stderr.strip()[-200:]}")
    return str(target)


COMMANDS = [(), ("serve",), ("kv", "get"), ("deadletters", "show")]


def test_dash_h_is_help_everywhere(blog: Path) -> None:
    for command in COMMANDS:
        short, long = app_cli(blog, *command, "-h"), app_cli(blog, *command, "--help")
        assert short.returncode == 0, short.stderr
        assert short.stdout == long.stdout and short.stdout.startswith(f"Usage: python -m blog {' '.join(command)}")


@pytest.mark.slow
def test_help_is_plain_text_without_type_labels_on_flags_under_the_newest_typer(blog: Path, newest_typer: str) -> None:
    version = subprocess.run(
        [sys.executable, "-c", "import typer; print(typer.__version__)"],
        env={**os.environ, "PYTHONPATH": newest_typer},
        capture_output=True,
        text=True,
        check=True,
    )
    for command in COMMANDS:
        shown = app_cli(blog, *command, "--help", pythonpath=newest_typer)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("Usage: "), f"typer {version.stdout.strip()}: {shown.stdout[:200]}"
        assert "<bool>" not in shown.stdout and "╭" not in shown.stdout, f"typer {version.stdout.strip()}"
    serve = app_cli(blog, "serve", "--help", pythonpath=newest_typer).stdout
    assert "--reload / --no-reload" in serve and "-h, --help" in serve


def test_every_command_finds_the_apps_database_from_a_folder_inside_the_app(blog: Path) -> None:
    deep = blog / "src" / "blog" / "core" / "templates"  # (not core/ itself: its http.py would shadow the stdlib)
    stored = app_cli(blog, "kv", "set", "greeting", '"hello"', cwd=deep)
    assert stored.returncode == 0, stored.stderr
    assert (blog / "app.db").is_file() and not (deep / "app.db").exists()
    listed = app_cli(blog, "kv", "list", cwd=blog / "tests")
    assert listed.stdout == 'greeting\t"hello"\n', listed.stderr
    assert app_cli(blog, "kv", "get", "greeting", cwd=blog / "src").stdout == '"hello"\n'
    assert "app.db in the app's folder" in app_cli(blog, "kv", "list", "--help").stdout


def test_a_database_named_on_the_command_line_is_taken_as_given(blog: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other.db"
    assert app_cli(blog, "kv", "set", "k", "1", "--db", str(elsewhere), cwd=blog / "src").returncode == 0
    assert elsewhere.is_file()
    relative = app_cli(blog, "kv", "list", "--db", "other.db", cwd=tmp_path)
    assert relative.stdout == "k\t1\n", relative.stderr


def test_kv_list_says_when_there_are_no_keys(tmp_path: Path) -> None:
    root = new_app(tmp_path)
    never_run = app_cli(root, "kv", "list", cwd=root / "src")  # a new app has no database yet
    assert (never_run.returncode, never_run.stdout) == (0, f"no keys (no database yet at {root / 'app.db'})\n")
    assert not (root / "app.db").exists()
    assert app_cli(root, "inspect").returncode == 0  # opens, and so creates, the app's database
    empty = app_cli(root, "kv", "list")
    assert (empty.returncode, empty.stdout) == (0, "no keys\n"), empty.stderr


@pytest.mark.parametrize(
    ("option", "value", "choices"),
    [("--http", "h2", "auto, httptools, h11"), ("--loop", "trio", "auto, uvloop, asyncio")],
)
def test_serve_refuses_an_unknown_server_stack_in_one_line(blog: Path, option: str, value: str, choices: str) -> None:
    result = app_cli(blog, "serve", option, value, "--db", "stack.db")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: unknown {option} {value!r} — pass {choices}\n"
    assert not (blog / "stack.db").exists()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_serve_refuses_a_port_in_use_in_one_line_before_it_says_serving(blog: Path, processes: str) -> None:
    """A fault trial: on a taken port the app said "serving ...", started its workers, then failed with
    uvicorn's "[Errno 98] address already in use" and exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = app_cli(blog, "serve", "--port", str(port), "--processes", processes, "--db", "taken.db")
    assert result.returncode == 1 and "serving" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    if processes == "1":  # a group refuses it as it reserves the port (core/processes.py)
        in_use = f"port {port} on 127.0.0.1 is already in use — stop what runs there or pass --port N"
        assert result.stderr == f"error: {in_use}\n"
    assert not (blog / "taken.db").exists()


def test_a_new_apps_help_loads_none_of_its_runtime(blog: Path) -> None:
    """`python -m blog --help` and the tools refused before they open the app start in a fraction of the
    time when the command line imports the app (every feature, the HTTP stack) only where it is used."""
    env = app_env(blog)
    probe = (
        "import json, runpy, sys\n"
        "sys.argv = ['blog', '--help']\n"
        "try:\n    runpy.run_module('blog', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=blog, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.startswith("Usage: python -m blog"), result.stdout + result.stderr
    loaded = set(json.loads(result.stderr.strip().splitlines()[-1]))
    heavy = {"blog.main", "blog.core.app", "blog.core.http", "starlette", "uvicorn", "pydantic"}
    assert loaded.isdisjoint(heavy), sorted(loaded & heavy)


WITHOUT_FAST_STACK = "import sys\nsys.modules['httptools'] = sys.modules['uvloop'] = None  # as if never installed\n"
SLOW_STACK = "httptools and uvloop not installed: serving on the slower pure-Python stack"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_serve_says_once_that_the_fast_stack_is_missing_and_the_app_open_with_any_number_of_processes(
    blog: Path, tmp_path: Path, processes: str
) -> None:
    """An environment installed before the app depended on httptools and uvloop serves on h11 and
    asyncio: the user is told, once, by the process they started (not by each server process)."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(WITHOUT_FAST_STACK)
    env = app_env(blog)
    env["PYTHONPATH"] = os.pathsep.join([str(hidden), env["PYTHONPATH"]])
    port = free_port()
    command = [sys.executable, "-m", "blog", "serve", "--port", str(port), "--db", str(tmp_path / "stack.db")]
    server = subprocess.Popen(
        [*command, "--processes", processes], cwd=blog, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while len(seen) < int(processes) and time.monotonic() < deadline:  # every server process is up
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                try:
                    seen.add(client.get(f"http://127.0.0.1:{port}/healthz").json()["process"]["pid"])
                except httpx.HTTPError:
                    time.sleep(0.1)
        assert len(seen) == int(processes)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    said = output.decode()
    assert said.count(SLOW_STACK) == 1, said
    # And that anyone who can reach it may use it: a trial saw --processes 2 leave that out.
    assert said.count("no APP_API_TOKEN: open to anyone who can reach it") == 1, said


OLD_LOG = """
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL, type TEXT NOT NULL,
                       data TEXT NOT NULL);
CREATE TABLE positions (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO messages (timestamp, type, data)
VALUES ('2026-01-01T00:00:00+00:00', 'posts/create', '{"id": "p1", "title": "Hi", "content": "there"}');
"""


def dump(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


def test_projections_status_reads_an_older_database_as_it_is_and_writes_nothing(tmp_path: Path) -> None:
    """An app upgraded but not started yet: status reports what the next start will do, and does none of it
    (no projection tables made, no column added), so the upgrade's first start is still the one that migrates."""
    root = new_app(tmp_path)
    assert run_petrock("feature", "add", "posts", cwd=root).returncode == 0
    old = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(old)) as db:
        db.executescript(OLD_LOG)
    before = dump(old)
    status = app_cli(root, "projections", "status", "--db", str(old))
    assert status.returncode == 0, status.stderr
    assert dump(old) == before
    assert "log: 1 messages" in status.stdout
    assert "the database predates this version of the app: its next start adds table leases" in status.stdout
    assert "posts                        missing  rows: -; never built" in status.stdout
    described = json.loads(app_cli(root, "projections", "status", "--db", str(old), "--json").stdout)
    assert [p["state"] for p in described["projections"]] == ["missing", "missing"]
    assert "the messages' version column" in described["behind"]
    assert dump(old) == before


def test_the_rebuild_command_status_suggests_runs_as_pasted_from_the_apps_folder(tmp_path: Path) -> None:
    """Run from its source tree (``PYTHONPATH=src``, no venv of its own), the app's hint carries that
    ``PYTHONPATH``: pasted into a shell with none set, it rebuilds (trial 69 found it said only ``python -m``)."""
    root = new_app(tmp_path)
    assert run_petrock("feature", "add", "posts", cwd=root).returncode == 0
    with contextlib.closing(sqlite3.connect(root / "app.db")) as db:
        db.executescript(OLD_LOG)
    status = app_cli(root, "projections", "status")
    assert status.returncode == 0, status.stderr
    hint = status.stdout.strip().splitlines()[-1].partition("; beforehand: ")[2].partition(";")[0]
    assert hint.startswith("PYTHONPATH=") and hint.endswith(" -m blog projections rebuild"), status.stdout
    shell = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    pasted = subprocess.run(
        hint, shell=True, cwd=root, env=shell, capture_output=True, text=True, timeout=120, check=False
    )
    assert pasted.returncode == 0, pasted.stderr
    assert "current" in app_cli(root, "projections", "status").stdout


def test_projections_status_of_a_database_with_no_log_says_so_and_makes_none(tmp_path: Path) -> None:
    root = new_app(tmp_path)
    never_run = app_cli(root, "projections", "status")
    assert never_run.returncode == 1 and never_run.stdout == ""
    assert never_run.stderr.startswith(f"error: no database at {root / 'app.db'} — the app has not run here yet")
    assert not (root / "app.db").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    refused = app_cli(root, "projections", "status", "--db", str(empty))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"error: no message log in the database at {empty}")
    assert empty.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["blog", "empty.db"]


@pytest.mark.slow
def test_projections_status_on_postgresql_only_reads(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    def tables() -> list[str]:
        with psycopg.connect(pg_url) as db:
            found = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
            return [name for (name,) in found]

    root = new_app(tmp_path)
    assert run_petrock("feature", "add", "posts", cwd=root).returncode == 0
    empty = app_cli(root, "projections", "status", "--db", pg_url)
    assert empty.returncode == 1 and empty.stdout == "", empty.stderr
    assert (
        empty.stderr.startswith("error: no message log in the database at ") and "the app has not run" in empty.stderr
    )
    assert tables() == []
    assert app_cli(root, "kv", "set", "k", "1", "--db", pg_url).returncode == 0  # the app's first run makes the log
    made = tables()
    status = app_cli(root, "projections", "status", "--db", pg_url)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("log: 0 messages\nposts                        missing  rows: -; never built\n")
    assert "predates" not in status.stdout and tables() == made
