"""The list pages' paging: ``?page=`` and ``?per_page=`` read, and the links to other pages.

A list query pages by ``offset`` and ``limit``; people page by number. The links keep
the filters and sort, and leave empty ones out of the URL (a form sends them all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .queries import MAX_OFFSET

PER_PAGE = 25
MAX_PER_PAGE = 200
NEIGHBOURS = 2  # numbered links on each side of the current page
PAGING = ("page", "per_page")


class BadPage(ValueError):
    """``page`` or ``per_page`` is not a whole number in range."""


def without_empty(path: str, params: Mapping[str, str]) -> str | None:
    """The URL without its empty parameters (``?author=&sort=`` -> the path), or None if it has none."""
    if all(params.values()):
        return None
    kept = {name: value for name, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def read_paging(params: Mapping[str, str]) -> tuple[int, int]:
    """``(page, per_page)`` from the query, 1 and :data:`PER_PAGE` when not given; a ``per_page``
    above :data:`MAX_PER_PAGE` shows that many (a URL asking for more is not wrong, only greedy)."""
    try:
        page = int(params.get("page", "1"))
        per_page = int(params.get("per_page", str(PER_PAGE)))
    except ValueError:
        raise BadPage("page and per_page are whole numbers") from None
    if page < 1 or per_page < 1:
        raise BadPage("page and per_page are 1 or more")
    per_page = min(per_page, MAX_PER_PAGE)
    if (page - 1) * per_page > MAX_OFFSET:
        raise BadPage(f"page is beyond the last any list has (its first row must be within {MAX_OFFSET:,})")
    return page, per_page


@dataclass(frozen=True)
class PageLink:
    text: str
    url: str  # '' for the current page (not a link)


@dataclass(frozen=True)
class Pager:
    """Where a list page is: "Showing 26–50 of 303", and its links."""

    first: int  # the first row shown, counting from 1 (0 when none)
    last: int
    total: int
    links: list[PageLink]

    @classmethod
    def of(cls, path: str, listing: Mapping[str, Any], params: Mapping[str, str], page: int, per_page: int) -> Pager:
        """The pager of ``listing`` (a list query's answer) for the page at ``path`` with ``params``."""
        total, shown = int(listing["total"]), len(listing["items"])
        pages = max(1, -(-total // per_page))
        kept = {name: value for name, value in params.items() if value and name not in PAGING}
        if per_page != PER_PAGE:
            kept["per_page"] = str(per_page)

        def url(number: int) -> str:
            query = urlencode({**kept, "page": str(number)} if number > 1 else kept)
            return f"{path}?{query}" if query else path

        links: list[PageLink] = []
        if pages > 1:
            if page > 1:
                links += [PageLink("« First", url(1)), PageLink("‹ Previous", url(page - 1))]
            low, high = max(1, page - NEIGHBOURS), min(pages, page + NEIGHBOURS)
            for number in range(low, high + 1):
                links.append(PageLink(str(number), "" if number == page else url(number)))
            if page < pages:
                links += [PageLink("Next ›", url(page + 1)), PageLink("Last »", url(pages))]
        first = (page - 1) * per_page + 1 if shown else 0
        return cls(first, first + shown - 1 if shown else 0, total, links)
