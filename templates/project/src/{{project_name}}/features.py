"""Every feature this app runs, in the order it registers them.

petrock edits the lines between the ``petrock:`` markers; edit freely elsewhere.
"""

from .core import App

# isort: split
# petrock:imports

# petrock:end-imports


def register_features(app: App) -> None:
    """Register each feature's commands, queries, pages and workers with the app."""
    # petrock:registrations
    # petrock:end-registrations
