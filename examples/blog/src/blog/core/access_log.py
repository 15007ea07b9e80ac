"""Keep secrets sent in URLs out of the access log.

A token belongs in the ``Authorization`` header, and a URL carrying one is refused
(auth.py); but uvicorn writes every request's path and query to its access log
before anyone looks at it. This filter replaces the values of token-like query
parameters (``?access_token=…``) in the lines it writes with ``[redacted]``.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
SECRET_PARAMETER = re.compile(r"(?i)([?&](?:access_token|token|api_token|apikey|api_key)=)[^&#\s\"]*")


class RedactSecretsInURLs(logging.Filter):
    """Rewrites the string arguments of each access-log record with secret parameters redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                SECRET_PARAMETER.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = SECRET_PARAMETER.sub(r"\1[redacted]", record.msg)
        return True


def redact_secrets_in_access_log() -> None:
    """Install the filter on uvicorn's access log (once, however often it is called)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, RedactSecretsInURLs) for existing in logger.filters):
        logger.addFilter(RedactSecretsInURLs())
