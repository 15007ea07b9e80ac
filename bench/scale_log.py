"""The big log that ``bench.scale`` serves: posts with summaries, written through the app's own log API.

Each post is the three messages a real one leaves: ``posts/create``, the summary worker's
``posts/request-summary-generation`` and ``posts/set-generated-summary``, with payloads the
generated command models accept (distinct titles, a spread of statuses, ~300 characters of
content). They go in with ``open_log(...).append_many`` in big batches, never hand-written
SQL, so the log is whatever the app's backend makes of it today; the summary worker's
position is set to the head and its table is built by the app's own ``projections rebuild
worker:…``, so a start finds what a served app that wrote the log would have left.

Building a million posts takes minutes, so a built log is cached (an SQLite file, or a
stopped PostgreSQL cluster's data directory), keyed by the number of posts, the backend and
a hash of the generated app's source: a change to the templates builds a new one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from petrock.user_cache import user_cache

FORMAT = 3  # bump when what build() writes changes, so old cache entries are not used
SEED = 25
BATCH_POSTS = 10_000  # 30,000 messages per append_many (one transaction)
SAMPLE_IDS = 10_000  # ids written out for the get-by-id load
SUMMARY_WORKER = "posts-summaries"
KEEP_ENTRIES = 4  # cache entries kept, newest used first
STATUSES = (("published", 0.6), ("draft", 0.9), ("archived", 1.0))  # cumulative shares
WORDS = (
    "garden",
    "river",
    "morning",
    "letter",
    "window",
    "harbor",
    "winter",
    "market",
    "station",
    "orchard",
    "kitchen",
    "bridge",
    "lantern",
    "meadow",
    "journey",
    "library",
    "mountain",
    "village",
    "notebook",
    "evening",
    "summer",
    "island",
    "forest",
    "valley",
    "coffee",
    "bicycle",
    "painting",
    "festival",
    "teacher",
    "neighbor",
    "story",
    "recipe",
    "weather",
    "season",
    "planet",
    "signal",
    "engine",
    "quiet",
    "bright",
    "careful",
    "early",
    "gentle",
    "honest",
    "hidden",
    "simple",
    "steady",
    "sudden",
    "warm",
    "wild",
    "patient",
    "curious",
    "builds",
    "carries",
    "finds",
    "keeps",
    "opens",
    "reads",
    "shares",
    "starts",
    "watches",
    "writes",
    "follows",
    "gathers",
    "remembers",
    "slowly",
    "often",
    "rarely",
    "together",
    "again",
    "before",
    "after",
    "during",
    "around",
    "between",
    "beneath",
    "beyond",
    "across",
)


@dataclass(frozen=True)
class BuiltLog:
    """A log ready to serve: where it is, how big, and a sample of its post ids (one a line in ``ids_file``)."""

    target: str  # an SQLite file path or a postgresql:// URL
    posts: int
    messages: int
    ids_file: Path
    build_seconds: float | None  # None when it came from the cache
    database_pids: Callable[[], list[int]] = list  # the database server's processes (none for SQLite)


def generate(posts: int) -> Iterator[tuple[list[tuple[str, str]], list[str]]]:
    """Batches of messages (type, JSON text) for ``posts`` posts, each with the ids sampled from it."""
    rng = random.Random(SEED)
    sentences = [_sentence(rng) for _ in range(4096)]
    step = max(1, posts // SAMPLE_IDS)
    for first in range(0, posts, BATCH_POSTS):
        batch: list[tuple[str, str]] = []
        sample: list[str] = []
        for n in range(first, min(posts, first + BATCH_POSTS)):
            id, request_id = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(128):032x}"
            picked = [sentences[rng.getrandbits(12)] for _ in range(5)]
            content = " ".join(picked)
            draw = rng.random()
            status = next(name for name, share in STATUSES if draw < share)
            title = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {rng.choice(WORDS)} {n}"
            create = {"id": id, "title": title, "content": content, "status": status}
            request = {"request_id": request_id, "item_id": id, "content": content}
            summary = {"request_id": request_id, "item_id": id, "summary": picked[0]}
            batch.append(("posts/create", json.dumps(create)))
            batch.append(("posts/request-summary-generation", json.dumps(request)))
            batch.append(("posts/set-generated-summary", json.dumps(summary)))
            if n % step == 0:
                sample.append(id)
        yield batch, sample


def _sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(6, 10))
    return " ".join(words).capitalize() + "."


def build(package: str, target: str, posts: int, ids_file: Path, *, progress: bool = True) -> float:
    """Append ``posts`` posts to the (empty) log at ``target`` through the app's own API; returns seconds."""
    core = importlib.import_module(f"{package}.core")  # open_log is part of the core's public surface
    began = time.perf_counter()
    log = core.open_log(target)
    try:
        head = 0
        with ids_file.open("w") as ids:
            for done, (batch, sample) in enumerate(generate(posts), 1):
                head = log.append_many(batch)[-1].id
                ids.writelines(f"{id}\n" for id in sample)
                if progress and done % 10 == 0:
                    rate = done * len(batch) / (time.perf_counter() - began)
                    print(f"  built {head:,} messages ({rate:,.0f} msg/s)", file=sys.stderr, flush=True)
        if head:
            log.set_position(SUMMARY_WORKER, head)
    finally:
        log.close()
    build_worker_state(package, target)
    return time.perf_counter() - began


def rebuilds_worker_states(src: Path, package: str) -> bool:
    """Whether the app in ``src`` can rebuild a worker's state ahead of a start (``rebuild worker:NAME``)."""
    return "worker:" in rebuild_usage(src, package)


@functools.cache
def rebuild_usage(src: Path, package: str) -> str:
    """``python -m PACKAGE projections rebuild --help`` of the app in ``src`` (asked once per run: an app's
    start costs the best part of a second)."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", package, "projections", "rebuild", "--help"]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False).stdout


def build_worker_state(package: str, target: str) -> None:
    """The projections and the summary worker's table, built up to the head by the app itself. Without
    the worker's table the first start rebuilds it in the serving process, and the loads would measure
    that rebuild."""
    src = Path(importlib.import_module(package).__path__[0]).parent
    if not rebuilds_worker_states(src, package):
        return  # an app from before worker states could be rebuilt ahead of a start
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "APP_DB": target}
    command = [sys.executable, "-m", package, "projections", "rebuild"]
    print("  building the projections and the summary worker's table", file=sys.stderr, flush=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"projections rebuild failed:\n{result.stderr[-2000:]}")


def app_key(root: Path) -> str:
    """A hash of the generated app's source: what the log's tables and payloads depend on."""
    digest = hashlib.sha256(f"format {FORMAT}".encode())
    for path in sorted((root / "src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


class Cache:
    """Built logs kept between runs, in ``root`` (None: nothing kept). Entries appear whole or not at all."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def find(self, key: str) -> Path | None:
        if self.root is None or not (self.root / key).is_dir():
            return None
        os.utime(self.root / key)  # recently used: pruned last
        return self.root / key

    @contextlib.contextmanager
    def adding(self, key: str) -> Iterator[Path]:
        """A directory to fill; it becomes entry ``key`` if the block ends normally, else it is removed."""
        assert self.root is not None
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned()
        staging = self.root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            yield staging
            shutil.rmtree(self.root / key, ignore_errors=True)
            staging.rename(self.root / key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._prune()

    def _remove_abandoned(self) -> None:
        """Staging directories of runs that were killed (their process is gone)."""
        assert self.root is not None
        for staging in self.root.glob(".tmp-*"):
            pid = int(staging.name.rsplit("-", 1)[1])
            if not Path(f"/proc/{pid}").exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _prune(self) -> None:
        assert self.root is not None
        entries = sorted(
            (path for path in self.root.iterdir() if path.is_dir() and not path.name.startswith(".")),
            key=lambda path: path.stat().st_mtime,
            reverse=True,
        )
        for old in entries[KEEP_ENTRIES:]:
            shutil.rmtree(old, ignore_errors=True)


def default_cache_dir() -> Path:
    return user_cache("petrock-bench", "scale")


# --- the two backends: a built log to serve, and empty ones to compare with ---

EmptyLog = Callable[[], str]  # makes a new empty log and returns its --db value


@contextlib.contextmanager
def sqlite_logs(root: Path, posts: int, cache: Cache, scratch: Path) -> Iterator[tuple[BuiltLog, EmptyLog]]:
    """A working copy of the built SQLite log (the cached file stays pristine), and fresh empty files."""
    key = f"sqlite-{posts}-{app_key(root)}"
    built: float | None = None
    entry = cache.find(key)
    if entry is None and cache.root is None:
        entry = scratch / "built"
        entry.mkdir()
        built = build(root.name, str(entry / "log.db"), posts, entry / "ids.txt")
    elif entry is None:
        with cache.adding(key) as staging:
            built = build(root.name, str(staging / "log.db"), posts, staging / "ids.txt")
        entry = cache.find(key)
        assert entry is not None
    work = scratch / "app.db"
    shutil.copyfile(entry / "log.db", work)  # also brings it into the OS cache, as a server in use has it
    log = BuiltLog(str(work), posts, posts * 3, entry / "ids.txt", built)
    numbers = itertools.count(1)
    yield log, lambda: str(scratch / f"empty-{next(numbers)}.db")


@contextlib.contextmanager
def postgres_logs(root: Path, posts: int, cache: Cache, scratch: Path) -> Iterator[tuple[BuiltLog, EmptyLog]]:
    """A throwaway PostgreSQL server (tests/pg.py) holding the built log, and fresh empty databases on it.

    The cache keeps the stopped server's data directory; a run starts a copy of it.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.pg import Cluster, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    key = f"postgres{bin_dir.parent.name}-{posts}-{app_key(root)}"
    server = Cluster(bin_dir)
    try:
        built: float | None = None
        entry = cache.find(key)
        if entry is not None:
            _copy_tree(entry / "data", server.data)
            server.start()
            database = json.loads((entry / "meta.json").read_text())["database"]
            ids_file = entry / "ids.txt"
        else:
            server.start()
            url = server.create_database()
            database = url.rsplit("/", 1)[1]
            ids_file = scratch / "ids.txt"
            built = build(root.name, url, posts, ids_file)
            settle(url)
            if cache.root is not None:
                server.stop()
                with cache.adding(key) as staging:
                    _copy_tree(server.data, staging / "data")
                    shutil.copyfile(ids_file, staging / "ids.txt")
                    (staging / "meta.json").write_text(json.dumps({"database": database, "posts": posts}))
                server.start()
        log = BuiltLog(server.url(database), posts, posts * 3, ids_file, built, lambda: server_processes(server.data))
        yield log, server.create_database
    finally:
        server.destroy()


def settle(url: str) -> None:
    """Vacuum and analyze the freshly loaded database. One that grew to this size would have had
    autovacuum pass over it along the way; a bulk-loaded one gets that pass in the middle of the
    measurements instead."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def server_processes(data: Path) -> list[int]:
    """The PostgreSQL server's processes: the postmaster (its pid is in the data directory) and its children."""
    with contextlib.suppress(OSError, ValueError):
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]
    return []


def _copy_tree(source: Path, destination: Path) -> None:
    """A copy keeping owners and modes (PostgreSQL refuses a data directory it does not own)."""
    shutil.rmtree(destination, ignore_errors=True)
    subprocess.run(["cp", "-a", str(source), str(destination)], check=True)
