"""``python -m APP users ...``: the first admin, and an operator's password reset.

The password is read from a prompt (not echoed) or from standard input with
``--password-stdin``; never from the command line, where ``ps`` and shell history see it.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..core.database_urls import DEFAULT_DB

# The app itself (every feature) is imported by the commands that open it, not by `python -m APP --help`.

users_cli = typer.Typer(
    help="Manage user accounts.\n\nExamples:\n\n  python -m APP users create-admin ann@example.com\n\n"
    '  echo "$PASSWORD" | python -m APP users create-admin ann@example.com --password-stdin',
    no_args_is_help=True,
)

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]
Db = Annotated[str, typer.Option("--db", envvar="APP_DB", help="SQLite database file, or a postgresql:// URL.")]


@users_cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    password_stdin: PasswordStdin = False,
    db: Db = DEFAULT_DB,
) -> None:
    """Create an admin account (the first one, or another)."""
    from ..core import CommandRejected
    from ..main import build_app
    from .register import accounts_of

    password = _read_password(password_stdin)
    app = build_app(db)
    try:
        app.prepare()
        accounts = accounts_of(app)
        try:
            user = accounts.register(email, password, role="admin")
        except ValueError as exc:
            typer.echo(f"error: {_plain(exc)} — choose another", err=True)
            raise typer.Exit(2) from None
        except CommandRejected as exc:
            typer.echo(f"error: {exc} — sign in with it, or reset its password", err=True)
            raise typer.Exit(1) from None
    finally:
        app.log.close()
    typer.echo(f"created admin {user['email']}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        typer.echo("error: no terminal to ask for the password — pass --password-stdin and pipe it in", err=True)
        raise typer.Exit(2)
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _plain(exc: ValueError) -> str:
    """A password problem as it is; an invalid email without pydantic's wording (or the input)."""
    if hasattr(exc, "errors"):
        return "that is not an email address"
    sentence = str(exc).rstrip(".")
    return sentence[:1].lower() + sentence[1:]
