"""``petrock feature field add|rename|remove|change``: change a feature's fields; old messages stay readable."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from petrock.cli import PlainUsage
from petrock.cli.feature import feature_app
from petrock.cli.options import AllowDirty, AsJson, DryRun
from petrock.cli.output import reports_errors, status_word

field_app = typer.Typer(
    help="Change a feature's fields: add, rename, remove, change a type. Old messages in the log are read "
    "through upcasters (FEATURE/upcasters.py), never rewritten.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
feature_app.add_typer(field_app, name="field")

Feature = Annotated[str, typer.Argument(metavar="FEATURE", help="The feature whose fields change.")]
VerifyTests = Annotated[
    bool,
    typer.Option("--verify-tests/--no-verify-tests", help="Run the app's own tests in the gate before writing."),
]


@field_app.command("add", cls=PlainUsage)
@reports_errors
def add(
    feature: Feature,
    spec: Annotated[str, typer.Argument(metavar="FIELD", help="name:type[:argument][:optional], as in `feature add`.")],
    default: Annotated[
        str | None,
        typer.Option("--default", metavar="VALUE", help="The value old messages get (needed for a required field)."),
    ] = None,
    dry_run: DryRun = False,
    allow_dirty: AllowDirty = False,
    as_json: AsJson = False,
    verify_tests: VerifyTests = True,
) -> None:
    """Add a field to FEATURE; its old create and update messages get VALUE (or nothing, if optional).

    Examples:

      petrock feature field add orders discount:decimal --default 0

      petrock feature field add orders note:text:optional --dry-run
    """
    _run(feature, "add", (spec,), default=default, dry_run=dry_run, allow_dirty=allow_dirty, as_json=as_json,
         verify_tests=verify_tests)  # fmt: skip


@field_app.command("rename", cls=PlainUsage)
@reports_errors
def rename(
    feature: Feature,
    old: Annotated[str, typer.Argument(metavar="OLD", help="The field's name now.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="Its new name.")],
    dry_run: DryRun = False,
    allow_dirty: AllowDirty = False,
    as_json: AsJson = False,
    verify_tests: VerifyTests = True,
) -> None:
    """Rename a field of FEATURE; old messages are read with the new name.

    Examples:

      petrock feature field rename orders note comment
    """
    _run(feature, "rename", (old, new), dry_run=dry_run, allow_dirty=allow_dirty, as_json=as_json,
         verify_tests=verify_tests)  # fmt: skip


@field_app.command("remove", cls=PlainUsage)
@reports_errors
def remove(
    feature: Feature,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The field to remove.")],
    dry_run: DryRun = False,
    allow_dirty: AllowDirty = False,
    as_json: AsJson = False,
    verify_tests: VerifyTests = True,
) -> None:
    """Remove a field from FEATURE; old messages keep its value in the log, the feature no longer shows it.

    Examples:

      petrock feature field remove orders note
    """
    _run(feature, "remove", (name,), dry_run=dry_run, allow_dirty=allow_dirty, as_json=as_json,
         verify_tests=verify_tests)  # fmt: skip


@field_app.command("change", cls=PlainUsage)
@reports_errors
def change(
    feature: Feature,
    spec: Annotated[str, typer.Argument(metavar="NAME:TYPE", help="The field with its new type.")],
    dry_run: DryRun = False,
    allow_dirty: AllowDirty = False,
    as_json: AsJson = False,
    verify_tests: VerifyTests = True,
) -> None:
    """Change the type of a field of FEATURE.

    int -> float or decimal, str -> text, more choices, and any type -> optional get
    their upcaster written. Any other change gets a stub in FEATURE/upcasters.py and a
    test with a frozen old payload that fails until you write the conversion.

    Examples:

      petrock feature field change orders qty:decimal

      petrock feature field change orders due:date:optional
    """
    _run(feature, "change", (spec,), dry_run=dry_run, allow_dirty=allow_dirty, as_json=as_json,
         verify_tests=verify_tests)  # fmt: skip


def _run(
    feature: str,
    kind: str,
    arguments: tuple[str, ...],
    *,
    default: str | None = None,
    dry_run: bool,
    allow_dirty: bool,
    as_json: bool,
    verify_tests: bool,
) -> None:
    from petrock.generators.field import apply_field_change, plan_field_change, prove
    from petrock.project import find_root

    root = find_root()
    planned = plan_field_change(root, feature, kind, arguments, default=default, allow_dirty=allow_dirty or dry_run)
    applied = None
    if not dry_run:
        prove(planned, run_tests=verify_tests)
        applied = apply_field_change(planned)
    commit = applied.commit if applied else None
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "commit": commit, **planned.to_json()}, indent=2))
        return
    for file in planned.upgrade.files:
        if file.status.value != "identical":
            typer.echo(f"{status_word(file.status.value)}  {file.path}" + (f"  ({file.note})" if file.note else ""))
    messages = f"{feature}/create and {feature}/update are written at version {planned.version}"
    if dry_run:
        if diff := planned.upgrade.plan.diff():
            typer.echo("\n" + diff.rstrip("\n"))
        typer.echo(f"\ndry run: nothing was written ({messages} after it)")
        return
    checks = ", ".join(planned.verdict.checks) if planned.verdict else ""
    typer.echo(f"\n{planned.change.describe()}: {messages}; checked: {checks} (commit {(commit or '')[:10]})")
    if planned.stub:
        typer.echo(
            f"write the conversion in {planned.stub}: tests/test_{feature}_upcasters.py fails until you do, "
            "and the next start cannot rebuild before"
        )
    typer.echo("the next start rebuilds the projection from the log, reading old messages through the upcasters")
