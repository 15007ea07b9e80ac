"""``petrock generate auth``: users, sign-in, sessions and password resets, as a ``users`` feature.

The feature is rendered from ``templates/auth`` into ``src/APP/users`` and recorded in
the manifest like any feature (``generator = "auth"``), so ``upgrade`` re-renders it
and ``feature remove users`` undoes it. Besides its files it edits three lines of
the app: its registration in ``features.py``, its ``users`` command group in
``cli.py``, and the ``pwdlib[argon2]`` dependency in ``pyproject.toml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from petrock import git, inject
from petrock.errors import AlreadyExists, UserError
from petrock.generators.component import copy_manifest
from petrock.generators.feature import register_in_features
from petrock.plan import Plan
from petrock.project import MANIFEST, Manifest
from petrock.render import render_folder
from petrock.templates import template_version, templates_dir

FEATURE = "users"
GENERATOR = "auth"
DEPENDENCY = '    "pwdlib[argon2]>=0.2",  # argon2id password hashes (the users feature)'
CLI_IMPORT = "from .users.cli import users_cli"
CLI_COMMAND = 'cli.add_typer(users_cli, name="users")'
DEPENDENCIES_START = re.compile(r"^dependencies = \[\n", re.MULTILINE)


@dataclass(frozen=True)
class AuthPlan:
    plan: Plan
    manifest: Manifest  # as it will be after


def is_auth(entry: dict[str, object]) -> bool:
    """Whether a manifest feature entry was made by ``generate auth``."""
    return entry.get("generator") == GENERATOR


def render_auth(project_name: str) -> dict[str, str]:
    """Every file of the users feature, by path from the app root."""
    return render_folder(templates_dir() / GENERATOR, {"project_name": project_name})


def plan_auth(root: Path, manifest: Manifest, *, force: bool = False) -> AuthPlan:
    """Check the app and plan the users feature; raises a UserError and writes nothing if it cannot."""
    entry = manifest.features.get(FEATURE)
    if entry is not None and not is_auth(entry):
        raise AlreadyExists(
            f"the app has a feature {FEATURE!r} that `generate auth` did not make",
            f"remove it (`petrock feature remove {FEATURE}`) or rename it first",
        )
    if entry is None and not force and (manifest.package_dir(root) / FEATURE).exists():
        raise AlreadyExists(
            f"src/{manifest.project_name}/{FEATURE} already exists", "move it away, or pass --force to render over it"
        )
    updated = copy_manifest(manifest)
    updated.features[FEATURE] = {**(entry or {}), "generator": GENERATOR, "fields": []}
    if entry is None or not entry.get("template_version"):
        updated.features[FEATURE]["template_version"] = template_version()
    files = render_auth(manifest.project_name)
    plan = Plan(root, pristine=manifest.files, force=force)
    for path, text in files.items():
        plan.write(path, text)
    package = f"src/{manifest.project_name}"
    for path, edit in (
        (f"{package}/features.py", lambda text, path: register_in_features(text, FEATURE, path)),
        (f"{package}/cli.py", add_cli_lines),
        ("pyproject.toml", add_dependency),
    ):
        current = (root / path).read_text(encoding="utf-8")
        plan.write(path, edit(current, path), edit=True)  # registration lines, as `feature add` edits features.py
    updated.files.update({path: git.blob_id(text) for path, text in files.items()})
    plan.write(MANIFEST, updated.dumps(), edit=True)
    return AuthPlan(plan, updated)


def add_cli_lines(text: str, path: str = "cli.py") -> str:
    text = inject.add_line(text, "imports", CLI_IMPORT, path)
    return inject.add_line(text, "commands", CLI_COMMAND, path)


def remove_cli_lines(text: str, path: str = "cli.py") -> str:
    text = inject.remove_line(text, "imports", CLI_IMPORT, path)
    return inject.remove_line(text, "commands", CLI_COMMAND, path)


def add_dependency(text: str, path: str = "pyproject.toml") -> str:
    """``pyproject.toml`` with pwdlib[argon2] first in the app's dependencies (once)."""
    if DEPENDENCY in text:
        return text
    start = DEPENDENCIES_START.search(text)
    if start is None:
        raise UserError(f"{path} has no `dependencies = [` list", 'add `"pwdlib[argon2]>=0.2"` to it by hand')
    return text[: start.end()] + DEPENDENCY + "\n" + text[start.end() :]


def remove_dependency(text: str) -> str:
    return text.replace(DEPENDENCY + "\n", "", 1)
