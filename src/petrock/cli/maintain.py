"""Keeping an existing app current: ``petrock migrate jobs``, ``petrock upgrade``, ``petrock check``."""

from __future__ import annotations

import json
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
        str | None, typer.Argument(help="Only this feature (default: every feature with a jobs.py).")
    ] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    allow_dirty: AllowDirty = False,
) -> None:
    """Turn the loops of legacy jobs.py files into workers run by the app.

    Each loop's body becomes a worker's work(), its sleep the poll_interval; the
    workers are registered in the feature's register.py, the hand-written
    start-up lines are removed, and jobs.py goes. What cannot be converted
    safely stays, marked `# petrock: could not migrate`, and is listed.

    Examples:

      petrock migrate jobs --dry-run

      petrock migrate jobs orders
    """
    from petrock.generators.migrate import apply_migration, plan_migration
    from petrock.project import find_root

    migration = plan_migration(find_root(), feature, allow_dirty=allow_dirty or dry_run)
    commit = None if dry_run else apply_migration(migration)
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "commit": commit, **migration.to_json()}, indent=2))
        return
    _status_lines((c.action.value, c.path, c.note) for c in migration.plan)
    typer.echo("")
    typer.echo(migration.report())
    if dry_run:
        if diff := migration.plan.diff():
            typer.echo("\n" + diff.rstrip("\n"))
        typer.echo("\ndry run: nothing was written")
    elif commit:
        typer.echo(f"\ncommitted {commit[:10]}: {migration.commit_message}")


@app.command()
@reports_errors
def upgrade(
    feature: Annotated[str | None, typer.Option("--feature", help="Upgrade this feature only.")] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    allow_dirty: AllowDirty = False,
) -> None:
    """Bring the installed templates' changes into this app, keeping your edits (3-way merge).

    Clean merges are applied and committed. Overlapping changes get conflict
    markers, are listed, and nothing is committed: resolve them, then commit
    (or `git reset --hard` to abandon the upgrade).

    Examples:

      petrock upgrade --dry-run

      petrock upgrade --feature posts
    """
    from petrock.generators.upgrade import apply_upgrade, plan_upgrade
    from petrock.project import find_root

    planned = plan_upgrade(find_root(), feature=feature, allow_dirty=allow_dirty or dry_run)
    applied = None if dry_run else apply_upgrade(planned)
    if as_json:
        result = {"dry_run": dry_run, **planned.to_json()}
        if applied is not None:
            result |= {"commit": applied.commit, "conflicts": applied.conflicts}
        typer.echo(json.dumps(result, indent=2))
    else:
        _status_lines((f.status.value, f.path, f.note) for f in planned.files)
        if dry_run:
            if diff := planned.plan.diff():
                typer.echo("\n" + diff.rstrip("\n"))
            typer.echo(f"\ndry run: nothing was written (templates {planned.from_version} -> {planned.to_version})")
        elif applied is not None and applied.commit:
            typer.echo(f"\nupgraded to templates {planned.to_version} (commit {applied.commit[:10]})")
    if applied is not None and applied.conflicts:
        raise ConflictError(
            f"conflict markers in {', '.join(applied.conflicts)}; nothing was committed",
            "resolve them and `git commit -a`, or `git reset --hard` to abandon the upgrade",
        )
    if dry_run and planned.conflicts:
        raise typer.Exit(1)


@app.command()
@reports_errors
def check(as_json: AsJson = False) -> None:
    """Exit non-zero if the app is behind the installed templates or has conflict markers (for CI).

    Examples:

      petrock check

      petrock check --json
    """
    from petrock.generators.upgrade import check as check_app
    from petrock.project import find_root

    result = check_app(find_root())
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        if not result.ok:
            raise typer.Exit(1)
        return
    if not result.ok:
        raise UserError(result.reason())
    typer.echo(f"ok: {result.reason()}")
