"""``POST /commands`` of this checkout's app against another petrock checkout's, side by side.

``python -m bench.versus_checkout OTHER [sqlite|postgres] [SECONDS] [ROUNDS] [-- FEATURE-ADD OPTIONS]``

The before/after numbers of a change: both checkouts generate the same app (``petrock
new`` + ``petrock feature add posts`` and the options given), both are served as users
serve them, on SQLite files or on two databases of one throwaway PostgreSQL server
(tests/pg.py), and ``wrk -c32`` loads them in turns, round after round. Beside req/s,
each server's CPU per request is measured, counted until two seconds after the load so
that the background work a request caused (the summary worker catching up) is in it.
The ratios are taken within each round (this checkout / the other), and the median and
range of those are reported: the load of a shared machine swings between rounds more than between
two runs seconds apart. Not part of ``make bench`` (it needs a second checkout, e.g.
``git worktree add /tmp/before main``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import wrk
from bench.common import REPO, median
from bench.http_commands import APP, BODY, CONNECTIONS, cpu_seconds, serve, stop

CATCH_UP = 2.0  # seconds after each load still counted in the server's CPU


def generate(checkout: Path, into: Path, options: list[str], name: str = APP) -> Path:
    """The posts app as ``checkout``'s petrock generates it."""
    root = into / name
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    petrock = [sys.executable, "-m", "petrock"]
    subprocess.run([*petrock, "new", name, "--dir", str(root), "--no-git", "--parents"], env=env, check=True)
    subprocess.run([*petrock, "feature", "add", "posts", *options], cwd=root, env=env, check=True)
    return root


def main() -> None:
    args, _, options = " ".join(sys.argv[1:]).partition(" -- ")
    other, backend, seconds, rounds = [*args.split(), "sqlite", "5", "3"][:4]
    if wrk.find() is None:
        raise SystemExit("error: wrk is not installed (apt-get install wrk)")
    server = None
    if backend == "postgres":
        from bench.postgres import cluster

        server = cluster()
    processes = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-versus-") as scratch:
            urls = {}
            for label, checkout in (("this", REPO), ("other", Path(other).resolve())):
                root = generate(checkout, Path(scratch) / label, options.split())
                db = server.create_database() if server is not None else str(Path(scratch) / f"{label}.db")
                process, urls[label] = serve("ours", db, root=root)  # type: ignore[arg-type]
                processes.append(process)
            rates: dict[str, list[float]] = {"this": [], "other": []}
            cpu: dict[str, list[float]] = {"this": [], "other": []}  # µs per request
            pids = dict(zip(urls, (process.pid for process in processes), strict=True))
            for url in urls.values():
                wrk.run(f"{url}/commands", seconds=1, script=wrk.post_script(BODY))  # warm
            for _ in range(int(rounds)):
                for label, url in urls.items():
                    cpu_before = cpu_seconds(pids[label])
                    load = wrk.run(f"{url}/commands", seconds=int(seconds), script=wrk.post_script(BODY))
                    time.sleep(CATCH_UP)
                    cpu[label].append((cpu_seconds(pids[label]) - cpu_before) / max(1, load.requests) * 1e6)
                    rates[label].append(load.rate)
                    print(
                        f"{label}: {load.rate:,.0f} req/s, p99 {load.p99_ms:.1f} ms, "
                        f"{cpu[label][-1]:,.0f} µs of server CPU per request ({load.describe()})",
                        flush=True,
                    )
    finally:
        for process in processes:
            stop(process)
        if server is not None:
            server.destroy()
    ratios = [t / o for t, o in zip(rates["this"], rates["other"], strict=True)]
    cpu_ratios = [t / o for t, o in zip(cpu["this"], cpu["other"], strict=True)]
    print(
        f"{backend}, wrk -c{CONNECTIONS}, feature add posts {options}: this checkout {median(rates['this']):,.0f} "
        f"req/s, the other {median(rates['other']):,.0f} req/s; ratio {median(ratios):.2f}× "
        f"(median of {len(ratios)} rounds, range {min(ratios):.2f}–{max(ratios):.2f}×); server CPU per request "
        f"{median(cpu['this']):,.0f} µs vs {median(cpu['other']):,.0f} µs, ratio {median(cpu_ratios):.2f}× "
        f"(range {min(cpu_ratios):.2f}–{max(cpu_ratios):.2f}×); load average {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
