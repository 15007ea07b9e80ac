"""``petrock feature add``: wall time including its git commit, for a feature with eight typed
fields, and whether it slows down as an app grows.

Baseline: ``copier copy`` of the same files into the same app. The files are taken from
what ``feature add`` just committed and wrapped into a one-off copier template (each file
a ``.jinja`` whose text is inside ``{% raw %}``), so copier writes exactly the same bytes;
most of its time is importing copier, which feature add does not need.

Growth: 50 features added one after another to one app; the last three against the
first three (medians), so one slow call on a noisy machine does not decide it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Result, Row, Skipped, children_cpu, main, median, petrock, petrock_env, timed

SIZES = {"smoke": (1, 4), "full": (5, 50)}  # (rounds against copier, features added in a row)
NAME = "petrock feature add"
# Eight fields of eight types: the per-field templates are the expensive part of a render.
EIGHT_FIELDS = (
    "name:str",
    "total:decimal",
    "paid:bool",
    "due:date:optional",
    "status:choice:draft,paid,shipped",
    "note:text",
    "quantity:int",
    "contact:email",
)


def available() -> bool:
    return petrock("feature", "add", "--help", check=False).returncode == 0


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def copier_template_of_last_commit(app: Path, template: Path) -> None:
    """A copier template that writes the files of the app's last commit, byte for byte."""
    template.mkdir()
    (template / "copier.yml").write_text("_templates_suffix: .jinja\n_envops:\n  keep_trailing_newline: true\n")
    for path in git(app, "diff", "--name-only", "--diff-filter=AM", "HEAD~1", "HEAD").splitlines():
        target = template / f"{path}.jinja"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{% raw %}" + (app / path).read_text() + "{% endraw %}")


def copier_copy(template: Path, app: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--defaults", "--overwrite", "--quiet", str(template), str(app)],
        env=petrock_env(),
        capture_output=True,
        check=True,
    )


def add_feature(app: Path, name: str, cpu: list[float] | None = None, fields: tuple[str, ...] = ()) -> None:
    """Run ``petrock feature add NAME [FIELD ...]`` in ``app``; adds the CPU seconds it used (git too) to ``cpu``."""
    before = children_cpu()
    petrock("feature", "add", name, *fields, cwd=app)
    if cpu is not None:
        cpu.append(children_cpu() - before)


def run(size: str) -> list[Row]:
    if not available():
        reason = "not available yet (petrock feature add is not on this branch)"
        return [Skipped(f"{NAME} vs copier copy", reason), Skipped(f"{NAME}: 50th / 1st", reason)]
    rounds, in_a_row = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="bench-feature-") as scratch:
        root = Path(scratch)
        petrock("new", "blog", "--dir", str(root / "pristine"))
        ours, base, ours_cpu = [], [], []
        for round in range(rounds):
            app = shutil.copytree(root / "pristine", root / f"ours{round}", symlinks=True)
            ours.append(timed(lambda app=app: add_feature(app, "orders", ours_cpu, EIGHT_FIELDS)))
            copier_template_of_last_commit(app, root / f"template{round}")
            target = shutil.copytree(root / "pristine", root / f"copier{round}", symlinks=True)
            base.append(timed(lambda target=target, round=round: copier_copy(root / f"template{round}", target)))
        grown = shutil.copytree(root / "pristine", root / "grown", symlinks=True)
        times = [timed(lambda n=n: add_feature(grown, f"notes{n:02d}")) for n in range(in_a_row)]
    ratio = median(o / b for o, b in zip(ours, base, strict=True))
    first, last = median(times[:3]), median(times[-3:])
    return [
        Result(
            f"{NAME} with 8 fields (incl. commit) vs copier copy",
            median(ours),
            median(base),
            "s",
            ratio,
            "≤ 0.7× and < 0.4 s",
            ratio <= 0.7 and median(ours) < 0.4,
            f"feature add used {median(ours_cpu) * 1000:.0f} ms of CPU (itself and git); the wall-time limit "
            "assumes an idle machine, where copier copy takes about 0.45 s",
        ),
        Result(
            f"{NAME}: {in_a_row}th / 1st",
            last,
            first,
            "s",
            last / first,
            "≤ 1.5",
            last / first <= 1.5,
            "medians of the last three and the first three features added to one app",
        ),
    ]


if __name__ == "__main__":
    main(run)
