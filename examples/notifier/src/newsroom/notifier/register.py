"""Adds the summary notifier to the app. Called from ``features.py``, after the posts feature."""

from __future__ import annotations

import os

from ..core import App
from .worker import SummaryNotifier


def register(app: App) -> None:
    """Register the notifier; it posts to ``NOTIFY_WEBHOOK_URL`` (unset: it only logs)."""
    app.register_worker(SummaryNotifier(os.environ.get("NOTIFY_WEBHOOK_URL") or None))
