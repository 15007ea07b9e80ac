"""copier's render of the project template is kept and reused only for the same template and answers.

``check``, ``upgrade`` and ``new`` render the project each run; copier costs most of a second of
CPU for it. The render is kept in the user's cache folder: a second run gives the same files from
it, and any change to a template file, or other answers, renders again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .support import REPO, app_files, run_petrock


def new(parent: Path, name: str, env: dict[str, str]) -> dict[str, bytes]:
    parent.mkdir()
    result = run_petrock("new", name, "--no-git", cwd=parent, env=env)
    assert result.returncode == 0, result.stderr
    return app_files(parent / name)


def test_a_kept_render_gives_the_same_app_and_a_changed_template_renders_again(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PETROCK_TEMPLATES": str(templates)}
    kept = tmp_path / "cache" / "petrock" / "renders"

    first = new(tmp_path / "a", "blog", env)
    assert len(list(kept.glob("*.json"))) == 1  # copier rendered it, and the render was kept
    assert new(tmp_path / "b", "blog", env) == first  # from the cache: the same files, byte for byte
    assert len(list(kept.glob("*.json"))) == 1

    shop = new(tmp_path / "c", "shop", env)  # other answers: rendered, not the blog's files
    assert "src/shop/__init__.py" in shop and not any(path.startswith("src/blog/") for path in shop)
    assert len(list(kept.glob("*.json"))) == 2

    readme = templates / "project" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nA line the cached render does not have.\n")
    changed = new(tmp_path / "d", "blog", env)
    assert changed["README.md"].endswith(b"\nA line the cached render does not have.\n")
    # Every other file as before (the manifest records the README's new blob id).
    others = {"README.md", ".petrock.toml"}
    assert {p: data for p, data in changed.items() if p not in others} == {
        p: data for p, data in first.items() if p not in others
    }
    assert len(list(kept.glob("*.json"))) == 3
