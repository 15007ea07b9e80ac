"""The sign-in pages of `petrock generate auth` in a real Chromium: register, sign in and out, revoke, reset.

Screenshots of the sign-in and account pages are saved as artifacts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from ..support import Server, new_app, run_petrock, serving
from .conftest import csp_violations, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

PASSWORD = "a browser typed this 01"
OPERATOR_TOKEN = "browser-test-operator-token-0123456789abcdef"
SETTINGS = {
    "APP_OPEN_SIGNUP": "1",
    "APP_SECRET_KEY": "browser-test-reset-key-0123456789abcdef",
    "SMTP_URL": "",
    "APP_API_TOKEN": OPERATOR_TOKEN,
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An app with a notes feature and users, served with open sign-up."""
    base = tmp_path_factory.mktemp("browser-auth")
    root = new_app(base)
    for args in (("feature", "add", "notes", "--no-worker"), ("generate", "auth")):
        result = run_petrock(*args, cwd=root)
        assert result.returncode == 0, result.stderr
    with serving(root, base / "app.db", env=SETTINGS) as server:
        yield server


def register_and_sign_in(page: Page, shop: Server, email: str) -> None:
    page.goto(f"{shop.url}/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{shop.url}/login")
    assert page.locator(".flash").inner_text() == "Your account is ready. Sign in."
    sign_in(page, shop, email, PASSWORD)


def sign_in(page: Page, shop: Server, email: str, password: str) -> None:
    page.goto(f"{shop.url}/login?next=/notes")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{shop.url}/notes")


def test_register_sign_in_and_sign_out(shop: Server, page: Page, console: list[str]) -> None:
    page.goto(f"{shop.url}/notes")
    page.wait_for_url(f"{shop.url}/login?next=/notes")
    screenshot(page, "auth-login")
    register_and_sign_in(page, shop, "ann@example.com")
    assert page.locator("header .account").inner_text() == "ann@example.com"
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(f"{shop.url}/login")
    page.goto(f"{shop.url}/notes")
    page.wait_for_url(f"{shop.url}/login?next=/notes")
    page.get_by_label("Email").fill("ann@example.com")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    assert page.locator(".field-error").inner_text() == "That email and password do not match an account."
    assert csp_violations(console) == []


def test_a_session_revoked_on_one_device_ends_there(shop: Server, browser: Browser, page: Page) -> None:
    register_and_sign_in(page, shop, "bea@example.com")
    phone = browser.new_context(user_agent="Phone browser").new_page()
    sign_in(phone, shop, "bea@example.com", PASSWORD)
    page.goto(f"{shop.url}/account")
    screenshot(page, "auth-account")
    row = page.locator("tr", has_text="Phone browser")
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_url(f"{shop.url}/account")
    assert page.locator(".flash").inner_text() == "That session has ended."
    phone.goto(f"{shop.url}/notes")
    phone.wait_for_url(f"{shop.url}/login?next=/notes")
    page.goto(f"{shop.url}/notes")
    assert page.url == f"{shop.url}/notes"  # this one goes on
    phone.context.close()


def test_a_password_is_reset_through_the_dev_mailbox(shop: Server, browser: Browser, page: Page) -> None:
    register_and_sign_in(page, shop, "cy@example.com")
    visitor = browser.new_context().new_page()
    visitor.goto(f"{shop.url}/login")
    visitor.get_by_role("link", name="Forgot your password?").click()
    visitor.get_by_label("Email").fill("cy@example.com")
    visitor.get_by_role("button", name="Send me a link").click()
    visitor.wait_for_url(f"{shop.url}/login")
    operator = {"authorization": f"Bearer {OPERATOR_TOKEN}"}  # the mailbox is the operator's (or an admin's)
    for _ in range(100):  # the mailer worker sends it within a moment
        found = re.search(
            r'href="(/password-reset\?token=[^"]+)"', httpx.get(f"{shop.url}/dev/mailbox", headers=operator).text
        )
        if found:
            break
        visitor.wait_for_timeout(100)
    assert found is not None, "no reset mail reached the dev mailbox"
    visitor.goto(f"{shop.url}{found.group(1)}")
    visitor.get_by_label("New password").fill("a brand new browser pass")
    visitor.get_by_role("button", name="Set password").click()
    visitor.wait_for_url(f"{shop.url}/login")
    sign_in(visitor, shop, "cy@example.com", "a brand new browser pass")
    page.goto(f"{shop.url}/notes")
    page.wait_for_url(f"{shop.url}/login?next=/notes")  # the reset ended the other session
    visitor.context.close()


def test_a_weak_password_is_refused_beside_its_field_and_accents_sign_in_however_typed(
    shop: Server, page: Page
) -> None:
    page.goto(f"{shop.url}/register")
    page.get_by_label("Email").fill("dee@example.com")
    page.get_by_label("Password").fill("aaaaaaaaaaaa")
    page.get_by_role("button", name="Create account").click()
    assert page.locator("#password-error").inner_text() == "Use different characters, not one repeated."
    assert page.get_by_label("Password").get_attribute("aria-invalid") == "true"
    page.get_by_label("Password").fill("cre\u0300me bru\u0302le\u0301e 2026")  # combining accents
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{shop.url}/login")
    sign_in(page, shop, "dee@example.com", "crème brûlée 2026")  # composed: one character each
