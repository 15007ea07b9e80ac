"""Browser tests: a generated app served for real, driven by Debian's Chromium through Playwright.

``blog`` is a fresh ``petrock new blog`` + ``petrock feature add posts`` served on a
free 127.0.0.1 port, with the fake summary API as its model. ``page`` is a new
browser tab (its own cookies); ``console`` collects what that tab logged.
Without Playwright or Chromium every test here is skipped for the one reason the
report header states.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..support import Server, fake_summary_api_module, new_app, run_petrock, serving
from .support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 15_000
SUMMARY_API_KEY = "browser-test-summary-key"
BROWSER_TOKEN = "browser-test-token-5f0e9c"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = unavailable()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=f"browser tests: {reason}"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, headless, once per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def summary_api() -> Iterator[Any]:
    with fake_summary_api_module().FakeSummaryAPI() as api:
        yield api


def serve_blog(base: Path, summary_api: Any, **env: str) -> Iterator[Server]:
    """A fresh blog with the posts feature, served until the caller is done."""
    root = new_app(base)
    result = run_petrock("feature", "add", "posts", cwd=root)
    assert result.returncode == 0, result.stderr
    settings = {"SUMMARY_API_URL": summary_api.url, "SUMMARY_API_KEY": SUMMARY_API_KEY, **env}
    with serving(root, base / "app.db", env=settings) as server:
        yield server


@pytest.fixture(scope="module")
def blog(tmp_path_factory: pytest.TempPathFactory, summary_api: Any) -> Iterator[Server]:
    """The served blog, shared by a module's tests (each makes its own posts)."""
    yield from serve_blog(tmp_path_factory.mktemp("browser-blog"), summary_api)


@pytest.fixture
def console() -> list[str]:
    """What the page logged (console messages and uncaught errors), one line each."""
    return []


@pytest.fixture
def page(browser: Browser, console: list[str]) -> Iterator[Page]:
    """A new tab in a new context (no cookies shared between tests), with bounded waits."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    page.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    yield page
    context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG under the artifacts folder (the report header names it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def csp_violations(console: list[str]) -> list[str]:
    return [line for line in console if "Content Security Policy" in line]


class OtherSite:
    """A page served from another loopback origin (the attacker's site in the cross-origin tests)."""

    def __init__(self) -> None:
        self.html = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.html.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    yield site
    site.close()


@pytest.fixture
def token_blog(tmp_path: Path, summary_api: Any) -> Iterator[Server]:
    """A blog served with ``APP_API_TOKEN`` set: its pages need a login."""
    yield from serve_blog(tmp_path, summary_api, APP_API_TOKEN=BROWSER_TOKEN)
