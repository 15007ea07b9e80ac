"""``POST /commands`` latency while many ``/events`` streams are open (issue 28, item 6).

Ours is a generated app with its ``posts`` feature (offline summaries, so each create
appends three messages; bench/http_commands.py's app), started as ``python -m APP serve`` starts it. The baseline is
the same server with no stream open: 50 creates, one after another, each timed; then
the same with STREAMS streams open, held by a separate process that reads every event.
Rounds alternate (none, streams, none, streams, ...), so both are measured seconds apart.
The target: the p99 with the streams open is at most twice the p99 without.

``python -m bench.event_streams hold URL N`` is the stream holder itself: it opens N
streams, prints ``ready`` once each has answered, reads until its stdin closes, then
prints the fewest events any stream received.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.common import REPO, Result, Row, free_port, main, percentile
from bench.http_commands import APP, posts_app  # the same app: default posts feature, summary worker

SIZES = {"smoke": (100, 1), "full": (1000, 3)}  # (streams held open, rounds)
CREATES = 50
WARM_UP = 10
PAYLOAD = {"title": "Hello", "content": "A short post. It has two sentences."}
TARGET_RATIO = 2.0


def serve(db: Path, streams: int, attempts: int = 3) -> tuple[subprocess.Popen[bytes], str]:
    """Start the app and wait until it answers; a port taken between choosing and binding it (by another
    program on the machine) gets another port, and a server that exits says why."""
    port = free_port()
    env = {
        "PYTHONPATH": str(posts_app() / "src"),
        "PATH": "/usr/bin:/bin",
        "SUMMARY_API_URL": "",
        "APP_MAX_EVENT_STREAMS": str(streams + 10),
        "APP_MAX_CONNECTIONS": str(streams + 100),
    }
    argv = [sys.executable, "-m", APP, "serve", "--port", str(port), "--db", str(db)]
    log = db.with_name(f"serve-{port}.log")  # read only if it fails to start (a pipe nobody reads would fill)
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=output, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=1) as client:  # one for every look: each new client loads the CA bundle
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return process, url
            except httpx.TransportError:
                time.sleep(0.05)
    process.kill()
    process.wait()
    why = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    if "already in use" in why[0] and attempts > 1:
        return serve(db, streams, attempts - 1)
    raise RuntimeError(f"the server did not start: {why[0]}")


def creates(client: httpx.Client, count: int) -> list[float]:
    """Latencies (ms) of ``count`` creates, one after another on one connection."""
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        response = client.post("/commands", json={"type": "posts/create", "payload": PAYLOAD})
        latencies.append((time.perf_counter() - began) * 1000)
        if response.status_code != 201:
            raise RuntimeError(f"POST /commands answered {response.status_code}: {response.text[:200]}")
    return latencies


def hold_streams(url: str, count: int) -> subprocess.Popen[str]:
    """Start the stream holder and wait until every stream is open."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "bench.event_streams", "hold", url, str(count)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline().strip()
    if line != "ready":
        holder.kill()
        raise RuntimeError(f"the stream holder did not get its streams open: {line!r}")
    return holder


def release_streams(holder: subprocess.Popen[str], expected: int) -> tuple[int, int]:
    """Wait (a while) until every stream has ``expected`` events, then close them.

    Returns the fewest events one stream received, and how many streams the server closed early.
    """
    output, _ = holder.communicate(f"{expected}\n", timeout=60)
    fewest, ended = output.strip().splitlines()[-1].split()
    return int(fewest), int(ended)


def run(size: str) -> list[Row]:
    streams, rounds = SIZES[size]
    none: list[float] = []
    held: list[float] = []
    fewest_events: list[int] = []
    ended_early = 0
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as scratch:
        process, url = serve(Path(scratch) / "app.db", streams)
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                creates(client, WARM_UP)
                for _ in range(rounds):
                    none += creates(client, CREATES)
                    holder = hold_streams(url, streams)
                    time.sleep(0.5)  # let the last stream's catch-up finish
                    held += creates(client, CREATES)
                    fewest, ended = release_streams(holder, CREATES * 3)
                    fewest_events.append(fewest)
                    ended_early += ended
        finally:
            process.terminate()
            process.wait(30)
    p99_none, p99_held = percentile(none, 99), percentile(held, 99)
    ratio = p99_held / p99_none
    note = (
        f"{CREATES} creates × {rounds} round(s), each with {streams} streams open and without; "
        f"p50 {percentile(none, 50):.2f} ms without, {percentile(held, 50):.2f} ms with; "
        f"every stream received at least {min(fewest_events)} events of the {CREATES * 3} appended per round"
        f" ({ended_early} streams closed by the server before the end)"
    )
    return [
        Result(
            f"create p99, {streams} /events streams open",
            p99_held,
            p99_none,
            "ms",
            ratio,
            f"≤ {TARGET_RATIO:g}× none open",
            ratio <= TARGET_RATIO,
            note,
        )
    ]


async def hold(url: str, count: int) -> None:
    """Open ``count`` streams and say ``ready``; then read the number of events to expect from stdin,
    wait up to 30 s for every stream to have them, and print the fewest seen and how many streams ended."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    counts = [0] * count
    ended = [False] * count
    opened = asyncio.Semaphore(0)

    async def stream(number: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        await reader.readuntil(b"retry: ")
        opened.release()
        tail = b""  # the end of the previous chunk: an event's "data: " may be split between two
        try:
            while chunk := await reader.read(65536):
                counts[number] += (tail + chunk).count(b"data: ")
                tail = chunk[-5:]
            ended[number] = True
        finally:
            writer.close()

    tasks = []
    for number in range(count):
        tasks.append(asyncio.create_task(stream(number)))
        if number % 50 == 49:
            await asyncio.sleep(0.01)  # not all at once: the server's accept backlog is finite
    for _ in range(count):
        await opened.acquire()
    print("ready", flush=True)
    expected = int(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
    deadline = time.monotonic() + 30
    while min(counts) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(min(counts), sum(ended), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["hold"]:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, int(sys.argv[3]) + 100)), hard))
        asyncio.run(hold(sys.argv[2], int(sys.argv[3])))
    else:
        main(run)
