"""``HEAD`` answers as ``GET`` does: it never reaches a handler as anything that could change state.

Starlette routes a ``HEAD`` to every ``GET`` route, and a page handler that tells its
form's ``GET`` from its ``POST`` with ``if request.method == "GET"`` would treat a
``HEAD`` with a body as the ``POST``, past the cross-origin check (which lets safe
methods through). Here a ``HEAD`` goes on as a ``GET`` without a body; the server
still sees the ``HEAD`` and sends the headers alone.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: hands a ``HEAD`` request to the app as a ``GET`` with an empty body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        body_sent = False

        async def receive_no_body() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            while True:  # after the (empty) body, only a disconnect is news; the client's body is dropped
                message = await receive()
                if message["type"] != "http.request":
                    return message

        # A copy: the server reads the method from its own scope to leave the body out of the answer.
        await self.app({**scope, "method": "GET"}, receive_no_body, send)
