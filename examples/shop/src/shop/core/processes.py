"""``serve --processes N``: one parent keeps N server processes running on one port and one log.

The parent reserves the port and takes the database's lock once, then starts N
copies of ``python -m APP serve``. Each listens on its own ``SO_REUSEPORT``
socket, so the kernel spreads new connections evenly over them (one shared
socket would let whichever process wakes first accept a whole burst). They
inherit the database lock, so an unrelated second server on the same database
is still refused. The server processes share the log as
``core/log.py`` describes (a writer first applies what the others appended;
each worker runs in the one process holding its lease).

A server process that dies is started again, after a pause that grows while
it keeps dying young. Ctrl-C or SIGTERM is passed to every server process once;
each stops its workers and closes the log, and the parent exits when all have.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO

from .backends.sqlite import GROUP_LOCK_FD, lock_for_group

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
REUSE_PORT_OPTION = "--reuse-port"
HEALTHY_AFTER = 10.0  # seconds alive after which a restarted process's pause starts over
MAX_QUICK_DEATHS = 5  # a process dying young this many times in a row stops the group


class GroupFailed(RuntimeError):
    """A server process keeps dying right after it starts; the group gave up."""


@dataclass
class ServerProcess:
    """One slot of the group and the process currently filling it."""

    slot: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0


@dataclass(frozen=True)
class SharedDatabase:
    """What lets the server processes share the database: their environment, and the lock they inherit."""

    env: dict[str, str]
    lock: IO[str] | None  # keep it open while the group runs

    @property
    def pass_fds(self) -> list[int]:
        return [] if self.lock is None else [self.lock.fileno()]


def share_database(db: str) -> SharedDatabase:
    """Take the database for the group.

    An SQLite file gets one lock for the whole group (an unrelated server is still
    refused); a PostgreSQL URL needs nothing: its servers may run anywhere.
    """
    env = dict(os.environ)
    if db.startswith(("postgresql://", "postgres://")):
        return SharedDatabase(env, None)
    lock = lock_for_group(db)
    env[GROUP_LOCK_FD] = str(lock.fileno())
    return SharedDatabase(env, lock)


def without_option(args: Sequence[str], option: str) -> list[str]:
    """``args`` without ``option`` and its value (``--name V`` or ``--name=V``)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return kept


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind the port without listening: it stays the group's (others are refused), and gets no connections.

    A port something already answers on is refused first: another group (an old instance left
    running) would share it with this one through SO_REUSEPORT, and the kernel would split the
    connections between the two apps. (Two groups started at the same moment can both pass.)"""
    if _answers(host, port):
        raise OSError(errno.EADDRINUSE, f"something already answers on port {port} (another serve?)")
    return _reuse_port_socket(host, port)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def listen_on_shared_port(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A server process's own listening socket on the group's port."""
    sock = _reuse_port_socket(host, port)
    sock.listen(backlog)
    return sock


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def run_group(
    server_argv: Sequence[str],
    *,
    processes: int,
    env: dict[str, str],
    pass_fds: Sequence[int] = (),
    stop_timeout: float = 5.0,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """Keep ``processes`` copies of ``server_argv`` (plus ``--reuse-port``) running until asked to stop.

    ``on_exit`` gets the pid of each server process that exits on its own (to forget its
    live metrics). Returns the exit code: 0 after a requested stop, 1 when a process kept dying young.
    """
    argv = [*server_argv, REUSE_PORT_OPTION]
    fds = tuple(pass_fds)
    slots = [ServerProcess(slot) for slot in range(processes)]
    received: list[int] = []

    def remember(signum: int, _: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in STOP_SIGNALS}
    try:
        failure = None
        while not received and failure is None:
            now = time.monotonic()
            for server in slots:
                if server.process is not None and server.process.poll() is not None:
                    if on_exit is not None:
                        on_exit(server.process.pid)
                    failure = _note_death(server, now)
                if server.process is None and now >= server.restart_at and failure is None:
                    _start(server, argv, env, fds)
            time.sleep(0.05)
        _stop_all(slots, stop_timeout)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if failure is not None:
        logger.error("%s", failure)
        return 1
    return 0


def _start(server: ServerProcess, argv: list[str], env: dict[str, str], fds: Sequence[int]) -> None:
    server.process = subprocess.Popen(
        argv,
        env=env,
        pass_fds=fds,
        process_group=0,  # a terminal's Ctrl-C reaches the parent only, which passes it on once
        preexec_fn=_stop_with_parent,  # noqa: PLW1509 - the parent runs no other threads
    )
    server.started_at = time.monotonic()
    logger.info("server process %d started (pid %d)", server.slot, server.process.pid)


def _note_death(server: ServerProcess, now: float) -> str | None:
    """Schedule the restart of a process that exited; a message when the group should give up."""
    assert server.process is not None
    code = server.process.returncode
    lived = now - server.started_at
    server.process = None
    server.quick_deaths = 0 if lived >= HEALTHY_AFTER else server.quick_deaths + 1
    if server.quick_deaths >= MAX_QUICK_DEATHS:
        return f"server process {server.slot} exited {MAX_QUICK_DEATHS} times right after starting; stopping"
    pause = 0.0 if server.quick_deaths == 0 else min(10.0, 0.25 * 2**server.quick_deaths)
    server.restart_at = now + pause
    logger.warning(
        "server process %d exited with code %s after %.1fs; restarting in %.1fs", server.slot, code, lived, pause
    )
    return None


def _stop_all(slots: list[ServerProcess], stop_timeout: float) -> None:
    """SIGTERM every running server process once; kill the ones still running well past their timeout."""
    running = [server.process for server in slots if server.process is not None and server.process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout + 5.0
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("server process %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()


def _stop_with_parent() -> None:
    """In a server process, before it starts: on Linux, have the kernel send it SIGTERM when the
    parent dies, even by ``kill -9``, so no server is left running on its own."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
