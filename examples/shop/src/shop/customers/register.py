"""Wires the customers feature into the app: commands, queries, state, pages and the summary worker.

``features.py`` calls :func:`register` once. petrock adds components (``petrock
generate command customers/NAME``) between the ``petrock:`` markers; edit freely elsewhere.
"""

from __future__ import annotations

from functools import partial

from ..core import App
from ..core.summaries import SummaryConfig
from .commands import (
    CreateCustomer,
    DeleteCustomer,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateCustomer,
)
from .queries import GetCustomer, ListCustomers, get_customer, list_customers
from .routes import TEMPLATES, CustomersPages
from .state import CustomersState
from .worker import SummaryWorker

# isort: split
# petrock:imports

# petrock:end-imports


def register(app: App) -> None:
    """Register everything the customers feature offers; the summary settings come from ``SUMMARY_*``."""
    state = CustomersState(app.store, app.references)
    app.add_feature("customers", TEMPLATES)
    app.projections.add(state)  # its handlers below keep the customers table; rebuilt when their code changes

    app.commands.register("customers/create", CreateCustomer, state.create)
    app.commands.register("customers/update", UpdateCustomer, state.update)
    app.commands.register("customers/delete", DeleteCustomer, state.delete)
    # Only the summary worker sends these; HTTP clients cannot forge a summary or spend the API budget.
    summaries = [
        ("customers/request-summary-generation", RequestSummaryGeneration, state.request_summary),
        ("customers/fail-summary-generation", FailSummaryGeneration, state.fail_summary),
        ("customers/set-generated-summary", SetGeneratedSummary, state.set_summary),
    ]
    for command_type, model, handler in summaries:
        app.commands.register(command_type, model, handler, public=False)

    app.queries.register("customers/get", GetCustomer, partial(get_customer, state))
    app.queries.register("customers/list", ListCustomers, partial(list_customers, state))

    CustomersPages(app).register()
    app.register_worker(SummaryWorker(state, SummaryConfig.from_env()))

    # petrock:components
    # petrock:end-components
