"""Where the browser tests find Chromium and put their screenshots, and why they would skip."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# Debian's chromium (`apt-get install chromium`); Playwright's own browser download is never used.
CHROMIUM = Path(os.environ.get("PETROCK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("PETROCK_ARTIFACTS", Path(__file__).parent / "artifacts"))


def unavailable() -> str | None:
    """Why the browser tests cannot run here (one line), or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium, or set PETROCK_CHROMIUM)"
    return None


def report_line() -> str:
    reason = unavailable()
    if reason is not None:
        return f"browser tests: skipped: {reason}"
    return f"browser tests: {CHROMIUM}; screenshots in {ARTIFACTS}"
