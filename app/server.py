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
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > settings.max_connections:
            self.logger.warning("connection refused: %d open", len(self.connections) - 1)
            transport.abort()
            return
        self._arm(self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("connection closed: the client was too slow")
            self.transport.abort()

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

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Waiting for the next request: its headers have the same deadline.
            self._arm(self._header_timeout)
