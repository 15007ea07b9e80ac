"""Marker edits: idempotent, user code intact, and lint clean as ruff sees the result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from petrock.errors import UserError
from petrock.inject import add_line, lines_between, remove_line
from petrock.templates import templates_dir

FEATURES = (templates_dir() / "project/src/{{project_name}}/features.py").read_text()
IMPORT = "from .{0}.register import register as register_{0}"


def with_features(*names: str, text: str = FEATURES) -> str:
    for name in names:
        text = add_line(text, "imports", IMPORT.format(name))
        text = add_line(text, "registrations", f"register_{name}(app)")
    return text


def test_adding_twice_registers_once() -> None:
    once = with_features("posts")
    assert with_features("posts", text=once) == once
    assert lines_between(once, "registrations") == ["register_posts(app)"]


def test_imports_stay_sorted_and_registrations_keep_their_order() -> None:
    text = with_features("posts", "order_items", "authors")
    assert lines_between(text, "imports") == [IMPORT.format(n) for n in ("authors", "order_items", "posts")]
    assert lines_between(text, "registrations") == [f"register_{n}(app)" for n in ("posts", "order_items", "authors")]


def test_user_code_around_the_markers_survives() -> None:
    edited = FEATURES.replace("from .core import App\n", "from .core import App\nimport logging  # mine\n")
    edited += "\n\n# my own helper\ndef extra() -> int:\n    return 1\n"
    text = with_features("posts", text=edited)
    assert "import logging  # mine" in text and "def extra() -> int:" in text
    assert remove_line(
        remove_line(text, "imports", IMPORT.format("posts")), "registrations", "register_posts(app)"
    ) == (edited)


def test_lost_markers_are_a_clear_error() -> None:
    with pytest.raises(UserError, match="lost its `# petrock:imports`"):
        add_line("x = 1\n", "imports", "import os")


def test_the_result_is_ruff_clean(tmp_path: Path) -> None:
    (tmp_path / "features.py").write_text(with_features("posts", "order_items"))
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--isolated", "--select", "I,E,F", "--ignore", "F401", "features.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
