"""``petrock adopt``: give an app made before petrock kept a manifest its ``.petrock.toml``.

Such an app has the layout petrock generates (``src/PACKAGE/main.py``, ``core/``, one
folder per feature with a ``register.py``) but no record of it, so no command can
work on it. Adopting writes the manifest from what is there and commits it. The
templates version is unknown, so it is recorded as ``0.0.0``: older than any.
"""

from __future__ import annotations

from pathlib import Path

from petrock import __version__, git
from petrock.errors import AlreadyExists, NotInApp
from petrock.project import MANIFEST, Manifest

UNKNOWN_VERSION = "0.0.0"


def find_legacy_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding a ``pyproject.toml`` and ``src/*/main.py``."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").is_file() and _packages(directory):
            return directory
    raise NotInApp(f"no app here ({here})", "run this in the folder of an app laid out as petrock makes them")


def _packages(root: Path) -> list[Path]:
    source = root / "src"
    if not source.is_dir():
        return []
    return sorted(p for p in source.iterdir() if (p / "main.py").is_file() and (p / "core").is_dir())


def adopt(root: Path) -> tuple[Manifest, str | None]:
    """Write ``.petrock.toml`` for the app at ``root`` and commit it; returns the manifest and the commit."""
    if (root / MANIFEST).exists():
        raise AlreadyExists(f"{root / MANIFEST} exists already", "this app is known to petrock: nothing to adopt")
    packages = _packages(root)
    if len(packages) != 1:
        found = ", ".join(p.name for p in packages) or "none"
        raise NotInApp(
            f"cannot tell which package under src/ is the app (found {found})",
            "keep one package with main.py and core/ in src/, then adopt",
        )
    package = packages[0]
    features = sorted(p.name for p in package.iterdir() if (p / "register.py").is_file() and p.name != "core")
    manifest = Manifest(
        project_name=package.name,
        template_version=UNKNOWN_VERSION,
        petrock_version=__version__,
        answers={"project_name": package.name},
        features={name: {"template_version": UNKNOWN_VERSION} for name in features},
    )
    (root / MANIFEST).write_text(manifest.dumps())
    if not git.is_repo(root):
        return manifest, None
    message = f"Adopt {package.name}: record it in {MANIFEST} for petrock"
    return manifest, git.commit(root, message, [MANIFEST])
