"""Dead letters: messages a worker gave up on, kept for an operator to look at and decide.

A :class:`~.worker.CommandWorker` whose handler keeps failing on one message
retries it within a budget (attempts, and optionally time). When the budget is
spent the message becomes a dead letter, recorded in the same transaction that
moves the worker's position past it, and the worker goes on with the next one.

An operator then decides (``python -m APP deadletters``): ``retry`` hands the
message to that worker once more (its other effects are not repeated), ``discard``
acknowledges it.

Everything is kept in the key/value store of the log's database, next to the
worker positions, so it shares their transactions and every process (and every
backend, SQLite or PostgreSQL) sees the same dead letters:

- ``failures/WORKER``: ``{message id: {attempts, first_failed_at, last_error}}``;
- ``deadletters/WORKER``: that worker's dead letters, oldest first;
- ``deadletters``: the last id handed out and the workers that have dead letters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .kv import KeyValueStore
from .log import Message, MessageLogBackend

INDEX_KEY = "deadletters"
KEPT_DECIDED = 100  # decided dead letters kept per worker, for the record


class DeadLetterStatus(StrEnum):
    DEAD = "dead"  # waiting for an operator
    RETRY = "retry"  # an operator asked for one more delivery; the worker picks it up
    RETRIED = "retried"  # the retry succeeded
    DISCARDED = "discarded"  # an operator acknowledged it; nothing more happens


UNDECIDED = (DeadLetterStatus.DEAD, DeadLetterStatus.RETRY)


class DeadLetterRefused(LookupError):
    """An operator's request cannot be done (unknown id, already decided)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message a worker gave up on."""

    id: int
    worker: str
    message_id: int
    type: str
    attempts: int
    error: str
    status: DeadLetterStatus
    dead_at: str
    decided_at: str | None = None

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


class DeadLetterStore:
    """Failure counts and dead letters, in the log's key/value store and its transactions."""

    def __init__(self, log: MessageLogBackend) -> None:
        self.log = log
        self._kv = KeyValueStore(log)

    # --- used by workers ---

    def record_failure(self, worker: str, message_id: int, error: str) -> tuple[int, str]:
        """Count one more failed attempt; returns ``(attempts so far, when the first one failed)``."""
        with self.log.transaction():
            failures = self._failures(worker)
            failure = failures.get(str(message_id)) or {"attempts": 0, "first_failed_at": _now()}
            failure = {**failure, "attempts": failure["attempts"] + 1, "last_error": error}
            self._kv.set(f"failures/{worker}", {**failures, str(message_id): failure})
        return failure["attempts"], failure["first_failed_at"]

    def failing_ids(self, worker: str) -> set[int]:
        """Ids of messages with failed attempts on record for ``worker``."""
        return {int(id) for id in self._failures(worker)}

    def clear_failures(self, worker: str, message_ids: set[int]) -> None:
        """Forget the failed attempts of messages handled after all; call inside the worker's commit."""
        failures = self._failures(worker)
        kept = {id: failure for id, failure in failures.items() if int(id) not in message_ids}
        if kept != failures:
            self._kv.set(f"failures/{worker}", kept)

    def bury(self, worker: str, message: Message, attempts: int, error: str) -> DeadLetter:
        """Record ``message`` as dead for ``worker``; call inside the transaction that moves its position."""
        with self.log.transaction():
            index = self._index()
            letter = DeadLetter(
                index["last_id"] + 1, worker, message.id, message.type, attempts, error, DeadLetterStatus.DEAD, _now()
            )
            workers = sorted({*index["workers"], worker})
            self._kv.set(INDEX_KEY, {"last_id": letter.id, "workers": workers})
            self._save(worker, [*self._letters(worker), letter])
            self.clear_failures(worker, {message.id})
        return letter

    def skipped_ids(self, worker: str) -> set[int]:
        """Ids of messages ``worker`` never handled (dead or discarded): a rebuild must skip them too."""
        return {letter.message_id for letter in self._letters(worker) if letter.status is not DeadLetterStatus.RETRIED}

    def retries_for(self, worker: str) -> list[DeadLetter]:
        """Dead letters an operator asked ``worker`` to try again, oldest first."""
        return [letter for letter in self._letters(worker) if letter.status is DeadLetterStatus.RETRY]

    def resolve(self, id: int) -> None:
        """Mark a retried dead letter done; call inside the transaction that commits the retry's commands."""
        self._decide(id, DeadLetterStatus.RETRIED, allowed=(DeadLetterStatus.RETRY,))

    def bury_again(self, id: int, attempts: int, error: str) -> None:
        """A retry failed through its whole budget: back to waiting for an operator."""
        with self.log.transaction():
            letter = self.get(id)
            self._update(
                replace(
                    letter,
                    status=DeadLetterStatus.DEAD,
                    attempts=letter.attempts + attempts,
                    error=error,
                    dead_at=_now(),
                    decided_at=None,
                )
            )
            self.clear_failures(letter.worker, {letter.message_id})

    # --- used by operators (the CLI) and health checks ---

    def get(self, id: int) -> DeadLetter:
        for worker in self._index()["workers"]:
            for letter in self._letters(worker):
                if letter.id == id:
                    return letter
        raise DeadLetterRefused(f"no dead letter with id {id}")

    def list(self, *, statuses: tuple[DeadLetterStatus, ...] = UNDECIDED) -> list[DeadLetter]:
        """Dead letters with one of ``statuses`` (by default the undecided ones), oldest first."""
        letters = [letter for worker in self._index()["workers"] for letter in self._letters(worker)]
        return sorted((letter for letter in letters if letter.status in statuses), key=lambda letter: letter.id)

    def counts(self) -> dict[str, int]:
        """Undecided dead letters by worker (for /healthz and inspect)."""
        undecided = {worker: [x for x in self._letters(worker) if x.status in UNDECIDED] for worker in self._workers()}
        return {worker: len(letters) for worker, letters in undecided.items() if letters}

    def retry(self, id: int) -> DeadLetter:
        """Ask the worker to handle the message once more (at its next cycle)."""
        return self._decide(id, DeadLetterStatus.RETRY, allowed=(DeadLetterStatus.DEAD,))

    def discard(self, id: int) -> DeadLetter:
        """Acknowledge the dead letter: the worker never handles that message."""
        return self._decide(id, DeadLetterStatus.DISCARDED, allowed=(DeadLetterStatus.DEAD,))

    # --- storage ---

    def _decide(self, id: int, status: DeadLetterStatus, *, allowed: tuple[DeadLetterStatus, ...]) -> DeadLetter:
        with self.log.transaction():
            letter = self.get(id)
            if letter.status not in allowed:
                raise DeadLetterRefused(f"dead letter {id} is already {letter.status.value}")
            decided = replace(letter, status=status, decided_at=_now())
            self._update(decided)
        return decided

    def _update(self, changed: DeadLetter) -> None:
        letters = self._letters(changed.worker)
        self._save(changed.worker, [changed if letter.id == changed.id else letter for letter in letters])

    def _save(self, worker: str, letters: list[DeadLetter]) -> None:
        """Store a worker's dead letters: every undecided one, and the newest decided ones."""
        decided = [letter for letter in letters if letter.status not in UNDECIDED][-KEPT_DECIDED:]
        kept = [letter for letter in letters if letter.status in UNDECIDED or letter in decided]
        self._kv.set(f"deadletters/{worker}", [letter.describe() for letter in kept])

    def _letters(self, worker: str) -> list[DeadLetter]:
        stored = self._kv.get(f"deadletters/{worker}", [])
        return [DeadLetter(**{**entry, "status": DeadLetterStatus(entry["status"])}) for entry in stored]

    def _failures(self, worker: str) -> dict[str, dict[str, Any]]:
        return self._kv.get(f"failures/{worker}", {})

    def _index(self) -> dict[str, Any]:
        return self._kv.get(INDEX_KEY, {"last_id": 0, "workers": []})

    def _workers(self) -> list[str]:
        return self._index()["workers"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
