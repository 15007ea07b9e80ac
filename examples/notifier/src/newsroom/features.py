"""Every feature this app runs, in the order it registers them.

petrock edits the lines between the ``petrock:`` markers; edit freely elsewhere.
"""

from .core import App

# isort: split
# petrock:imports
from .posts.register import register as register_posts

# petrock:end-imports
from .notifier.register import register as register_notifier  # written by hand


def register_features(app: App) -> None:
    """Register each feature's commands, queries, pages and workers with the app."""
    # petrock:registrations
    register_posts(app)
    # petrock:end-registrations
    register_notifier(app)  # written by hand, after posts
