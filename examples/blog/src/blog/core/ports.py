"""Whether ``serve`` can listen where it was asked to, checked before anything starts."""

from __future__ import annotations

import errno
import socket


def listen_refusal(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, in one line with what to do; None when it can.

    Bound the way uvicorn binds (``SO_REUSEADDR``), then let go: without it, a taken port was
    found only after ``serve`` had said it was serving and started the workers.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, OverflowError):
        return f"cannot listen on {host}:{port} — pass --host 127.0.0.1 (or an address of this machine) and --port N"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use — stop what runs there or pass --port N"
            return f"cannot listen on {host}:{port} ({exc.strerror}) — pass another --host or --port"
    return None
