"""What the pages show about the features as a whole: the header's links, the home page's
counts and recent items, and the items that keep another from being deleted.

A feature registers one :class:`Link` (``app.add_link``) naming its list page, its list
query and its title field; everything here reads the features through those queries,
like any client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .commands import NotFound

if TYPE_CHECKING:
    from .app import App
    from .references import StillReferenced

RECENT_ITEMS = 5


@dataclass(frozen=True)
class Link:
    """A feature's place in the header and on the home page."""

    title: str  # "Books"
    path: str  # "/books"
    feature: str = ""  # "books": its queries are "books/list" and "books/get" ('' for a plain link)
    label: str = "id"  # the field that names an item (its title field)
    item_title: str = ""  # "Book": one item, for one without a title field

    def name_of(self, item: dict[str, Any]) -> str:
        """What an item is called on pages: its title field, else the start of its id."""
        value = item.get(self.label)
        if value not in (None, "") and self.label != "id":
            return str(value)
        return f"{self.item_title or self.title} {item['id'][:8]}"


@dataclass(frozen=True)
class Overview:
    """One feature on the home page: how many items it has and the newest few."""

    link: Link
    total: int
    recent: list[tuple[str, str]]  # (name, path)


def overviews(app: App) -> list[Overview]:
    """Every feature's count and newest items (one list query each, served from the store's indexes)."""
    shown = []
    for link in app.links:
        if not link.feature:
            continue
        listing = app.query(f"{link.feature}/list", {"limit": RECENT_ITEMS})
        recent = [(link.name_of(item), f"{link.path}/{item['id']}") for item in listing["items"]]
        shown.append(Overview(link, listing["total"], recent))
    return shown


def referring_items(app: App, refused: StillReferenced) -> list[tuple[str, str]]:
    """The items that refer to the one a delete was refused for, as (name, path) to link to."""
    links = {link.feature: link for link in app.links if link.feature}
    named = []
    for feature, ids in refused.referrers:
        link = links.get(feature)
        for item_id in ids:
            if link is None:
                named.append((f"{feature} {item_id[:8]}", ""))
                continue
            try:
                item = app.query(f"{feature}/get", {"id": item_id})
            except NotFound:  # deleted since
                continue
            named.append((link.name_of(item), f"{link.path}/{item_id}"))
    return named
