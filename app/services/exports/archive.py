"""`format=zip`: a ZIP streamed as it is made, holding responses.csv, one CSV per repeat
(responses-<repeat key>.csv) and the attachments under attachments/<response id>/<name>.

The standard library's zipfile writes to a stream that cannot seek (sizes and checksums go in
a data descriptor after each entry, ZIP64 where needed), which is all a streamed archive needs:
no extra dependency. Compressing is CPU work, done in a worker thread a piece at a time.
The attachments come from services/attachments.export_files, a thousand responses at a time.
"""

import zipfile
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import anyio
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.services.answers import CompiledQuestionnaire
from app.services.attachments import export_files
from app.services.exports import sources
from app.services.exports.columns import repeat_keys
from app.services.exports.csvs import repeat_csv, responses_csv

SEND_BYTES = 64 * 1024
# Files in these formats are compressed already: stored as they are (deflating them again
# costs CPU for nothing).
STORED_SUFFIXES = frozenset(
    {"jpg", "jpeg", "png", "gif", "webp", "heic", "mp4", "m4a", "mp3", "ogg", "oga", "webm",
     "3gp", "amr", "aac", "zip", "gz", "pdf", "docx", "xlsx", "enc"}
)  # fmt: skip


class _Pipe:
    """The archive's output: bytes gather here until they are sent."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


async def archive(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
) -> AsyncGenerator[bytes]:
    pipe = _Pipe()
    stamp = datetime.now(UTC).timetuple()[:6]
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        entry = _Entry(zipped, pipe, stamp)
        pieces = responses_csv(sessionmaker, statement, questionnaire)
        async for piece in entry.add("responses.csv", pieces):
            yield piece
        for key in repeat_keys(questionnaire):
            pieces = repeat_csv(sessionmaker, statement, questionnaire, key)
            async for piece in entry.add(f"responses-{key}.csv", pieces):
                yield piece
        async with sessionmaker() as session:
            async for ids in sources.response_ids(session, statement):
                # Each file's chunks are read before the next file is asked for (they come
                # through this session).
                files = export_files(session, questionnaire.id, ids)
                async with aclosing(files) as found:  # type: ignore[type-var]
                    async for response_id, name, chunks in found:
                        path = f"attachments/{response_id}/{name}"
                        async for piece in entry.add(path, chunks, compress=_compressible(name)):
                            yield piece
    yield pipe.take()  # the central directory


def _compressible(name: str) -> bool:
    return name.rpartition(".")[2].lower() not in STORED_SUFFIXES


class _Entry:
    def __init__(self, zipped: zipfile.ZipFile, pipe: _Pipe, stamp: tuple[int, ...]) -> None:
        self.zipped, self.pipe, self.stamp = zipped, pipe, stamp

    async def add(
        self, name: str, pieces: AsyncIterator[bytes], compress: bool = True
    ) -> AsyncGenerator[bytes]:
        """One file of the archive, written as its pieces come; what is ready is sent."""
        info = zipfile.ZipInfo(name, date_time=self.stamp)  # type: ignore[arg-type]
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        pipe = self.pipe
        with self.zipped.open(info, "w", force_zip64=True) as entry:
            async with aclosing(pieces) as source:  # type: ignore[type-var]
                async for piece in source:
                    # Not cancellable: the thread must be done with the archive before
                    # anything else touches it.
                    await anyio.to_thread.run_sync(entry.write, piece)
                    if len(pipe.buffer) >= SEND_BYTES:
                        yield pipe.take()
        if pipe.buffer:
            yield pipe.take()
