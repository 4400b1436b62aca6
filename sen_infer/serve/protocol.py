"""uvicorn's HTTP/1.1 protocol with a header deadline. uvicorn bounds idle keep-alive connections but not
one that trickles its request line and headers a byte at a time (slowloris): such a connection is held
forever, before any key is checked. Here every request's headers must be complete within
`Limits.header_timeout` of its first byte (or of the connection opening); otherwise the connection is
closed without an answer. Bodies have their own deadline (`limits.BodyLimit`)."""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("sen_infer.serve")


def guarded_protocol(header_timeout: float) -> type:
    """The protocol class for `uvicorn.Config(http=...)`, closing connections whose headers are late.

    Args:
        header_timeout: seconds a request's headers may take, from the connection opening or from the first
            byte of a later request on a kept-alive connection.

    Returns:
        A subclass of uvicorn's `H11Protocol`.
    """

    class HeaderDeadlineProtocol(H11Protocol):
        """H11Protocol plus one timer per connection, armed while a request's headers are awaited."""

        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the first byte of a new request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # the headers are in; the body has its own deadline

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.info("closed a connection from %s: no complete request headers within %g s",
                         self.client[0] if self.client else "?", header_timeout)
                self.transport.close()

    return HeaderDeadlineProtocol
