"""A feature whose worker fails on "poison" items until ``POISON_FIXED`` is set, for the dead-letter tests.

Each attempt leaves a file in ``RELIABILITY_MARKERS`` so the test can count attempts
across processes, and a kill -9 can land in the middle of the retries.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from pydantic import BaseModel

from ..core import App, CommandWorker, Context


class Add(BaseModel):
    id: str
    text: str


class Handled(BaseModel):
    id: str


class Checker(CommandWorker):
    """Handles every item; raises on poison ones while the bug is not fixed."""

    def __init__(self) -> None:
        super().__init__("poison-checker", poll_interval=0.2, jitter=0.0, max_attempts=6)
        self.on("poison/add", self.check)

    def check(self, command: Add, ctx: Context) -> None:
        (Path(os.environ["RELIABILITY_MARKERS"]) / f"{command.id}.{uuid.uuid4().hex}").touch()
        if command.text == "poison" and not os.environ.get("POISON_FIXED"):
            raise ValueError(f"item {command.id} is poison")
        ctx.dispatch(Handled(id=command.id))


def register(app: App) -> None:
    app.add_feature("poison")
    app.commands.register("poison/add", Add)
    app.commands.register("poison/handled", Handled, public=False)
    app.register_worker(Checker())
