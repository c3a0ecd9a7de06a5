"""Files as they arrive: spooled while counted and hashed, and their type read from their bytes."""

import hashlib
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import IO, Any

import anyio.to_thread
import puremagic
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession

from app.errors import Invalid, TooLarge
from app.models.attachments import CHUNK_BYTES

# The media types the files of each media question type may have ("" any).
MEDIA_PREFIXES = {"image": "image/", "audio": "audio/", "video": "video/", "file": ""}
SPOOL_MEMORY = 1024 * 1024  # bytes of an arriving file kept in memory before it goes to disk
SNIFF_BYTES = 8 * 1024  # the start of a file its type is read from
READ_BYTES = 64 * 1024  # what one read from a spool or an upload takes
# puremagic names some containers by extension only (no media type): those that hold media.
_BY_EXTENSION = {
    ".m4a": "audio/mp4",
    ".amr": "audio/amr",
    ".3ga": "audio/3gpp",
    ".awb": "audio/amr-wb",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".webp": "image/webp",
}
# Containers that carry sound as well as pictures (3GP and MP4 recordings): fine for audio.
_AUDIO_CONTAINERS = {"video/3gpp", "video/mp4", "video/ogg", "video/webm", "application/ogg"}


async def run(session: SAAsyncSession, statement: Any) -> Any:
    """A Core statement on the session's connection (the session's ORM layer has no part)."""
    connection = await session.connection()
    return await connection.execute(statement)


# --- receiving --------------------------------------------------------------------------------


@dataclass
class Received:
    """A file spooled while it arrived: its size, SHA-256, first bytes and MD5 (what OpenRosa
    manifests give)."""

    spool: IO[bytes]
    size: int
    sha256: str
    head: bytes
    md5: str

    def close(self) -> None:
        self.spool.close()

    async def chunks(self, size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        """Its bytes from the start, `size` at a time (the spool read off the event loop)."""
        await anyio.to_thread.run_sync(self.spool.seek, 0)
        while chunk := await anyio.to_thread.run_sync(self.spool.read, size):
            yield chunk


async def receive(chunks: AsyncIterable[bytes], limit: int, name: str = "file") -> Received:
    """Spool a file as it arrives; TooLarge as soon as it passes `limit` bytes."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - returned
    digest, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    head = bytearray()
    size = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"The file {name!r} is larger than {limit} bytes")
            digest.update(chunk)
            md5.update(chunk)
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            spool.write(chunk)  # memory, or past SPOOL_MEMORY the page cache of a temp file
    except BaseException:
        spool.close()
        raise
    return Received(spool, size, digest.hexdigest(), bytes(head), md5.hexdigest())


async def upload_chunks(upload: Any) -> AsyncIterator[bytes]:
    """A multipart part (Starlette's UploadFile, spooled by the parser) read in pieces."""
    await upload.seek(0)
    while chunk := await upload.read(READ_BYTES):
        yield chunk


# --- types ------------------------------------------------------------------------------------


def _candidates(head: bytes) -> list[str]:
    """Media types the file's first bytes fit, most likely first (none: unknown bytes)."""
    if not head:
        return []
    try:
        found = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return []
    types: list[str] = []
    for match in found:
        media = match.mime_type or _BY_EXTENSION.get(match.extension, "")
        if media and media not in types:
            types.append(media)
    return types


def _suits(media: str, question_type: str) -> bool:
    wanted = MEDIA_PREFIXES[question_type]
    if media.startswith(wanted):
        return True
    return question_type == "audio" and media in _AUDIO_CONTAINERS


async def content_type(received: Received, name: str, question_type: str) -> str:
    """The file's media type read from its bytes; Invalid when it does not suit the question
    (an `image` question takes image/*, and so on; a `file` question anything)."""
    candidates = await anyio.to_thread.run_sync(_candidates, received.head)
    for media in candidates:
        if _suits(media, question_type):
            return media
    if question_type == "file":
        return "application/octet-stream"
    seen = candidates[0] if candidates else "unrecognised bytes"
    raise Invalid(
        f"The file {name!r} is not {question_type} ({seen})",
        errors=[
            {
                "loc": ["body", name],
                "msg": f"expected {MEDIA_PREFIXES[question_type]}*, the bytes are {seen}",
                "type": "content_type",
            }
        ],
    )


async def from_upload(upload: Any, limit: int, name: str) -> Received:
    """A multipart part as a Received file: the parser's own spool, read once through for its
    size, SHA-256 and first bytes (no second copy)."""
    digest, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    head = bytearray()
    size = 0
    async for chunk in upload_chunks(upload):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The file {name!r} is larger than {limit} bytes")
        digest.update(chunk)
        md5.update(chunk)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
    return Received(upload.file, size, digest.hexdigest(), bytes(head), md5.hexdigest())
