"""``bench.scale``'s reads (list, filtered list, get by id) of this checkout's app and another's, side by side.

``python -m bench.versus_reads OTHER [POSTS] [SECONDS] [ROUNDS]``

The before/after numbers of a change to the read path: both checkouts generate ``bench.scale``'s
app, each is served as users serve it on its own copy of the other checkout's cached SQLite log of
POSTS posts (default 100,000; ``python -m bench.scale --posts POSTS --backend sqlite --only rebuild``
from the other checkout makes it: the cache's key is that app's source; a change that leaves the
log and the projections' code alone reads it as it is), and ``wrk -c32`` loads them in turns,
round after round, as ``bench.scale`` does: the list's first page, the list filtered on the
choice field and sorted by another, ``posts/get`` by random ids, and a page of 20. Beside req/s
and p99, each server's CPU per request (from /proc) is reported: on a shared machine it is the
steadiest of the three. The cache itself is only read. Not part of
``make bench`` (it needs a second checkout, e.g. ``git worktree add /tmp/before main``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import scale, scale_log, wrk
from bench.common import REPO, median
from bench.http_commands import cpu_seconds
from bench.served_app import served
from bench.versus_checkout import generate

LOADS = {  # name: (path, random ids appended)
    "list": (scale.LIST, False),
    "filtered": (scale.FILTERED, False),
    "get": (scale.GET, True),
    "list of 20": (f"{scale.LIST}?limit=20", False),
}
START = 900.0  # seconds: a start that rebuilds the projections (their code changed) takes minutes
SETTLE = 0.5  # seconds after each load before the server's CPU is read (answers still queued)


def cached_log(root: Path, posts: int) -> Path:
    """The cache's entry of ``posts`` posts for ``root``'s app, or an error saying how to make it (only read)."""
    cache = scale_log.Cache(scale_log.default_cache_dir())
    entry = cache.find(f"sqlite-{posts}-{scale_log.app_key(root)}")
    if entry is None:
        raise SystemExit(
            f"error: no cached log of {posts:,} posts for {root}'s app: run `python -m bench.scale --posts {posts} "
            "--backend sqlite --only rebuild` from that checkout first"
        )
    return entry


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        raise SystemExit(__doc__.split("\n\n")[1])
    other, posts, seconds, rounds = [*args, "100000", "5", "3"][:4]
    if wrk.find() is None:
        raise SystemExit("error: wrk is not installed (apt-get install wrk)")
    options = list(scale.FIELDS)  # of ``feature add posts``
    with tempfile.TemporaryDirectory(prefix="bench-versus-reads-") as scratch_dir:
        scratch = Path(scratch_dir)
        checkouts = {"this": REPO, "other": Path(other).resolve()}
        roots = {label: generate(path, scratch / label, options, scale.APP) for label, path in checkouts.items()}
        entry = cached_log(roots["other"], int(posts))
        ids = entry / "ids.txt"
        cpu: dict[tuple[str, str], list[float]] = {}
        rates: dict[tuple[str, str], list[float]] = {}
        p99s: dict[tuple[str, str], list[float]] = {}
        with (
            served(roots["this"], copy(entry, scratch / "this.db"), scratch / "this.log", limit=START) as this,
            served(roots["other"], copy(entry, scratch / "other.db"), scratch / "other.log", limit=START) as that,
        ):
            servers = {"this": this, "other": that}
            for number in range(int(rounds)):
                for load, (path, with_ids) in LOADS.items():
                    for label, server in servers.items():
                        assert server.process is not None
                        script = wrk.paths_script(path, ids) if with_ids else ""
                        before = cpu_seconds(server.process.pid)
                        result = wrk.run(server.url + path, seconds=int(seconds), script=script)
                        time.sleep(SETTLE)
                        used = (cpu_seconds(server.process.pid) - before) / max(1, result.requests) * 1e6
                        key = (load, label)
                        cpu.setdefault(key, []).append(used)
                        rates.setdefault(key, []).append(result.rate)
                        p99s.setdefault(key, []).append(result.p99_ms)
                        print(
                            f"round {number + 1} {load:10} {label:5}: {result.rate:7,.0f} req/s, "
                            f"p99 {result.p99_ms:7.1f} ms, {used:6,.0f} µs of server CPU per request "
                            f"({result.describe()}); load average {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
    print(f"\nmedians of {rounds} rounds, {int(posts):,} posts, wrk -c32 for {seconds} s per load:\n")
    print("| load | this: req/s, p99, CPU/request | other | CPU ratio (this / other) |")
    print("|---|---|---|---|")
    for load in LOADS:
        this_cpu, other_cpu = median(cpu[(load, "this")]), median(cpu[(load, "other")])
        cells = [
            f"{median(rates[(load, label)]):,.0f} req/s, {median(p99s[(load, label)]):,.1f} ms, "
            f"{median(cpu[(load, label)]):,.0f} µs"
            for label in ("this", "other")
        ]
        print(f"| {load} | {cells[0]} | {cells[1]} | {this_cpu / other_cpu:.2f}× |")


def copy(entry: Path, target: Path) -> str:
    """A working copy of a cached log: the server writes to it (its lease, its checks), the cache stays as it was."""
    shutil.copyfile(entry / "log.db", target)
    return str(target)


if __name__ == "__main__":
    main()
