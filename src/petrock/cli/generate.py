"""``petrock generate command|query|worker FEATURE/NAME`` (alias ``petrock g``)."""

from __future__ import annotations

from typing import Annotated

import typer

from petrock.cli import app
from petrock.cli.options import AllowDirty, AsJson, DryRun, Force, NoInput
from petrock.cli.output import ensure_can_prompt, reports_errors, show_plan

generate_app = typer.Typer(
    help="Add a command, query or worker to a feature, registered and tested.\n\n"
    "Examples:\n\n"
    "  petrock generate command posts/publish_draft\n\n"
    "  petrock g query posts/recent-drafts --dry-run\n\n"
    "  petrock g worker posts/notify_subscribers --on posts/create",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(generate_app, name="generate")
app.add_typer(generate_app, name="g", hidden=True)

Target = Annotated[
    str | None,
    typer.Argument(
        metavar="FEATURE/NAME", help="e.g. posts/publish_draft (or posts/publish-draft).", show_default=False
    ),
]


def _generate(
    kind: str,
    target: str | None,
    *,
    dry_run: bool,
    as_json: bool,
    force: bool,
    allow_dirty: bool,
    no_input: bool,
    watches: str | None = None,
) -> None:
    from petrock.generators.component import apply_and_commit, plan_component
    from petrock.project import Manifest, find_root, require_clean

    root = find_root()
    manifest = Manifest.load(root)
    if target is None:
        ensure_can_prompt(no_input, f"the {kind} to generate (FEATURE/NAME)")
        target = typer.prompt(f"{kind} to generate (FEATURE/NAME)")
    plan, updated, component = plan_component(root, manifest, kind, target, force=force, watches=watches)
    described = {"kind": kind, "component": f"{component.feature}/{component.name}", "registers": component.type}
    if dry_run:
        show_plan(plan, dry_run=True, as_json=as_json, extra=described)
        return
    require_clean(root, allow_dirty=allow_dirty)
    commit = apply_and_commit(
        plan,
        updated,
        f"Generate {kind} {component.type} with petrock",
        record_as=f"component:{component.feature}/{component.name}",
    )
    show_plan(plan, dry_run=False, as_json=as_json, extra={**described, "commit": commit})
    if not as_json and not plan.writes:
        typer.echo(f"\n{component.type} is already generated and unchanged")


@generate_app.command()
@reports_errors
def command(
    target: Target = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    force: Force = False,
    allow_dirty: AllowDirty = False,
    no_input: NoInput = False,
) -> None:
    """A command: a validated pydantic model and the state handler that applies it.

    Example: petrock generate command posts/publish_draft  (type posts/publish-draft)
    """
    _generate(
        "command", target, dry_run=dry_run, as_json=as_json, force=force, allow_dirty=allow_dirty, no_input=no_input
    )


@generate_app.command()
@reports_errors
def query(
    target: Target = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    force: Force = False,
    allow_dirty: AllowDirty = False,
    no_input: NoInput = False,
) -> None:
    """A query: validated parameters and the handler that answers from state.

    Example: petrock generate query posts/recent_drafts  (GET /queries/posts/recent-drafts)
    """
    _generate(
        "query", target, dry_run=dry_run, as_json=as_json, force=force, allow_dirty=allow_dirty, no_input=no_input
    )


@generate_app.command()
@reports_errors
def worker(
    target: Target = None,
    watches: Annotated[
        str | None, typer.Option("--on", help="The message type it reacts to (default: FEATURE/create).")
    ] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    force: Force = False,
    allow_dirty: AllowDirty = False,
    no_input: NoInput = False,
) -> None:
    """A background worker: a CommandWorker with an on(...) handler, started and stopped by the app.

    Example: petrock generate worker posts/notify_subscribers --on posts/create
    """
    _generate(
        "worker",
        target,
        dry_run=dry_run,
        as_json=as_json,
        force=force,
        allow_dirty=allow_dirty,
        no_input=no_input,
        watches=watches,
    )
