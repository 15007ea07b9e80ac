"""Printing for the CLI: one-line errors, per-file status lines, JSON for scripts."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from petrock.errors import UserError

if TYPE_CHECKING:
    from petrock.plan import Change, Plan

P = ParamSpec("P")
R = TypeVar("R")

STATUS_STYLES = {
    "create": "green",
    "update": "cyan",
    "identical": "blue",
    "conflict": "red",
    "force": "yellow",
    "skip": "yellow",
    "remove": "red",
}


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a UserError into ``error: <what> — <how to fix>`` on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            if kwargs.get("as_json"):  # scripts asked for JSON: they get it for errors too, and only JSON
                typer.echo(json.dumps({"error": error.what, "fix": error.fix, "exit_code": error.exit_code}))
            else:
                typer.echo(f"error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing was left half-written", err=True)
            raise typer.Exit(130) from None

    return wrapper


def use_color() -> bool:
    """Colour only for a person at a terminal who has not asked for none (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def status_word(word: str) -> str:
    """``word`` right-aligned in the status column, coloured when `use_color` allows."""
    padded = f"{word:>10}"
    return typer.style(padded, fg=STATUS_STYLES.get(word, "magenta"), bold=True) if use_color() else padded


def status_lines(changes: Iterable[Change]) -> None:
    """Print one ``status path`` line per file."""
    for change in changes:
        styled = status_word(change.action.value)
        note = f"  ({change.note})" if change.note else ""
        typer.echo(f"{styled}  {change.path}{note}")


def show_plan(plan: Plan, *, dry_run: bool, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """Print the plan as status lines (and a diff on a dry run) or as JSON."""
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "files": plan.to_json(), **(extra or {})}, indent=2))
        return
    status_lines(plan)
    if dry_run:
        diff = plan.diff()
        if diff:
            typer.echo("")
            typer.echo(diff.rstrip("\n"))
        typer.echo("\ndry run: nothing was written")


def ensure_can_prompt(no_input: bool, question: str) -> None:
    """Refuse to prompt without a terminal (CI) or with --no-input."""
    from petrock.errors import NoInput

    if no_input or not sys.stdin.isatty():
        raise NoInput(f"{question} needs an answer and there is no terminal to ask on", "pass it as an option")
