"""The ``petrock`` command line: argument parsing and printing only.

Each command group lives in its own module and registers itself on ``app``.
Heavy libraries (copier, jinja2, rich, libcst) are imported inside the
commands, so ``petrock --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from petrock import __version__

app = typer.Typer(
    name="petrock",
    help="Scaffold event-sourced Python web apps.\n\n"
    "Examples:\n\n"
    "  petrock new blog\n\n"
    "  cd blog && petrock feature add posts\n\n"
    "  petrock serve",
    no_args_is_help=True,
    add_completion=False,
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
from petrock.cli import feature, feature_manage, generate, maintain, mcp, new, run  # noqa: E402, F401


def main() -> None:
    app(prog_name="petrock")
