"""``python -m bench [smoke|full] [NAME ...]``: every benchmark (or those named), one after another, then one table.

Each benchmark's rows are printed as soon as it finishes, so a long run shows progress;
the combined table at the end is the one docs/benchmarks.md records. A benchmark that
crashes is reported in the table and makes the exit status 1; a missed target does not
(benchmarks inform, the test suite decides pass/fail).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback

from bench.common import SIZES, Row, Skipped, table

BENCHMARKS = (
    "cli_help",
    "new_project",
    "feature_add",
    "log_append",
    "rebuild",
    "rebuild_upcast",
    "worker_reaction",
    "http_commands",
    "fastapi_peer",
    "metrics_overhead",
    "key_redaction",
    "event_streams",
    "postgres",
    "pg_commands",
    "scale",
)


def run_all(size: str, names: tuple[str, ...] = BENCHMARKS) -> tuple[list[Row], bool]:
    rows: list[Row] = []
    crashed = False
    for name in names:
        began = time.perf_counter()
        print(f"--- bench.{name} ({size})", flush=True)
        try:
            new_rows = importlib.import_module(f"bench.{name}").run(size)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' results
            traceback.print_exc()
            new_rows = [Skipped(f"bench.{name}", f"crashed: {exc!r}")]
            crashed = True
        print(table(new_rows), f"\n({time.perf_counter() - began:.1f} s)\n", flush=True)
        rows.extend(new_rows)
    return rows, crashed


def machine() -> str:
    """CPU model, core count, OS and Python: what the numbers depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def main() -> None:
    size = sys.argv[1] if len(sys.argv) > 1 else "full"
    if size not in SIZES:
        raise SystemExit(f"error: unknown size {size!r} — use one of {', '.join(SIZES)}")
    unknown = [name for name in sys.argv[2:] if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"error: unknown benchmark {', '.join(unknown)} — use some of {', '.join(BENCHMARKS)}")
    names = tuple(name for name in BENCHMARKS if name in sys.argv[2:]) or BENCHMARKS
    began = time.perf_counter()
    rows, crashed = run_all(size, names)
    print(f"=== all benchmarks ({size}, {time.perf_counter() - began:.0f} s)")
    print(f"machine: {machine()}")
    print(table(rows))
    if crashed:
        sys.exit(1)


if __name__ == "__main__":
    main()
