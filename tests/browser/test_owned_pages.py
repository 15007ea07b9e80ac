"""An owned feature (`petrock feature add notes --owned`) in a real Chromium: two signed-in browsers, each
sees only their own notes on the list, the home page and by URL.

A screenshot of each member's list is saved as an artifact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ..support import Server, new_app, run_petrock, serving
from .conftest import ACTION_TIMEOUT_MS, NAVIGATION_TIMEOUT_MS, csp_violations, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

PASSWORD = "an owner typed this 0001"
SETTINGS = {"APP_OPEN_SIGNUP": "1", "APP_SECRET_KEY": "browser-owned-reset-key-0123456789abcdef", "SMTP_URL": ""}


@pytest.fixture(scope="module")
def notes_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An app with users and an owned notes feature, served with open sign-up."""
    base = tmp_path_factory.mktemp("browser-owned")
    root = new_app(base)
    for args in (("generate", "auth"), ("feature", "add", "notes", "--no-worker", "--owned")):
        result = run_petrock(*args, cwd=root)
        assert result.returncode == 0, result.stderr
    with serving(root, base / "app.db", env=SETTINGS) as server:
        yield server


def signed_in_browser(browser: Browser, server: Server, email: str, console: list[str]) -> Page:
    """A browser of its own (its own cookies): registered and signed in as ``email``."""
    page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    page.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(f"{server.url}/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{server.url}/login")
    page.goto(f"{server.url}/login?next=/notes")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/notes")
    return page


def write_note(page: Page, server: Server, title: str) -> str:
    """Create a note through the new-note form; returns its URL."""
    page.goto(f"{server.url}/notes/new")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Content").fill(f"What {title} says.")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(rf"{re.escape(server.url)}/notes/[0-9a-f]{{32}}$"))
    return page.url


def titles_listed(page: Page, server: Server) -> set[str]:
    page.goto(f"{server.url}/notes")
    return {text.strip() for text in page.locator("main table a").all_inner_texts()}


def test_two_signed_in_browsers_see_only_their_own_notes(
    notes_app: Server, browser: Browser, console: list[str]
) -> None:
    ann = signed_in_browser(browser, notes_app, "ann@example.com", console)
    bob = signed_in_browser(browser, notes_app, "bob@example.com", console)
    anns = [write_note(ann, notes_app, title) for title in ("Ann's plan", "Ann's list")]
    write_note(bob, notes_app, "Bob's idea")

    assert titles_listed(ann, notes_app) == {"Ann's plan", "Ann's list"}
    screenshot(ann, "owned-list-ann")
    assert titles_listed(bob, notes_app) == {"Bob's idea"}
    screenshot(bob, "owned-list-bob")
    bob.goto(f"{notes_app.url}/")
    assert "Bob's idea" in bob.locator("main").inner_text() and "Ann's" not in bob.locator("main").inner_text()

    response = bob.goto(anns[0])  # ann's note, by its URL
    assert response is not None and response.status == 404
    response = bob.goto(f"{anns[0]}/edit")
    assert response is not None and response.status == 404
    ann.goto(anns[0])
    assert ann.get_by_role("heading", name="Ann's plan").is_visible()
    assert csp_violations(console) == []
