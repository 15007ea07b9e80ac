"""Summaries of text: an OpenAI-compatible chat-completions client, and an offline fallback.

The client works with hosted services and with local servers (Ollama, vLLM,
llama.cpp): it posts ``{"model": ..., "messages": [...]}`` to
``{SUMMARY_API_URL}/chat/completions`` and reads ``choices[0].message.content``.
Timeouts, connection errors and 5xx answers are retried with backoff; any other
refusal or a malformed answer fails at once. Error messages are safe to store:
they never contain the API key. Without ``SUMMARY_API_URL`` the deterministic
:class:`LocalSummarizer` is used, so a fresh app works offline.

Settings (environment): ``SUMMARY_API_URL``, ``SUMMARY_API_KEY``, ``SUMMARY_MODEL``,
``SUMMARY_TIMEOUT`` (seconds), ``SUMMARY_MAX_ATTEMPTS``, ``SUMMARY_RETRY_BACKOFF``
(seconds, doubled per retry) and ``SUMMARY_CONCURRENCY`` (calls at once per worker).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .redaction import redact
from .text import without_invisible

if TYPE_CHECKING:  # imported when a client is made: most starts (and every CLI call) make none
    import ssl

    import httpx

DEFAULT_MODEL = "llama3.2"
SYSTEM_PROMPT = (
    "Summarize the user's text in one or two plain sentences. Answer with the summary only, in the text's language."
)
MAX_DETAIL = 200
MAX_RAW_DETAIL = 10_000  # of a provider's error message, read before redacting (a cut key is still caught)
MAX_SUMMARY = 10_000  # characters of a summary kept (features keep fewer); longer ones are cut before redacting

Number = TypeVar("Number", int, float)


class SettingRefused(ValueError):
    """A ``SUMMARY_*`` setting that cannot be used: the message names the variable, never the key."""


class SummaryError(Exception):
    """A summary could not be made. The message says why and never contains the API key."""


class Summarizer(Protocol):
    """Anything that turns a text into a summary."""

    async def summarize(self, text: str, *, request_id: str) -> str: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class SummaryConfig:
    """How to reach the summary API; ``api_url=None`` means the offline summarizer."""

    api_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str = DEFAULT_MODEL
    timeout: float = 30.0
    max_attempts: int = 3
    retry_backoff: float = 0.5
    concurrency: int = 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SummaryConfig:
        """Read the ``SUMMARY_*`` settings; a malformed one raises SettingRefused naming the variable."""
        return cls(
            api_url=environ.get("SUMMARY_API_URL") or None,
            api_key=_api_key(environ),
            model=environ.get("SUMMARY_MODEL") or DEFAULT_MODEL,
            timeout=_number(environ, "SUMMARY_TIMEOUT", float, cls.timeout),
            max_attempts=_number(environ, "SUMMARY_MAX_ATTEMPTS", int, cls.max_attempts),
            retry_backoff=_number(environ, "SUMMARY_RETRY_BACKOFF", float, cls.retry_backoff),
            concurrency=_number(environ, "SUMMARY_CONCURRENCY", int, cls.concurrency),
        )


def _api_key(environ: Mapping[str, str]) -> str | None:
    """``SUMMARY_API_KEY``; one with a line break or another control character (a paste that took
    more than the key) is refused: sent in a header it would fail every call, or split the header."""
    key = environ.get("SUMMARY_API_KEY") or None
    if key is not None and any(not char.isprintable() for char in key):
        raise SettingRefused(
            "SUMMARY_API_KEY has a line break or another control character in it — set it to the key alone"
        )
    return key


def _number(environ: Mapping[str, str], name: str, kind: Callable[[str], Number], default: Number) -> Number:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingRefused(f"{name} must be a positive number, not {raw!r}") from None
    if value <= 0:
        raise SettingRefused(f"{name} must be a positive number, not {raw!r}")
    return value


def make_summarizer(config: SummaryConfig) -> Summarizer:
    """The chat-completions client when an API URL is configured, else the offline summarizer."""
    return ChatCompletionsSummarizer(config) if config.api_url else LocalSummarizer()


class ChatCompletionsSummarizer:
    """Asks an OpenAI-compatible ``/chat/completions`` endpoint for a summary."""

    def __init__(self, config: SummaryConfig, *, client: httpx.AsyncClient | None = None) -> None:
        if not config.api_url:
            raise ValueError("ChatCompletionsSummarizer needs SummaryConfig.api_url")
        import httpx

        self.config = config
        self.url = _endpoint(config.api_url)
        self._secrets = (config.api_key, *url_secrets(config.api_url))  # what no answer may show
        self._client = client or httpx.AsyncClient(timeout=config.timeout, verify=tls_context())

    async def summarize(self, text: str, *, request_id: str) -> str:
        """The summary of ``text``; raises SummaryError once retrying cannot help."""
        import httpx

        body = {
            "model": self.config.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
        }
        headers = {"Idempotency-Key": request_id}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        problem = "no attempt made"
        retry_after = 0.0
        for attempt in range(self.config.max_attempts):
            if attempt:
                await asyncio.sleep(max(retry_after, self.config.retry_backoff * 2 ** (attempt - 1)))
            try:
                # httpx's timeout is per read: a server dripping bytes would never trip it.
                async with asyncio.timeout(self.config.timeout):
                    response = await self._client.post(self.url, json=body, headers=headers)
            except (TimeoutError, httpx.TimeoutException):
                problem = f"timed out after {self.config.timeout:g}s"
                continue
            except httpx.TransportError as exc:
                problem = f"could not connect ({type(exc).__name__})"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                problem = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
                continue
            return self._summary_from(response)
        raise SummaryError(f"summary API failed after {self.config.max_attempts} attempt(s): {problem}")

    def _summary_from(self, response: httpx.Response) -> str:
        if not response.is_success:
            detail = _error_detail(response, secrets=self._secrets)
            raise SummaryError(f"summary API refused the request: HTTP {response.status_code}{detail}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except ValueError:
            raise SummaryError("summary API answered with malformed JSON") from None
        except (KeyError, IndexError, TypeError):
            raise SummaryError("summary API answer has no choices[0].message.content") from None
        if not isinstance(content, str) or not content.strip():
            raise SummaryError("summary API answered with an empty summary")
        # Shown to everyone: never the key, nor characters that hide or reorder text.
        return without_invisible(_redacted(content[:MAX_SUMMARY], self._secrets)).strip()

    async def aclose(self) -> None:
        await self._client.aclose()


def tls_context() -> ssl.SSLContext:
    """The TLS settings every summary client shares: httpx's default ones (its CA bundle, or the
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` named), loaded once per process and per value of those two.

    Loading a CA bundle takes about 25 ms, and each worker start makes a client.
    """
    return _tls_context(os.environ.get("SSL_CERT_FILE") or "", os.environ.get("SSL_CERT_DIR") or "")


@functools.cache
def _tls_context(cert_file: str, cert_dir: str) -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()  # reads the two variables itself (trust_env)


def _endpoint(api_url: str) -> str:
    """``{api_url}/chat/completions``, a query (a provider's ``?key=`` or ``?api-version=``) kept after the path."""
    parts = urllib.parse.urlsplit(api_url)
    return parts._replace(path=parts.path.rstrip("/") + "/chat/completions", fragment="").geturl()


def _retry_after(response: httpx.Response, cap: float = 30.0) -> float:
    """The server's ``Retry-After`` in seconds (rate limits), capped; 0 when absent or a date."""
    try:
        return min(cap, max(0.0, float(response.headers.get("retry-after", "0"))))
    except ValueError:
        return 0.0


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials ``SUMMARY_API_URL`` itself may carry: its user and password, and its query's
    values (a provider's ``?key=``). A provider echoing the URL it was called at must not store them."""
    parts = urllib.parse.urlsplit(url)
    values = [parts.username, parts.password, *(v for _, v in urllib.parse.parse_qsl(parts.query))]
    return tuple(value for value in values if value and len(value) >= 8)


def _redacted(text: str, secrets: tuple[str | None, ...]) -> str:
    for secret in secrets:
        text = redact(text, secret)
    return text


def _error_detail(response: httpx.Response, *, secrets: tuple[str | None, ...]) -> str:
    """``": <message>"`` from an OpenAI-style error body, the key redacted, shortened; empty if there is none.

    Some providers echo the credentials they refuse. The key is redacted from the raw
    text first: cut or with its spaces collapsed, it would no longer be recognised.
    """
    try:
        payload: Any = response.json()
        message = payload["error"]["message"] if isinstance(payload.get("error"), dict) else payload["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    message = " ".join(without_invisible(_redacted(str(message)[:MAX_RAW_DETAIL], secrets)).split())
    return f": {message[:MAX_DETAIL]}" if message else ""


class LocalSummarizer:
    """Summarizes offline and deterministically: the first sentence or two, at most ``max_length`` characters."""

    # It needs no I/O: the summary worker calls it inline, many per cycle, not in a task per request.
    immediate = True

    def __init__(self, max_length: int = 200) -> None:
        self.max_length = max_length

    async def summarize(self, text: str, *, request_id: str) -> str:
        words = " ".join(text.split())
        if not words:
            raise SummaryError("there is no text to summarize")
        summary = ""
        for sentence in re.split(r"(?<=[.!?])\s+", words):
            if summary and len(summary) + 1 + len(sentence) > self.max_length:
                break
            summary = f"{summary} {sentence}".strip()
            if len(summary) >= self.max_length // 2:
                break
        if len(summary) > self.max_length:
            cut = summary[: self.max_length - 1]
            summary = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"
        return summary

    async def aclose(self) -> None:
        """Nothing to release."""
