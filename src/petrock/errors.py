"""Errors petrock raises on purpose. The CLI prints them in one line, never a traceback."""

from __future__ import annotations


class PetrockError(Exception):
    """Base for every error petrock raises on purpose."""


class UserError(PetrockError):
    """Something the user can fix: printed as ``error: <what> — <how to fix>``, then exit."""

    exit_code = 1

    def __init__(self, what: str, fix: str | None = None, *, exit_code: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.what} — {self.fix}" if self.fix else self.what


class InvalidName(UserError):
    """A project, feature or component name that petrock cannot use."""

    exit_code = 2


class NotInApp(UserError):
    """The command needs a petrock app and none was found above the current directory."""


class DirtyTree(UserError):
    """The app has uncommitted changes and the command would mix its own into them."""


class AlreadyExists(UserError):
    """The thing to create is already there."""


class ConflictError(UserError):
    """Files the user changed would be overwritten."""


class NoInput(UserError):
    """A question needs an answer and there is no terminal to ask on."""


class GitError(UserError):
    """A git command failed."""
