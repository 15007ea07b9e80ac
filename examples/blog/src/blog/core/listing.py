"""The list pages' paging: ``?page=`` and ``?per_page=`` read, and the links to other pages.

A list query pages by ``offset`` and ``limit``; people page by number. The links keep
the filters and sort, and leave empty ones out of the URL (a form sends them all).
A page asked for with the query's ``offset`` or ``limit`` (or any other parameter it
does not take) is a 400 naming the ones it takes: one way to page a list page, not two
that can disagree, and none ignored without a word.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .queries import MAX_OFFSET

PER_PAGE = 25
MAX_PER_PAGE = 200
NEIGHBOURS = 2  # numbered links on each side of the current page
PAGING = ("page", "per_page")
QUERY_PAGING = ("offset", "limit")  # the list query's own: a page sets them from page and per_page


class BadPage(ValueError):
    """``page`` or ``per_page`` is not a whole number in range; its text is the sentence the list page shows."""


def without_empty(path: str, params: Mapping[str, str]) -> str | None:
    """The URL without its empty parameters (``?author=&sort=`` -> the path), or None if it has none."""
    if all(params.values()):
        return None
    kept = {name: value for name, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def unknown_parameter(params: Mapping[str, str], query_fields: Iterable[str], api: str) -> str | None:
    """Why a list page refuses ``params`` (a 400's message), or None when it takes every one of them.

    ``query_fields`` are the list query's parameters (the page takes its filters and sort);
    ``api`` is the query's URL, named for someone who meant to page it by offset and limit."""
    takes = [name for name in query_fields if name not in QUERY_PAGING] + list(PAGING)
    unknown = [name for name in params if name not in takes]
    if not unknown:
        return None
    said = f"This page takes {', '.join(takes)}; not {', '.join(unknown)}."
    if set(unknown) & set(QUERY_PAGING):
        said += f" It pages with page and per_page; offset and limit page the JSON API ({api})."
    return said


def read_paging(params: Mapping[str, str]) -> tuple[int, int]:
    """``(page, per_page)`` from the query, 1 and :data:`PER_PAGE` when not given; a ``per_page``
    above :data:`MAX_PER_PAGE` shows that many (a URL asking for more is not wrong, only greedy)."""
    try:
        page = int(params.get("page", "1"))
        per_page = int(params.get("per_page", str(PER_PAGE)))
    except ValueError:
        raise BadPage("Page and per_page are whole numbers.") from None
    if page < 1 or per_page < 1:
        raise BadPage("Page and per_page are 1 or more.")
    per_page = min(per_page, MAX_PER_PAGE)
    if (page - 1) * per_page > MAX_OFFSET:
        raise BadPage(f"Page is beyond the last any list has (its first row must be within {MAX_OFFSET:,}).")
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
