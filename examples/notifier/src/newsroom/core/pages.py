"""HTML pages: one Jinja environment, autoescaped, with a folder per feature.

Templates are named ``"feature/file.html"``; the core's own are under ``"core/"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, PrefixLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse

CORE_TEMPLATES = Path(__file__).parent / "templates"


class Pages:
    """Renders feature templates to HTML responses."""

    def __init__(self) -> None:
        self._loaders: dict[str, FileSystemLoader] = {"core": FileSystemLoader(CORE_TEMPLATES)}
        self.environment = Environment(
            loader=PrefixLoader(self._loaders),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def add(self, prefix: str, directory: Path) -> None:
        self._loaders[prefix] = FileSystemLoader(directory)

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.environment.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code)


def redirect_with_flash(url: str, message: str) -> RedirectResponse:
    """A 303 to ``url``; the message is shown once on the next page (placeholder until the pages land)."""
    return RedirectResponse(url, status_code=303)
