"""``GET /events`` on a served app: one event per message (id and type only), resume, and a clean stop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..support import TLS
from .harness import Server, wait_until

pytestmark = pytest.mark.slow

SECRET_TEXT = "payload-text-that-must-not-leave-the-log"


class Listener:
    """Reads an event stream in a background thread; ``events`` grows as they arrive."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, object]] = []
        self.raw: list[str] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=30)) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    self.raw.append(line)
                    if line.startswith("data: "):
                        self.events.append(json.loads(line.removeprefix("data: ")))
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()


@pytest.fixture
def posts_server(posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]) -> Iterator[Server]:
    yield servers(posts_dir, tmp_path / "app.db", env={"SUMMARY_API_URL": ""}, stop_timeout=2.0).start()


def create(server: Server, title: str) -> int:
    payload = {"title": title, "content": f"{SECRET_TEXT}. More words follow here."}
    response = httpx.post(f"{server.url}/commands", json={"type": "posts/create", "payload": payload}, timeout=5)
    assert response.status_code == 201
    return response.json()["id"]


def test_every_appended_message_is_announced_by_id_and_type_only(posts_server: Server) -> None:
    listener = Listener(f"{posts_server.url}/events")
    assert wait_until(lambda: listener.status == 200, 5)
    first = create(posts_server, "One")
    create(posts_server, "Two")
    # each post: create, the worker's request-summary-generation and its outcome
    assert wait_until(lambda: len(listener.events) >= 6, 10), listener.raw
    assert listener.events[0] == {"id": first, "type": "posts/create"}
    assert [event["id"] for event in listener.events] == list(range(first, first + len(listener.events)))
    assert {event["type"] for event in listener.events} == {
        "posts/create",
        "posts/request-summary-generation",
        "posts/set-generated-summary",
    }
    assert SECRET_TEXT not in "\n".join(listener.raw)
    posts_server.terminate()


def test_a_reconnect_with_last_event_id_gets_what_it_missed(posts_server: Server) -> None:
    first = create(posts_server, "Missed")
    assert wait_until(lambda: httpx.get(f"{posts_server.url}/healthz", verify=TLS).json()["version"] >= first + 2, 10)
    listener = Listener(f"{posts_server.url}/events", headers={"last-event-id": str(first - 1)})
    assert wait_until(lambda: len(listener.events) >= 3, 10), listener.raw
    assert [event["id"] for event in listener.events[:3]] == [first, first + 1, first + 2]
    posts_server.terminate()


def test_open_streams_do_not_hold_up_the_shutdown(posts_server: Server) -> None:
    listeners = [Listener(f"{posts_server.url}/events") for _ in range(3)]
    assert wait_until(lambda: all(listener.status == 200 for listener in listeners), 5)
    took = posts_server.terminate(timeout=15)
    assert posts_server.process is not None and posts_server.process.returncode == 0, posts_server.output()
    assert took < 2.0 + 1.5, took  # within --stop-timeout (2 s) and the exit watchdog
    assert all(listener.ended.wait(5) for listener in listeners)
    assert "Cancel" not in posts_server.output() and "Traceback" not in posts_server.output()


def test_with_a_token_events_need_it_or_a_login(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    token = "events-token-2b7e"
    server = servers(posts_dir, tmp_path / "app.db", env={"SUMMARY_API_URL": "", "APP_API_TOKEN": token}).start()
    refused = httpx.get(f"{server.url}/events", timeout=5)
    assert refused.status_code == 401
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.post("/login", data={"token": token}).status_code == 303
        session = dict(client.cookies)
    cookie = "; ".join(f"{name}={value}" for name, value in session.items())
    for headers in ({"authorization": f"Bearer {token}"}, {"cookie": cookie}):
        listener = Listener(f"{server.url}/events", headers=headers)
        assert wait_until(lambda listener=listener: listener.status == 200, 5)
    server.terminate()
