"""``petrock generate command|query|worker FEATURE/NAME`` (alias ``petrock g``), and ``petrock generate auth``.

The three take the same arguments, so one function defines them (see `_component_command`);
only workers show `--on`.
"""

# No `from __future__ import annotations`: `_component_command` builds each kind's `--on` option at
# run time, and typer must see it as an object, not as a string naming a local variable.

from typing import Annotated

import typer

from petrock.cli import app
from petrock.cli.options import AllowDirty, AsJson, DryRun, Force, NoInput
from petrock.cli.output import ensure_can_prompt, reports_errors, show_plan
from petrock.errors import UserError

generate_app = typer.Typer(
    help="Add a command, query or worker to a feature, registered and tested; or users and sign-in (auth).\n\n"
    "Examples:\n\n"
    "  petrock generate command posts/publish_draft\n\n"
    "  petrock g query posts/recent-drafts --dry-run\n\n"
    "  petrock g worker posts/notify_subscribers --on posts/create\n\n"
    "  petrock generate auth",
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

KINDS = {
    "command": "A command: a validated pydantic model and the state handler that applies it.\n\n"
    "Example: petrock generate command posts/publish_draft  (type posts/publish-draft)",
    "query": "A query: validated parameters and the handler that answers from state.\n\n"
    "Example: petrock generate query posts/recent_drafts  (GET /queries/posts/recent-drafts)",
    "worker": "A background worker: a CommandWorker with an on(...) handler, started and stopped by the app.\n\n"
    "Example: petrock generate worker posts/notify_subscribers --on posts/create",
}


def _component_command(kind: str) -> None:
    """Register ``petrock generate KIND``."""
    on = typer.Option(
        "--on",
        metavar="FEATURE/VERB",
        help="The message type it reacts to (default: FEATURE/create).",
        hidden=kind != "worker",
    )

    @generate_app.command(kind, help=KINDS[kind])
    @reports_errors
    def generate(
        target: Target = None,
        watches: Annotated[str | None, on] = None,
        dry_run: DryRun = False,
        as_json: AsJson = False,
        force: Force = False,
        allow_dirty: AllowDirty = False,
        no_input: NoInput = False,
    ) -> None:
        from petrock.generators.component import apply_and_commit, plan_component
        from petrock.project import Manifest, find_root, require_clean

        if watches is not None and kind != "worker":
            raise UserError(f"--on is for workers, not a {kind}", "drop it, or generate a worker")
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


for _kind in KINDS:
    _component_command(_kind)


@generate_app.command(
    "auth",
    help="Users and sign-in: a users feature with argon2id passwords, server-side sessions, a rate-limited\n"
    "sign-in, password resets by mail, and a guard on every page and API route.\n\n"
    "Examples:\n\n"
    "  petrock generate auth --dry-run\n\n"
    "  petrock generate auth && python -m APP users create-admin ann@example.com\n\n"
    "Undo it with `petrock feature remove users`.",
)
@reports_errors
def generate_auth(
    dry_run: DryRun = False,
    as_json: AsJson = False,
    force: Force = False,
    allow_dirty: AllowDirty = False,
) -> None:
    from petrock.generators.auth import FEATURE, plan_auth
    from petrock.generators.component import apply_and_commit
    from petrock.project import Manifest, find_root, require_clean

    root = find_root()
    manifest = Manifest.load(root)
    planned = plan_auth(root, manifest, force=force)
    described = {"generator": "auth", "feature": FEATURE}
    if dry_run:
        show_plan(planned.plan, dry_run=True, as_json=as_json, extra=described)
        return
    require_clean(root, allow_dirty=allow_dirty)
    message = "Generate auth (the users feature) with petrock"
    commit = apply_and_commit(planned.plan, planned.manifest, message, record_as=f"feature:{FEATURE}")
    show_plan(planned.plan, dry_run=False, as_json=as_json, extra={**described, "commit": commit})
    if as_json:
        return
    if not planned.plan.writes:
        typer.echo("\nauth is already generated and unchanged")
        return
    typer.echo(
        "\nNext: install the new dependency (pip install -e .), create the first admin with"
        f" `python -m {manifest.project_name} users create-admin EMAIL`, and set APP_SECRET_KEY for password resets."
    )
