"""``petrock migrate jobs``: put every job the app starts by hand under its runtime.

The legacy pattern: the app's start-up (its lifespan, startup handlers, serve code,
and whatever they call, in feature ``jobs.py`` files or anywhere else) starts
background jobs itself (asyncio tasks, threads, timers, executors, schedulers) and
never stops them. Each job becomes a worker the app starts and stops: *native* when
its loop reads safely (one pass of the loop is the worker's ``work``, its sleep the
``poll_interval``), else *hosted*: a generic worker (``core/hosted.py``) runs the
job's start code as it was written and stops what it started. The start line itself
becomes ``run_with_server(app, name)``, so each job runs where it ran (with the
server, not in tests that only build the app). Jobs the server never starts are left
where they are, marked ``# petrock: could not migrate``, with the reason.

The steps, one module each: ``program`` (the app's modules), ``spawns`` (every job
start), ``server`` (what runs with the server), ``jobs`` (what becomes of each),
``loops`` and ``native`` (native workers), ``hosting`` (hosted jobs), ``sites``,
``edits``, ``homes`` and ``assemble`` (the files), ``verify`` (the gate), ``report``.
"""

from __future__ import annotations

from pathlib import Path

from petrock import git
from petrock.errors import DirtyTree, UserError
from petrock.plan import Change, Plan
from petrock.project import Manifest, require_clean

from .assemble import assemble
from .jobs import find_jobs
from .program import read_program
from .report import Migration
from .server import command_roots, reach, server_roots
from .serving import Expected
from .spawns import find_spawns
from .syntax import remembering
from .verify import Verdict, verify


def plan_migration(root: Path, feature: str | None = None, *, allow_dirty: bool = False) -> Migration:
    """Find every job the app starts by hand and plan its migration; nothing is written."""
    manifest = Manifest.load(root)
    package = manifest.package_dir(root)
    _require_worker_runtime(package)
    require_clean(root, allow_dirty=allow_dirty)
    with remembering():
        return _plan(root, manifest, package, feature)


def _plan(root: Path, manifest: Manifest, package: Path, feature: str | None) -> Migration:
    program = read_program(package, manifest.project_name)
    spawns = find_spawns(program)
    server = reach(program, server_roots(program), spawns)
    commands = {how: reach(program, [(function, how)], spawns) for function, how in command_roots(program)}
    jobs = find_jobs(program, spawns, server, commands)
    if feature is not None:
        jobs = [job for job in jobs if (job.owner.feature or job.owner.stem) == feature]
        if not jobs:
            raise UserError(f"feature {feature!r} starts no job by hand", "there is nothing to migrate in it")
    migration = Migration(root, Plan(root), package=manifest.project_name)
    if jobs:
        assemble(program, jobs, migration)
    return migration


def verify_migration(migration: Migration, *, run_tests: bool = True, serve: bool = True) -> Verdict:
    """Run the gate on the planned result (in a temporary copy) and keep the verdict in the report."""
    expected = [Expected(job.worker, job.outcome == "hosted", job.guarded or None) for job in migration.migrated]
    migration.verdict = verify(
        migration.root,
        migration.plan,
        migration.package,
        run_tests=run_tests and bool(migration.migrated),
        expected_workers=[job.worker for job in migration.migrated],
        serve=expected if serve else None,
    )
    return migration.verdict


def apply_migration(migration: Migration) -> str | None:
    """Write the plan and commit petrock's own paths; returns the commit id (None when nothing was
    converted or no git). A failure after writing puts every file back as it was."""
    if migration.verdict is None or not migration.verdict.ok:
        raise VerificationFailed(migration)
    _refuse_edits_to_dirty_files(migration)
    written = migration.plan.apply()
    if not migration.migrated or not git.is_repo(migration.root):
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
