"""The documentation runs as written: every shell and Python block of README.md and docs/guide.md.

How a document runs
-------------------
A document is read the way a newcomer reads it: top to bottom, copying each block into
one terminal. Its blocks run in order in one fresh temporary directory, and the current
directory and exported variables carry over from one block to the next (the guide's
`cd blog` holds for every section after it). So a new section only needs its blocks to
work after the blocks above it, or to carry a skip marker.

- ```sh, ```bash and ```shell blocks run with `bash -e -o pipefail`: the first failing
  command fails the block. ```python blocks run with `python -` in the current directory.
  Other languages (```text, ```toml, ```json, ...) are not run.
- `petrock`, `python` and `python3` are those of the interpreter running the suite (its
  bin directory comes first on PATH), as after `make install`. Git commits made by the
  blocks use the suite's own identity (tests/gitconfig, standing in for the guide's
  skipped `git config --global user.name ...` step).
- Each block is one test, named `DOCUMENT:LINE`. Running one block runs the blocks
  before it in the same document first; if one of those fails, so does this one.

Markers
-------
An HTML comment on the line right before a block's opening fence (blank lines between
are allowed; inside a list item, indent it like the fence); it is invisible on the
rendered page:

    <!-- doctest: skip (serves until Ctrl-C) -->
        Do not run the block. The reason, in parentheses, is required and shows in the
        test report. Use it for commands that never return (`serve`), need outside
        services, or change the reader's own machine.

    <!-- doctest: file src/blog/posts/announce.py -->
        The block is the content of that file (relative to the current directory): it is
        written there, as a reader saves it, and the blocks after it use it.

Anything else after `doctest:` is an error, so a typo cannot silently skip a block.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .support import REPO

DOCUMENTS = ("README.md", "docs/guide.md")
SHELL = frozenset({"sh", "bash", "shell", "console"})
PYTHON = frozenset({"python", "py", "python3"})
BLOCK_TIMEOUT = 300  # seconds: the guide's `pip install -e` of an app, the slowest block, takes about one
# Fences may be indented (a block inside a list item); the block's lines lose that indent.
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```|~~~)\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^<!--\s*doctest:\s*(?P<body>.*?)\s*-->\s*$")
SKIP = re.compile(r"skip\s*\((?P<reason>[^)]+)\)")
FILE = re.compile(r"file\s+(?P<path>\S+)")
END = "PETROCK_DOCTEST_EOF"  # ends the here-document that feeds a block to python or to a file
# Variables that describe the wrapper's own shell, not the reader's session.
SHELL_OWN = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "BASHOPTS", "SHELLOPTS", "BASH_EXECUTION_STRING"})

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    document: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None = None  # the reason
    file: str | None = None  # write the code to this path instead of running it

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.skip is None and (self.file is not None or self.lang in SHELL | PYTHON)


class MarkerError(ValueError):
    """A `doctest:` comment the test does not understand."""


def parse(document: str) -> list[Block]:
    """Every fenced block of ``document`` with the marker right before it."""
    lines = (REPO / document).read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(
            (i for i in range(index + 1, len(lines)) if lines[i].lstrip().startswith(opening["fence"])),
            len(lines),
        )
        skip, file = _marker(document, lines, index)
        indent = len(opening["indent"])
        code = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[index + 1 : end]) + "\n"
        blocks.append(Block(document, index + 1, opening["lang"].lower(), code, skip, file))
        index = end + 1
    return blocks


def _marker(document: str, lines: list[str], fence: int) -> tuple[str | None, str | None]:
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    found = MARKER.match(lines[before].strip()) if before >= 0 else None
    if not found:
        return None, None
    body = found["body"]
    if skip := SKIP.fullmatch(body):
        return skip["reason"].strip(), None
    if file := FILE.fullmatch(body):
        return None, file["path"]
    raise MarkerError(
        f"{document}:{before + 1}: unknown doctest marker {body!r}; "
        "use `doctest: skip (reason)` or `doctest: file PATH`"
    )


class Session:
    """One reader's terminal for one document: a temp directory, the cwd and exports carried between blocks."""

    def __init__(self, document: str, *, timeout: float = BLOCK_TIMEOUT) -> None:
        self.document = document
        self.timeout = timeout
        self.home = Path(tempfile.mkdtemp(prefix="petrock-doctest-"))
        self.work = self.home / "work"
        self.work.mkdir()
        self.state = self.home / "state"
        self.state.mkdir()
        (self.state / "cwd").write_text(str(self.work))
        (self.state / "env").write_text("")
        self.outcomes: dict[int, str | None] = {}  # block line -> None (passed) or the failure

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        env.pop("PYTHONPATH", None)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        return env

    def script(self, block: Block) -> str:
        """The bash that runs ``block`` in the reader's terminal state, then saves that state."""
        heredoc = f"<<'{END}'\n{block.code}{END}\n"
        if block.file is not None:
            body = f'mkdir -p "$(dirname {block.file})"\ncat > {block.file} {heredoc}'
        elif block.lang in PYTHON:
            body = f"python - {heredoc}"
        else:
            body = block.code
        return (
            f'cd "$(cat {self.state}/cwd)"\n'
            f"source {self.state}/env\n"
            "set -e -o pipefail\n"
            f"{body}\n"
            f"pwd > {self.state}/cwd\n"
            f"export -p | grep -v -E '^declare -x ({'|'.join(sorted(SHELL_OWN))})=' > {self.state}/env\n"
        )

    def run(self, block: Block) -> str | None:
        """Run one block; None when it passed, else what went wrong.

        The block runs in its own process group, so a command that never returns (a
        server without a skip marker) is stopped with everything it started.
        """
        process = subprocess.Popen(
            ["bash", "-c", self.script(block)],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            return (
                f"still running after {self.timeout:g} s; a block that never returns (a server) needs "
                f"`<!-- doctest: skip (reason) -->` before it\n--- block ---\n{block.code}"
            )
        if process.returncode == 0:
            return None
        stdout, stderr = stdout[-4000:], stderr[-4000:]
        return f"exit {process.returncode}\n--- block ---\n{block.code}--- stdout ---\n{stdout}--- stderr ---\n{stderr}"

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def _all_blocks() -> list[Block]:
    return [block for document in DOCUMENTS for block in parse(document)]


_SESSIONS: dict[str, Session] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_sessions() -> Iterator[None]:
    yield
    for session in _SESSIONS.values():
        session.close()
    _SESSIONS.clear()


@pytest.mark.parametrize(
    "block", [b for b in _all_blocks() if b.lang in SHELL | PYTHON or b.file], ids=lambda b: b.name
)
def test_documented_block_runs_as_written(block: Block) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.name}: {block.skip}")
    session = _SESSIONS.setdefault(block.document, Session(block.document))
    for earlier in parse(block.document):
        if earlier.line >= block.line:
            break
        if earlier.runs and earlier.line not in session.outcomes:
            session.outcomes[earlier.line] = session.run(earlier)
        if earlier.runs and session.outcomes[earlier.line] is not None:
            pytest.fail(f"an earlier block, {earlier.name}, failed:\n{session.outcomes[earlier.line]}", pytrace=False)
    if block.line not in session.outcomes:
        session.outcomes[block.line] = session.run(block)
    if (failure := session.outcomes[block.line]) is not None:
        pytest.fail(f"{block.name} failed: {failure}", pytrace=False)


# --- the parser itself, on small documents ---


def test_markers_skip_with_a_reason_or_name_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "<!-- doctest: skip (serves forever) -->\n```sh\npetrock serve\n```\n\n"
        "<!-- doctest: file app.py -->\n\n```python\nprint(1)\n```\n"
        "```text\nnot run\n```\n"
        "- in a list:\n\n  ```sh\n  cd blog\n    echo indented\n  ```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    skipped, saved, text, listed = parse("doc.md")
    assert (skipped.skip, skipped.runs) == ("serves forever", False)
    assert (saved.file, saved.runs, saved.code) == ("app.py", True, "print(1)\n")
    assert text.runs is False
    assert (listed.runs, listed.code) == (True, "cd blog\n  echo indented\n")


def test_an_unknown_marker_is_an_error_not_a_silent_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "doc.md").write_text("<!-- doctest: skipp (typo) -->\n```sh\nfalse\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    with pytest.raises(MarkerError, match="unknown doctest marker 'skipp \\(typo\\)'"):
        parse("doc.md")


def test_a_failing_command_fails_its_block_and_state_carries_between_blocks(tmp_path: Path) -> None:
    session = Session("doc.md")
    try:
        assert session.run(Block("doc.md", 1, "sh", "mkdir -p a/b && cd a\nexport GREETING=hi\n")) is None
        assert session.run(Block("doc.md", 5, "sh", 'test "$GREETING" = hi && cd b\n')) is None
        assert session.run(Block("doc.md", 9, "python", "import os\nassert os.getcwd().endswith('a/b')\n")) is None
        failure = session.run(Block("doc.md", 12, "sh", "false\necho never\n"))
        assert (
            failure is not None and failure.startswith("exit 1") and "never" not in failure.split("--- stdout ---")[1]
        )
    finally:
        session.close()


def test_a_block_that_never_returns_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    session = Session("doc.md", timeout=2)
    try:
        failure = session.run(Block("doc.md", 1, "sh", f"sleep 300 &\necho $! > {tmp_path}/pid\nsleep 300\n"))
        assert failure is not None and failure.startswith("still running after 2 s")
        assert "doctest: skip" in failure
        background = int((tmp_path / "pid").read_text())
        deadline = time.monotonic() + 5
        while Path(f"/proc/{background}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (
            not Path(f"/proc/{background}").exists() or "Z" in Path(f"/proc/{background}/stat").read_text().split()[2]
        )
    finally:
        session.close()
