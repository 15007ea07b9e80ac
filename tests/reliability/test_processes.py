"""``serve --processes 2``: two real server processes on one port and one SQLite log.

Every test runs a generated app with the posts feature (summary worker included) as
users run it, and checks the rules of docs/scaling.md: commands are decided on the
current log whichever process takes them, each worker runs in one process and moves
to another when its process is killed, queries converge, and nothing acknowledged is
lost when the whole group is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ..support import TLS
from .harness import APP_NAME, LoadThreads, Server, SummaryHistory, log_rows, wait_until

pytestmark = pytest.mark.slow

WORKER = "posts-summaries"


def create(client: httpx.Client, title: str, id: str | None = None) -> httpx.Response:
    payload = {"title": title, "content": f"{title}. A post made by the scaling tests."}
    if id is not None:
        payload["id"] = id
    return client.post("/commands", json={"type": "posts/create", "payload": payload})


def children(server: Server) -> list[int]:
    """The pids of the group's server processes (the parent's children)."""
    assert server.process is not None
    pid = server.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


@contextmanager
def client_per_process(server: Server, count: int = 2, seconds: float = 8.0) -> Iterator[dict[int, httpx.Client]]:
    """Keep-alive clients, one connected to each server process (the kernel picks the process per connection).

    New connections for up to ``seconds``: a process the group just started again may not accept yet, and
    one just killed resets the connections the kernel had queued for it (seen in CI). (A count of attempts
    allowed that, while each new client spent 30 ms loading the CA bundle; with ``TLS`` they are a few
    milliseconds each.)"""
    clients: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + seconds
    try:
        while len(clients) < count and time.monotonic() < deadline:
            client = httpx.Client(base_url=server.url, timeout=10, verify=TLS)
            try:
                pid = client.get("/healthz").json()["process"]["pid"]
            except httpx.TransportError:
                client.close()
                time.sleep(0.02)
                continue
            if pid in clients:
                client.close()
                time.sleep(0.02)
            else:
                clients[pid] = client
        assert len(clients) == count, f"reached only {len(clients)} of {count} server processes"
        yield clients
    finally:
        for client in clients.values():
            client.close()


def health_of_each(server: Server, count: int = 2) -> dict[int, dict[str, object]]:
    with client_per_process(server, count) as clients:
        return {pid: client.get("/healthz").json()["process"] for pid, client in clients.items()}


def worker_holder(server: Server) -> int | None:
    """The pid of the process that runs the summary worker, if one does right now."""
    for pid, process in health_of_each(server).items():
        if WORKER in process["runs"]:  # type: ignore[operator]
            return pid
    return None


def assert_summarized_exactly_once(db: Path, posts: set[str]) -> None:
    history = SummaryHistory.read(db)
    assert set(history.posts) == posts
    assert {post: len(history.requests.get(post, [])) for post in posts} == dict.fromkeys(posts, 1)
    assert {post: len(history.outcomes.get(post, [])) for post in posts} == dict.fromkeys(posts, 1)


class Writers(LoadThreads):
    """Threads creating posts through fresh connections (spread over the processes) until stopped."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.acknowledged: set[str] = set()
        super().__init__(threads)

    def _client(self, number: int) -> None:
        for i in range(1_000_000):
            if self._stop.is_set():
                return
            try:
                with httpx.Client(base_url=self.url, timeout=5) as client:
                    response = create(client, f"w{number}-{i}")
            except httpx.TransportError:
                time.sleep(0.01)  # a server process was killed under us: not acknowledged
                continue
            if response.status_code == 201:
                with self._lock:
                    self.acknowledged.add(response.json()["data"]["id"])


@pytest.fixture
def group(posts_dir: Path, servers: Callable[..., Server]) -> Iterator[Server]:
    server = servers(posts_dir, posts_dir / "app.db", processes=2, stop_timeout=3.0).start()
    yield server
    server.terminate()


def test_two_processes_share_the_work_and_every_post_is_summarized_exactly_once(group: Server) -> None:
    processes = health_of_each(group)
    assert sorted(processes) == sorted(children(group))
    runs = [p["runs"] for p in processes.values()]
    assert sorted(runs) == [[], [WORKER]]  # exactly one process runs the worker...
    assert sorted(p["stands_by_for"] for p in processes.values()) == [[], [WORKER]]  # ...the other stands by

    with Writers(group.url) as writers:
        assert wait_until(lambda: len(writers.acknowledged) >= 60, timeout=30)
    assert wait_until(lambda: SummaryHistory.read(group.db).settled(), timeout=20)
    assert_summarized_exactly_once(group.db, writers.acknowledged)

    # Queries converge: every process answers with every post and its summary.
    with client_per_process(group) as clients:
        for pid, client in clients.items():
            items = client.get("/queries/posts/list", params={"limit": 1000}).json()["items"]
            assert {item["id"] for item in items} == writers.acknowledged, pid
            assert {item["summary_status"] for item in items} == {"ready"}, pid


def test_conflicting_commands_in_two_processes_are_decided_on_the_current_log_and_others_are_refused(
    group: Server,
) -> None:
    with client_per_process(group) as clients:
        first, second = clients.values()
        # No pause between the calls: the second process decides before it could have followed the first.
        assert create(first, "one", id="same").status_code == 201
        assert create(second, "again", id="same").status_code == 409
        assert first.post("/commands", json={"type": "posts/delete", "payload": {"id": "same"}}).status_code == 201
        update = {"type": "posts/update", "payload": {"id": "same", "title": "t", "content": "c"}}
        assert second.post("/commands", json=update).status_code == 404
        assert second.post("/commands", json={"type": "posts/delete", "payload": {"id": "same"}}).status_code == 404

        # Both at once, many times over: exactly one create of each id wins.
        with ThreadPoolExecutor(2) as pool:
            for round in range(10):
                answers = pool.map(lambda client, id=f"race-{round}": create(client, "race", id=id), (first, second))
                assert sorted(answer.status_code for answer in answers) == [201, 409]
    creates = [row for row in log_rows(group.db) if row[2] == "posts/create"]
    assert len(creates) == 11

    # The group shares one database lock: an unrelated server on the same database is refused.
    env = {**os.environ, "PYTHONPATH": str(group.app_dir / "src")}
    unrelated = subprocess.run(
        [sys.executable, "-m", APP_NAME, "serve", "--port", "1", "--db", str(group.db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unrelated.returncode == 1
    assert "already in use by another process" in unrelated.stderr


def test_killing_the_process_that_runs_the_worker_moves_it_with_nothing_lost_or_done_twice(group: Server) -> None:
    with Writers(group.url) as writers:
        assert wait_until(lambda: len(writers.acknowledged) >= 20, timeout=30)
        holder = worker_holder(group)
        assert holder is not None
        os.kill(holder, signal.SIGKILL)
        killed_at = time.monotonic()
        # Another process takes the worker over within a few seconds (the lease expires in 3).
        assert wait_until(lambda: worker_holder(group) not in (None, holder), timeout=15)
        takeover = time.monotonic() - killed_at
        assert wait_until(lambda: len(writers.acknowledged) >= 60, timeout=30)
    assert takeover < 8, f"took {takeover:.1f}s to take the worker over"
    assert holder not in children(group) and len(children(group)) == 2  # the parent started a new one
    assert wait_until(lambda: SummaryHistory.read(group.db).settled(), timeout=20)
    history = SummaryHistory.read(group.db)
    # A create the killed process committed may have lost its answer with the process: it must still be summarized.
    assert writers.acknowledged <= set(history.posts)
    assert_summarized_exactly_once(group.db, set(history.posts))


def test_killing_the_whole_group_loses_nothing_acknowledged(group: Server) -> None:
    with Writers(group.url) as writers:
        assert wait_until(lambda: len(writers.acknowledged) >= 40, timeout=30)
        for pid in [*children(group), group.process.pid]:  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
    group.process.wait(10)  # type: ignore[union-attr]
    group.start()
    assert wait_until(lambda: SummaryHistory.read(group.db).settled(), timeout=30)
    history = SummaryHistory.read(group.db)
    assert writers.acknowledged <= set(history.posts)  # every 2xx survived (a few unanswered ones may too)
    assert_summarized_exactly_once(group.db, set(history.posts))


def test_a_second_group_on_the_same_port_is_refused_and_the_first_keeps_every_connection(group: Server) -> None:
    """Server processes share their port through SO_REUSEPORT, which a second group (an old instance
    left running, another app) could join: the kernel then split connections between two apps."""
    other = group.db.parent / "other.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(group.app_dir / "src"), os.environ.get("PYTHONPATH", "")])}
    second = subprocess.Popen(
        [sys.executable, "-m", APP_NAME, "serve", "--port", str(group.port), "--db", str(other), "--processes", "2"],
        cwd=group.app_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = second.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # it started: stop the whole second group
        os.killpg(second.pid, signal.SIGKILL)
        out, err = second.communicate()
    assert second.returncode == 1, out + err
    assert f"something already answers on port {group.port}" in err
    assert "Traceback" not in err and not other.exists()
    answered = set()
    for _ in range(20):  # a new connection each: the kernel picks the process per connection
        with httpx.Client(base_url=group.url, timeout=10) as client:
            answered.add(client.get("/healthz").json()["process"]["pid"])
    assert answered <= set(children(group))
