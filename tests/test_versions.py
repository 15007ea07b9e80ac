"""petrock's version and its CHANGELOG.md: one version, bumped with each change users should know about.

The changelog's newest section is the installed version; the templates (what every app is made
from, and what `upgrade` brings in) never change after the commit that set the version, so an
app's recorded version always says which templates it has; the wheel ships the changelog that
`upgrade` and `check` point to.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from petrock import __version__
from petrock.changelog import changelog_path, changes_since, listed_versions, version_key

from .support import REPO

CHANGELOG = REPO / "CHANGELOG.md"


def test_the_changelog_starts_with_the_installed_version_and_goes_back_in_order() -> None:
    text = CHANGELOG.read_text()
    versions = listed_versions(text)
    assert versions[0] == __version__, f"add a `## [{__version__}] - DATE` section to CHANGELOG.md"
    assert versions == sorted(versions, key=version_key, reverse=True) and len(set(versions)) == len(versions)
    for version in versions:
        assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d\d-\d\d$", text, re.MULTILINE), version
    assert changelog_path() == CHANGELOG


def test_templates_have_not_changed_since_the_version_was_last_set() -> None:
    def run(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    bump = run("log", "-1", "--format=%H", "-G", "^__version__ = ", "--", "src/petrock/__init__.py")
    if not bump:
        pytest.skip("no git history of src/petrock/__init__.py here (not a clone of petrock)")
    changed = run("diff", "--name-only", bump, "HEAD", "--", "templates").splitlines()
    assert not changed, (
        f"templates changed after petrock {__version__} was set ({', '.join(changed[:5])}): apps made from "
        "them would record the same version as apps made before; bump __version__ in src/petrock/__init__.py "
        "and say what changed in CHANGELOG.md, in the same commit or after the template change"
    )


def test_changes_since_lists_the_sections_an_app_has_not_taken_in() -> None:
    changes = changes_since("0.1.0", __version__)
    assert changes is not None and changes.path == CHANGELOG
    assert changes.versions[-1] == __version__ and "0.1.0" not in changes.versions
    assert (
        changes.pointer()
        == f"what changed from 0.1.0 to {__version__}: see {CHANGELOG} ({', '.join(changes.versions)})"
    )
    assert changes_since(__version__, __version__) is None


@pytest.mark.slow
def test_the_wheel_ships_the_changelog_and_the_version(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(REPO)]
    subprocess.run(build, capture_output=True, check=True, timeout=300)
    (wheel,) = tmp_path.glob("petrock-*.whl")
    assert wheel.name.startswith(f"petrock-{__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("petrock/CHANGELOG.md") == CHANGELOG.read_bytes()
        assert "petrock/templates/project/copier.yml" in archive.namelist()
