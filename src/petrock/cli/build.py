"""``petrock build``: the app's wheel and sdist, for deploying it without its source tree."""

from __future__ import annotations

import json

import typer

from petrock.cli import app
from petrock.cli.options import AsJson
from petrock.cli.output import reports_errors


@app.command()
@reports_errors
def build(as_json: AsJson = False) -> None:
    """Build the app's wheel and sdist into dist/ (offline: no package index needed).

    The wheel holds the whole app, its page templates and static files included:
    `pip install dist/APP-*.whl` anywhere, then `python -m APP serve`. See
    docs/deploying.md for containers and systemd.

    Examples:

      petrock build

      pip install dist/*.whl && python -m blog serve --db /var/lib/blog/app.db
    """
    from petrock.build import build_app

    built = build_app()
    if as_json:
        typer.echo(json.dumps(built.to_json(), indent=2))
    else:
        typer.echo(built.summary())
