"""The posts summary worker against a fake OpenAI-compatible API: crashes mid-call and API faults."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .fake_summary_api import FakeSummaryApi
from .harness import Server, SummaryHistory, free_port, log_rows, wait_until

pytestmark = pytest.mark.slow

API_KEY = f"sk-reliability-{secrets.token_hex(12)}"
MAX_ATTEMPTS = 3
TIMEOUT = 0.5
MAX_SUMMARY_LENGTH = 2_000


def summary_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "SUMMARY_API_URL": url,
        "SUMMARY_API_KEY": API_KEY,
        "SUMMARY_MODEL": "fake-model",
        "SUMMARY_TIMEOUT": str(TIMEOUT),
        "SUMMARY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "SUMMARY_RETRY_BACKOFF": "0.05",
        "SUMMARY_CONCURRENCY": "16",
        **extra,
    }


def create_post(client: httpx.Client, id: str, content: str) -> None:
    response = client.post(
        "/commands", json={"type": "posts/create", "payload": {"id": id, "title": id, "content": content}}
    )
    assert response.status_code == 201, response.text


# --- (2) crash mid-summarization ---

CRASH_ROUNDS = 4
POSTS_PER_ROUND = 10


def test_kill_9_mid_summarization_leaves_exactly_one_request_and_one_outcome_per_post(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    db = tmp_path / "app.db"
    with FakeSummaryApi(delay=0.6, api_key=API_KEY) as api:
        server = servers(posts_dir, db, env=summary_env(api.url, SUMMARY_TIMEOUT="10", SUMMARY_CONCURRENCY="4"))
        for round in range(CRASH_ROUNDS):
            server.start()
            calls_before = len(api.calls)
            with httpx.Client(base_url=server.url) as client:
                for n in range(POSTS_PER_ROUND):
                    create_post(client, f"r{round}-p{n}", f"Post {n} of round {round}. It has two sentences.")
            assert wait_until(lambda calls_before=calls_before: len(api.calls) > calls_before, 10)
            time.sleep(chance.uniform(0.0, 1.0))
            server.kill()
        server.start()
        assert wait_until(lambda: SummaryHistory.read(db).settled(), 60, 0.2), f"not every post settled (seed {seed})"
        server.terminate()
        attempts = api.attempts()

    history = SummaryHistory.read(db)
    assert len(history.posts) == CRASH_ROUNDS * POSTS_PER_ROUND
    for post in history.posts:
        requests = history.requests.get(post, [])
        outcomes = history.outcomes.get(post, [])
        assert len(requests) == 1, f"post {post}: {len(requests)} summary requests (seed {seed})"
        assert len(outcomes) == 1, f"post {post}: outcomes {outcomes} (seed {seed})"
        assert outcomes[0][0] == "set-generated-summary" and outcomes[0][1]["request_id"] == requests[0]
    repeated = sum(1 for count in attempts.values() if count > 1)
    print(f"crash mid-summarization seed={seed}: {len(history.posts)} posts, {sum(attempts.values())} API calls, "
          f"{repeated} requests called again after a crash")  # fmt: skip


# --- (4) summary API faults ---

# fault -> (outcome, fewest attempts, most attempts)
FAULTS = {
    "none": ("set-generated-summary", 1, 1),
    "500": ("fail-summary-generation", MAX_ATTEMPTS, MAX_ATTEMPTS),
    "503": ("fail-summary-generation", MAX_ATTEMPTS, MAX_ATTEMPTS),
    "timeout": ("fail-summary-generation", MAX_ATTEMPTS, MAX_ATTEMPTS),
    "429": ("fail-summary-generation", 2, MAX_ATTEMPTS),
    "401-echo": ("fail-summary-generation", 1, 1),
    "malformed": ("fail-summary-generation", 1, MAX_ATTEMPTS),
    "empty-choices": ("fail-summary-generation", 1, MAX_ATTEMPTS),
    "huge": (None, 1, MAX_ATTEMPTS),
    "drip": ("fail-summary-generation", 1, MAX_ATTEMPTS),
}
# Retries with backoff take at most this long; a drip or a timeout must not hold a request longer.
SETTLE_SECONDS = MAX_ATTEMPTS * TIMEOUT + 4.0


@dataclass
class FaultRun:
    history: SummaryHistory
    attempts: dict[str, list[int]]  # fault -> attempts per request
    settle_seconds: dict[str, float]  # fault -> seconds from create to outcome (inf if none)
    health: list[tuple[int, float]]  # /healthz status and latency, polled while the faults were served
    authorizations: set[str]
    output: str
    rows: str
    refused: SummaryHistory  # the run against a port where nothing listens


@pytest.fixture(scope="module")
def fault_run(posts_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultRun]:
    """Serve the app once against the misbehaving API (every fault at once), then once against a closed port."""
    import shutil

    base = tmp_path_factory.mktemp("faults")
    app = Path(shutil.copytree(posts_template, base / "app"))
    db = base / "app.db"
    settled_at: dict[str, float] = {}
    health: list[tuple[int, float]] = []
    with FakeSummaryApi(api_key=API_KEY) as api:
        server = Server(app, db, env=summary_env(api.url)).start()
        try:
            began = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=5) as client:
                for fault in FAULTS:
                    create_post(client, f"fault-{fault}", f"fault={fault} Some text to summarize. More text.")
                deadline = began + SETTLE_SECONDS + 3
                while time.monotonic() < deadline and len(settled_at) < len(FAULTS):
                    started = time.monotonic()
                    health.append((client.get("/healthz").status_code, time.monotonic() - started))
                    for post, outcomes in SummaryHistory.read(db).outcomes.items():
                        if outcomes:
                            settled_at.setdefault(post.removeprefix("fault-"), time.monotonic() - began)
                    time.sleep(0.1)
            server.terminate()
        finally:
            server.kill()
        history = SummaryHistory.read(db)
        request_fault = {
            request: post.removeprefix("fault-") for post, ids in history.requests.items() for request in ids
        }
        attempts: dict[str, list[int]] = {}
        for request, count in api.attempts().items():
            attempts.setdefault(request_fault.get(request, "?"), []).append(count)
        authorizations = {call.authorization for call in api.calls}
    refused_db = base / "refused.db"
    refused = Server(app, refused_db, env=summary_env(f"http://127.0.0.1:{free_port()}/v1")).start()
    try:
        with httpx.Client(base_url=refused.url) as client:
            create_post(client, "fault-refused", "Nothing listens on the API port.")
        wait_until(lambda: SummaryHistory.read(refused_db).settled(), SETTLE_SECONDS)
        refused.terminate()
    finally:
        refused.kill()
    settle = {fault: round(settled_at.get(fault, float("inf")), 2) for fault in FAULTS}
    print(f"summary API faults: attempts per request {attempts}, seconds to an outcome {settle}")
    yield FaultRun(
        history=history,
        attempts=attempts,
        settle_seconds=settle,
        health=health,
        authorizations=authorizations,
        output=server.output() + refused.output(),
        rows=repr(log_rows(db)) + repr(log_rows(refused_db)),
        refused=SummaryHistory.read(refused_db),
    )


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_api_fault_is_retried_a_bounded_number_of_times_and_recorded_once(fault_run: FaultRun, fault: str) -> None:
    expected, fewest, most = FAULTS[fault]
    post = f"fault-{fault}"
    outcomes = fault_run.history.outcomes.get(post, [])
    assert len(fault_run.history.requests.get(post, [])) == 1
    assert len(outcomes) == 1, f"{fault}: outcomes {outcomes}"
    verb, payload = outcomes[0]
    if expected is not None:
        assert verb == expected, payload
    if verb == "set-generated-summary":
        assert 0 < len(payload["summary"]) <= MAX_SUMMARY_LENGTH
    else:
        assert payload["error_message"].strip()
    assert fault_run.attempts.get(fault) and all(fewest <= n <= most for n in fault_run.attempts[fault]), (
        f"{fault}: attempts {fault_run.attempts.get(fault)}, expected {fewest}..{most}"
    )
    assert fault_run.settle_seconds[fault] <= SETTLE_SECONDS, f"{fault} took {fault_run.settle_seconds[fault]:.1f}s"


def test_connection_refused_is_recorded_as_a_failure(fault_run: FaultRun) -> None:
    outcomes = fault_run.refused.outcomes.get("fault-refused", [])
    assert [verb for verb, _ in outcomes] == ["fail-summary-generation"]
    assert "connect" in outcomes[0][1]["error_message"]


def test_the_app_stays_healthy_while_the_api_misbehaves(fault_run: FaultRun) -> None:
    assert fault_run.health, "never polled"
    assert all(status == 200 for status, _ in fault_run.health), fault_run.health
    assert max(latency for _, latency in fault_run.health) < 1.0


def test_the_api_key_is_sent_but_never_logged_or_recorded(fault_run: FaultRun) -> None:
    assert fault_run.authorizations == {f"Bearer {API_KEY}"}
    assert API_KEY not in fault_run.output
    assert API_KEY not in fault_run.rows
    assert API_KEY[-12:] not in fault_run.output + fault_run.rows
