"""``petrock migrate jobs``: turn legacy ``jobs.py`` loops into workers the app runs.

The legacy pattern: a feature's ``jobs.py`` holds a ``Jobs(app)`` class whose
``start_*`` methods spawn endless loops (asyncio tasks or threads that sleep),
started by hand from the app's serve code and never stopped. Each loop that
can be read safely becomes a worker in the feature's ``worker.py``: the loop
body is ``work``, the sleep is ``poll_interval``, and the worker is registered
in ``register.py``. The code moves as libcst nodes, so the user's formatting
and comments come along. What cannot be converted safely stays where it is,
marked ``# petrock: could not migrate``, and is listed in the report.

The steps, one module each: ``find`` (start-up lines), ``analyse`` (jobs.py),
``rewrite`` (the new and edited files), ``verify`` (the gate), ``report``.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from petrock import git
from petrock.errors import DirtyTree, UserError
from petrock.plan import Change, Plan
from petrock.project import Manifest, require_clean

from .analyse import FeatureJobs, read_feature
from .find import find_start_ups
from .report import Migration
from .rewrite import edit_start_ups, plan_feature, taken_names
from .syntax import parse
from .verify import Verdict, verify


def plan_migration(root: Path, feature: str | None = None, *, allow_dirty: bool = False) -> Migration:
    """Read every legacy ``jobs.py`` and plan the conversion; nothing is written."""
    manifest = Manifest.load(root)
    package = manifest.package_dir(root)
    _require_worker_runtime(package)
    require_clean(root, allow_dirty=allow_dirty)
    names = sorted(path.parent.name for path in package.glob("*/jobs.py") if path.parent.name != "core")
    if feature is not None:
        if feature not in names:
            raise UserError(f"feature {feature!r} has no jobs.py", "there is nothing to migrate in it")
        names = [feature]
    if not names:
        raise UserError(f"no feature in {package.relative_to(root)} has a jobs.py", "there is nothing to migrate")

    features = {name: _read_feature_or_keep_it(package / name, name) for name in names}
    # Only modules that mention jobs can import or start them; parsing the rest would only cost time.
    files = {
        path: parse(path)
        for path in sorted(package.rglob("*.py"))
        if path.name != "jobs.py" and "__pycache__" not in path.parts and "jobs" in path.read_text().lower()
    }
    starts = find_start_ups(package, manifest.project_name, files, set(features))
    for jobs in features.values():
        jobs.reconcile(starts)

    migration = Migration(root, Plan(root), package=manifest.project_name)
    texts: dict[Path, str] = {}
    edit_start_ups(root, files, starts, features, migration, texts)
    taken = taken_names(package)
    for jobs in features.values():
        plan_feature(root, jobs, migration, texts, taken)
    for path, text in texts.items():
        migration.plan.write(path.relative_to(root).as_posix(), text, edit=True)
    return migration


def _read_feature_or_keep_it(folder: Path, name: str) -> FeatureJobs:
    """A jobs.py whose shape petrock's reader does not expect stays as it is, with the reason, rather
    than stopping the whole migration with a traceback."""
    try:
        return read_feature(folder, name)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:  # a shape it did not expect
        found = FeatureJobs(name, folder, cst.parse_module((folder / "jobs.py").read_text()))
        found.problem = f"petrock could not read it ({type(error).__name__}: {error}); please report this"
        return found


def verify_migration(migration: Migration, *, run_tests: bool = True) -> Verdict:
    """Run the gate on the planned result (in a temporary copy) and keep the verdict in the report."""
    migration.verdict = verify(
        migration.root,
        migration.plan,
        migration.package,
        run_tests=run_tests and bool(migration.converted),
        expected_workers=[c.name for c in migration.converted],
    )
    return migration.verdict


def apply_migration(migration: Migration) -> str | None:
    """Write the plan and commit petrock's own paths; returns the commit id (None when nothing was
    converted or no git). A failure after writing puts every file back as it was."""
    if migration.verdict is None or not migration.verdict.ok:
        raise VerificationFailed(migration)
    _refuse_edits_to_dirty_files(migration)
    written = migration.plan.apply()
    if not migration.converted or not git.is_repo(migration.root):
        return None
    try:
        return git.commit(migration.root, migration.commit_message, [c.path for c in written])
    except BaseException:
        restore(migration.root, written)
        raise


def restore(root: Path, changes: list[Change]) -> None:
    """Put each changed file back exactly as it was (created files go)."""
    for change in reversed(changes):
        target = root / change.path
        if change.old is None:
            target.unlink(missing_ok=True)
        else:
            with target.open("w", encoding="utf-8", newline="") as handle:
                handle.write(change.old)


def _refuse_edits_to_dirty_files(migration: Migration) -> None:
    """With --allow-dirty, petrock still never edits (and so commits) a file holding the user's uncommitted work."""
    if not git.is_repo(migration.root):
        return
    prefix = git.run(migration.root, "rev-parse", "--show-prefix").stdout.decode().strip()
    dirty = {path.removeprefix(prefix) for path in git.dirty_files(migration.root)}
    if touched := sorted(c.path for c in migration.plan.writes if c.path in dirty):
        raise DirtyTree(
            f"{', '.join(touched)} has uncommitted changes and petrock must edit it",
            "commit or stash your changes to it first",
        )


class VerificationFailed(UserError):
    """The migrated app would not work: nothing was written."""

    def __init__(self, migration: Migration) -> None:
        count = len(migration.verdict.problems) if migration.verdict else 0
        super().__init__(
            f"the migrated app would not work ({count} problems, listed above); nothing was written or committed",
            "fix what the list names, or migrate one feature at a time (`petrock migrate jobs FEATURE`)",
        )


def _require_worker_runtime(package: Path) -> None:
    app_source = package / "core" / "app.py"
    has_runtime = (package / "core" / "worker.py").is_file() and app_source.is_file()
    if not has_runtime or "def register_worker" not in app_source.read_text():
        raise UserError(
            "this app's core has no worker runtime (core/worker.py, App.register_worker)",
            "run `petrock upgrade` first to bring it in, then migrate",
        )
