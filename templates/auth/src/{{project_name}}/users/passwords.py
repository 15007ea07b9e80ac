"""Passwords: the rules a new one must pass, and argon2id hashes through pwdlib at its recommended parameters.

Only hashes leave this module: commands, the log and the store never see a password.
Every password is NFKC-normalised before it is measured, hashed or checked, so the
same text typed on another keyboard or system (``é`` as one character, or as ``e``
and a combining accent) signs in. The rules are NIST SP 800-63B's: 12 to 1,024
characters, any printable Unicode, spaces included; refused are control characters,
one character repeated, and the most common passwords (:mod:`.common_passwords`).
A stored hash made with older parameters, or from text hashed before normalising,
is replaced at the next sign-in (:func:`check` returns the new hash). Unknown emails
are checked against a hash of nothing, so a sign-in takes as long whether or not the
account exists.
"""

from __future__ import annotations

import unicodedata
from functools import cache

from pwdlib import PasswordHash

from .common_passwords import is_common

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 reads it all; a limit keeps a megabyte "password" from costing a core
HASHER = PasswordHash.recommended()  # argon2id, m=64 MiB, t=3, p=4


def normalised(password: str) -> str:
    """The form that is hashed: NFKC, so composed and decomposed accents (and full-width letters) are one text."""
    return unicodedata.normalize("NFKC", password)


def problem(password: str) -> str | None:
    """Why ``password`` is not acceptable, in a sentence for the form; None if it is."""
    text = normalised(password)
    if len(text) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(text) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if any(unicodedata.category(character) in ("Cc", "Cs") for character in text):
        return "Leave out control characters (NUL, tab, line breaks and the like)."
    if len(set(text)) == 1:
        return "Use different characters, not one repeated."
    if is_common(text):
        return "This password is on the list of the most common ones."
    return None


def hash_password(password: str) -> str:
    """The argon2id hash to store (it embeds its own salt and parameters); ``ValueError`` if it breaks a rule."""
    reason = problem(password)
    if reason is not None:
        raise ValueError(reason)
    return HASHER.hash(normalised(password))


def check(password: str, stored: str | None) -> tuple[bool, str | None]:
    """Whether ``password`` matches ``stored``, and a new hash to store when it should be replaced.

    ``stored`` None (no such user) still costs what a wrong password costs. A hash
    made before passwords were normalised matches the text as it was typed: that
    is tried once more when the two differ, and a match is hashed anew, normalised.
    """
    text = normalised(password)
    if stored is None or len(text) > MAX_LENGTH:
        for _ in range(1 if text == password else 2):  # as many checks as a wrong password gets
            HASHER.verify(text[:MAX_LENGTH], _hash_of_nothing(HASHER))
        return False, None
    ok, new_hash = HASHER.verify_and_update(text, stored)
    if ok or text == password or not HASHER.verify(password, stored):
        return ok, new_hash
    return True, HASHER.hash(text)


@cache
def _hash_of_nothing(hasher: PasswordHash) -> str:
    """A hash made by ``hasher``, so checking it costs what checking a stored password costs."""
    return hasher.hash("no account has this password: it only makes the time equal")
