"""HTTP load from ``wrk`` (Debian package ``wrk``), with its results read from a Lua ``done`` hook.

wrk's own report rounds latencies to two decimals in changing units and leaves out the
counters that are zero; instead every script here ends with a ``done`` function that
prints one line of exact numbers (microseconds, counts), which is what we parse. A
request slower than the run's duration is counted as a timeout, not as a latency: a
run with timeouts reports its p99 as a lower bound (see :attr:`Load.p99_is_lower_bound`).

wrk only knows durations, in whole seconds. A smoke run that wants a small fixed number of
requests instead (``requests=``) adds :func:`quota_hook` to the script: each thread stops
once it has its share of the answers and says so, and :func:`execute` then interrupts wrk
as Ctrl-C does, after which wrk reports as usual, over the time it actually ran.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

MARKER = "WRK-RESULT "
QUOTA_MET = "WRK-QUOTA-MET"
# Prints one JSON line: wrk's Lua has no JSON library, and these are all numbers.
DONE_HOOK = f"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{MARKER}{{"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, "max_us": %.0f, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int  # answered within the timeout (any status)
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]  # connect/read/write failures, non-2xx/3xx answers ("status"), timeouts

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return max(0, self.requests - self.errors["status"]) / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def p99_is_lower_bound(self) -> bool:
        """Requests that never answered in time are not in the percentiles: then the real p99 is higher."""
        total = self.requests + self.errors["timeout"]
        return total == 0 or self.errors["timeout"] > 0.01 * total

    def describe(self) -> str:
        errors = ", ".join(f"{count} {kind}" for kind, count in self.errors.items() if count)
        requests = f"{self.requests:,} request{'' if self.requests == 1 else 's'}"
        return f"{requests} in {self.seconds:.1f} s" + (f" ({errors})" if errors else "")


def find() -> str | None:
    """The wrk binary: Debian's, else whatever is on PATH."""
    return "/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else shutil.which("wrk")


def quota_hook(requests: int, threads: int) -> str:
    """Lua that stops each of wrk's ``threads`` after its share of ``requests`` answers, printing QUOTA_MET."""
    share = -(-requests // threads)
    return f"""
local answered = 0
function response(status, headers, body)
  answered = answered + 1
  if answered == {share} then
    io.write("{QUOTA_MET}\\n")
    io.flush()
    wrk.thread:stop()
  end
end
"""


def execute(command: list[str], *, threads: int, timeout: float, quota: bool) -> subprocess.CompletedProcess[str]:
    """Run wrk. With a :func:`quota_hook` in its script (``quota``), interrupt it once every thread has
    met its quota, as Ctrl-C does: wrk then stops at once and still prints its report (stderr in stdout)."""
    if not quota:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        lines: list[str] = []
        running = met = 0
        while met < threads or not running:  # "Running" is printed once wrk handles SIGINT
            line = process.stdout.readline()
            if not line:
                break
            running = running or line.startswith("Running")
            met += line.strip() == QUOTA_MET
            lines.append(line)
        else:
            process.send_signal(signal.SIGINT)
        lines.append(process.stdout.read())
        process.wait()
    finally:
        timer.cancel()
    output = "".join(line for line in "".join(lines).splitlines(keepends=True) if line.strip() != QUOTA_MET)
    return subprocess.CompletedProcess(command, process.returncode, output, "")


def run(
    url: str, *, seconds: int, connections: int = 32, threads: int = 2, script: str = "", requests: int | None = None
) -> Load:
    """Load ``url`` for ``seconds`` with ``connections`` keep-alive connections; ``script`` is wrk Lua.
    With ``requests``, stop as soon as about that many have been answered (``seconds`` is then a limit)."""
    binary = find()
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    threads = min(threads, connections)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-wrk-") as lua:
        lua.write(script + DONE_HOOK + (quota_hook(requests, threads) if requests else ""))
        lua.flush()
        command = [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={seconds}s",
            "--latency",
            "-s",
            lua.name,
            url,
        ]
        result = execute(command, threads=threads, timeout=seconds + 60, quota=bool(requests))
    line = next((line for line in result.stdout.splitlines() if line.startswith(MARKER)), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}) on {url}:\n{result.stdout}{result.stderr}")
    numbers = json.loads(line.removeprefix(MARKER))
    return Load(
        requests=numbers["requests"],
        seconds=numbers["duration_us"] / 1e6,
        p50_ms=numbers["p50_us"] / 1000,
        p99_ms=numbers["p99_us"] / 1000,
        max_ms=numbers["max_us"] / 1000,
        errors={kind: numbers[kind] for kind in ("connect", "read", "write", "status", "timeout")},
    )


def post_script(body: str) -> str:
    """A script that POSTs ``body`` as JSON on every request."""
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {_lua_string(body)}
"""


def paths_script(prefix: str, values_file: Path) -> str:
    """A script that GETs ``prefix`` + a value picked at random from ``values_file`` (one a line)."""
    return f"""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

function init(args)
  math.randomseed(seed * 7919)
  values = {{}}
  for line in io.lines({_lua_string(str(values_file))}) do
    values[#values + 1] = line
  end
end

function request()
  return wrk.format("GET", {_lua_string(prefix)} .. values[math.random(#values)])
end
"""


def _lua_string(text: str) -> str:
    """``text`` as a Lua string literal: for ASCII text, a JSON string literal is one."""
    return json.dumps(text)
