"""``petrock new``: render the project template with copier into a Plan, then create the app."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from petrock import __version__, git
from petrock.errors import AlreadyExists, NotInApp, UserError
from petrock.names import validate_project_name
from petrock.plan import Plan
from petrock.project import MANIFEST, Manifest, find_root
from petrock.templates import template_version, templates_dir


@dataclass(frozen=True)
class Created:
    root: Path
    commit: str | None


def render_project(name: str, made_with: str = __version__) -> dict[str, str]:
    """Every file of a new app, path -> text, rendered by copier in a scratch directory (or kept from an
    earlier render of the same template and answers, see render_cache.py).

    ``made_with`` is the petrock version the app names as its maker (its README): an upgrade
    renders the version recorded at generation, so a new petrock version alone changes no file.
    """
    from petrock.generators import render_cache

    answers = {"project_name": name, "petrock_version": made_with}
    key = render_cache.render_key(templates_dir() / "project", answers)
    if (kept := render_cache.recall(key)) is not None:
        return kept
    files = _copier_render(answers)
    render_cache.remember(key, files)
    return files


def _copier_render(answers: dict[str, str]) -> dict[str, str]:
    from copier import run_copy

    with tempfile.TemporaryDirectory(prefix="petrock-new-") as scratch:
        run_copy(
            str(templates_dir() / "project"),
            scratch,
            data=answers,
            defaults=True,
            quiet=True,
            unsafe=False,
            overwrite=True,
        )
        root = Path(scratch)
        return {
            path.relative_to(root).as_posix(): path.read_text() for path in sorted(root.rglob("*")) if path.is_file()
        }


def plan_project(name: str, target: Path, *, parents: bool = False) -> tuple[Plan, Manifest]:
    """Validate, render, and plan the new app at ``target``; nothing is written.

    A missing parent folder is usually a typo in ``--dir``, so it is created only when asked.
    """
    validate_project_name(name)
    parent = target.absolute().parent
    if not parents and not parent.is_dir():
        raise UserError(f"the folder {parent} does not exist", "create it first, or pass --parents to create it")
    with contextlib.suppress(NotInApp):
        enclosing = find_root(target.parent if not target.exists() else target)
        if enclosing.resolve() == target.resolve():  # `petrock new shop` again, beside the first
            raise AlreadyExists(f"{target} already exists: it is an app", "choose another name or --dir")
        raise AlreadyExists(f"{target} would be inside the app at {enclosing}", "create the new app elsewhere")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AlreadyExists(f"{target} already exists and is not empty", "choose another name or --dir")
    files = render_project(name)
    manifest = Manifest(
        project_name=name,
        template_version=template_version(),
        petrock_version=__version__,
        answers={"project_name": name},
        files={path: git.blob_id(text) for path, text in files.items()},
    )
    plan = Plan(target)
    for path, text in files.items():
        plan.write(path, text)
    plan.write(MANIFEST, manifest.dumps())
    return plan, manifest


def create_project(plan: Plan, manifest: Manifest, *, git_init: bool = True) -> Created:
    """Write the planned app, then ``git init`` and commit; on any failure remove what was made."""
    target = plan.root
    existed = target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        plan.apply()
        commit = _commit(target, manifest) if git_init else None
    except BaseException:
        if existed:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return Created(target.resolve(), commit)


def _commit(root: Path, manifest: Manifest) -> str:
    if shutil.which("git") is None:
        raise UserError("git is not installed", "install git, or pass --no-git")
    git.init(root)
    commit = git.commit(root, f"Create {manifest.project_name} with petrock {__version__}")
    return record_commit(root, manifest, "project", commit)


def record_commit(root: Path, manifest: Manifest, key: str, commit: str) -> str:
    """Write the generation commit into the manifest and commit that on its own.

    A commit cannot contain its own id, so the id is recorded in a small
    follow-up commit; the file contents themselves are found by blob id.
    """
    manifest.commits[key] = commit
    (root / MANIFEST).write_text(manifest.dumps())
    git.commit(root, f"Record petrock generation {commit[:10]} ({key})", [MANIFEST])
    return commit
