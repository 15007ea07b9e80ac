"""``petrock new`` (render, write, ``git init``, first commit) against ``copier copy`` of the same
project template with the same answers, each a fresh process into an empty directory."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, Result, Row, main, median, petrock, petrock_env, timed

SIZES = {"smoke": 1, "full": 5}  # rounds
NAME = "blog"


def copier_copy(target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--defaults",
            "--quiet",
            "--data",
            f"project_name={NAME}",
            str(REPO / "templates" / "project"),
            str(target),
        ],
        env=petrock_env(),
        capture_output=True,
        check=True,
    )


def run(size: str) -> list[Row]:
    rounds = SIZES[size]
    ours, base = [], []
    with tempfile.TemporaryDirectory(prefix="bench-new-") as scratch:
        for round in range(rounds):
            ours_dir, copier_dir = Path(scratch) / f"ours{round}", Path(scratch) / f"copier{round}"
            ours.append(timed(lambda target=ours_dir: petrock("new", NAME, "--dir", str(target))))
            base.append(timed(lambda target=copier_dir: copier_copy(target)))
    ratio = median(o / b for o, b in zip(ours, base, strict=True))
    name = "petrock new (incl. git init + commit)"
    return [Result(name, median(ours), median(base), "s", ratio, "≤ 1.5×", ratio <= 1.5)]


if __name__ == "__main__":
    main(run)
