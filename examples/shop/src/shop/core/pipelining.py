"""HTTP/1.1 pipelining, bounded: a client that sends requests without reading the answers is read only so far ahead.

uvicorn stops reading a connection when a request arrives while another is being
answered, but reading starts again whenever the app waits on ``receive`` or an answer
ends. With the httptools parser every request in the bytes read is then parsed and queued
at once, a couple of kilobytes each: one client pipelining ``GET`` lines without reading
made a server grow by ~200 MB a connection in ten seconds, and never shrink.

:class:`BoundedPipelining` parses no more of a connection's bytes than its protocol
allows (:meth:`~BoundedPipelining._parsable`: at most ``MAX_PIPELINED`` requests waiting
behind the one being answered), holds the rest unparsed, and keeps reading paused until
the answers catch up (:class:`HeldFlow`). A connection then costs at most that many
queued requests and the bytes of one read, and an honest pipelining client is still
answered, in order.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.flow_control import FlowControl

MAX_PIPELINED = 16  # requests read ahead of the one being answered, per connection
HEAD_END = b"\r\n\r\n"  # httptools takes no other ending of a request's head


class HeldFlow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while the connection holds bytes back."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport)
        self.holding = False

    def resume_reading(self) -> None:
        if not self.holding:
            super().resume_reading()


class BoundedPipelining:
    """Mixin for a uvicorn HTTP protocol: the bytes it may not parse yet wait, unread beyond them.

    The protocol class defines :meth:`_parsable` (how much of the bytes it may parse now)
    and :meth:`_parse` (its parser's ``data_received``), and calls :meth:`_release_held`
    when an answer is complete.
    """

    flow: FlowControl
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self.flow = HeldFlow(transport)
        self._held = bytearray()
        self._parsed_tail = b""  # the last bytes parsed, in case a head's ending is split between reads

    def data_received(self, data: bytes) -> None:
        if self._held:  # keep the order: these come after the bytes already held
            self._hold(data)
            return
        cut = self._parsable(data)
        if cut:
            now = data[:cut]
            self._parsed_tail = (self._parsed_tail + now[-3:])[-3:]
            self._parse(now)
        if cut < len(data) and not self.transport.is_closing():
            self._hold(data[cut:])

    def _parsable(self, data: bytes) -> int:
        raise NotImplementedError

    def _parse(self, data: bytes) -> None:
        raise NotImplementedError

    def _hold(self, data: bytes) -> None:
        self._held += data
        assert isinstance(self.flow, HeldFlow)
        self.flow.holding = True
        self.flow.pause_reading()

    def _release_held(self) -> None:
        """An answer is complete: parse what may be parsed now, and read on once nothing is held."""
        if not self._held or self.transport.is_closing():
            return
        data, self._held = bytes(self._held), bytearray()
        assert isinstance(self.flow, HeldFlow)
        self.flow.holding = False
        self.data_received(data)
        if not self._held:
            self.flow.resume_reading()

    def _drop_held(self) -> None:
        self._held = bytearray()


def through_head_ends(tail: bytes, data: bytes, heads: int) -> int:
    """How many bytes of ``data`` contain at most ``heads`` ends of request heads (``tail``: the bytes just before).

    Every head ends with ``HEAD_END``, so a parser fed these bytes completes at most that
    many requests; a body that happens to contain the sequence only makes the count safer.
    """
    if heads <= 0:
        return 0
    found = 0
    end = 0
    split = (tail + data[:3]).find(HEAD_END) if tail else -1  # an ending split between the reads
    if split >= 0:
        found, end = 1, split + len(HEAD_END) - len(tail)
    at = -1
    while found < heads:
        at = data.find(HEAD_END, at + 1)
        if at < 0:
            return len(data)
        found, end = found + 1, at + len(HEAD_END)
    return end
