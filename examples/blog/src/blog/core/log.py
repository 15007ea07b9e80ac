"""The message log: what every storage backend provides, and how to open one.

The log is the source of truth. State is kept beside it, in the store's tables
(core/store.py), written in the transaction that appends; workers read the log
to react. This module holds the interface (:class:`MessageLogBackend`)
and the values that cross it; each backend is one module in ``core/backends/``
with the same method names, in the style of the ``eventsourcing`` library's
recorders:

- ``backends/sqlite.py``: :class:`~.backends.sqlite.SQLiteLog`, the embedded
  default (a file path, one machine, one or several processes);
- ``backends/postgres.py``: ``PostgresLog`` for ``postgresql://`` URLs (many machines).

:func:`open_log` picks the backend from the ``--db`` value. Features never see
any of this: they talk to the App.

Several processes can share one log. The rules every backend keeps:

- **No command is decided on stale state.** An outermost :meth:`~MessageLogBackend.transaction`
  takes the log's write lock; the block validates against the store's tables, which
  every process shares and sees as of the lock, and appends. Ids are committed in
  order, so a reader of ``id > position`` never skips a late commit.
- **Followers learn of others' appends at once.** :meth:`~MessageLogBackend.follow` runs in
  each process and calls the subscribers when another process appended, so workers
  and event streams wake.
- **Each worker runs in one process at a time.** A lease per worker name, with an expiry,
  taken and renewed by :meth:`~MessageLogBackend.acquire_lease`. It doubles as a fence:
  :meth:`~MessageLogBackend.set_position` raises :class:`LeaseLost` when another process
  holds the lease, so a process that lost it cannot commit a position.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from .database_urls import database_refusal, is_postgres

if TYPE_CHECKING:
    from .store import Dialect

# (id, timestamp, type, data, version): a message as the database returns it.
Row = tuple[int, str, str, str, int]
Listener = Callable[[], None]

DEFAULT_LEASE_SECONDS = 3.0


class LogLockedError(RuntimeError):
    """Raised when another process already writes to the same database."""


class LogUnavailable(RuntimeError):
    """The ``--db`` value names a backend this app cannot open (unknown, or its driver is missing)."""


class LogUnreachable(ConnectionError):
    """The log's database server cannot be reached right now (commands answer 503); the next call reconnects."""


class CommitOutcomeUnknown(LogUnreachable):
    """The connection was lost as a transaction was committed, and the database stayed away too long to ask
    whether it had committed: it may have (commands answer 504; look before sending one again)."""


class LeaseLost(RuntimeError):
    """A worker position was about to be committed by a process that no longer holds the worker's lease."""


class Message(NamedTuple):
    """One entry of the log. ``data`` is the JSON text that was stored, ``version`` the version
    of its payload's schema (core/upcasting.py reads an old one as today's shape).

    Immutable, like every log entry. A named tuple rather than a frozen dataclass
    because it is made once per message on every append and read, and a tuple is
    built three times faster.
    """

    id: int
    timestamp: str
    type: str
    data: str
    version: int = 1

    def payload(self) -> dict[str, Any]:
        """The stored data, decoded."""
        return json.loads(self.data)


# Builds a Message from an (id, timestamp, type, data, version) tuple in C, with no Python-level
# __new__: appends and reads make one per row, and this is about three times faster.
message_from_row: Callable[[Row], Message] = functools.partial(tuple.__new__, Message)


def encode(data: Mapping[str, Any] | str) -> str:
    """A message payload as stored: JSON text (already-encoded text is kept as is)."""
    return data if isinstance(data, str) else json.dumps(data)


@runtime_checkable
class MessageLogBackend(Protocol):
    """What the App, the workers, the key/value store and the CLI need from a log.

    Every method is synchronous and safe to call from any thread; one instance
    is one connection's worth of state for one process.
    """

    path: str  # where the log lives, for people (a file path, or a URL without its password)
    owner: str  # this process's identity in worker leases
    dialect: Dialect  # the SQL of the store's tables on this database (backends/*_tables.py)

    # --- the log ---

    def append(self, type: str, data: Mapping[str, Any] | str, version: int = 1) -> Message:
        """Store one message, its payload's schema at ``version``, and return it with its id (joins an open transaction)."""
        ...

    def append_many(self, items: Iterable[tuple[str, Mapping[str, Any] | str]], version: int = 1) -> list[Message]:
        """Store several messages in one transaction (their payloads' schemas at ``version``)."""
        ...

    def after(self, position: int = 0, *, batch_size: int = 1000) -> Iterator[Message]:
        """Stream the messages with an id greater than ``position``, oldest first, in batches."""
        ...

    def rows_after(self, position: int = 0, *, batch_size: int = 10000) -> Iterator[Row]:
        """Like :meth:`after`, as plain rows: the fast path for rebuilds."""
        ...

    def batch_after(self, position: int, limit: int) -> list[Message]:
        """At most ``limit`` messages with an id greater than ``position``, oldest first, in one query
        (a worker's batch; :meth:`after` asks once more at the end, to see appends made meanwhile)."""
        ...

    def version(self) -> int:
        """The id of the newest committed message, 0 when the log is empty."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Commit every append and position update inside the block together, or none.

        The outermost block takes the write lock. A block nested in another is a
        savepoint: if it raises, only its own writes are undone.
        Subscribers hear about appends once the outermost block has committed.
        """
        ...

    def in_transaction(self) -> bool:
        """Whether the calling thread has a :meth:`transaction` block open (work it hands to
        another thread would wait for that block's lock, so a rebuild keeps to its own thread)."""
        ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every committed append of this process and when :meth:`follow`
        learns of another process's; returns an unsubscribe function."""
        ...

    async def follow(self, interval: float = 0.005) -> None:
        """Call the subscribers whenever another process appends, until cancelled (one task per process)."""
        ...

    # --- the store's SQL (core/store.py) ---

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read (inside the open transaction, if any)."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write in the open transaction (or in one of its own); returns the rows it changed."""
        ...

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one write for each of ``rows``, in the open transaction (or in one of its own)."""
        ...

    def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Add ``rows``, none of which ``table`` has yet, the fastest way the database has (a rebuild's bulk load)."""
        ...

    def connect_again(self) -> MessageLogBackend:
        """Another connection to the same database, for work on another thread (a rebuild)."""
        ...

    # --- worker positions and leases ---

    def position(self, name: str) -> int:
        """The stored log position of a worker (0 if it never stored one)."""
        ...

    def has_position(self, name: str) -> bool:
        """Whether the worker ever stored a position (a stored 0 counts)."""
        ...

    def set_position(self, name: str, position: int) -> None:
        """Store a worker's position; inside :meth:`transaction` it commits with the appends.

        Raises :class:`LeaseLost` (and writes nothing) when another process holds
        the worker's lease.
        """
        ...

    def acquire_lease(self, name: str, ttl: float = DEFAULT_LEASE_SECONDS) -> bool:
        """Take or renew the lease on worker ``name`` for ``ttl`` seconds; False while another process holds it."""
        ...

    def release_lease(self, name: str) -> None:
        """Give the lease up (on shutdown) so another process can take the worker over at once."""
        ...

    def leases(self) -> dict[str, dict[str, Any]]:
        """Every worker lease: ``{name: {"owner": ..., "expires_in": seconds}}``."""
        ...

    # --- the key/value store's table (values are JSON text; see kv.py) ---

    def kv_get(self, key: str) -> str | None: ...

    def kv_set(self, key: str, value: str) -> None: ...

    def kv_delete(self, key: str) -> bool: ...

    def kv_items(self) -> list[tuple[str, str]]: ...

    def close(self) -> None:
        """Close the connection(s) and release the writer lock, if held."""
        ...


def this_thread_in_transaction(mutex: threading.RLock, depth: Callable[[], int]) -> bool:
    """A backend's :meth:`MessageLogBackend.in_transaction`: whether the calling thread holds the
    log's ``mutex`` with a transaction block open (``depth() > 0``). A thread that cannot take the
    mutex at once is not the one holding it."""
    if not mutex.acquire(blocking=False):
        return False
    try:
        return depth() > 0
    finally:
        mutex.release()


def message_at(log: MessageLogBackend, id: int) -> Message | None:
    """The message with this id, or None if there is none (read through the interface: ``after``)."""
    message = next(iter(log.after(id - 1, batch_size=1)), None)
    return message if message is not None and message.id == id else None


def open_log(
    target: str,
    *,
    synchronous: str = "NORMAL",
    exclusive: bool = False,
    bound_answers: bool = False,
) -> MessageLogBackend:
    """The log at ``target``: a ``postgresql://`` URL, else an SQLite file path.

    ``exclusive`` holds the database for this process (or its ``serve
    --processes`` group): another server on it is refused with :class:`LogLockedError`.
    ``bound_answers`` is for a log an event loop serves from: on PostgreSQL, a wait for an
    answer longer than ``APP_DB_ANSWER_TIMEOUT`` seconds is cut (backends/silence.py).
    """
    refusal = database_refusal(target)
    if refusal is not None:
        raise LogUnavailable(refusal)
    if is_postgres(target):
        if importlib.util.find_spec(f"{__package__}.backends.postgres") is None:
            raise LogUnavailable(
                "this app has no PostgreSQL backend (core/backends/postgres.py) — pass --db with an SQLite file path"
            )
        try:
            from .backends.postgres import PostgresLog  # type: ignore[import-not-found]
            from .backends.silence import answer_timeout_from_env  # type: ignore[import-not-found]
        except ImportError as exc:
            raise LogUnavailable(
                f"the PostgreSQL backend needs its driver ({exc}) — pip install -e '.[postgres]'"
            ) from None
        try:
            answer_timeout = answer_timeout_from_env() if bound_answers else None
        except ValueError as exc:
            raise LogUnavailable(str(exc)) from None
        return PostgresLog(target, exclusive=exclusive, answer_timeout=answer_timeout)
    from .backends.sqlite import SQLiteLog

    return SQLiteLog(target, synchronous=synchronous, exclusive=exclusive)
