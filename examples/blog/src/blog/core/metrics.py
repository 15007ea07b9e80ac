"""``GET /metrics``: what the app is doing, in Prometheus' text format (``prometheus_client``).

Two kinds of numbers, kept apart on purpose:

- **Counted as it happens, per process**: HTTP requests (by route template, method
  and status) and their latency, commands appended (by type) and refused (by reason),
  each worker's cycle time, open ``/events`` streams, projection rebuild progress.
  Under ``serve --processes N`` each process writes these to files in one directory
  (``PROMETHEUS_MULTIPROC_DIR``, made and removed by ``serve``), and a scrape of any
  process adds them up for the whole group.
- **Read from the database at scrape time**: the log head, each worker's lag
  (log head minus its stored position) and the undecided dead letters. Every process
  reads the same database, so every process answers the same.

``/metrics`` needs a bearer token when one is set: ``APP_API_TOKEN``, or
``APP_METRICS_TOKEN`` for a scraper that should see metrics and nothing else.
docs/operating.md shows how to scrape and which alerts matter.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .auth import METRICS_TOKEN_VARIABLE, TOKEN_VARIABLE, Tokens, bearer_token, tokens_from_env
from .log import Message
from .ratelimit import AttemptLimiter, client_address

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# What generate_latest writes: Prometheus' classic text format, which every scraper reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds. A command is a few milliseconds; a page or a query of 1,000 items tens.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds. A cycle with nothing to do is under a millisecond; one calling a slow API, seconds.
CYCLE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
# Methods outside this set are counted as "other": a client cannot invent new time series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The app's metrics, in a registry of their own (so two Apps in one process never clash).

    The recording methods are called on hot paths (every request, every append), so
    each caches its labelled child: a dictionary lookup and an increment.
    """

    enabled = True

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "app_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "app_http_request_duration_seconds",
            "Time from a request's arrival to its last byte, by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.appended = Counter(
            "app_commands_appended", "Commands appended to the log, by type.", ["type"], registry=registry
        )
        self.refused = Counter(
            "app_commands_refused", "Commands refused (nothing appended), by reason.", ["reason"], registry=registry
        )
        self.cycle_seconds = Histogram(
            "app_worker_cycle_seconds",
            "Time one worker cycle (work()) took, in the process running the worker.",
            ["worker"],
            buckets=CYCLE_BUCKETS,
            registry=registry,
        )
        self.event_streams = Gauge(
            "app_event_streams_open",
            "Open /events streams (server-sent events), all processes together.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.rebuild_progress = Gauge(
            "app_projection_rebuild_progress",
            "How far a projection's rebuild has got, from 0 to 1 (1 once it is done).",
            ["projection"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        ProcessCollector(registry=registry)  # CPU, memory and open files (one process; left out for a group)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._appended_children: dict[str, Counter] = {}
        self._cycle_children: dict[str, Histogram] = {}

    # --- recording (called by the app's core) ---

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.request_seconds.labels(*labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def commands_appended(self, messages: Iterable[Message]) -> None:
        for message in messages:
            child = self._appended_children.get(message.type)
            if child is None:
                child = self._appended_children[message.type] = self.appended.labels(message.type)
            child.inc()

    def command_refused(self, reason: str | BaseException) -> None:
        """Count a refusal: a reason, or the exception that refused it (``NotFound`` counts as ``not_found``)."""
        self.refused.labels(reason if isinstance(reason, str) else refusal_reason(reason)).inc()

    def worker_cycle(self, worker: str, seconds: float) -> None:
        child = self._cycle_children.get(worker)
        if child is None:
            child = self._cycle_children[worker] = self.cycle_seconds.labels(worker)
        child.observe(seconds)

    def stream_opened(self) -> None:
        self.event_streams.inc()

    def stream_closed(self) -> None:
        self.event_streams.dec()

    def rebuild(self, projection: str, done: int, total: int) -> None:
        """Report a projection rebuild's progress: ``done`` of ``total`` messages applied.

        Call it as the rebuild goes (every batch is plenty) and once more at the end
        (``done == total``); ``app_projection_rebuild_progress`` then reads 1.
        """
        self.rebuild_progress.labels(projection).set(1.0 if total <= 0 else min(1.0, done / total))

    # --- exposition ---

    def exposition(self, app: App) -> bytes:
        """The text a scrape gets: this process's metrics (or the group's), then what the database says."""
        directory = os.environ.get(MULTIPROCESS_VARIABLE)
        if directory:
            counted = CollectorRegistry()
            MultiProcessCollector(counted, path=directory)
        else:
            counted = self.registry
        database = CollectorRegistry()
        database.register(DatabaseCollector(app))
        return generate_latest(counted) + generate_latest(database)


class NoMetrics(Metrics):
    """Records nothing and serves no ``/metrics`` (``serve --no-metrics``)."""

    enabled = False

    def __init__(self) -> None:
        pass

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def commands_appended(self, messages: Iterable[Message]) -> None:
        pass

    def command_refused(self, reason: str | BaseException) -> None:
        pass

    def worker_cycle(self, worker: str, seconds: float) -> None:
        pass

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass

    def rebuild(self, projection: str, done: int, total: int) -> None:
        pass


def refusal_reason(exc: BaseException) -> str:
    """``NotFound`` -> ``not_found``: the exception's class name, as a label value."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


class DatabaseCollector:
    """Gauges read from the log's database at scrape time: the same answer from every process."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        reachable = GaugeMetricFamily("app_log_reachable", "1 when this scrape could read the log's database.")
        try:
            gauges = list(self._from_database())
        except Exception as exc:  # noqa: BLE001 - a scrape answers, and says the database did not
            logger.warning("metrics: cannot read the log's database: %r", exc)
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield reachable
        yield from gauges

    def _from_database(self) -> Iterator[Metric]:
        log = self.app.log
        head = log.version()
        yield GaugeMetricFamily("app_log_head", "The id of the newest message in the log.", value=head)
        lag = GaugeMetricFamily(
            "app_worker_lag_messages",
            "Messages a worker has still to read: the head of the log it follows minus its stored position.",
            labels=["worker"],
        )
        for handle in self.app.supervisor.handles:
            own_log = getattr(handle.worker, "own_log", None)
            followed_head = head if own_log is None else own_log.version()
            position = log.position(handle.name)
            in_memory = getattr(handle.worker, "position", None)
            if isinstance(in_memory, int):  # the process running it may be ahead of what it stored
                position = max(position, in_memory)
            lag.add_metric([handle.name], max(0, followed_head - position))
        yield lag
        dead = GaugeMetricFamily(
            "app_dead_letters_undecided",
            "Messages a worker gave up on, waiting for an operator (python -m APP deadletters).",
            labels=["worker"],
        )
        counts = self.app.dead_letters.counts()
        for handle in self.app.supervisor.handles:
            dead.add_metric([handle.name], counts.get(handle.name, 0))
        yield dead


class MetricsEndpoint:
    """``GET /metrics``: open without tokens; with them, ``APP_API_TOKEN`` or ``APP_METRICS_TOKEN`` as a bearer.

    It checks its token itself (``RequireToken`` leaves it alone), because the metrics
    token opens this endpoint and nothing else. Wrong tokens count towards the ``limiter``
    the rest of the app uses, with the same 429s: guessing here is no cheaper than elsewhere.
    """

    def __init__(self, app: App, tokens: Sequence[str], limiter: AttemptLimiter | None = None) -> None:
        self.app = app
        self.tokens = Tokens(tokens) if tokens else None
        self.limiter = limiter or AttemptLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._refusal(scope) or Response(
            self.app.metrics.exposition(self.app), media_type=CONTENT_TYPE, headers={"cache-control": "no-store"}
        )
        await response(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        if self.tokens is None:
            return None
        bearer = bearer_token(Headers(scope=scope))
        if bearer is None:
            return _unauthorized("")
        client = client_address(scope)
        right = self.tokens.accepts(bearer)
        wait = self.limiter.token_wait(client, right=right)
        if wait is not None:
            return JSONResponse(
                {"error": f"too many wrong tokens: try again in {wait} seconds"},
                status_code=429,
                headers={"retry-after": str(wait)},
            )
        if right:
            return None
        self.limiter.failed(client)
        return _unauthorized(', error="invalid_token"')


def _unauthorized(error: str) -> Response:
    return JSONResponse(
        {"error": f"send Authorization: Bearer <{TOKEN_VARIABLE} or {METRICS_TOKEN_VARIABLE}>"},
        status_code=401,
        headers={"www-authenticate": f'Bearer realm="metrics"{error}'},
    )


def metrics_tokens(api_tokens: Sequence[str], environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The tokens ``/metrics`` accepts: the API's, and ``APP_METRICS_TOKEN`` (comma-separated too)."""
    own = tokens_from_env(environ, METRICS_TOKEN_VARIABLE)
    return (*api_tokens, *own)


@contextmanager
def multiprocess_directory(env: dict[str, str]) -> Iterator[str]:
    """The directory a group of server processes keeps its metrics in, set in ``env`` for them.

    ``serve --processes N`` makes a fresh one and removes it when the group stops (old
    files would add a past run's counts). One set already (``PROMETHEUS_MULTIPROC_DIR``) is
    used as it is: clearing it between runs is then the operator's job.
    """
    given = env.get(MULTIPROCESS_VARIABLE)
    if given:
        yield given
        return
    directory = tempfile.mkdtemp(prefix="app-metrics-")
    env[MULTIPROCESS_VARIABLE] = directory
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def forget_process(pid: int, directory: str) -> None:
    """A server process died: drop its live gauges (its counters stay in the group's totals)."""
    mark_process_dead(pid, directory)
