"""Wires the orders feature into the app: commands, queries, state, pages and the summary worker.

``features.py`` calls :func:`register` once. petrock adds components (``petrock
generate command orders/NAME``) between the ``petrock:`` markers; edit freely elsewhere.
"""

from __future__ import annotations

from functools import partial

from ..core import App
from ..core.summaries import SummaryConfig
from .commands import (
    CreateOrder,
    DeleteOrder,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateOrder,
)
from .queries import GetOrder, ListOrders, get_order, list_orders
from .routes import TEMPLATES, OrdersPages
from .state import OrdersState
from .worker import SummaryWorker

# isort: split
# petrock:imports

# petrock:end-imports


def register(app: App) -> None:
    """Register everything the orders feature offers; the summary settings come from ``SUMMARY_*``."""
    state = OrdersState(app.store, app.references)
    app.add_feature("orders", TEMPLATES)
    app.projections.add(state)  # its handlers below keep the orders table; rebuilt when their code changes

    app.commands.register("orders/create", CreateOrder, state.create)
    app.commands.register("orders/update", UpdateOrder, state.update)
    app.commands.register("orders/delete", DeleteOrder, state.delete)
    # Only the summary worker sends these; HTTP clients cannot forge a summary or spend the API budget.
    summaries = [
        ("orders/request-summary-generation", RequestSummaryGeneration, state.request_summary),
        ("orders/fail-summary-generation", FailSummaryGeneration, state.fail_summary),
        ("orders/set-generated-summary", SetGeneratedSummary, state.set_summary),
    ]
    for command_type, model, handler in summaries:
        app.commands.register(command_type, model, handler, public=False)
    app.references.add("customers", "orders", "customer", partial(state.referring, "customer"))

    app.queries.register("orders/get", GetOrder, partial(get_order, state))
    app.queries.register("orders/list", ListOrders, partial(list_orders, state))

    OrdersPages(app).register()
    app.register_worker(SummaryWorker(state, SummaryConfig.from_env()))

    # petrock:components
    # petrock:end-components
