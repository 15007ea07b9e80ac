"""Passwords: argon2id hashes through pwdlib, at its recommended parameters (above OWASP's minimum).

Only hashes leave this module: commands, the log and the store never see a password.
A stored hash made with older parameters is replaced at the next sign-in
(:func:`check` returns the new hash). Unknown emails are checked against a hash of
nothing, so a sign-in takes as long whether or not the account exists.
"""

from __future__ import annotations

from functools import cache

from pwdlib import PasswordHash

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 reads it all; a limit keeps a megabyte "password" from costing a core
HASHER = PasswordHash.recommended()  # argon2id, m=64 MiB, t=3, p=4


def problem(password: str) -> str | None:
    """Why ``password`` is not acceptable, in a sentence for the form; None if it is."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    return None


def hash_password(password: str) -> str:
    """The argon2id hash to store (it embeds its own salt and parameters)."""
    return HASHER.hash(password)


def check(password: str, stored: str | None) -> tuple[bool, str | None]:
    """Whether ``password`` matches ``stored``, and a new hash when the parameters changed since.

    ``stored`` None (no such user) still costs one full hash check.
    """
    if stored is None or len(password) > MAX_LENGTH:
        HASHER.verify(password[:MAX_LENGTH], _hash_of_nothing())
        return False, None
    return HASHER.verify_and_update(password, stored)


@cache
def _hash_of_nothing() -> str:
    return HASHER.hash("no account has this password: it only makes the time equal")
