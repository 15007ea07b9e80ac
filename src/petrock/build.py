"""``petrock build``: the app's wheel and sdist in ``dist/``, ready to install anywhere.

It runs the standard ``build`` frontend without build isolation, so the build
backend (hatchling) comes from petrock's own environment and nothing is fetched
from a package index: a build works offline. A wheel carries the whole package,
its HTML templates and static files included, so ``pip install`` of it serves
without the source tree.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from petrock.errors import UserError
from petrock.project import Manifest, find_root

DIST = "dist"
BUILD_TIMEOUT = 300
# The line `python -m build` ends a successful run with.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception): ")
BUILT = re.compile(r"Successfully built (?P<first>\S+) and (?P<second>\S+)\s*$", re.MULTILINE)


class BuildFailed(UserError):
    """The build frontend or backend failed on the app."""


@dataclass(frozen=True)
class Built:
    """The distributions one build made."""

    root: Path
    files: tuple[Path, ...]  # the sdist and the wheel, in dist/

    @property
    def wheel(self) -> Path:
        return next(path for path in self.files if path.suffix == ".whl")

    def summary(self) -> str:
        """``built dist/blog-0.1.0-py3-none-any.whl (21.4 kB) and dist/blog-0.1.0.tar.gz (17.9 kB)``"""
        parts = [f"{path.relative_to(self.root).as_posix()} ({human_size(path.stat().st_size)})" for path in self.files]
        return "built " + " and ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {"root": str(self.root), "files": [{"path": str(p), "bytes": p.stat().st_size} for p in self.files]}


def human_size(size: int) -> str:
    for unit in ("bytes", "kB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def build_app(start: Path | None = None) -> Built:
    """Build the wheel and sdist of the app around ``start`` (default: the current directory)."""
    root = find_root(start)
    name = Manifest.load(root).project_name
    if importlib.util.find_spec("build") is None or importlib.util.find_spec("hatchling") is None:
        raise BuildFailed("`build` or `hatchling` is missing from petrock's environment", "reinstall petrock")
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / DIST), str(root)]
    try:
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"building {name} took over {BUILD_TIMEOUT} s", "run `python -m build` to watch it") from None
    built = BUILT.search(result.stdout)
    if result.returncode != 0 or built is None:
        raise BuildFailed(
            f"building {name} failed: {_last_error(result.stderr + result.stdout)}",
            f"see `{sys.executable} -m build --no-isolation` in {root} for the whole output",
        )
    files = tuple(sorted((root / DIST / built[key] for key in ("first", "second")), key=lambda p: p.suffix != ".whl"))
    return Built(root, files)


def _last_error(output: str) -> str:
    """The most telling line of a failed build: the backend's exception, else build's own ERROR line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    exceptions = [line for line in lines if EXCEPTION_LINE.match(line)]
    errors = [line.removeprefix("ERROR ") for line in lines if line.startswith("ERROR ")]
    return (exceptions or errors or lines or ["no output"])[-1]
