"""A feature with typed fields in a real Chromium: every kind of input, validation, filters, refs, delete.

The app is ``shop``: ``customers name:str email:email`` and ``orders`` with a field of
every other type, one of them a ``ref`` to customers. Screenshots: ``typed-form``,
``typed-form-errors``, ``typed-detail`` and ``typed-list`` (see the report header for the folder).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ..support import Server, fake_summary_api_module, new_app, run_petrock, serving
from .conftest import SUMMARY_API_KEY, csp_violations, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow

ORDER_FIELDS = (
    "customer:ref:customers",
    "total:decimal",
    "paid:bool",
    "due:date:optional",
    "status:choice:draft,paid,shipped",
    "shipped_at:datetime:optional",
    "quantity:int",
    "weight:float",
    "contact:email",
    "site:url:optional",
    "note:text:optional",
)
ORDER_URL = re.compile(r"/orders/[0-9a-f]{32}$")
CUSTOMER_URL = re.compile(r"/customers/[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, summary_api: Any) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("browser-shop")
    root = new_app(base, "shop")
    for args in (("customers", "name:str", "email:email"), ("orders", *ORDER_FIELDS)):
        result = run_petrock("feature", "add", *args, cwd=root)
        assert result.returncode == 0, result.stderr
    settings = {"SUMMARY_API_URL": summary_api.url, "SUMMARY_API_KEY": SUMMARY_API_KEY}
    with serving(root, base / "app.db", env=settings) as server:
        yield server


def orders(shop: Server) -> list[dict[str, Any]]:
    return httpx.get(f"{shop.url}/queries/orders/list", timeout=5).json()["items"]


def save(page: Page, url: re.Pattern[str]) -> None:
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(url)


def test_an_order_is_created_edited_filtered_and_deleted_through_typed_inputs(
    shop: Server, summary_api: Any, page: Page, console: list[str]
) -> None:
    page.goto(f"{shop.url}/customers/new")
    page.get_by_label("Name").fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.com")
    save(page, CUSTOMER_URL)
    assert page.locator(".flash").inner_text() == "Customer created."
    customer_page = page.url

    page.goto(f"{shop.url}/orders/new")
    form = page.locator("main form").first
    for field, kind in (("total", "number"), ("due", "date"), ("shipped_at", "datetime-local"), ("contact", "email")):
        assert page.locator(f"#{field}").get_attribute("type") == kind
    assert page.locator("#total").get_attribute("step") == "any"
    assert page.locator("#customer option").all_inner_texts() == ["Choose…", "Ada Lovelace"]
    screenshot(page, "typed-form")

    # the server's own messages, next to their inputs (the browser's checks are skipped)
    page.get_by_label("Contact").fill("not-an-email")
    form.evaluate("form => { form.noValidate = true }")
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()
    for field, message in (("quantity", "Please fill in this field."), ("contact", "Enter a valid email address.")):
        control = page.locator(f"#{field}")
        assert control.get_attribute("aria-invalid") == "true"
        assert control.get_attribute("aria-describedby") == f"{field}-error"
        assert page.locator(f"#{field}-error").inner_text() == message
    assert page.get_by_label("Contact").input_value() == "not-an-email"  # kept as typed
    screenshot(page, "typed-form-errors")
    assert orders(shop) == []

    page.get_by_label("Customer").select_option(label="Ada Lovelace")
    page.get_by_label("Total").fill("12.50")
    page.get_by_label("Paid").check()
    page.get_by_label("Due").fill("2025-01-31")
    page.get_by_label("Status").select_option("paid")
    page.get_by_label("Shipped at").fill("2025-01-31T12:30")
    page.get_by_label("Quantity").fill("3")
    page.get_by_label("Weight").fill("1.5")
    page.get_by_label("Contact").fill("ada@example.com")
    page.get_by_label("Note").fill("Two pounds of tea. Deliver before noon.")
    summary_api.queue(fake_summary_api_module().Reply(delay=3.0))  # arrives after the page listens
    save(page, ORDER_URL)
    assert page.locator(".flash").inner_text() == "Order created."
    detail = page.locator("main").inner_text()
    for shown in ("12.50", "yes", "2025-01-31", "paid", "2025-01-31 12:30 UTC", "Ada Lovelace"):
        assert shown in detail
    page.locator("#summary .summary").wait_for(timeout=15_000)  # the summary worker, live
    screenshot(page, "typed-detail")
    (order,) = orders(shop)
    assert (order["total"], order["paid"], order["shipped_at"], order["quantity"]) == (
        "12.50",
        True,
        "2025-01-31T12:30:00Z",
        3,
    )

    page.get_by_role("link", name="Edit").click()
    assert page.get_by_label("Shipped at").input_value() == "2025-01-31T12:30"
    page.get_by_label("Total").fill("15.00")
    page.get_by_label("Paid").uncheck()
    save(page, ORDER_URL)
    assert page.locator(".flash").inner_text() == "Order saved."
    (order,) = orders(shop)
    assert (order["total"], order["paid"]) == ("15.00", False)

    page.goto(f"{shop.url}/orders")
    page.locator("#filter-paid").select_option("false")
    page.locator("#sort").select_option("-total")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"/orders\?"))
    assert "15.00" in page.locator("table").inner_text()
    screenshot(page, "typed-list")
    page.locator("#filter-paid").select_option("true")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"paid=true"))
    assert "No orders match" in page.locator("main").inner_text()

    # a customer with an order cannot be deleted; the page says who refers to it
    page.goto(customer_page)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_load_state()
    assert "Ada Lovelace is still used by these" in page.locator("main").inner_text()
    assert ORDER_URL.search(
        page.get_by_role("link", name=re.compile(r"^Order [0-9a-f]{8}$")).get_attribute("href") or ""
    )

    page.goto(f"{shop.url}/orders/{order['id']}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{shop.url}/orders")
    assert page.locator(".flash").inner_text() == "Order deleted."
    assert orders(shop) == []
    assert csp_violations(console) == []
