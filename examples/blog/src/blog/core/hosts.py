"""Answer only the host names this app is served as: the defence against DNS rebinding.

A hostile web page can point a name of its own (``evil.example``) at 127.0.0.1 and
have the visitor's browser talk to the app as ``evil.example``: same origin for the
browser, so the cross-origin check passes. The ``Host`` header still says
``evil.example``, so every request whose ``Host`` is not one of the app's own names
gets a 421 before any route runs (Django's ``ALLOWED_HOSTS``, Rails' HostAuthorization).

The app's own names: ``localhost``, ``127.0.0.1``, ``[::1]`` and the interface given to
``serve --host``, each with the port it serves on. ``APP_ALLOWED_HOSTS`` adds more, comma
separated: ``example.com`` (any port), ``example.com:8443`` (that port only),
``.example.com`` (it and every subdomain), or ``*`` (any host: only behind a proxy that
checks the name itself). Served on every interface (``0.0.0.0``, ``::``), an IP address
as the host is accepted too: a rebinding attack needs a name, and people reach such a
server by its address.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

HOSTS_VARIABLE = "APP_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_INTERFACES = ("0.0.0.0", "::", "")
MAX_HOST_LENGTH = 255 + 1 + 5  # a DNS name, a colon, a port


@dataclass(frozen=True)
class AllowedHosts:
    """The ``Host`` headers the app answers: ``(name, port)`` pairs, port None for any, and the extras."""

    exact: frozenset[tuple[str, int | None]]
    domains: tuple[str, ...] = ()  # ".example.com": the name and every subdomain, any port
    any_address_on: int | None = None  # served on every interface: any IP address with this port
    anything: bool = False

    def allows(self, host: str, default_port: int = 80) -> bool:
        """Whether ``host`` (a ``Host`` header's value; no port means ``default_port``) names this app."""
        if self.anything:
            return True
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed[0], default_port if parsed[1] is None else parsed[1]
        if (name, port) in self.exact or (name, None) in self.exact:
            return True
        if any(name == domain[1:] or name.endswith(domain) for domain in self.domains):
            return True
        return self.any_address_on is not None and port == self.any_address_on and _is_address(name)


def allowed_hosts(
    host: str = "127.0.0.1", port: int | None = None, environ: Mapping[str, str] = os.environ
) -> AllowedHosts:
    """The defaults for an app served on ``host``:``port`` (None: any port), plus ``APP_ALLOWED_HOSTS``."""
    names = {*LOOPBACK_NAMES}
    served = host.strip("[]").lower()
    if host not in WILDCARD_INTERFACES:
        names.add(f"[{served}]" if ":" in served else served)
    exact: set[tuple[str, int | None]] = {(name, port) for name in names}
    domains: list[str] = []
    anything = False
    for entry in (part.strip().lower() for part in environ.get(HOSTS_VARIABLE, "").split(",")):
        if not entry:
            continue
        if entry == "*":
            anything = True
        elif entry.startswith("."):
            domains.append(entry)
        elif (parsed := split_host(entry)) is not None:
            exact.add(parsed)
    return AllowedHosts(
        frozenset(exact),
        tuple(domains),
        any_address_on=port if host in WILDCARD_INTERFACES and port is not None else None,
        anything=anything,
    )


def split_host(host: str) -> tuple[str, int | None] | None:
    """``"Example.com:8080"`` -> ``("example.com", 8080)``; ``"[::1]"`` -> ``("[::1]", None)``; None if malformed."""
    if not host or len(host) > MAX_HOST_LENGTH or not host.isascii():
        return None
    host = host.lower()
    if host.startswith("["):
        name, bracket, rest = host.partition("]")
        name += bracket
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text = host.partition(":")
        port_text = port_text if colon else None
    if not name or any(c in name for c in "/\\@?# \t"):
        return None
    if port_text is None:
        return name, None
    if not (0 < len(port_text) <= 5 and port_text.isdigit()):  # isascii() above: ASCII digits only
        return None
    return name, int(port_text)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class RequireAllowedHost:
    """ASGI middleware: a 421 for any request whose ``Host`` is not one of :class:`AllowedHosts`."""

    def __init__(self, app: ASGIApp, *, hosts: AllowedHosts, refuse: Callable[[Request, int, str], Response]) -> None:
        self.app = app
        self.hosts = hosts
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if self.hosts.allows(host, 443 if scope.get("scheme") in ("https", "wss") else 80):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before the handshake: the server answers 403
        else:
            shown = repr(host) if split_host(host) is not None else "This"
            message = (
                f"{shown} is not a host name this app answers to"
                f" — if it is yours, add it to {HOSTS_VARIABLE} (comma-separated) and restart"
            )
            await self.refuse(Request(scope), 421, message)(scope, receive, send)
