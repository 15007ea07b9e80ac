"""What a migration did: the jobs converted, the lines removed, what stayed and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from petrock.plan import Plan

from .verify import Verdict

MARK = "# petrock: could not migrate"


@dataclass(frozen=True)
class Converted:
    feature: str
    method: str  # start_cleanup_task
    worker: str  # CleanupWorker
    interval: str  # the sleep's argument, now the poll interval
    threaded: bool
    slept_first: bool  # the loop slept before its first cycle; a worker works at once
    name: str = ""  # the worker's name, orders/cleanup
    notes: tuple[str, ...] = ()  # what behaves differently, in a few words each
    source: str = ""  # Jobs.start_cleanup_task, or JOBS: refresh_totals


@dataclass(frozen=True)
class Kept:
    """Something left in place (and marked), with the reason."""

    feature: str
    what: str
    reason: str


@dataclass(frozen=True)
class RemovedLine:
    path: str
    line: int
    code: str


@dataclass
class Migration:
    root: Path
    plan: Plan
    converted: list[Converted] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    removed: list[RemovedLine] = field(default_factory=list)
    package: str = ""
    verdict: Verdict | None = None

    @property
    def features(self) -> list[str]:
        return sorted({c.feature for c in self.converted})

    @property
    def commit_message(self) -> str:
        return f"Migrate {', '.join(self.features)} jobs to workers"

    def report(self) -> str:
        lines = []
        if self.converted:
            lines.append("converted to workers:")
            for c in self.converted:
                how = ", in a thread as before" if c.threaded else ""
                how += "; it now runs once at start instead of after one interval" if c.slept_first else ""
                how += "".join(f"; {note}" for note in c.notes)
                lines.append(f"  {c.feature}: {c.source} -> {c.worker} (every {c.interval} s{how})")
        if self.removed:
            lines.append("removed hand-written start-up lines:")
            lines += [f"  {r.path}:{r.line}: {r.code}" for r in self.removed]
        if self.kept:
            lines.append(f"left in place, marked `{MARK}`; move by hand (docs/MIGRATING.md):")
            lines += [f"  {k.feature}: {k.what}: {k.reason}" for k in self.kept]
        if not self.converted:
            lines.append("nothing could be converted; nothing was changed but the marks")
        if self.verdict is not None:
            checked = ", ".join(self.verdict.checks)
            outcome = "passed" if self.verdict.ok else f"failed ({len(self.verdict.problems)} problems)"
            lines.append(f"verification {outcome}: {checked} ({self.verdict.seconds:.1f} s)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.plan.to_json(),
            "converted": [asdict(c) for c in self.converted],
            "kept": [asdict(k) for k in self.kept],
            "removed_lines": [asdict(r) for r in self.removed],
            "verification": None
            if self.verdict is None
            else {
                "ok": self.verdict.ok,
                "checks": self.verdict.checks,
                "seconds": round(self.verdict.seconds, 2),
                "problems": [str(problem) for problem in self.verdict.problems],
            },
        }
