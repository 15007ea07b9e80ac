"""/docs in a real Chromium: the API page loads only the app's own files, and its forms send real requests."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from ..support import Server
from .conftest import BROWSER_TOKEN, csp_violations, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


def send(page: Page, section: str) -> str:
    """Press Send in one command's or query's section; returns the answer's status line."""
    from playwright.sync_api import expect

    form = page.locator(f"#{section} form")
    button = form.get_by_role("button", name="Send")
    with page.expect_response(lambda response: response.request.method in ("GET", "POST")):
        button.click()  # the handler disables the button until the answer is shown
    expect(button).to_be_enabled()  # the previous answer's status stays visible until then
    return form.locator(".answer-status").inner_text()


def test_the_api_page_sends_a_command_and_a_query_within_the_csp(blog: Server, page: Page, console: list[str]) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{blog.url}/docs")
    page.wait_for_load_state("load")
    assert page.get_by_role("heading", level=1).inner_text() == "API"
    assert all(url.startswith(blog.url) for url in requests), requests  # no CDN, nothing from elsewhere

    body = page.get_by_label("Request body").first
    body.fill('{"type": "posts/create", "payload": {"title": "From the API page", "content": "Sent by docs.js."}}')
    assert send(page, "posts\\.create") == "201 Created"
    assert '"type": "posts/create"' in page.locator("#posts\\.create .answer pre").inner_text()

    page.locator("#query_posts_list").get_by_label("limit").fill("5")
    assert send(page, "query_posts_list") == "200 OK"
    assert "From the API page" in page.locator("#query_posts_list .answer pre").inner_text()

    body.fill('{"type": "posts/create", "payload": {"title": ""}}')
    assert send(page, "posts\\.create") == "400 Bad Request"
    assert "invalid payload" in page.locator("#posts\\.create .answer pre").inner_text()
    screenshot(page, "docs")
    assert csp_violations(console) == []
    assert not [line for line in console if line.startswith("pageerror")]


def test_behind_a_token_the_api_page_needs_a_login_and_the_token_for_its_requests(
    token_blog: Server, page: Page, console: list[str]
) -> None:
    page.goto(f"{token_blog.url}/docs")
    page.wait_for_url(re.compile(r"/login\?next=/docs$"))
    page.get_by_label("Token").fill(BROWSER_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{token_blog.url}/docs")

    assert send(page, "query_posts_list") == "401 Unauthorized"  # the API takes a bearer token, not the login
    page.get_by_label("API token").fill(BROWSER_TOKEN)
    assert send(page, "query_posts_list") == "200 OK"
    assert BROWSER_TOKEN not in page.content()
    assert csp_violations(console) == []
