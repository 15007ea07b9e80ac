"""Find a secret (the summary API key) in text from elsewhere, however it was disguised, and blank it.

A provider, or a proxy on the way to it, may echo the key it was sent: whole, cut,
wrapped, reformatted or encoded. :func:`redact` reads the text as a person (or a
decoder) would and looks for pieces of the key in that reading:

- **Encodings are undone first**: percent-escapes (``%73%6B``), HTML entities
  (``&#115;``, ``&#x73;``, ``&amp;``), backslash escapes (``\\u0073``, ``\\x73``, octal
  ``\\163`` (three digits), CSS ``\\73`` or ``\\000073``), markup tags (``<b>s</b>``, read as
  nothing), each up to :data:`DECODINGS` times (an escape of an escape); and every run of
  base64 (standard or URL-safe) or hex is decoded and searched too, and so are the runs in
  what it decodes to, :data:`DECODINGS` levels deep (base64 of base64, hex of base64, ...).
- **Letters are compared as a reader sees them**: compatibility forms undone
  (fullwidth, mathematical letters), accents (combining marks) dropped, tag
  characters read as the ASCII they spell, case folded, and the Cyrillic, Greek and
  Armenian letters that look like Latin ones read as those (:data:`LOOK_ALIKES`);
  only letters and digits count, so separators and invisible characters between them
  do not hide anything.
- **A piece is** :data:`MIN_RUN` of the key's letters and digits in a row, forwards,
  reversed, or in rot13 (either way); or :data:`MIN_SPACED_RUN` of them in order with
  up to :data:`MAX_GAP` other letters or digits between each two (a character
  inserted every few, each character doubled, markup around each character).

Wherever a piece is found, the whole run of text around it up to the next whitespace
is replaced by ``[redacted]``, not only the letters that matched.

Not caught: any other cipher or encoding (Caesar shifts other than rot13, XOR,
base32, encryption), look-alikes outside the table (or ASCII ones: ``0`` for ``O``,
``1`` for ``l``) replacing one character in every few, more than two other characters
between each two of the key's, and pieces shorter than the runs above. A key of very
few letters and digits cannot be told from other text and is found only whole.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from .text import HIDDEN_IN_A_TEXT

REDACTED = "[redacted]"
MIN_RUN = 8  # of the key's letters and digits in a row
MIN_SPACED_RUN = 12  # of them in order, with other characters between
MAX_GAP = 2  # other letters or digits between two of the key's in a spaced run
DECODINGS = 2  # rounds of escapes undone (a percent-encoded entity is found)
MIN_ENCODED_RUN = 16  # characters of base64 or hex worth decoding (12 bytes, the shortest piece)

# Unicode's tag characters (U+E0020-U+E007E) spell ASCII invisibly: each is read as the letter it encodes.
TAGS_AS_ASCII = {code: code - 0xE0000 for code in range(0xE0020, 0xE007F)}
# The letters of the scripts used to spoof Latin text (Cyrillic, Greek, Armenian) that look like
# Latin letters or digits: Unicode's confusables (UTS #39) for them, plus a few it lists as
# nearly alike (κ, χ, ь, Ԛ); I-like capitals read as I, not as UTS #39's l, to match a key's I.
# Capitals are read before case folding (Greek capital Nu looks like N, its small letter like v).
# No maintained library computes UTS #39 skeletons in pure Python; this table is all a key needs.
LOOK_ALIKE_CAPITALS = str.maketrans(
    "АВСЕНІЈКМОРЅТХУҮԚԜӀЗΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",  # Cyrillic, then Greek
    "ABCEHIJKMOPSTXYYQWl3ABEZHIKMNOPTYX",
)
LOOK_ALIKES = str.maketrans(
    "аеѕіјӏорсухһԁԛԝьɡοαιϳνρυχϲκγօսցհոզ",  # Cyrillic, Latin script g, Greek, Armenian
    "aesijlopcyxhdqwbgoaijvpuxckyoughnq",
)
NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")
NOT_ASCII = re.compile(r"[^\x00-\x7f]")
ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")
# Escapes and markup, each read as the text it stands for (a tag as nothing).
ESCAPE = re.compile(
    r"(?P<tag></?[A-Za-z][^<>]{0,100}>)"
    r"|(?P<percent>(?:%[0-9A-Fa-f]{2})+)"
    r"|(?P<entity>&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
    r"|\\(?:[uU]\{(?P<braced>[0-9A-Fa-f]{1,6})\}|u(?P<u4>[0-9A-Fa-f]{4})"
    r"|U(?P<u8>[0-9A-Fa-f]{8})|x(?P<x2>[0-9A-Fa-f]{2})"
    r"|(?P<octal>[0-3][0-7]{2})(?![0-9A-Fa-f])|(?P<css>[0-9A-Fa-f]{1,6})[ \t\n\r\f]?)"
)
ESCAPE_START = re.compile(r"[<%&\\]")
BASE64_RUN = re.compile(rf"[A-Za-z0-9+/_-]{{{MIN_ENCODED_RUN},}}")
HEX_RUN = re.compile(r"(?:[0-9A-Fa-f]{2}[ :,.-]?){7,}[0-9A-Fa-f]{2}")
SENTENCE_PUNCTUATION = frozenset(".,;:!?'\"")

Span = tuple[int, int]


def redact(text: str, secret: str | None, min_run: int = MIN_RUN) -> str:
    """``text`` with every run of it that shows a piece of ``secret`` replaced by ``[redacted]`` (see above)."""
    if not secret or not text:
        return text
    finder = _finder(secret, min_run)
    if finder is None:
        return text
    decoded = _unescaped_text(text)
    if not finder.found(decoded) and not any(_decodes_to_a_piece(run, finder) for run in _encoded_runs(decoded)):
        return text  # the usual case, decided (almost) at C speed
    decoded, origins = _unescaped(text)
    spans = [_origin(origins, start, end) for start, end in finder.spans(decoded)]
    spans += [_origin(origins, *run.span()) for run in _encoded_runs(decoded) if _decodes_to_a_piece(run, finder)]
    # Pieces of one key overlap (each window of it is one): widen each stretch once, not each piece.
    return _blanked(text, [_whole_run(text, span) for span in _merged(spans)])


def fold(text: str) -> str:
    """``text`` as its letters and digits read: tags as ASCII, compatibility forms undone, accents
    dropped, case folded, look-alikes as the Latin letters they imitate, nothing else.
    Character by character: ``fold(a + b) == fold(a) + fold(b)``."""
    normal = unicodedata.normalize("NFKD", text.translate(TAGS_AS_ASCII)).translate(LOOK_ALIKE_CAPITALS).casefold()
    if not normal.isascii():
        normal = NOT_ASCII.sub(_without_mark, normal)
        normal = HIDDEN_IN_A_TEXT.sub("", normal.translate(LOOK_ALIKES))  # fillers such as U+3164 are "letters"
    return NOT_LETTER_OR_DIGIT.sub("", normal)


def _without_mark(match: re.Match[str]) -> str:
    return "" if unicodedata.category(match[0]).startswith("M") else match[0]


@dataclass(frozen=True)
class _Finder:
    """The pieces of one secret to look for: runs in a row, and runs spaced out."""

    windows: frozenset[str]
    run: int
    spaced: re.Pattern[str] | None

    def found(self, text: str) -> bool:
        folded = fold(text)
        return any(window in folded for window in self.windows) or bool(self.spaced and self.spaced.search(folded))

    def spans(self, text: str) -> list[Span]:
        """Where in ``text`` the pieces are."""
        folds = [fold(char) for char in text]
        owners = [index for index, folded_char in enumerate(folds) for _ in folded_char]
        folded = "".join(folds)
        found = [
            (start, start + self.run)
            for start in range(len(folded) - self.run + 1)
            if folded[start : start + self.run] in self.windows
        ]
        if self.spaced is not None:
            found += [match.span() for match in self.spaced.finditer(folded)]
        return [(owners[start], owners[end - 1] + 1) for start, end in found]


@functools.lru_cache(maxsize=8)
def _finder(secret: str, min_run: int) -> _Finder | None:
    folded = fold(secret)
    run = min(min_run, len(folded))
    if not run:
        return None
    variants = {folded, folded[::-1], folded.translate(ROT13), folded[::-1].translate(ROT13)}
    windows = frozenset(variant[start : start + run] for variant in variants for start in range(len(variant) - run + 1))
    spaced = None
    if len(folded) >= MIN_SPACED_RUN:
        pieces = {
            variant[start : start + MIN_SPACED_RUN]
            for variant in variants
            for start in range(len(variant) - MIN_SPACED_RUN + 1)
        }
        spaced = re.compile(_spaced_pattern(sorted(pieces)))
    return _Finder(windows, run, spaced)


def _spaced_pattern(pieces: list[str], depth: int = 0) -> str:
    """A regex for any of ``pieces`` in order, with up to MAX_GAP other characters between each two.

    A trie (pieces sharing a start share its test: a third of the time of a flat alternation);
    possessive gaps of characters other than the next one, so the regex never backtracks.
    """
    branches: dict[str, list[str]] = {}
    for piece in pieces:
        branches.setdefault(piece[depth], []).append(piece)
    alternatives = []
    for char, group in branches.items():
        head = char if depth == 0 else f"[^{char}]{{0,{MAX_GAP}}}+{char}"
        if depth + 1 < len(group[0]):
            rest = _spaced_pattern(group, depth + 1)
            head += f"(?:{rest})" if len({piece[depth + 1] for piece in group}) > 1 else rest
        alternatives.append(head)
    return "|".join(alternatives)


def _unescaped_text(text: str) -> str:
    """``text`` with its escapes and tags undone."""
    for _ in range(DECODINGS):
        if not ESCAPE_START.search(text):
            break
        text, undone = ESCAPE.subn(_decoded, text)
        if not undone:
            break
    return text


def _unescaped(text: str) -> tuple[str, list[Span]]:
    """:func:`_unescaped_text`, and for each of its characters the span of ``text`` it came from."""
    origins = [(index, index + 1) for index in range(len(text))]
    for _ in range(DECODINGS):
        if not ESCAPE_START.search(text):
            break
        pieces: list[str] = []
        next_origins: list[Span] = []
        kept_from = 0
        for match in ESCAPE.finditer(text):
            start, end = match.span()
            decoded = _decoded(match)
            pieces += [text[kept_from:start], decoded]
            next_origins += origins[kept_from:start] + [(origins[start][0], origins[end - 1][1])] * len(decoded)
            kept_from = end
        if not kept_from:
            break
        pieces.append(text[kept_from:])
        next_origins += origins[kept_from:]
        text, origins = "".join(pieces), next_origins
    return text, origins


def _decoded(match: re.Match[str]) -> str:
    if match["tag"]:
        return ""
    if match["percent"]:
        return bytes.fromhex(match["percent"].replace("%", "")).decode("utf-8", "replace")
    if match["entity"]:
        return html.unescape(match["entity"])
    if match["octal"]:
        return chr(int(match["octal"], 8))
    code = int(match["braced"] or match["u4"] or match["u8"] or match["x2"] or match["css"], 16)
    return chr(code) if code <= 0x10FFFF else match[0]


def _encoded_runs(text: str) -> list[re.Match[str]]:
    return [*BASE64_RUN.finditer(text), *HEX_RUN.finditer(text)]


def _decodes_to_a_piece(run: re.Match[str], finder: _Finder, depth: int = DECODINGS) -> bool:
    """Whether the base64 or hex ``run`` decodes, at some alignment, to text that holds a piece;
    or, ``depth`` times over, to text with a run of base64 or hex that does (base64 of hex, ...)."""
    for candidate in _decodings(run[0]):
        decoded = _unescaped_text(candidate)
        if finder.found(decoded):
            return True
        if depth > 1 and any(_decodes_to_a_piece(inner, finder, depth - 1) for inner in _encoded_runs(decoded)):
            return True
    return False


def _decodings(run: str) -> list[str]:
    decoders: list[Callable[[str], bytes]] = []
    if BASE64_RUN.fullmatch(run):  # the run may start inside the encoded text: every alignment
        standard = run.translate(str.maketrans("-_", "+/"))
        decoders += [functools.partial(_base64, standard[skip:]) for skip in range(4)]
    digits = "".join(char for char in run if char in "0123456789abcdefABCDEF")
    if len(digits) >= MIN_ENCODED_RUN:
        decoders += [
            functools.partial(bytes.fromhex, digits[skip:][: (len(digits) - skip) // 2 * 2]) for skip in (0, 1)
        ]
    decoded = []
    for decoder in decoders:
        try:
            decoded.append(decoder().decode("utf-8", "replace"))
        except ValueError:
            continue
    return decoded


def _base64(text: str) -> bytes:
    usable = text[: len(text) // 4 * 4]
    try:
        return base64.b64decode(usable)
    except binascii.Error:
        return b""


def _origin(origins: list[Span], start: int, end: int) -> Span:
    return origins[start][0], origins[end - 1][1]


def _whole_run(text: str, span: Span) -> Span:
    """``span`` widened to the whitespace around it (the rest of a disguised key goes too), less
    the punctuation that ends a sentence after it."""
    start, end = span
    while start and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    while end > span[1] and text[end - 1] in SENTENCE_PUNCTUATION:
        end -= 1
    return start, end


def _merged(spans: list[Span]) -> list[Span]:
    """``spans`` with those that overlap or touch joined, in order."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _blanked(text: str, spans: list[Span]) -> str:
    pieces, kept_from = [], 0
    for start, end in _merged(spans):
        pieces += [text[kept_from:start], REDACTED]
        kept_from = end
    pieces.append(text[kept_from:])
    return "".join(pieces)
