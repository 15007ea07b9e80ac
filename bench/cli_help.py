"""``petrock --help`` against a minimal two-command Typer app's ``--help``.

Both run in a fresh interpreter, alternating; the median of the rounds counts. A second
check runs the help in-process and lists which heavy modules got imported: copier,
jinja2 and starlette must not be, or help pays for them on every call.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Result, Row, main, median, petrock_env, timed

SIZES = {"smoke": 1, "full": 9}  # rounds
HEAVY = ("copier", "jinja2", "starlette", "libcst", "pydantic", "uvicorn")
MINIMAL_APP = '''
import typer

app = typer.Typer()


@app.command()
def hello(name: str) -> None:
    """Say hello."""
    print(f"hello {name}")


@app.command()
def bye(name: str) -> None:
    """Say goodbye."""
    print(f"bye {name}")


app()
'''
IMPORTED_FOR_HELP = f"""
import sys
from petrock.cli import main
sys.argv = ["petrock", "--help"]
try:
    main()
except SystemExit:
    pass
print(",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""


def run_quietly(*args: str) -> None:
    subprocess.run([sys.executable, *args], env=petrock_env(), capture_output=True, check=True)


def heavy_imports() -> list[str]:
    """The heavy modules ``petrock --help`` imports (should be none)."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED_FOR_HELP], env=petrock_env(), capture_output=True, text=True, check=True
    )
    lines = result.stderr.strip().splitlines()
    return [name for name in lines[-1].split(",") if name] if lines else []


def run(size: str) -> list[Row]:
    rounds = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="bench-help-") as scratch:
        minimal = Path(scratch) / "minimal.py"
        minimal.write_text(MINIMAL_APP)
        ours, base = [], []
        for _ in range(rounds):
            ours.append(timed(lambda: run_quietly("-m", "petrock", "--help")))
            base.append(timed(lambda: run_quietly(str(minimal), "--help")))
    ratio = median(o / b for o, b in zip(ours, base, strict=True))
    heavy = heavy_imports()
    note = f"imported for help: {', '.join(heavy)}" if heavy else f"none of {', '.join(HEAVY)} imported for help"
    return [
        Result("petrock --help", median(ours), median(base), "s", ratio, "≤ 1.2×", ratio <= 1.2 and not heavy, note)
    ]


if __name__ == "__main__":
    main(run)
