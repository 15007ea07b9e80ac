"""Wires the posts feature into the app: commands, queries, state, pages and the summary worker.

``features.py`` calls :func:`register` once. petrock adds components (``petrock
generate command posts/NAME``) between the ``petrock:`` markers; edit freely elsewhere.
"""

from __future__ import annotations

from functools import partial

from ..core import App
from ..core.summaries import SummaryConfig
from .commands import (
    CreatePost,
    DeletePost,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdatePost,
)
from .queries import GetPost, ListPosts, get_post, list_posts
from .routes import TEMPLATES, PostsPages
from .state import PostsState
from .worker import SummaryWorker

# isort: split
# petrock:imports

# petrock:end-imports


def register(app: App) -> None:
    """Register everything the posts feature offers; the summary settings come from ``SUMMARY_*``."""
    state = PostsState(app.store, app.references)
    app.add_feature("posts", TEMPLATES)
    app.projections.add(state)  # its handlers below keep the posts table; rebuilt when their code changes

    app.commands.register("posts/create", CreatePost, state.create)
    app.commands.register("posts/update", UpdatePost, state.update)
    app.commands.register("posts/delete", DeletePost, state.delete)
    # Only the summary worker sends these; HTTP clients cannot forge a summary or spend the API budget.
    summaries = [
        ("posts/request-summary-generation", RequestSummaryGeneration, state.request_summary),
        ("posts/fail-summary-generation", FailSummaryGeneration, state.fail_summary),
        ("posts/set-generated-summary", SetGeneratedSummary, state.set_summary),
    ]
    for command_type, model, handler in summaries:
        app.commands.register(command_type, model, handler, public=False)

    app.queries.register("posts/get", GetPost, partial(get_post, state))
    app.queries.register("posts/list", ListPosts, partial(list_posts, state))

    PostsPages(app).register()
    app.register_worker(SummaryWorker(state, SummaryConfig.from_env()))

    # petrock:components
    # petrock:end-components
