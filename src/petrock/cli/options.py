"""Options every generating command shares, so they read and behave the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would change, with a diff; write nothing.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the plan or result (or the error) as JSON.")]
Force = Annotated[
    bool, typer.Option("--force", help="Overwrite (or remove) files you changed; render an existing one again.")
]
AllowDirty = Annotated[bool, typer.Option("--allow-dirty", help="Run even with uncommitted changes in the app.")]
NoInput = Annotated[bool, typer.Option("--no-input", help="Never ask; fail if something is missing.")]
