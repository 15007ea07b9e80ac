"""What a migration did: one line per job (native, hosted, or left), and the start lines it changed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from petrock.plan import Plan

from .edits import MARK
from .verify import Verdict


@dataclass(frozen=True)
class JobLine:
    """One job of the app, as the report shows it."""

    place: str  # the feature, or the top-level module ("tasks.py")
    job: str  # how it was started: "Jobs.start_cleanup_task", "poll_feeds: thread ..."
    where: str  # "src/shop/orders/jobs.py:40"
    outcome: str  # native | hosted | left
    worker: str = ""  # the worker's name, "orders/cleanup"
    worker_class: str = ""  # "CleanupWorker", "HostedJob"
    interval: str = ""  # native: the poll interval, as written
    reason: str = ""  # hosted: why it is not native; left: why it stays
    native_when: str = ""  # hosted: what would make it native
    notes: tuple[str, ...] = ()  # what behaves differently, in a few words each
    guarded: str = ""  # the condition its start line runs under (an env gate), if any
    code: tuple[str, ...] = ()  # where its code is: what runs each pass, what starts it ("path:Qual.name")

    def __str__(self) -> str:
        if self.outcome == "native":
            notes = "".join(f"; {note}" for note in self.notes)
            worker = f"{self.worker_class} {self.worker!r}"
            return f"  native  {self.place}: {self.job} -> {worker} (every {self.interval} s{notes})"
        if self.outcome == "hosted":
            return (
                f"  hosted  {self.place}: {self.job} -> HostedJob {self.worker!r} ({self.reason}; "
                f"native if {self.native_when})"
            )
        return f"  left    {self.place}: {self.job} ({self.where}): {self.reason}"


@dataclass(frozen=True)
class StartLine:
    """A hand-written start line the migration replaced."""

    path: str
    line: int
    code: str
    now: str


@dataclass
class Migration:
    root: Path
    plan: Plan
    jobs: list[JobLine] = field(default_factory=list)
    start_lines: list[StartLine] = field(default_factory=list)
    package: str = ""
    verdict: Verdict | None = None

    @property
    def migrated(self) -> list[JobLine]:
        return [job for job in self.jobs if job.outcome != "left"]

    def count(self, outcome: str) -> int:
        return sum(job.outcome == outcome for job in self.jobs)

    @property
    def places(self) -> list[str]:
        return sorted({job.place for job in self.migrated})

    @property
    def commit_message(self) -> str:
        native, hosted = self.count("native"), self.count("hosted")
        return f"Migrate {', '.join(self.places)} jobs to workers ({native} native, {hosted} hosted)"

    def report(self) -> str:
        lines = []
        native, hosted, left = self.count("native"), self.count("hosted"), self.count("left")
        lines.append(f"jobs: {native} native, {hosted} hosted, {left} left")
        lines += [str(job) for job in self.jobs]
        if self.start_lines:
            lines.append("start lines now started with the server (run_with_server):")
            lines += [f"  {s.path}:{s.line}: {s.code}" for s in self.start_lines]
        if left:
            lines.append(f"left jobs are marked `{MARK}` where they start (docs/MIGRATING.md)")
        if not self.jobs:
            lines.append("nothing to migrate: the app starts no job by hand (hosted ones are run by workers already)")
        elif not self.migrated:
            lines.append("the server starts none of these jobs: nothing was changed but the marks")
        if self.verdict is not None:
            checked = ", ".join(self.verdict.checks)
            outcome = "passed" if self.verdict.ok else f"failed ({len(self.verdict.problems)} problems)"
            lines.append(f"verification {outcome}: {checked} ({self.verdict.describe_time()})")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.plan.to_json(),
            "counts": {outcome: self.count(outcome) for outcome in ("native", "hosted", "left")},
            "jobs": [asdict(job) for job in self.jobs],
            "start_lines": [asdict(line) for line in self.start_lines],
            "verification": None
            if self.verdict is None
            else {
                "ok": self.verdict.ok,
                "checks": self.verdict.checks,
                "seconds": round(self.verdict.seconds, 2),
                "proved_before": self.verdict.proved_before,
                "problems": [str(problem) for problem in self.verdict.problems],
                "running": self.verdict.running,
            },
        }
