"""The hand-written notifier: one webhook call per summary, none repeated after a restart."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from newsroom.core import App, MessageLog
from newsroom.features import register_features
from newsroom.posts.commands import CreatePost

NOTIFIER = "posts-summary-notifier"


class Webhook:
    """A real HTTP server on 127.0.0.1 that records what it is sent; it can fail the first calls."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (Idempotency-Key, body)
        self.failures = failures
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.calls.append((self.headers["Idempotency-Key"], body))
                status = 500 if len(webhook.calls) <= webhook.failures else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/summaries"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    hook = Webhook()
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", hook.url)
    for name in ("SUMMARY_API_URL", "SUMMARY_API_KEY"):
        monkeypatch.delenv(name, raising=False)  # the offline summarizer
    yield hook
    hook.close()


def run_app(db: Path, until: Callable[[App], bool], action: Callable[[App], None] = lambda app: None) -> App:
    """Serve the app's workers (no HTTP) on ``db`` until ``until(app)`` holds, then shut down cleanly."""

    async def main() -> App:
        app = App(MessageLog(db), poll_interval=0.05, jitter=0.0, stop_timeout=2.0)
        register_features(app)
        app.prepare()
        await app.start_workers()
        try:
            action(app)
            deadline = time.monotonic() + 10
            while not until(app):
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.02)
        finally:
            await app.close()
        return app

    return asyncio.run(main())


def notified(webhook: Webhook, calls: int = 1) -> Callable[[App], bool]:
    """True once the webhook has had ``calls`` calls and the notifier has stored its position past the summary."""

    def check(app: App) -> bool:
        summaries = [m.id for m in app.log.after(0) if m.type == "posts/set-generated-summary"]
        return len(webhook.calls) >= calls and bool(summaries) and app.log.position(NOTIFIER) >= summaries[-1]

    return check


def test_a_new_summary_is_sent_to_the_webhook_once(webhook: Webhook, tmp_path: Path) -> None:
    def create(app: App) -> None:
        app.dispatch(CreatePost(id="p1", title="Launch day", content="We launched today. Everyone came."))

    run_app(tmp_path / "app.db", until=notified(webhook), action=create)

    [(key, body)] = webhook.calls
    assert body["post_id"] == "p1"
    assert body["title"] == "Launch day"
    assert body["summary"]
    assert key.startswith(f"{NOTIFIER}-")


def test_a_restart_does_not_send_again(webhook: Webhook, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    run_app(
        db,
        until=notified(webhook),
        action=lambda app: app.dispatch(CreatePost(title="Once", content="Only one notification, please.")),
    )
    started = time.monotonic()
    run_app(db, until=lambda app: time.monotonic() - started > 0.5)  # goes on from its position: sends nothing

    assert len(webhook.calls) == 1


def test_a_failing_webhook_is_retried_with_the_same_key_until_it_takes_the_call(
    webhook: Webhook, tmp_path: Path
) -> None:
    webhook.failures = 2
    run_app(
        tmp_path / "app.db",
        until=notified(webhook, calls=3),
        action=lambda app: app.dispatch(CreatePost(title="Flaky", content="The webhook fails twice first.")),
    )
    assert len(webhook.calls) == 3
    assert len({key for key, _ in webhook.calls}) == 1
