"""What text fields accept: nothing that changes what a reader sees without being seen itself.

Control characters (NUL, terminal escapes) and Unicode's bidirectional overrides and
isolates (U+202A-U+202E, U+2066-U+2069) can hide part of a value or show it in
another order: ``invoice`` + U+202E + ``fdp.exe`` reads as ``invoiceexe.pdf``. Invisible
format characters (zero-width spaces, direction marks, tags, U+061C) and the "fillers"
that render as nothing (U+034F, U+3164, U+180E, variation selectors) make a title that
looks empty, or two names that look the same and are not. Features use these as
validators (``AfterValidator(visible_line)``) on their text fields.

What real text needs stays: the zero-width joiner and non-joiner (U+200D, U+200C) and the
emoji/text variation selectors (U+FE0E, U+FE0F) right after an emoji or a letter of a
script that joins (👨‍👩‍👧, ❤️, Persian and Indic words), and the tag characters of the
subdivision flags (🏴 + tags). Each is refused anywhere else (after a Latin letter, a space,
at the start, or alone), where it can only hide something.

A value must also show something: one letter, digit, punctuation mark or symbol at least,
not only accents (combining marks) with nothing under them, or private-use characters. And
a link's host may not hold what reads as a delimiter: ``https://good.example／evil/`` (U+FF0F)
or ``https://good.example＠evil.example/`` (U+FF20) names one host and shows another.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from pydantic_core import PydanticCustomError

# Unicode's format characters (category Cf), and the characters of other categories that show nothing.
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_FILLERS = "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u2800\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef"
# C0 controls, DEL, C1 controls, format characters and fillers; a line also refuses Unicode's
# line and paragraph separators, and a text keeps tab, line feed and carriage return.
HIDDEN_IN_A_LINE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{_FORMAT}{_FILLERS}]")
HIDDEN_IN_A_TEXT = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_FORMAT}{_FILLERS}]")
# What of each can be in an all-ASCII value (``str.isascii`` answers without a scan): C0 controls and DEL.
# Searching for one of these few is several times faster than for the classes above (which a rebuild
# of the log checks in every text field of every message).
ASCII_HIDDEN = {
    HIDDEN_IN_A_LINE: re.compile("[\\x00-\\x1f\\x7f]"),
    HIDDEN_IN_A_TEXT: re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]"),
}
MESSAGE = "Remove the invisible characters (they can hide text, change its direction, or make it look like other text)."
NOTHING_TO_SEE = "Write something visible: this has only accents or private-use characters, which show nothing."
HOST_MESSAGE = "Write the host with plain dots: it has a character that looks like '/', '@', '.' or another delimiter."
# What a URL's host may not show, in any form: its delimiters.
URL_DELIMITERS = frozenset("/@.:?#\\%")
# Unicode's names for them (a letter or mark named so looks like one: U+02D0 ː, U+A718 ꜘ, the combining U+0338).
DELIMITER_NAME = re.compile(r"\b(?:SOLIDUS|SLASH|COLON|FULL STOP|COMMERCIAL AT|NUMBER SIGN|QUESTION MARK|PERCENT)\b")
HOST_CATEGORIES = frozenset("LMN")  # letters, marks, numbers: what a host name is made of (IDNA)
SHOWN_CATEGORIES = frozenset("LNPS")  # letters, numbers, punctuation, symbols: what a reader sees
JOINERS = frozenset("\u200c\u200d")
PRESENTATION_SELECTORS = frozenset("\ufe0e\ufe0f")
BLACK_FLAG = "\U0001f3f4"  # a subdivision flag is it followed by tag characters
CANCEL_TAG = "\U000e007f"  # which end a subdivision flag's tags
MAX_FLAG_TAGS = 6  # a region (2) and a subdivision (up to 4): "gbeng", "usca"
LAST_LATIN = 0x24F  # a joiner after a Latin letter joins nothing


def visible_line(value: str) -> str:
    """A one-line value (names, titles, addresses): no control or invisible character."""
    _check(value, HIDDEN_IN_A_LINE)
    return value


def visible_text(value: str) -> str:
    """A longer text: line breaks and tabs are fine, other control and invisible characters are not."""
    _check(value, HIDDEN_IN_A_TEXT)
    return value


def visible_url(value: str) -> str:
    """A link (already ``http(s)://host...``): a visible line whose host spells no delimiter in disguise.

    A host's non-ASCII characters must be letters, marks or digits (what IDNA allows in a
    name): punctuation, symbols and spaces are refused (U+FF0F ／, U+2215 ∕, U+2571 ╱,
    U+2F03 ⼃, U+A789 ꞉, U+3002 。, U+FF20 ＠). So are the letters and marks that NFKC turns
    into a delimiter (U+FF0E ．, U+2024 ․) or that Unicode names after one (U+02D0 ː
    MODIFIER LETTER TRIANGULAR COLON, U+0338 COMBINING LONG SOLIDUS OVERLAY): browsers map
    some of them to the real one, and all of them read as one.
    """
    visible_line(value)
    host = re.split(r"[/?#]", value.partition("://")[2], maxsplit=1)[0]
    if not host.isascii() and any(_looks_like_a_delimiter(char) for char in host):
        raise PydanticCustomError("host_delimiter", HOST_MESSAGE)
    return value


@functools.lru_cache(maxsize=4096)
def _looks_like_a_delimiter(char: str) -> bool:
    if char.isascii():
        return False
    if unicodedata.category(char)[0] not in HOST_CATEGORIES:
        return True
    if URL_DELIMITERS & set(unicodedata.normalize("NFKC", char)):
        return True
    return any(DELIMITER_NAME.search(unicodedata.name(part, "")) for part in unicodedata.normalize("NFKD", char))


def without_invisible(text: str) -> str:
    """``text`` without the characters :func:`visible_text` refuses (for text from elsewhere: summaries)."""
    if not HIDDEN_IN_A_TEXT.search(text):
        return text
    return "".join(
        char for index, char in enumerate(text) if not HIDDEN_IN_A_TEXT.match(char) or _needed_here(text, index)
    )


def _check(value: str, hidden: re.Pattern[str]) -> None:
    if value.isascii():  # the usual value: a fast look for ASCII's few hidden characters
        if value.isprintable():
            return
        hidden = ASCII_HIDDEN[hidden]
    for found in hidden.finditer(value):  # the usual value has none: decided at C speed
        if not _needed_here(value, found.start()):
            raise PydanticCustomError("invisible_characters", MESSAGE)
    if value and not value.isascii() and not any(unicodedata.category(char)[0] in SHOWN_CATEGORIES for char in value):
        raise PydanticCustomError("nothing_visible", NOTHING_TO_SEE)


def _needed_here(value: str, index: int) -> bool:
    """Whether the invisible character at ``index`` is one real text needs where it stands."""
    char = value[index]
    before = value[index - 1] if index else ""
    after = value[index + 1] if index + 1 < len(value) else ""
    if char in PRESENTATION_SELECTORS:
        return bool(before) and (_is_symbol(before) or before in "#*" or before.isdigit())
    if char in JOINERS:
        return _joins(before) and _joins(after)
    if "\U000e0020" <= char <= "\U000e007f":  # tags: only in a subdivision flag's sequence
        return _in_a_flag(value, index)
    return False


def _in_a_flag(value: str, index: int) -> bool:
    """Whether the tag character at ``index`` is in a subdivision flag: 🏴, a few tags (``gbsct``),
    and the cancel tag U+E007F. Any longer run spells text invisibly (a hidden message, a key)."""
    start = index
    while start and "\U000e0020" <= value[start - 1] <= "\U000e007e":
        start -= 1
    end = index
    while end < len(value) and "\U000e0020" <= value[end] <= "\U000e007e":
        end += 1
    closed = end < len(value) and value[end] == CANCEL_TAG
    return start > 0 and value[start - 1] == BLACK_FLAG and closed and end - start <= MAX_FLAG_TAGS


def _is_symbol(char: str) -> bool:
    return bool(char) and unicodedata.category(char) in ("So", "Sk")


def _joins(char: str) -> bool:
    """An emoji (or its selector or skin tone), or a letter or mark of a script beyond Latin."""
    if not char or char.isspace():
        return False
    if _is_symbol(char) or char in PRESENTATION_SELECTORS:
        return True
    return unicodedata.category(char)[0] in "LM" and ord(char) > LAST_LATIN
