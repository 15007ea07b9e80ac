"""Jinja rendering of a template folder into ``{relative path: text}``; pure, nothing is written.

A file ending in ``.jinja`` is rendered and loses the suffix (one that renders to
nothing is left out); any other file is copied as it is. A feature's HTML pages
are Jinja templates themselves (rendered by the app at run time), yet differ per
field; so ``*.html.jinja`` files are rendered with square delimiters
(``[[ field.name ]]``, ``[% for %]``) and keep their ``{{ }}`` for the app: the
output is a plain page the user can read and edit, one input per field, instead
of a loop over field metadata.
Paths are rendered too: ``src/{{project_name}}/{{feature}}/register.py.jinja``
becomes ``src/blog/posts/register.py``. jinja2 is imported only when rendering.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment

SUFFIX = ".jinja"
HTML_SUFFIX = ".html.jinja"
IGNORED = frozenset({"__pycache__", ".DS_Store"})


def render_folder(folder: Path, context: Mapping[str, Any]) -> dict[str, str]:
    """Every file under ``folder``, rendered with ``context``, by output path (sorted)."""
    environment = _environment(folder.resolve())
    files: dict[str, str] = {}
    for source in _template_files(folder):
        relative = source.relative_to(folder).as_posix()
        target = environment.from_string(relative).render(context)
        if relative.endswith(SUFFIX):
            target = target.removesuffix(SUFFIX)
            renderer = _environment(folder.resolve(), html=True) if relative.endswith(HTML_SUFFIX) else environment
            text = renderer.get_template(relative).render(context)
            if not text.strip():
                continue  # rendered to nothing: this feature has no such file (a feature without a worker)
        else:
            text = source.read_text(encoding="utf-8")
        files[target] = text
    return dict(sorted(files.items()))


def _template_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not IGNORED.intersection(path.relative_to(folder).parts)
    )


@functools.cache
def _environment(folder: Path, *, html: bool = False) -> Environment:
    """One environment per template folder (and one with square delimiters for HTML pages).
    Compiled templates are kept in Jinja's per-user cache directory (keyed by template
    source), which saves most of the rendering time."""
    from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined

    delimiters = (
        {
            "block_start_string": "[%",
            "block_end_string": "%]",
            "variable_start_string": "[[",
            "variable_end_string": "]]",
            "comment_start_string": "[#",
            "comment_end_string": "#]",
        }
        if html
        else {}
    )
    return Environment(
        **delimiters,
        loader=FileSystemLoader(folder),
        bytecode_cache=FileSystemBytecodeCache(),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # the output is Python source, not HTML
    )
