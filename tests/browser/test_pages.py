"""The generated pages in a real Chromium: forms, flash, confirm, validation, live summary, 404, CSP, CSRF.

Screenshots of the list, form, detail, 404 and login pages are saved as artifacts
(see the report header for the folder).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ..support import Server, fake_summary_api_module
from .conftest import BROWSER_TOKEN, OtherSite, csp_violations, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

DETAIL_URL = re.compile(r"/posts/[0-9a-f]{32}$")


def create_post(page: Page, blog: Server, title: str, content: str) -> str:
    """Create a post through the new-post form; returns its detail page URL."""
    page.goto(f"{blog.url}/posts/new")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Content").fill(content)
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(DETAIL_URL)
    return page.url


def submit_to_the_server(page: Page) -> None:
    """Submit the form skipping the browser's own checks (``required``), so the server's messages show."""
    page.locator("main form").first.evaluate("form => { form.noValidate = true }")
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()


def posts(blog: Server) -> list[dict[str, Any]]:
    return httpx.get(f"{blog.url}/queries/posts/list", params={"limit": 100}, timeout=5).json()["items"]


def log_version(blog: Server) -> int:
    return httpx.get(f"{blog.url}/healthz", timeout=5).json()["version"]


def wait_for_summary(blog: Server, post_id: str, timeout: float = 10) -> None:
    """Until the summary worker has answered the post, with a summary or a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(post["id"] == post_id and post["summary_status"] != "pending" for post in posts(blog)):
            return
        time.sleep(0.05)
    raise AssertionError(f"post {post_id} was not summarized within {timeout} s")


def test_a_post_is_created_edited_and_deleted_through_the_forms(blog: Server, page: Page, console: list[str]) -> None:
    page.goto(f"{blog.url}/posts")
    page.get_by_role("link", name="New post").click()
    page.wait_for_url(f"{blog.url}/posts/new")
    screenshot(page, "form")

    create_post(page, blog, "First light", "The first post, typed into a real browser.")
    assert page.locator(".flash").inner_text() == "Post created."
    assert page.get_by_role("heading", level=1).inner_text() == "First light"

    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Title").fill("First light, edited")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(DETAIL_URL)
    assert page.locator(".flash").inner_text() == "Post saved."
    assert page.get_by_role("heading", level=1).inner_text() == "First light, edited"
    detail = page.url

    dialogs: list[str] = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Delete").click()
    assert dialogs == ["Delete this post? This cannot be undone."]
    assert page.url == detail and "First light, edited" in [post["title"] for post in posts(blog)]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{blog.url}/posts")
    assert page.locator(".flash").inner_text() == "Post deleted."
    assert "First light, edited" not in [post["title"] for post in posts(blog)]
    page.reload()
    assert page.locator(".flash").count() == 0  # shown once
    assert csp_violations(console) == []


def test_validation_messages_sit_next_to_their_inputs_and_keep_what_was_typed(
    blog: Server, page: Page, console: list[str]
) -> None:
    before = log_version(blog)
    page.goto(f"{blog.url}/posts/new")
    page.get_by_label("Title").fill("   ")
    page.get_by_label("Content").fill("")
    submit_to_the_server(page)

    for field in ("title", "content"):
        control = page.locator(f"#{field}")
        assert control.get_attribute("aria-invalid") == "true"
        assert control.get_attribute("aria-describedby") == f"{field}-error"
        message = page.locator(f"#{field}-error")
        assert message.inner_text() == "Please fill in this field."
        assert "field-error" in (message.get_attribute("class") or "")
    screenshot(page, "form-errors")

    page.get_by_label("Title").fill("Kept")
    page.get_by_label("Content").fill("")
    submit_to_the_server(page)
    assert page.get_by_label("Title").input_value() == "Kept"
    assert page.locator("#title-error").count() == 0
    assert log_version(blog) == before
    assert csp_violations(console) == []


def test_the_summary_appears_without_a_reload(blog: Server, summary_api: Any, page: Page, console: list[str]) -> None:
    content = "A slow model takes its time. The page waits for it without being reloaded."
    summary_api.queue(fake_summary_api_module().Reply(delay=3.0))  # the page loads well before it
    create_post(page, blog, "Live", content)
    page.evaluate("window.stillTheSamePage = true")
    assert "on its way" in page.locator("#summary").inner_text()

    summary = page.locator("#summary .summary")
    summary.wait_for(timeout=15_000)
    assert summary.inner_text() == summary_api.summary_for(content)
    assert page.evaluate("window.stillTheSamePage") is True  # updated in place, not reloaded
    screenshot(page, "detail")

    page.goto(f"{blog.url}/posts")
    screenshot(page, "list")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "list-dark")
    assert csp_violations(console) == []


def test_an_unknown_address_gets_the_styled_404_page(blog: Server, page: Page) -> None:
    response = page.goto(f"{blog.url}/no/such/page")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Not found"
    header_border = page.locator(".site-header").evaluate("el => getComputedStyle(el).borderBottomStyle")
    assert header_border == "solid"  # the stylesheet applied
    screenshot(page, "404")


def test_no_page_breaks_the_content_security_policy(blog: Server, page: Page, console: list[str]) -> None:
    created = httpx.post(
        f"{blog.url}/commands",
        json={"type": "posts/create", "payload": {"title": "CSP", "content": "Checked on every page."}},
        timeout=5,
    )
    item = created.json()["data"]["id"]
    for path in ("/", "/posts", "/posts/new", f"/posts/{item}", f"/posts/{item}/edit", "/nope", "/posts/nope"):
        page.goto(f"{blog.url}{path}")
        page.wait_for_load_state("load")
        assert page.evaluate("typeof document.querySelector('script[src=\"/static/app.js\"]')") == "object"
    assert csp_violations(console) == []
    assert not [line for line in console if line.startswith("pageerror")]

    # The detector works: an inline style set from the page is refused and logged.
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_timeout(200)
    assert csp_violations(console), console


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def test_a_form_on_another_site_cannot_create_or_delete_posts(
    blog: Server, page: Page, other_site: OtherSite, host: str
) -> None:
    target = httpx.post(
        f"{blog.url}/commands",
        json={"type": "posts/create", "payload": {"title": "Target", "content": "Not to be deleted."}},
        timeout=5,
    ).json()["data"]["id"]
    wait_for_summary(blog, target)  # the worker's own message must land before the log is counted
    before = log_version(blog)
    forms = {
        "create": (f"{blog.url}/posts/new", '<input name="title" value="Forged"><input name="content" value="x">'),
        "delete": (f"{blog.url}/posts/{target}/delete", ""),
    }
    for action, fields in forms.values():
        other_site.html = (
            f'<form method="post" action="{action}">{fields}</form><script>document.forms[0].submit()</script>'
        )
        with page.expect_response(action) as answer:
            page.goto(other_site.url(host))
        assert answer.value.status == 403
        page.wait_for_url(action)
        assert "another site" in page.locator("main").inner_text()
    assert log_version(blog) == before
    titles = [post["title"] for post in posts(blog)]
    assert "Target" in titles and "Forged" not in titles


def sign_in(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/posts")
    page.get_by_label("Token").fill(BROWSER_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/posts")


def test_with_a_token_the_pages_need_a_login(
    token_blog: Server, page: Page, browser: Browser, console: list[str]
) -> None:
    page.goto(f"{token_blog.url}/posts")
    page.wait_for_url(re.compile(r"/login\?next=/posts$"))
    screenshot(page, "login")
    page.get_by_label("Token").fill("not the token")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.locator("#token-error").inner_text() == "That token is not right."
    assert "not the token" not in page.content()

    page.get_by_label("Token").fill(BROWSER_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{token_blog.url}/posts")
    create_post(page, token_blog, "Behind a login", "Only people with the token see this.")
    assert page.locator(".flash").inner_text() == "Post created."
    assert BROWSER_TOKEN not in page.content()

    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(f"{token_blog.url}/login")
    page.goto(f"{token_blog.url}/posts")
    page.wait_for_url(re.compile(r"/login"))

    # Another browser signed in too: "Sign out everywhere" here ends its session there.
    other = browser.new_context().new_page()
    try:
        sign_in(other, token_blog)
        sign_in(page, token_blog)
        page.get_by_role("button", name="Sign out everywhere").click()
        page.wait_for_url(f"{token_blog.url}/login")
        other.goto(f"{token_blog.url}/posts")
        other.wait_for_url(re.compile(r"/login"))
    finally:
        other.context.close()
    assert csp_violations(console) == []
