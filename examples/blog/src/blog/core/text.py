"""What text fields accept: nothing that changes what a reader sees without being seen itself.

Control characters (NUL, terminal escapes) and Unicode's bidirectional overrides and
isolates (U+202A-U+202E, U+2066-U+2069) can hide part of a value or show it in
another order: ``invoice`` + U+202E + ``fdp.exe`` reads as ``invoiceexe.pdf``. Features use these
as validators (``AfterValidator(visible_line)``) on their text fields.
"""

from __future__ import annotations

import re

from pydantic_core import PydanticCustomError

# C0 controls, DEL, C1 controls and the bidi controls; a line also refuses Unicode's line and
# paragraph separators, and a text keeps tab, line feed and carriage return.
HIDDEN_IN_A_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
HIDDEN_IN_A_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
MESSAGE = "Remove the invisible control characters (they can hide text or change its direction)."


def visible_line(value: str) -> str:
    """A one-line value (names, titles, addresses): no control character at all."""
    if HIDDEN_IN_A_LINE.search(value):
        raise PydanticCustomError("invisible_characters", MESSAGE)
    return value


def visible_text(value: str) -> str:
    """A longer text: line breaks and tabs are fine, other control characters are not."""
    if HIDDEN_IN_A_TEXT.search(value):
        raise PydanticCustomError("invisible_characters", MESSAGE)
    return value
