"""``petrock new``: create an app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from petrock.cli import PlainUsage, app
from petrock.cli.options import AsJson, DryRun
from petrock.cli.output import reports_errors, show_plan


@app.command(cls=PlainUsage)
@reports_errors
def new(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The app's name: a lowercase Python identifier, also its package name."),
    ],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to create the app (default: ./NAME). Must be empty.")
    ] = None,
    parents: Annotated[bool, typer.Option("--parents", help="Create the missing parent folders of --dir.")] = False,
    no_git: Annotated[bool, typer.Option("--no-git", help="Do not run git init or commit.")] = False,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Create a new app NAME: Starlette + SQLite message log + workers, with tests.

    Examples:

      petrock new blog

      petrock new blog --dir ~/src/blog --no-git

      petrock new blog --dir ~/src/new/blog --parents

      petrock new blog --dry-run
    """
    from petrock.generators.new_project import create_project, plan_project

    target = directory if directory is not None else Path(name)
    plan, manifest = plan_project(name, target, parents=parents)
    if dry_run:
        show_plan(plan, dry_run=True, as_json=as_json)
        return
    result = create_project(plan, manifest, git_init=not no_git)
    show_plan(plan, dry_run=False, as_json=as_json, extra={"commit": result.commit, "root": str(result.root)})
    if not as_json:
        typer.echo(f"\ncreated {name} in {result.root}" + (f" (commit {result.commit[:10]})" if result.commit else ""))
        typer.echo("next steps:")
        typer.echo(f"  cd {target}")
        typer.echo("  petrock feature add posts")
        typer.echo("  petrock serve")
        typer.echo("  python3 -m venv .venv && .venv/bin/pip install -e '.[test]'    the app's environment (tests)")
