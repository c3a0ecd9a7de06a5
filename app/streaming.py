"""A streamed response that gives up on a client that stops reading, and a cap on how many
such streams run at once: together they keep exports from holding database connections."""

import logging
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger("kenes.streaming")


class StreamSlots:
    """At most `limit` streams at once in this process; taking a slot never waits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def try_take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


class IdleLimitedStreamingResponse(StreamingResponse):
    """Streams `content`; ends the stream when one piece cannot be handed to the client within
    `idle_seconds` (its reads stalled and the socket buffers are full). The content iterator is
    closed then, and always at the end, so that what it holds (a database cursor and its
    connection) is released at once, not when the garbage collector finds it.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        idle_seconds: float,
        on_close: Callable[[], None],
        media_type: str,
        headers: dict[str, str],
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._content = content
        self._idle_seconds = idle_seconds
        self._on_close = on_close

    async def stream_response(self, send: Send) -> None:
        async def send_or_give_up(message: Message) -> None:
            with anyio.fail_after(self._idle_seconds):
                await send(message)

        try:
            await super().stream_response(send_or_give_up)
        except TimeoutError:
            # The response is incomplete: the server closes the connection, and the client
            # sees a truncated body rather than a complete-looking file.
            logger.warning("stream ended: the client stopped reading")
        finally:
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
