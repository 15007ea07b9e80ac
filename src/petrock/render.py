"""Jinja rendering of a template folder into ``{relative path: text}``; pure, nothing is written.

A file ending in ``.jinja`` is rendered and loses the suffix; any other file is
copied as it is, so a feature's HTML templates keep their own Jinja syntax.
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
            text = environment.get_template(relative).render(context)
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
def _environment(folder: Path) -> Environment:
    """One environment per template folder. Compiled templates are kept in Jinja's per-user
    cache directory (keyed by template source), which saves most of the rendering time."""
    from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(folder),
        bytecode_cache=FileSystemBytecodeCache(),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # the output is Python source, not HTML
    )
