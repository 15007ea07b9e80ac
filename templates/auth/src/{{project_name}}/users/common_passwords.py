"""The most common passwords of 12 characters or more, refused for new passwords (NIST SP 800-63B, 3.1.1.2).

A short list on purpose: the rules already refuse anything shorter than 12
characters and one character repeated, which removes most of the lists that
breach corpora top (``123456``, ``password``, ``qwerty``...). What is left are
the keyboard walks, number runs and phrases that lead those lists at 12+
characters (SecLists' and the NCSC's top passwords, and the famous examples).
No maintained blocklist package is on our package index; to check against a
breach corpus, add a lookup here (for instance a k-anonymity range query) and
keep this list as the offline floor. Compared after NFKC normalisation, ignoring
case and spaces, so ``Password 1234`` is ``password1234``.
"""

from __future__ import annotations

LISTED = """
    123456789012 1234567890123 12345678901234 123456789123 123123123123 121212121212
    123412341234 123456123456 112233445566 111222333444 098765432109 987654321098
    qwertyuiop12 qwertyuiop123 qwertyuiop1234 qwerty123456 qwerty1234567 123456qwerty
    1234567890qwerty qwertyuiopasdf qwertyuiopasdfghjkl qwertyqwerty qazwsxedcrfv
    1qaz2wsx3edc 1q2w3e4r5t6y 1q2w3e4r5t6y7u zaq12wsxcde3 asdfghjkl123
    zxcvbnm12345 asdfasdfasdf abcdefghijkl abcdefghijklm abc123456789 abcd12345678
    abcdef123456 123456abcdef abcabcabcabc
    password1234 password12345 password123456 password123! password1234! passwordpassword
    p@ssw0rd1234 passw0rd1234 mypassword123 password2024 password2025 password2026
    iloveyou1234 iloveyouiloveyou welcome12345 welcome123456 letmein12345 changeme1234
    administrator admin1234567 adminadmin123 football1234 baseball1234 sunshine1234
    princess1234 monkey123456 dragon123456 starwars1234 superman1234 trustno1trustno1
    correcthorsebatterystaple thequickbrownfoxjumpsoverthelazydog
"""
COMMON = frozenset(LISTED.split())


def is_common(password: str) -> bool:
    """Whether ``password`` (already normalised) is on the list, whatever its case and spaces."""
    return "".join(password.split()).casefold() in COMMON
