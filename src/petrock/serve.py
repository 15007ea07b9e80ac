"""``petrock serve``: run the app found around the current directory with its own ``serve``.

petrock does not import the app: it starts ``python -m APP serve`` in a child
process (the app's ``.venv`` interpreter when there is one), so what runs is
exactly what ``python -m APP serve`` runs. Everything that would make the app
fail on start-up in a confusing way (no app here, the port taken, a database
that cannot be written or is served already) is checked first and reported in
one line. Ctrl-C, SIGTERM and SIGHUP are passed to the child once; a clean
stop exits 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from petrock.errors import UserError
from petrock.project import Manifest, find_root

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DB = "app.db"
SYNCHRONOUS_MODES = ("NORMAL", "FULL")
LOG_FORMATS = ("text", "json")  # the generated app's core/logformat.py offers the same
TOKEN_VARIABLE = "APP_API_TOKEN"  # the generated app's core/auth.py reads the same variable
# How long past its own stop timeout the app gets before petrock kills it.
KILL_GRACE = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class PortInUse(UserError):
    """Another process listens on the port ``serve`` was asked to use."""


class DatabaseNotWritable(UserError):
    """The database file (or its directory) cannot be written."""


class DatabaseInUse(UserError):
    """Another server already owns the database: one serve process per database."""


@dataclass(frozen=True)
class ServeOptions:
    """What ``petrock serve`` was asked for."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: Path | None = None  # None: app.db in the app's root
    reload: bool = False
    synchronous: str = "NORMAL"
    stop_timeout: float = 5.0
    processes: int = 1  # server processes sharing the port and the database (the app's --processes)
    insecure: bool = False  # serve beyond loopback without APP_API_TOKEN (the app's --insecure)
    log_format: str = "text"  # the app's --log-format: readable text, or one JSON object per line


@dataclass(frozen=True)
class ServeCommand:
    """The child process that serves the app: argv, environment and working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    db: Path
    package: str


def prepare(options: ServeOptions, start: Path | None = None) -> ServeCommand:
    """Find the app, check the port and the database, and build the command that serves it."""
    root = find_root(start)
    package = Manifest.load(root).project_name
    if options.synchronous.upper() not in SYNCHRONOUS_MODES:
        raise UserError(
            f"unknown synchronous mode {options.synchronous!r}",
            "use NORMAL (survives a process crash) or FULL (survives power loss)",
        )
    if options.stop_timeout <= 0:
        raise UserError(f"--stop-timeout must be positive, not {options.stop_timeout}", "pass a number of seconds")
    if options.processes < 1:
        raise UserError(f"--processes must be 1 or more, not {options.processes}", "pass the number of cores to use")
    if options.processes > 1 and options.reload:
        raise UserError("--reload serves one process", "drop --processes, or drop --reload")
    if options.log_format not in LOG_FORMATS:
        raise UserError(f"unknown log format {options.log_format!r}", f"pass --log-format {' or '.join(LOG_FORMATS)}")
    db = (options.db if options.db is not None else root / DEFAULT_DB).expanduser().absolute()
    check_open_bind(options.host, insecure=options.insecure)
    check_port_free(options.host, options.port)
    check_database_writable(db)
    check_database_not_served(db)
    python = app_python(root)
    argv = [python, "-m", package, "serve", "--host", options.host, "--port", str(options.port), "--db", str(db)]
    argv += ["--synchronous", options.synchronous.upper(), "--stop-timeout", str(options.stop_timeout)]
    if options.reload:
        argv.append("--reload")
    if options.processes > 1:
        argv += ["--processes", str(options.processes)]
    if options.insecure:
        argv.append("--insecure")
    if options.log_format != "text":  # only when asked: apps made before it existed do not know the option
        argv += ["--log-format", options.log_format]
    return ServeCommand(argv, app_environment(root), root, db, package)


def app_python(root: Path) -> str:
    """The app's own virtualenv interpreter if it has one, else the one running petrock."""
    venv_python = root / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.is_file() else sys.executable


def app_environment(root: Path) -> dict[str, str]:
    """The current environment with the app's ``src`` first on PYTHONPATH (it need not be installed)."""
    env = dict(os.environ)
    paths = [str(root / "src"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def check_open_bind(host: str, *, insecure: bool) -> None:
    """Refuse, before anything starts, what the app itself refuses: an open bind beyond loopback."""
    tokens = [token for token in os.environ.get(TOKEN_VARIABLE, "").split(",") if token.strip()]
    if tokens or insecure or _is_loopback(host):
        return
    raise UserError(
        f"refusing to serve on {host} without {TOKEN_VARIABLE}: anyone who can reach it could send commands",
        f"set {TOKEN_VARIABLE} to a long random secret to require it, or pass --insecure to serve it open anyway",
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on (bound the way uvicorn binds it)."""
    if not 0 < port < 65536:
        raise UserError(f"port {port} is out of range", "pass --port between 1 and 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise UserError(
            f"cannot resolve host {host!r}", "pass --host 127.0.0.1 or an address of this machine"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is already in use", "stop what runs there or pass --port N"
                ) from None
            raise UserError(
                f"cannot listen on {host}:{port}: {exc.strerror}", "pass another --host or --port"
            ) from None


def check_database_writable(db: Path) -> None:
    """Refuse a database the app could not create or write, before it starts."""
    fix = "pass --db with a path in a directory you can write"
    if db.is_dir():
        raise DatabaseNotWritable(f"database path {db} is a directory", "pass --db with a file name")
    directory = db.parent
    if not directory.is_dir():
        raise DatabaseNotWritable(f"database directory {directory} does not exist", f"create it, or {fix}")
    try:
        # A real write probe: permission bits alone miss read-only mounts (and root ignores them).
        with tempfile.TemporaryFile(dir=directory):
            pass
        if db.exists():
            with open(db, "r+b"):
                pass
    except OSError as exc:
        raise DatabaseNotWritable(f"database path {db} is not writable ({exc.strerror})", fix) from None


def check_database_not_served(db: Path) -> None:
    """Refuse a database another ``serve`` holds: the app's writer lock sits beside it."""
    import fcntl

    lock_path = Path(f"{db}.lock")
    if not lock_path.exists():
        return
    with open(lock_path, "r+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DatabaseInUse(
                f"database {db} is already served by another process (one server owns one database)",
                "stop that server, or pass --db for another database",
            ) from None
        fcntl.flock(lock, fcntl.LOCK_UN)


def run(command: ServeCommand, *, stop_timeout: float, echo: Callable[[str], None] = print) -> int:
    """Run the app until it exits; returns petrock's exit code (0 after a requested stop)."""
    echo(f"petrock: serving {command.package} from {command.cwd} with {command.argv[0]} (Ctrl-C stops it)")
    # Its own process group: a terminal's Ctrl-C reaches only petrock, which passes it on once.
    # (Sent to both, uvicorn would take the second copy as "force quit".)
    received: list[int] = []  # filled by the handler, passed on by the loop below: no races

    def remember(signum: int, _: FrameType | None) -> None:
        received.append(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    stop_requested_at: float | None = None
    with _handling(STOP_SIGNALS, remember):
        child = subprocess.Popen(
            command.argv,
            cwd=command.cwd,
            env=command.env,
            process_group=0,
            preexec_fn=_stop_when_petrock_dies,  # noqa: PLW1509 - petrock runs no other threads
        )
        while child.poll() is None:
            while received:
                stop_requested_at = stop_requested_at or time.monotonic()
                child.send_signal(received.pop(0))
            if stop_requested_at is not None and time.monotonic() - stop_requested_at > stop_timeout + KILL_GRACE:
                echo(f"petrock: {command.package} did not stop within {stop_timeout + KILL_GRACE:.0f} s; killed it")
                child.kill()
                child.wait()
                return 1
            time.sleep(0.05)
    stopped = stop_requested_at is not None or bool(received)
    if child.returncode < 0 and not stopped:  # nobody asked: say so, or a kill -9 (the OOM killer's) ends in silence
        echo(f"petrock: {command.package} was killed by {signal.Signals(-child.returncode).name}")
    return exit_code(child.returncode, stopped=stopped)


def _stop_when_petrock_dies() -> None:
    """In the child, before the app starts: on Linux, have the kernel send it SIGTERM when
    petrock dies, even by ``kill -9``, so no server is left running without its parent."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def exit_code(returncode: int, *, stopped: bool) -> int:
    """petrock's exit code for the child's: 0 when it ended because we asked it to stop."""
    by_stop_signal = {-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}
    if returncode == 0 or (stopped and returncode in by_stop_signal):
        return 0
    return 128 - returncode if returncode < 0 else returncode


@contextmanager
def _handling(signals: tuple[signal.Signals, ...], handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
