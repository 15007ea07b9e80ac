"""The ``petrock`` command line: argument parsing and printing only.

Each command group lives in its own module and registers itself on ``app``.
Heavy libraries (copier, jinja2, rich, libcst) are imported inside the
commands, so ``petrock --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import click
import typer
from typer.core import TyperCommand, TyperGroup

from petrock import __version__

# The order a user walks: make an app, grow it, run it, ship it; then the maintenance commands.
WALK_ORDER = ("new", "feature", "generate", "serve", "selftest", "build")
MAINTENANCE_ORDER = ("migrate", "upgrade", "check")


class WalkOrder(TyperGroup):
    """Lists commands in the order of a user's path, not alphabetically or by import order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)
        first = [name for name in WALK_ORDER if name in names]
        last = [name for name in MAINTENANCE_ORDER if name in names]
        middle = [name for name in names if name not in first and name not in last]
        return first + middle + last


class PlainUsage(TyperCommand):
    """Usage lines as click writes them, ``petrock new NAME``: recent typer wraps required arguments in
    braces (``{name}``), which reads like something to type."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece for piece in pieces]


app = typer.Typer(
    cls=WalkOrder,
    name="petrock",
    help="Scaffold event-sourced Python web apps.\n\n"
    "Examples:\n\n"
    "  petrock new blog\n\n"
    "  cd blog && petrock feature add posts\n\n"
    "  petrock serve",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"petrock {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Scaffold event-sourced Python web apps."""


# Command modules register themselves on `app` when imported.
from petrock.cli import build, feature, feature_field, feature_manage, generate, maintain, mcp, new, run  # noqa: E402, F401


def main() -> None:
    app(prog_name="petrock")
