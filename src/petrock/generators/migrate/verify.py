"""The gate a migration passes before anything is written: the migrated app must still work.

The planned result is applied to a temporary copy of the app, never to the app
itself, and checked there: every written file compiles, the changed modules
gain no undefined or unused names (pyflakes, compared with the files before),
the app imports and builds (``build_app()`` in a subprocess) with unique worker
names, the app serves and every migrated job runs (``serving.py``), and, unless
skipped, the app's own tests pass. A failure is a list of problems, one line each,
saying what broke and where. A tree that passed (a dry run) is not proved again within
the hour (see gate_cache.py).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyflakes import checker, messages

from petrock.plan import Plan

from . import gate_cache
from .serving import Expected, serve_and_watch

# The name problems a migration can cause; style warnings pyflakes also gives are the user's business.
NAME_PROBLEMS = (
    messages.UndefinedName,
    messages.UndefinedLocal,
    messages.UnusedImport,
    messages.UnusedVariable,
    messages.RedefinedWhileUnused,
)
SKIPPED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules", "*.db", "*.db-*"
)
BUILD_TIMEOUT = 60.0
TESTS_TIMEOUT = 900.0

# Run inside the app: build it on a throwaway database and print the registered workers.
BUILD_PROBE = """
import json, os, sys, tempfile, traceback
src = os.path.realpath(sys.argv[1])
try:
    from {package}.main import build_app
    with tempfile.TemporaryDirectory() as folder:
        app = build_app(os.path.join(folder, "verify.db"))
        try:
            print(json.dumps({{"workers": [w["name"] for w in app.describe()["workers"]]}}))
        finally:
            app.log.close()
except BaseException as error:
    root = os.path.dirname(os.path.dirname(src))
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.realpath(f.filename).startswith(src)]
    # The app's own code rather than its core runtime: register.py rather than supervisor.py.
    frames = [f for f in frames if os.sep + "core" + os.sep not in f.filename] or frames
    where = f"{{os.path.relpath(frames[-1].filename, root)}}:{{frames[-1].lineno}}" if frames else ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f"{{os.path.relpath(error.filename, root)}}:{{error.lineno}}"
    print(json.dumps({{"error": f"{{type(error).__name__}}: {{error}}", "where": where}}))
"""


@dataclass(frozen=True)
class Problem:
    """One thing the migration would break, and where."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Verdict:
    problems: list[Problem] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # what was checked, for the report
    seconds: float = 0.0
    running: dict[str, Any] = field(default_factory=dict)  # what each migrated worker reported while served
    proved_before: float | None = None  # seconds since the same tree passed (a dry run), when not run again

    def describe_time(self) -> str:
        if self.proved_before is not None:
            return f"the same tree passed {self.proved_before:.0f} s ago"
        return f"{self.seconds:.1f} s"

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    root: Path,
    plan: Plan,
    package: str,
    *,
    run_tests: bool = True,
    expected_workers: Iterable[str] = (),
    serve: list[Expected] | None = None,
) -> Verdict:
    """Check the app as ``plan`` would leave it, in a temporary copy; ``root`` is not touched."""
    started = time.monotonic()
    verdict = Verdict()
    with tempfile.TemporaryDirectory(prefix="petrock-verify-") as folder:
        copy = Path(folder) / root.name
        shutil.copytree(root, copy, ignore=SKIPPED, symlinks=True)
        for change in plan.writes:
            target = copy / change.path
            if change.new is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(change.new, encoding="utf-8")
        python = _python(root)
        workers = list(expected_workers)
        key = gate_cache.tree_key(copy, python, [package, run_tests, sorted(workers), serve])
        if (kept := gate_cache.recall(key)) is not None:
            verdict.checks, verdict.running, verdict.proved_before = kept["checks"], kept["running"], kept["age"]
            verdict.seconds = time.monotonic() - started
            return verdict
        verdict.checks.append("compiles")
        verdict.problems += _compile_problems(plan)
        verdict.checks.append("names")
        verdict.problems += _name_problems(plan)
        if verdict.ok:
            verdict.checks.append("builds")
            verdict.problems += _build_problems(copy, package, python, workers)
        if verdict.ok and serve:
            verdict.checks.append("serves")
            verdict.problems += _serve_problems(copy, package, python, serve, verdict, original=root)
        if verdict.ok and run_tests and (copy / "tests").is_dir():
            verdict.checks.append("app tests")
            verdict.problems += _test_problems(copy, python, original=root)
    verdict.seconds = time.monotonic() - started
    gate_cache.remember(key, verdict)
    return verdict


def _python(root: Path) -> str:
    """The app's own interpreter when it has a virtualenv, else the one running petrock."""
    for candidate in (root / ".venv" / "bin" / "python", root / "venv" / "bin" / "python"):
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def _env(copy: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(copy / "src"), os.environ.get("PYTHONPATH")]))
    # COLUMNS: pytest cuts its one-line failure reasons to the terminal width.
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "400"}


def _python_changes(plan: Plan) -> list[tuple[str, str | None, str]]:
    return [(c.path, c.old, c.new) for c in plan.writes if c.new is not None and c.path.endswith(".py")]


def _compile_problems(plan: Plan) -> list[Problem]:
    problems = []
    for path, _, new in _python_changes(plan):
        try:
            compile(new, path, "exec", dont_inherit=True)
        except SyntaxError as error:
            problems.append(Problem(f"{path}:{error.lineno}", f"SyntaxError: {error.msg}"))
    return problems


def _name_problems(plan: Plan) -> list[Problem]:
    """Undefined or unused names that were not in the file before the migration."""
    problems = []
    for path, old, new in _python_changes(plan):
        before = Counter(_key(message) for message in _flakes(old, path)) if old else Counter()
        for message in _flakes(new, path):
            if before[_key(message)]:
                before[_key(message)] -= 1
                continue
            problems.append(Problem(f"{path}:{message.lineno}", message.message % message.message_args))
    return problems


def _flakes(source: str, path: str) -> list[messages.Message]:
    try:
        tree = ast.parse(source, path)
    except SyntaxError:
        return []
    found = checker.Checker(tree, filename=path).messages
    return sorted((m for m in found if isinstance(m, NAME_PROBLEMS)), key=lambda m: m.lineno)


def _key(message: messages.Message) -> tuple[str, tuple[object, ...]]:
    return type(message).__name__, tuple(message.message_args)


def _build_problems(copy: Path, package: str, python: str, expected: list[str]) -> list[Problem]:
    probe = BUILD_PROBE.format(package=package)
    try:
        result = subprocess.run(
            [python, "-c", probe, str(copy / "src" / package)],
            cwd=copy,
            env=_env(copy),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [Problem(f"{package}.main", f"build_app() did not return within {BUILD_TIMEOUT:.0f} s")]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return [Problem(f"{package}.main", f"the app does not build: {last}")]
    report = json.loads(lines[-1])
    if "error" in report:
        return [Problem(report["where"] or f"{package}.main", f"the app does not build: {report['error']}")]
    workers = Counter(report["workers"])
    problems = [
        Problem(f"{package}.main", f"worker name {name!r} is registered {n} times")
        for name, n in workers.items()
        if n > 1
    ]
    problems += [
        Problem(f"{package}.main", f"worker {name!r} is not registered by build_app()")
        for name in expected
        if name not in workers
    ]
    return problems


def _serve_problems(
    copy: Path, package: str, python: str, expected: list[Expected], verdict: Verdict, *, original: Path
) -> list[Problem]:
    problems, running = serve_and_watch(copy, package, python, _env(copy), expected)
    verdict.running = running or {}
    if running is None:
        with tempfile.TemporaryDirectory(prefix="petrock-baseline-") as folder:
            before = Path(folder) / original.name
            shutil.copytree(original, before, ignore=SKIPPED, symlinks=True)
            baseline, running = serve_and_watch(before, package, python, _env(before), [])
        if running is None:
            reason = f"the app does not serve before the migration either ({baseline[0][1]})"
            return [Problem(f"python -m {package} serve", f"{reason}; fix it first or pass --no-verify-serve")]
    return [Problem(where, what) for where, what in problems]


def _test_problems(copy: Path, python: str, *, original: Path) -> list[Problem]:
    """The app's tests on the changed copy; failures that the original fails as well are not the change's."""
    failures = _run_tests(copy, python)
    if not failures:
        return []
    failed_before = {
        problem.where for problem in _run_tests_on_original(original, python, _failing_files(failures, original))
    }
    new = [problem for problem in failures if problem.where not in failed_before]
    if new:
        return new
    reason = f"the app's tests fail before the migration too ({failures[0].where})"
    return [Problem("tests", f"{reason}; fix them first or pass --no-verify-tests")]


def _failing_files(failures: list[Problem], original: Path) -> list[str] | None:
    """The test files the failures are in that the original has too: only those run again on it (the
    whole suite did already, changed). None when a failure names no test, so the whole suite runs."""
    files = {problem.where.split("::")[0] for problem in failures}
    if not all(".py" in name for name in files):
        return None
    return sorted(name for name in files if (original / name).is_file())


def _run_tests_on_original(root: Path, python: str, files: list[str] | None) -> list[Problem]:
    if files == []:
        return []  # the failing tests are new: the original cannot have failed them
    with tempfile.TemporaryDirectory(prefix="petrock-baseline-") as folder:
        copy = Path(folder) / root.name
        shutil.copytree(root, copy, ignore=SKIPPED, symlinks=True)
        return _run_tests(copy, python, files or [])


def _run_tests(copy: Path, python: str, files: list[str] | None = None) -> list[Problem]:
    command = [python, "-m", "pytest", "-q", "-rfE", "--tb=no", "-p", "no:cacheprovider", "--color=no", *(files or [])]
    try:
        result = subprocess.run(
            command, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=TESTS_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return [Problem("tests", f"the app's tests did not finish within {TESTS_TIMEOUT:.0f} s")]
    if result.returncode in (0, 5):  # 5: no tests collected
        return []
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    if not failed and _all_passed(result.stdout):
        return []  # a legacy thread crashed the interpreter on its way out, after every test had passed
    if not failed:
        last = (result.stdout.strip().splitlines() or result.stderr.strip().splitlines() or ["no output"])[-1]
        return [Problem("tests", f"the app's tests fail: {last}")]
    return [_failure(line) for line in failed]


def _all_passed(output: str) -> bool:
    """Whether pytest's progress dots (``-q``) reached 100% without an F or an E."""
    progress = [re.match(r"^(\S*)\s*\[\s*\d+%\]$", line.strip()) for line in output.splitlines()]
    marks = "".join(match.group(1) for match in progress if match)
    summary = [line for line in output.splitlines() if re.match(r"^=* ?\d+ passed", line)]
    if summary:
        return not re.search(r"\b(failed|error|errors)\b", summary[-1])
    return bool(marks) and "[100%]" in output and set(marks) <= set(".sxX")


def _failure(line: str) -> Problem:
    """``FAILED tests/test_x.py::test_y - AssertionError: ...`` as a problem."""
    outcome, rest = line.split(" ", 1)
    test, _, reason = rest.partition(" - ")
    return Problem(test, f"{outcome.lower()} after the migration" + (f": {reason}" if reason else ""))
