"""Keeping an existing app current: ``petrock migrate jobs``, ``petrock upgrade``, ``petrock check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from petrock.cli import app
from petrock.cli.options import AllowDirty, AsJson, DryRun
from petrock.cli.output import reports_errors, status_word
from petrock.errors import ConflictError, UserError

if TYPE_CHECKING:
    from collections.abc import Iterable

migrate_app = typer.Typer(
    help="Move an app off old patterns.", no_args_is_help=True, rich_markup_mode=None, add_completion=False
)
app.add_typer(migrate_app, name="migrate")


def _status_lines(rows: Iterable[tuple[str, str, str]]) -> None:
    """``status path (note)`` per file, as the other generators print them."""
    for word, path, note in rows:
        typer.echo(f"{status_word(word)}  {path}" + (f"  ({note})" if note else ""))


@migrate_app.command("jobs")
@reports_errors
def migrate_jobs(
    feature: Annotated[
        str | None,
        typer.Argument(
            metavar="FEATURE", help="Only this feature (default: every feature with a jobs.py).", show_default=False
        ),
    ] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    allow_dirty: AllowDirty = False,
    verify_tests: Annotated[
        bool, typer.Option("--verify-tests/--no-verify-tests", help="Run the app's own tests in the gate.")
    ] = True,
    verify_serve: Annotated[
        bool,
        typer.Option(
            "--verify-serve/--no-verify-serve", help="Serve the migrated app in the gate and see every job run."
        ),
    ] = True,
    adopt_first: Annotated[
        bool, typer.Option("--adopt", help="First write and commit .petrock.toml for an app that has none.")
    ] = False,
) -> None:
    """Turn the loops of legacy jobs.py files into workers run by the app.

    Each loop's body becomes a worker's work(), its sleep the poll_interval; the
    workers are registered in the feature's register.py, the hand-written
    start-up lines are removed, and jobs.py goes. What cannot be converted
    safely stays, marked `# petrock: could not migrate`, and is listed.

    Nothing is written unless the migrated app passes a gate, run on a copy:
    the files compile, no name is undefined or left unused, build_app() works
    with unique worker names, and the app's tests pass.

    Examples:

      petrock migrate jobs --dry-run

      petrock migrate jobs orders

      petrock migrate jobs --adopt     (an app without .petrock.toml)
    """
    from petrock.generators.migrate import VerificationFailed, apply_migration, plan_migration, verify_migration

    root = _app_root(adopt_first and not dry_run, as_json=as_json)
    migration = plan_migration(root, feature, allow_dirty=allow_dirty or dry_run)
    verdict = verify_migration(migration, run_tests=verify_tests, serve=verify_serve) if migration.plan.writes else None
    passed = verdict is None or verdict.ok
    commit = None if dry_run or not passed or not migration.plan.writes else apply_migration(migration)
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "commit": commit, **migration.to_json()}, indent=2))
        if not passed:
            raise typer.Exit(VerificationFailed.exit_code)
        return
    _status_lines((c.action.value, c.path, c.note) for c in migration.plan)
    typer.echo("")
    typer.echo(migration.report())
    if not passed:
        for problem in verdict.problems:
            typer.echo(f"  {problem}", err=True)
        raise VerificationFailed(migration)
    if dry_run:
        if diff := migration.plan.diff():
            typer.echo("\n" + diff.rstrip("\n"))
        typer.echo("\ndry run: nothing was written")
    elif commit:
        typer.echo(f"\ncommitted {commit[:10]}: {migration.commit_message}")


def _app_root(adopt_first: bool, *, as_json: bool) -> Path:
    """The app's root; with ``adopt_first``, an app without ``.petrock.toml`` is adopted first."""
    from petrock.errors import NotInApp
    from petrock.generators.migrate.adopt import adopt, find_legacy_root
    from petrock.project import find_root

    try:
        return find_root()
    except NotInApp:
        legacy = find_legacy_root()
        if not adopt_first:
            raise NotInApp(
                f"{legacy} has no .petrock.toml",
                "run `petrock adopt` (or pass --adopt) to record the app, then migrate",
            ) from None
    _, commit = adopt(legacy)
    if not as_json:
        typer.echo(f"adopted {legacy.name}: wrote .petrock.toml" + (f" (commit {commit[:10]})" if commit else ""))
    return legacy


@app.command("adopt")
@reports_errors
def adopt_app() -> None:
    """Record an app made before petrock kept a manifest: write .petrock.toml from what is there, and commit it.

    Then every command works on it (`petrock migrate jobs` first). The templates
    version it was made from is unknown and recorded as 0.0.0.

    Examples:

      petrock adopt
    """
    from petrock.generators.migrate.adopt import adopt, find_legacy_root

    root = find_legacy_root()
    manifest, commit = adopt(root)
    features = ", ".join(manifest.features) or "no features"
    typer.echo(f"adopted {manifest.project_name} ({features}): wrote .petrock.toml")
    if commit:
        typer.echo(f"committed {commit[:10]}")


# Said after an upgrade that changes the app's dependencies: its environment does not follow by itself.
REINSTALL_HINT = (
    "pyproject.toml changed (dependencies may have): reinstall the app's environment, "
    "e.g. `.venv/bin/pip install -e '.[test]'`"
)

# Said after an upgrade that changes the app's code: its state is rebuilt from the log where that code changed.
REBUILD_HINT = (
    "the app's next start rebuilds from the log each projection whose code changed (503s and a progress "
    "bar meanwhile): `python -m {package} projections status` says which; on a big log, "
    "`python -m {package} projections rebuild` with the app stopped does it ahead"
)


@app.command()
@reports_errors
def upgrade(
    feature: Annotated[str | None, typer.Option("--feature", help="Upgrade this feature only.")] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    allow_dirty: AllowDirty = False,
    resume: Annotated[bool, typer.Option("--continue", help="Commit an upgrade whose conflicts you resolved.")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Undo an upgrade stopped by conflicts.")] = False,
) -> None:
    """Bring the installed templates' changes into this app, keeping your edits (3-way merge).

    Clean merges are applied and committed. Overlapping changes get conflict
    markers, are listed, and a merge is left in progress: resolve them, then
    `petrock upgrade --continue` (or `git add` + `git commit`), or
    `petrock upgrade --abort`. With nothing to bring in, nothing is written.

    Examples:

      petrock upgrade --dry-run

      petrock upgrade --feature posts
    """
    from petrock.generators.upgrade import abort_upgrade, apply_upgrade, continue_upgrade, plan_upgrade
    from petrock.project import find_root

    if resume or abort:
        if resume and abort:
            raise UserError("--continue and --abort cannot be used together", "choose one")
        if resume:
            commit = continue_upgrade(find_root())
            typer.echo(json.dumps({"commit": commit}) if as_json else f"upgrade committed ({commit[:10]})")
        else:
            restored = abort_upgrade(find_root())
            typer.echo(
                json.dumps({"restored": restored}) if as_json else f"upgrade aborted: {len(restored)} files put back"
            )
        return
    planned = plan_upgrade(find_root(), feature=feature, allow_dirty=allow_dirty or dry_run)
    applied = None if dry_run else apply_upgrade(planned)
    if as_json:
        result = {"dry_run": dry_run, **planned.to_json()}
        if applied is not None:
            result |= {"commit": applied.commit, "conflicts": applied.conflicts}
        typer.echo(json.dumps(result, indent=2))
    elif planned.up_to_date:
        typer.echo(f"already up to date with templates {planned.to_version}: nothing to write")
    else:
        _status_lines((f.status.value, f.path, f.note) for f in planned.files if f.status != "identical")
        if changes := planned.changes():
            typer.echo(f"\n{changes.pointer()}")
        if dry_run:
            if diff := planned.plan.diff():
                typer.echo("\n" + diff.rstrip("\n"))
            typer.echo(f"\ndry run: nothing was written (templates {planned.from_version} -> {planned.to_version})")
        elif applied is not None and applied.commit:
            typer.echo(f"\nupgraded to templates {planned.to_version} (commit {applied.commit[:10]})")
        if any(f.path == "pyproject.toml" and f.status != "identical" for f in planned.files):
            typer.echo(f"\n{REINSTALL_HINT}")
        if any(f.path.endswith(".py") and f.path.startswith("src/") and f.status != "identical" for f in planned.files):
            typer.echo("\n" + REBUILD_HINT.format(package=planned.manifest.project_name))
    if applied is not None and applied.conflicts:
        raise ConflictError(
            f"conflict markers in {', '.join(applied.conflicts)}; nothing was committed",
            "resolve them, then `petrock upgrade --continue` (or `git add` them and `git commit`); "
            "`petrock upgrade --abort` undoes the upgrade",
        )
    if dry_run and planned.conflicts:
        raise typer.Exit(1)


@app.command()
@reports_errors
def check(as_json: AsJson = False) -> None:
    """Exit non-zero if the installed templates would render any file differently, or conflict markers remain (CI).

    Lists the files an upgrade would bring changes to; warns when the versions
    petrock generated are missing from this clone.

    Examples:

      petrock check

      petrock check --json
    """
    from petrock.generators.upgrade import check as check_app
    from petrock.project import find_root

    result = check_app(find_root())
    for warning in result.warnings():
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        if not result.ok:
            raise typer.Exit(1)
        return
    if not result.ok:
        raise UserError(result.reason())
    typer.echo(f"ok: {result.reason()}")
