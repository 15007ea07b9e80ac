"""``petrock feature``: add a feature to the app (``petrock feature NAME`` is short for ``feature add NAME``).

Other subcommands (``list``, ``remove``) register themselves on ``feature_app``.
"""

from __future__ import annotations

from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from petrock.cli import PlainUsage, app
from petrock.cli.options import AllowDirty, AsJson, DryRun, Force
from petrock.cli.output import reports_errors, show_plan


class AddIsDefault(TyperGroup):
    """A group in which an unknown subcommand is a feature name: ``feature posts`` runs ``feature add posts``."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            args = ["add", *args]
        return super().resolve_command(ctx, args)


feature_app = typer.Typer(
    cls=AddIsDefault,
    help="Add features to the app (commands, queries, state, pages and a summary worker).\n\n"
    "`petrock feature NAME` is short for `petrock feature add NAME`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(feature_app, name="feature")


@feature_app.command("add", cls=PlainUsage)
@reports_errors
def add(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The feature's name: a lowercase Python identifier, usually plural.")
    ],
    fields: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[FIELD]...",
            help="name:type[:argument][:optional][:RULE=VALUE]...; types: str text int float decimal bool date "
            "datetime email url choice:a,b,c ref:FEATURE; rules: min= max= (a value, or a str/text length), "
            "default=, label=. Default: title:str content:text.",
            show_default=False,
        ),
    ] = None,
    summarize: Annotated[
        str | None,
        typer.Option(
            "--summarize", metavar="FIELD", help="The text field the summary worker summarizes (default: the first)."
        ),
    ] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="No summary worker.")] = False,
    title: Annotated[
        str | None,
        typer.Option(
            "--title",
            metavar="FIELD",
            help="The str field that names an item (link text, heading); default: the first str field named "
            "title, name or label, else the first str field.",
        ),
    ] = None,
    owned: Annotated[
        bool,
        typer.Option(
            "--owned",
            help="Items belong to the signed-in user who creates them: members see and change only their own, "
            "admins all (needs `petrock generate auth`).",
        ),
    ] = False,
    dry_run: DryRun = False,
    force: Force = False,
    allow_dirty: AllowDirty = False,
    as_json: AsJson = False,
) -> None:
    """Add feature NAME to the app: render it into src/APP/NAME/, register it in features.py, commit.

    Each FIELD gets its command field, state, list column, filter (choice, bool, ref), form
    input, detail row and tests. A summary worker summarizes the first text field.
    Run it anywhere inside the app.

    Examples:

      petrock feature add posts

      petrock feature add customers name:str email:email

      petrock feature add orders customer:ref:customers total:decimal paid:bool

      petrock feature add tasks due:date:optional done:bool --no-worker

      petrock feature add books isbn:str:label=ISBN title:str price:decimal:optional:min=0 --title title

      petrock feature add notes title:str body:text --owned

      petrock feature order_items --dry-run
    """
    from petrock.generators.feature import add_feature, plan_feature

    planned = plan_feature(
        name,
        fields or (),
        summarize=summarize,
        worker=not no_worker,
        title=title,
        owned=owned,
        force=force,
        allow_dirty=allow_dirty or dry_run,
    )
    extra = {
        "feature": name,
        "root": str(planned.root),
        "fields": planned.manifest.features[name]["fields"],
        "owned": owned,
    }
    if dry_run:
        show_plan(planned.plan, dry_run=True, as_json=as_json, extra=extra)
        return
    commit = add_feature(planned)
    show_plan(planned.plan, dry_run=False, as_json=as_json, extra={**extra, "commit": commit})
    if as_json:
        return
    committed = f" (commit {commit[:10]})" if commit else ""
    kebab = name.replace("_", "-")
    typer.echo(f"\nadded feature {name}{committed}")
    typer.echo("next steps:")
    typer.echo(f"  .venv/bin/python -m pytest tests/test_{name}.py   its tests (the app's README sets up .venv)")
    typer.echo(f"  petrock serve                        then open http://127.0.0.1:8080/{kebab}")
    if planned.manifest.features[name]["summarize"]:
        typer.echo("  SUMMARY_API_URL=http://127.0.0.1:11434/v1 SUMMARY_MODEL=llama3.2 petrock serve")
        typer.echo("                                       summaries from an OpenAI-compatible API (default: offline)")
