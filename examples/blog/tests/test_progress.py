"""Rebuild progress (core/progress.py): a bar per rebuild on a terminal, each on its own line while
several run at once (two workers rebuilding their state at start); log lines anywhere else."""

from __future__ import annotations

import io
import logging
import re
import threading
import time

import pytest

from blog.core.progress import RebuildProgress


class Terminal(io.StringIO):
    """What a rebuild draws on, as a terminal would show it: :meth:`screen` plays the text and the
    cursor moves written so far (carriage return, new line, up, erase line; colours left out)."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        lines, row, column = [""], 0, 0
        for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", self.getvalue()):
            if token == "\r":
                column = 0
            elif token == "\n":
                row, column = row + 1, 0
                lines += [""] * (row + 1 - len(lines))
            elif token.startswith("\x1b["):
                if token[-1] == "A":
                    row = max(0, row - int(token[2:-1] or 1))
                elif token[-1] == "K":
                    lines[row] = ""
            else:
                line = lines[row].ljust(column)
                lines[row] = line[:column] + token + line[column + len(token) :]
                column += len(token)
        return [line.rstrip() for line in lines if line.strip()]


def shown(terminal: Terminal, label: str) -> list[str]:
    return [line for line in terminal.screen() if line.startswith(f"rebuilding {label} ")]


def test_two_rebuilds_at_once_each_have_their_own_line_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")  # the terminal plays one's moves (a dumb one gets no live display)
    monkeypatch.setenv("COLUMNS", "100")
    terminal = Terminal()
    first, second = RebuildProgress("worker 'a'", terminal), RebuildProgress("worker 'b'", terminal)
    try:
        rebuilds = [threading.Thread(target=first, args=(20, 40)), threading.Thread(target=second, args=(30, 60))]
        for rebuild in rebuilds:
            rebuild.start()
        for rebuild in rebuilds:
            rebuild.join()
        time.sleep(0.5)  # the display redraws ten times a second
        assert [len(shown(terminal, "worker 'a'")), len(shown(terminal, "worker 'b'"))] == [1, 1], terminal.screen()
        assert " 20/40 " in shown(terminal, "worker 'a'")[0] and " 30/60 " in shown(terminal, "worker 'b'")[0]
        first(40, 40)
        first.close()  # the other goes on below its finished line
        second(45, 60)
        time.sleep(0.5)
        assert " 40/40 " in shown(terminal, "worker 'a'")[0] and " 45/60 " in shown(terminal, "worker 'b'")[0]
    finally:
        first.close()
        second.close()
    second.close()  # twice: nothing more happens
    screen = terminal.screen()
    assert len(screen) == 2 and " 40/40 " in screen[0] and " 45/60 " in screen[1], screen

    later = RebuildProgress("posts", terminal)  # a rebuild after those starts a display of its own, below
    later(5, 5)
    later.close()
    assert terminal.screen()[2].startswith("rebuilding posts ") and " 5/5 " in terminal.screen()[2]


def test_without_a_terminal_a_rebuild_is_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    caplog.set_level(logging.INFO)
    first, second = RebuildProgress("worker 'a'", stream), RebuildProgress("worker 'b'", stream)
    first(10, 10)
    second(3, 6)
    first.close()
    second.close()
    assert stream.getvalue() == ""
    said = [record.getMessage() for record in caplog.records]
    assert said[0].startswith("rebuilding worker 'a': 10 of 10 messages (")
    assert said[1].startswith("rebuilding worker 'b': 3 of 6 messages (")
