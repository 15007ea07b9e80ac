"""Rebuild after a field change: the projection of ``bench.rebuild`` built again from a log of
1,000,000 messages whose creates are all of the old version, read through an upcaster.

Ours is ``app.projections.rebuild()`` with one upcaster step on ``bench/create`` (version 1
-> 2, adding a field with a default, as ``petrock feature field add ... --default`` writes
it): every create is decoded, brought to version 2, encoded again and validated into the
new model. The baseline is the same rebuild of the same file with no field change (every
message current: the upcasting costs one dict lookup per message). The ratio says what a
field change adds to the rebuild it triggers. Rates are per CPU second, as in bench.rebuild.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench.common import Result, Row, app_module, main, median
from bench.rebuild import TYPES, Request, Settle, fill, measure

SIZES = {"smoke": (6000, 1), "full": (1_000_000, 1)}  # (messages, rounds)


class CreateV2(BaseModel):
    id: str
    title: str
    content: str
    discount: str


def rebuild(path: Path, *, changed: bool) -> int:
    core = app_module("core")
    upcasting = app_module("core.upcasting")
    items = core.TableSpec("bench-items", columns=(core.Column("title", "folded"),))
    create_model: type[BaseModel] = CreateV2 if changed else _create_v1()

    class Items(core.Projection):
        tables = (items,)

        def created(self, command: Any, message: Any) -> None:
            self.table(items).put(command.id, {**command.model_dump(), "status": "new", "at": message.timestamp})

        def requested(self, command: Request, message: Any) -> None:
            row = self.table(items).get(command.id)
            self.table(items).put(command.id, {**row, "status": "pending", "request": command.request_id})

        def settled(self, command: Settle, message: Any) -> None:
            row = self.table(items).get(command.id)
            self.table(items).put(command.id, {**row, "status": "ready", "summary": command.summary})

    app = core.App(core.MessageLog(path))
    if changed:
        steps = upcasting.Upcasters()
        steps.step("bench/create", 1)(lambda payload: {**payload, "discount": "0"})
        app.upcasters.add(steps)
    projection = Items(app.store, "bench-items")
    app.projections.add(projection)
    handlers = (projection.created, projection.requested, projection.settled)
    for type, model, handler in zip(TYPES, (create_model, Request, Settle), handlers, strict=True):
        app.commands.register(type, model, handler)
    try:
        report = app.projections.rebuild()
        return projection.table(items).count() if report.refused == 0 else -1
    finally:
        app.log.close()


def _create_v1() -> type[BaseModel]:
    from bench.rebuild import Create

    return Create


def run(size: str) -> list[Row]:
    count, rounds = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-upcast-") as scratch:
        path = Path(scratch) / "app.db"
        fill(path, count)
        ours, plain = [], []
        for _ in range(rounds):
            ours.append(measure(lambda p: rebuild(p, changed=True), path, -(-count // 3)))
            plain.append(measure(lambda p: rebuild(p, changed=False), path, -(-count // 3)))
    ours_rate = median(count / seconds for seconds, _ in ours)
    plain_rate = median(count / seconds for seconds, _ in plain)
    ratio = median(p[0] / o[0] for o, p in zip(ours, plain, strict=True))
    return [
        Result(
            f"rebuild of {count:,} messages after a field change",
            ours_rate,
            plain_rate,
            "msg/s",
            ratio,
            "≥ 0.7×",
            ratio >= 0.7,
        )
    ]


if __name__ == "__main__":
    main(run)
