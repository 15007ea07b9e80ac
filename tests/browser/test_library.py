"""The pages people keep, in a real Chromium: the trial's ``library`` app, page by page.

``authors name:str bio:text:optional`` and ``books`` with ref, date, decimal (``min=0``), bool
(``default=true``), choice and text fields and an ``isbn:str:label=ISBN`` before its title.
Every page is checked with axe-core in light and dark mode (0 violations), and screenshots at
1280 and 390 px wide of the home, list, form and detail pages go to the artifacts folder
(``library-*``; the report header names it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ..support import Server, new_app, run_petrock, serving
from .conftest import SUMMARY_API_KEY, csp_violations, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

BOOK_FIELDS = (
    "isbn:str:label=ISBN:min=10:max=17",
    "title:str",
    "author:ref:authors",
    "published:date:optional",
    "price:decimal:optional:min=0",
    "in_stock:bool:default=true",
    "format:choice:hardback,paperback,ebook",
    "blurb:text:optional",
)
BOOKS = 30
BLURB = "A human envoy visits the planet Gethen, whose people can change their sex. " * 4
BOOK_URL = re.compile(r"/books/[0-9a-f]{32}$")
WIDTHS = {"desktop": (1280, 900), "mobile": (390, 844)}


class Library:
    """The served app and the items made before the tests."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.url = server.url
        self.authors: dict[str, str] = {}

    def command(self, type: str, payload: dict[str, Any]) -> str:
        response = httpx.post(f"{self.url}/commands", json={"type": type, "payload": payload}, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["data"]["id"]

    def get(self, feature: str, item_id: str) -> dict[str, Any]:
        return httpx.get(f"{self.url}/queries/{feature}/get", params={"id": item_id}, timeout=5).json()

    def book(self, number: int, **changes: Any) -> dict[str, Any]:
        return {
            "isbn": f"978-0-441-{number:05d}-9",
            "title": f"The Dispossessed, part {number}",
            "author": self.authors["Ursula K. Le Guin"],
            "published": "1974-05-01",
            "price": f"{9 + number}.99",
            "in_stock": number % 2 == 0,
            "format": "paperback",
            "blurb": BLURB,
        } | changes


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, summary_api: Any) -> Iterator[Library]:
    base = tmp_path_factory.mktemp("browser-library")
    root = new_app(base, "library")
    for args in (("authors", "name:str", "bio:text:optional", "--no-worker"), ("books", *BOOK_FIELDS)):
        result = run_petrock("feature", "add", *args, cwd=root)
        assert result.returncode == 0, result.stderr
    settings = {"SUMMARY_API_URL": summary_api.url, "SUMMARY_API_KEY": SUMMARY_API_KEY}
    with serving(root, base / "app.db", env=settings) as server:
        made = Library(server)
        for name in ("Ursula K. Le Guin", "Italo Calvino"):
            made.authors[name] = made.command("authors/create", {"name": name})
        for number in range(1, BOOKS + 1):
            made.command("books/create", made.book(number))
        yield made


@pytest.fixture
def wide_page(browser: Browser, console: list[str]) -> Iterator[Page]:
    """A tab 1280 px wide (the trial's screen)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    yield page
    context.close()


def axe_violations(page: Page) -> list[str]:
    """What axe-core finds wrong with the page as shown, one line per rule and element."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{violation['id']}: {node['target']}"
        for violation in results.response["violations"]
        for node in violation["nodes"]
    ]


def test_every_page_names_every_feature_and_the_home_page_shows_counts_and_recent_items(
    library: Library, wide_page: Page, console: list[str]
) -> None:
    page = wide_page
    page.goto(f"{library.url}/books")
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link").all_inner_texts() == ["Authors", "Books"]
    assert nav.get_by_role("link", name="Books").get_attribute("aria-current") == "page"
    page.goto(f"{library.url}/authors/new")
    assert nav.get_by_role("link").all_inner_texts() == ["Authors", "Books"]

    page.goto(library.url)
    books = page.locator("section.card", has=page.get_by_role("link", name="Books", exact=True))
    assert books.locator(".count").inner_text() == str(BOOKS)
    assert books.locator(".recent li").all_inner_texts()[0] == f"The Dispossessed, part {BOOKS}"  # newest first
    assert "books/create" not in page.content()  # the developer's view moved
    page.get_by_role("link", name="About this app").click()
    page.wait_for_url(re.compile(r"/_/about$"))
    assert "books/create" in page.locator("main").inner_text()
    assert csp_violations(console) == []


def test_lists_show_25_one_line_rows_with_the_title_first_and_numbered_pages(library: Library, wide_page: Page) -> None:
    page = wide_page
    page.goto(f"{library.url}/books")
    rows = page.locator("tbody tr")
    assert rows.count() == 25
    assert page.locator("thead th").all_inner_texts()[:2] == ["TITLE", "ISBN"]
    first = rows.first.locator("td").first
    assert first.get_by_role("link").inner_text() == f"The Dispossessed, part {BOOKS}"  # not the ISBN
    heights = [rows.nth(n).bounding_box()["height"] for n in range(3)]  # type: ignore[index]
    assert max(heights) < 60, heights  # one line each: nothing wraps
    assert page.locator(".pager").get_by_text("Showing 1–25 of 30").is_visible()
    pages = page.get_by_role("navigation", name="Pages").locator("li").all_inner_texts()
    assert pages == ["1", "2", "Next ›", "Last »"]

    page.get_by_role("navigation", name="Pages").get_by_role("link", name="2").click()
    page.wait_for_url(re.compile(r"/books\?page=2$"))
    assert rows.count() == 5 and page.get_by_text("Showing 26–30 of 30").is_visible()
    assert page.get_by_role("navigation", name="Pages").locator("li").all_inner_texts()[:2] == ["« First", "‹ Previous"]

    page.goto(f"{library.url}/books?per_page=10")
    assert rows.count() == 10 and page.get_by_text("Showing 1–10 of 30").is_visible()

    # the filter form sends every select; the empty ones are left out of the URL
    page.get_by_label("Format").select_option("paperback")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"/books\?format=paperback&per_page=10$"))
    assert rows.count() == 10


def test_mobile_rows_stay_one_line_without_the_summary_column(library: Library, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(f"{library.url}/books")
        assert page.get_by_role("columnheader", name="Summary").is_hidden()
        height = page.locator("tbody tr").first.bounding_box()["height"]  # type: ignore[index]
        assert height < 60, height
    finally:
        context.close()


# The list's table as laid out: its width and its wrapper's, each column's width by heading, and the
# cells cut by the one-line rule that carry no tooltip (on themselves or their link).
TABLE_LAYOUT = """() => {
  const wrap = document.querySelector(".table-wrap"), table = wrap.querySelector("table");
  const widths = Object.fromEntries(Array.from(table.querySelectorAll("thead th"))
    .filter(th => th.offsetParent !== null)
    .map(th => [th.textContent.trim(), th.getBoundingClientRect().width]));
  const untitled = Array.from(table.querySelectorAll("tbody td"))
    .filter(td => td.offsetParent !== null && td.scrollWidth > td.clientWidth + 1)
    .filter(td => !td.title && !td.querySelector("[title]"))
    .map(td => td.textContent.trim());
  return {wrap: wrap.clientWidth, table: table.scrollWidth, widths, untitled};
}"""


def test_the_title_column_gets_the_room_cut_values_have_tooltips_and_the_table_fits(
    library: Library, browser: Browser
) -> None:
    long_title = "The Left Hand of Darkness, with an introduction, notes and a very long subtitle indeed"
    library.command("books/create", library.book(400, title=long_title))
    for name, (width, height) in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            page.goto(f"{library.url}/books")
            layout = page.evaluate(TABLE_LAYOUT)
            assert page.get_by_role("link", name=long_title).get_attribute("title") == long_title
            assert layout["untitled"] == [], (name, layout)
            if name == "desktop":  # on a phone the table scrolls sideways inside its wrapper
                assert layout["table"] <= layout["wrap"], layout  # no column clipped
                widths = layout["widths"]
                assert widths["Title"] == max(widths.values()) and widths["Title"] >= 220, widths
        finally:
            context.close()


def test_the_form_has_readable_labels_a_checkbox_on_its_own_line_and_the_fields_rules(
    library: Library, wide_page: Page
) -> None:
    page = wide_page
    page.goto(f"{library.url}/books/new")
    assert page.locator("label[for=isbn]").inner_text() == "ISBN (10 to 17 characters)"
    price, in_stock = page.get_by_label("Price"), page.get_by_label("In stock")
    assert price.get_attribute("min") == "0" and in_stock.is_checked()  # min=0 and default=true
    price_box, check_box = price.bounding_box(), in_stock.bounding_box()
    assert check_box["y"] > price_box["y"] + price_box["height"]  # type: ignore[index] # below, not beside

    page.get_by_label("ISBN").fill("978-0-000-00000-1")
    page.get_by_label("Title").fill("Invisible Cities")
    page.get_by_label("Author").select_option(label="Italo Calvino")
    page.get_by_label("Format").select_option("hardback")
    price.fill("-5")
    assert price.evaluate("input => input.validity.rangeUnderflow")  # the browser knows the rule
    page.locator("main form").evaluate("form => { form.noValidate = true }")
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()
    assert page.locator("#price-error").inner_text() == "Enter a number of at least 0."  # and the server holds to it
    assert page.evaluate("document.activeElement.id") == "price"  # the focus is on the first field at fault
    page.get_by_label("ISBN").fill("123")
    page.locator("main form").evaluate("form => { form.noValidate = true }")
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()
    assert page.locator("#isbn-error").inner_text() == "Use at least 10 characters."
    assert page.evaluate("document.activeElement.id") == "isbn"
    page.get_by_label("ISBN").fill("978-0-000-00000-1")
    price.fill("12.50")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(BOOK_URL)
    assert page.get_by_role("heading", level=1).inner_text() == "Invisible Cities"


def test_the_detail_page_shows_an_update_made_elsewhere_whole(library: Library, wide_page: Page) -> None:
    page = wide_page
    book_id = library.command("books/create", library.book(100, title="Before", blurb="The old blurb."))
    page.goto(f"{library.url}/books/{book_id}")
    page.locator("html[data-live=open]").wait_for(state="attached")  # the page follows /events
    library.command(
        "books/update", {"id": book_id, **library.book(100, title="After", price="1.00", blurb="The new blurb.")}
    )
    page.get_by_role("heading", name="After", level=1).wait_for()
    item = page.locator("#item")
    assert "1.00" in item.inner_text() and "The new blurb." in item.inner_text()
    assert page.get_by_role("status").filter(has_text="Updated just now").is_visible()


def test_a_book_with_no_blurb_has_summary_status_none(library: Library, wide_page: Page) -> None:
    payload = library.book(200)
    del payload["blurb"]
    book_id = library.command("books/create", payload)
    assert library.get("books", book_id)["summary_status"] == "none"
    wide_page.goto(f"{library.url}/books/{book_id}")
    assert "No blurb to summarize." in wide_page.locator("#summary").inner_text()


def test_deleting_a_referenced_author_names_the_books_by_title_with_links(library: Library, wide_page: Page) -> None:
    page = wide_page
    author = library.command("authors/create", {"name": "Stanisław Lem"})
    book = library.command("books/create", library.book(300, title="Solaris", author=author))
    page.goto(f"{library.url}/authors/{author}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("heading", name="Not deleted").wait_for()
    assert "Stanisław Lem is still used by these" in page.locator(".error").inner_text()
    link = page.get_by_role("link", name="Solaris")
    assert link.get_attribute("href") == f"/books/{book}"
    assert re.search(r"[0-9a-f]{32}", page.locator("main").inner_text()) is None  # names, not raw ids


def test_the_keyboard_reaches_the_header_then_the_page_in_order(library: Library, wide_page: Page) -> None:
    page = wide_page
    page.goto(f"{library.url}/books")
    reached = []
    focused = "(el => el.tagName === 'SELECT' ? el.id : el.textContent.trim())(document.activeElement)"
    for _ in range(6):
        page.keyboard.press("Tab")
        reached.append(page.evaluate(focused))
    assert reached == ["Skip to main content", "library", "Authors", "Books", "New book", "filter-author"]
    page.goto(f"{library.url}/books")
    page.keyboard.press("Tab")
    assert page.get_by_role("link", name="Skip to main content").bounding_box()["y"] >= 0  # type: ignore[index] # shown
    page.keyboard.press("Enter")  # the skip link: the next Tab is inside the page, past the header
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "New book"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_has_no_axe_violations_and_is_captured_at_both_widths(
    library: Library, browser: Browser, scheme: str
) -> None:
    book = httpx.get(f"{library.url}/queries/books/list", params={"limit": 1}, timeout=5).json()["items"][0]
    author = library.authors["Ursula K. Le Guin"]
    pages = {
        "home": "/",
        "about": "/_/about",
        "list": "/books",
        "authors": "/authors",
        "form": "/books/new",
        "edit": f"/books/{book['id']}/edit",
        "detail": f"/books/{book['id']}",
        "author": f"/authors/{author}",
    }
    found: dict[str, list[str]] = {}
    for width, (x, y) in WIDTHS.items():
        context = browser.new_context(viewport={"width": x, "height": y}, color_scheme=scheme)  # type: ignore[arg-type]
        try:
            page = context.new_page()
            for name, path in pages.items():
                page.goto(library.url + path)
                if violations := axe_violations(page):
                    found[f"{name} {width}"] = violations
                if name in ("home", "list", "form", "detail"):
                    screenshot(page, f"library-{name}-{x}-{scheme}")
            page.goto(f"{library.url}/authors/{author}")  # the refusal page of a referenced author
            page.once("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name="Delete").click()
            page.get_by_role("heading", name="Not deleted").wait_for()
            if violations := axe_violations(page):
                found[f"409 {width}"] = violations
        finally:
            context.close()
    assert found == {}
