"""uvicorn's HTTP protocol with the limits it lacks: slow clients are dropped.

uvicorn closes a keep-alive connection after `timeout_keep_alive` seconds without data, but
any byte resets that timer, it has no deadline for a request's headers or body, and it
accepts every connection. So a client dribbling a byte every few seconds, or thousands of
idle connections, stayed open forever (4,000 idle connections accepted). This protocol adds:

- a header deadline: a connection must complete a request's headers within
  KENES_HTTP_HEADER_TIMEOUT_SECONDS of opening (or of its previous response), else it is closed;
- a body deadline: once the headers are in, the body must arrive whole within
  KENES_HTTP_BODY_TIMEOUT_SECONDS, else the connection is closed (the app sees a disconnect);
- a header size cap (MAX_HEADER_BYTES; 400 beyond it), which httptools does not have;
- a connection cap: past KENES_MAX_CONNECTIONS open connections per process, new ones are
  closed at once (uvicorn's limit_concurrency, set to the same number, answers 503 to requests
  when the process is full).

In production a reverse proxy (nginx, HAProxy, a cloud load balancer) in front adds what one
process cannot: limits per client address across workers, TLS, buffering of slow uploads
before they reach us (nginx `client_body_timeout`, `client_header_timeout`,
`limit_conn`), and absorbing connection floods before they take file descriptors here.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings

MAX_HEADER_BYTES = 64 * 1024


class HeaderTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parser error (uvicorn: 400)."""


class GuardedHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        settings = get_settings()
        self._header_timeout = settings.http_header_timeout_seconds
        self._body_timeout = settings.http_body_timeout_seconds
        self._header_bytes = 0
        # One timer per connection, moved rather than replaced: the deadline changes three
        # times per request, and a timer handle made and cancelled each time cost 2% of a
        # submission (bench/submit.py). The timer fires at or after the deadline in force and
        # either acts or waits again for what remains.
        self._deadline_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writes: CoalescedWrites | None = None
        super().connection_made(transport)
        if len(self.connections) > settings.max_connections:
            self.logger.warning("connection refused: %d open", len(self.connections) - 1)
            transport.abort()
            return
        self._arm(self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        deadline = self.loop.time() + seconds
        self._deadline_at = deadline
        timer = self._timer
        if timer is not None and timer.when() <= deadline:
            return  # it fires first and waits again for the rest
        if timer is not None:
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _disarm(self) -> None:
        self._deadline_at = None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline_at
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self._deadline_at = None
        if not self.transport.is_closing():
            self.logger.info("connection closed: the client was too slow")
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        # Whatever the protocol answers from here (a 400 for a malformed request) goes after
        # what a response already wrote.
        if self._writes is not None:
            self._writes.flush()
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HeaderTooLarge()

    def on_headers_complete(self) -> None:
        # The body (if any) has its own deadline from here; a request without one is done.
        self._arm(self._body_timeout)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            # The request's answer is written through CoalescedWrites (its task has not run
            # yet: nothing was written).
            self._writes = CoalescedWrites(self.transport, self.loop)
            cycle.transport = self._writes  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._writes is not None:
            self._writes.flush()  # a HEAD answer writes its headers alone
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Waiting for the next request: its headers have the same deadline.
            self._arm(self._header_timeout)


class CoalescedWrites:
    """A response's transport as uvicorn's request cycle sees it: the status line and headers
    (its first write) wait for the body's first write and go out with it, one send(2) rather
    than two. Each write is a system call that wakes the client, and the headers' cost as much
    as the rest of a submission's network writes (bench/submit.py, py-spy: 15% of the
    server's samples on the headers' write, 6% on the body's).

    Nothing waits long: what is held goes out with the next write, when the response is
    complete, before the connection reads more, or at the event loop's next step (a streamed
    body whose first chunk is not ready yet).
    """

    __slots__ = ("_transport", "_loop", "_held", "_wrote")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._wrote = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._wrote:
            self._transport.write(data)
        else:
            self._wrote = True
            self._held = bytes(data)
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
