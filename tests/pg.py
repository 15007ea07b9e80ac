"""A throwaway PostgreSQL cluster for the tests, from Debian's ``postgresql`` package.

``initdb`` + ``pg_ctl`` in a temp dir, on a free loopback port, with the unix socket
in the same dir and fsync off (the tests never survive an OS crash, only process
crashes and restarts, which PostgreSQL survives without fsync). Commit timestamps are
tracked, so a test can check that messages were committed in the order of their ids. ``initdb`` refuses to
run as root, so as root every server command runs as the ``postgres`` user through
``runuser``. One cluster per test session (per xdist worker); every test gets its own
database. Without the binaries, the PostgreSQL tests skip with one reason line.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import free_port

SKIP_REASON = "PostgreSQL tests skipped: no initdb/pg_ctl (apt-get install postgresql)"


def postgres_bin_dir() -> Path | None:
    """Debian installs the server binaries under /usr/lib/postgresql/VERSION/bin; newest wins."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def runuser() -> str | None:
    """``runuser`` (util-linux) lives in sbin, which a root shell's PATH does not always hold (``env -i``, cron)."""
    return shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")


def psycopg_missing() -> str | None:
    """Why the PostgreSQL tests cannot run, or None when they can."""
    if postgres_bin_dir() is None:
        return SKIP_REASON
    if os.geteuid() == 0 and runuser() is None:
        return "PostgreSQL tests skipped: as root they run the server through runuser, which is missing (util-linux)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "PostgreSQL tests skipped: psycopg is missing (pip install -e '.[test]')"
    return None


class Cluster:
    """A PostgreSQL server of our own: start, stop, restart, fresh databases."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="petrock-pg-"))
        self.data = self.root / "data"
        self.log_file = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = [runuser() or "runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}{self.log()}")
        return result

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text()[-4000:]
        return ""

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=200 -c track_commit_timestamp=on"
        )
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log_file), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``immediate`` is the crash case (no shutdown checkpoint)."""
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL server (skips the test when PostgreSQL or psycopg is missing)."""
    reason = psycopg_missing()
    if reason is not None:
        pytest.skip(reason)
    cluster = Cluster(postgres_bin_dir())  # type: ignore[arg-type]
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a fresh, empty database for this test."""
    return pg_cluster.create_database()


def postgres_report_line() -> str | None:
    """Why the PostgreSQL tests cannot run here, for the run's summary (skips are hidden under -q)."""
    return psycopg_missing()
