"""What searching a provider's answer for the summary key costs: ``core.redaction.redact`` against 0.19.0's search.

Every answer of the summary provider, error or summary, is searched for the API key
before it is stored (issue 28, trial 3). The answers here are 4 KB of this repository's
README and guide, which hold paths, URLs and markup (runs the search decodes), and of
plain repeated prose; none holds the key, the usual case. The baseline is the search
0.19.0 shipped, reproduced below: it found only runs of the key's letters in a row and,
by a slip, folded the whole answer once per window of the key.

Both run alternately in this process, in CPU time; the ratio is the median of the rounds'.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable

from bench.common import REPO, Result, Row, app_module, main, median

SIZES = {"smoke": (5, 3), "full": (100, 9)}  # (calls per round and side, rounds)
KEY = "sk-proj-Q7vR2mXk9Lp4Wn8Ys3Tb6Hd1Jf5Gc0ZeaB3dE6gH9jK2mN"
ANSWER_BYTES = 4096
TARGET_MS = 10.0  # per 4 KB answer: well under a provider's own answer time
NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")


def answers() -> dict[str, str]:
    guide = (REPO / "docs" / "guide.md").read_text()
    readme = " ".join((REPO / "README.md").read_text().split())
    return {
        "guide (markup, paths)": guide[20_000 : 20_000 + ANSWER_BYTES],
        "README prose": readme[:ANSWER_BYTES],
        "plain prose": ("The quick brown fox jumps over the lazy dog. " * 100)[:ANSWER_BYTES],
    }


def search_of_0_19(text: str, secret: str, run: int = 8) -> str:
    """0.19.0's search, as far as deciding that an answer without the key has none."""
    folded_secret = _folded(secret)
    windows = {
        window[start : start + run]
        for window in (folded_secret, folded_secret[::-1])
        for start in range(len(window) - run + 1)
    }
    if not any(window in _folded(text) for window in windows):
        return text
    raise AssertionError("the answers here hold no key")


def _folded(text: str) -> str:
    normal = unicodedata.normalize("NFKD", text).casefold()
    if not normal.isascii():
        normal = "".join(char for char in normal if not unicodedata.category(char).startswith("M"))
    return NOT_LETTER_OR_DIGIT.sub("", normal)


def cpu_ms(search: Callable[[str, str], str], text: str, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        search(text, KEY)
    return (time.process_time() - start) / calls * 1000


def run(size: str) -> list[Row]:
    calls, rounds = SIZES[size]
    redact = app_module("core.redaction").redact
    rows: list[Row] = []
    for name, text in answers().items():
        assert redact(text, KEY) == text  # nothing to blank: the usual answer
        samples = [(cpu_ms(redact, text, calls), cpu_ms(search_of_0_19, text, calls)) for _ in range(rounds)]
        ours, before = median(o for o, _ in samples), median(b for _, b in samples)
        rows.append(
            Result(
                f"key search in a 4 KB answer, CPU per answer ({name}), vs 0.19.0's",
                ours,
                before,
                "ms",
                median(o / b for o, b in samples),
                f"≤ {TARGET_MS:g} ms",
                ours <= TARGET_MS,
            )
        )
    return rows


if __name__ == "__main__":
    main(run)
