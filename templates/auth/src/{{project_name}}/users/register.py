"""Wires the users feature into the app: its commands, tables, pages, mailer, and the guard on every route.

``features.py`` calls :func:`register` once. From then on every page needs a
signed-in user and the JSON API needs ``APP_API_TOKEN`` (access.py).
"""

from __future__ import annotations

from functools import partial

from ..core import App
from .access import RequireUser
from .accounts import Accounts
from .mailer import Mailbox, ResetMailer
from .routes import TEMPLATES, UsersPages
from .state import UsersState


def register(app: App) -> Accounts:
    """Register the users feature; returns its :class:`Accounts` (the CLI and tests use it)."""
    state = UsersState(app.store)
    app.add_feature("users", TEMPLATES)
    app.projections.add(state)
    # None is public: pages, the CLI and the mailer send them, after checking who asks.
    for command_type, model, handler in state.command_handlers():
        app.commands.register(command_type, model, handler, public=False)

    accounts = Accounts(app, state)
    app.guard = partial(RequireUser, accounts=accounts)
    UsersPages(app, accounts, Mailbox(state)).register()
    app.register_worker(ResetMailer(state))
    return accounts


def accounts_of(app: App) -> Accounts:
    """The accounts of an app built with this feature registered (``python -m APP users``)."""
    state = next(projection for projection in app.projections if isinstance(projection, UsersState))
    return Accounts(app, state)
