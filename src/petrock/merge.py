"""3-way merges of generated files, and the conflict markers they can leave behind.

``git merge-file`` does the merging; this module adds what petrock needs around
it: merging text (not files), keeping the lines petrock injected between
``# petrock:`` markers out of the merge, and finding leftover markers in a tree.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from petrock import git
from petrock.inject import _import_key as import_key

# A line git writes at the start or end of a conflict (the middle `=======` alone is too common to trust).
CONFLICT_LINE = re.compile(r"^(?:<{7}|>{7})(?: |$)", re.MULTILINE)
MARKER_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)# petrock:(?P<name>(?!end-)[\w-]+)[ \t]*\n(?P<body>.*?)^[ \t]*# petrock:end-(?P=name)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
ONE_LINE_IMPORT = re.compile(r"^[ \t]*(?:from [\w.]+ import [\w, ]+(?: as \w+)?|import [\w.]+(?: as \w+)?)[ \t]*$")


def merge_text(ours: str, base: str, theirs: str, labels: tuple[str, str, str]) -> tuple[str, bool]:
    """Merge the changes from ``base`` to ``theirs`` into ``ours``; returns (text, clean).

    A conflict leaves standard markers in the text, labelled with ``labels``.
    """
    with tempfile.TemporaryDirectory(prefix="petrock-merge-") as scratch:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(scratch) / name
            path.write_text(text)
            paths.append(path)
        return git.merge_file(paths[0], paths[1], paths[2], labels)


def carry_marker_blocks(source: str, target: str) -> str:
    """``target`` with the body of each ``# petrock:NAME`` block replaced by the same block's in ``source``.

    Those blocks hold lines petrock injected after generation (registrations);
    giving base and theirs the app's own blocks keeps them out of the merge, so
    a template change can neither drop nor duplicate a feature's registration.
    """
    bodies = {match["name"]: match["body"] for match in MARKER_BLOCK.finditer(source)}

    def replace(match: re.Match[str]) -> str:
        body = bodies.get(match["name"])
        if body is None:
            return match.group(0)
        start, end = match.span("body")
        whole_start = match.start()
        text = match.group(0)
        return text[: start - whole_start] + body + text[end - whole_start :]

    return MARKER_BLOCK.sub(replace, target)


def sort_import_blocks(text: str) -> str:
    """``text`` with each ``# petrock:imports`` block as ``feature add`` writes it today.

    Older petrock appended import lines in the order features were added and left
    no blank line before the end marker; ruff's import sorting flags both. Lines
    are sorted by module (ruff's order), duplicates dropped, and one blank line
    ends the block (``feature add`` keeps it after the lines it adds). A block
    holding anything but one-line imports is left as it is: petrock did not write it.
    """

    def tidy(match: re.Match[str]) -> str:
        if match["name"] != "imports":
            return match.group(0)
        lines = [line for line in match["body"].splitlines() if line.strip()]
        if not all(ONE_LINE_IMPORT.match(line) for line in lines):
            return match.group(0)
        ordered = sorted(dict.fromkeys(lines), key=import_key)
        start, end = match.span("body")
        text = match.group(0)
        offset = match.start()
        return text[: start - offset] + "".join(f"{line}\n" for line in ordered) + "\n" + text[end - offset :]

    return MARKER_BLOCK.sub(tidy, text)


def has_conflict_markers(text: str) -> bool:
    return CONFLICT_LINE.search(text) is not None


def files_with_conflict_markers(root: Path) -> list[str]:
    """Every file in the app's tree (tracked or not, ignored files excepted) holding conflict markers."""
    if git.is_repo(root):
        listed = git.run(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.decode()
        paths = set(filter(None, listed.split("\0")))
    else:
        paths = {p.relative_to(root).as_posix() for p in root.rglob("*") if ".git" not in p.parts}
    found = []
    for path in sorted(paths):
        try:
            text = (root / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # deleted, a directory, or binary: cannot hold text markers
        if has_conflict_markers(text):
            found.append(path)
    return found
