"""Storing files exactly once in chunks, and reading them back a chunk at a time."""

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import Conflict
from app.models.attachments import (
    AttachmentRead,
    AttachmentStored,
    attachment_chunk_table,
    attachment_table,
)
from app.models.responses import response_table
from app.pagination import position
from app.services.attachments.chunks import stream_chunks, write_chunks
from app.services.attachments.expected import Checked, ResponseFiles, question_type_of
from app.services.attachments.received import Received, run

t = attachment_table.c
c = attachment_chunk_table.c
r = response_table.c

# --- storing ----------------------------------------------------------------------------------


def _stored(row: Any) -> AttachmentStored:
    return AttachmentStored(
        response_id=row.response_id,
        name=row.name,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        received_at=row.received_at,
    )


async def _existing(session: AsyncSession, response_id: uuid.UUID, name: str) -> Any:
    statement = select(attachment_table).where(t.response_id == response_id, t.name == name)
    return (await run(session, statement)).first()


def _same_or_conflict(existing: Any, received: Received, name: str) -> AttachmentStored:
    if existing.sha256 == received.sha256 and existing.size == received.size:
        return _stored(existing)
    raise Conflict(f"Other bytes were already received as {name!r}")


async def store(
    session: AsyncSession,
    response_id: uuid.UUID,
    name: str,
    media_type: str,
    received: Received,
) -> tuple[AttachmentStored, bool]:
    """Store a checked file exactly once: (what is stored, whether this call stored it).

    The `attachment` row is inserted first with ON CONFLICT DO NOTHING: of two requests
    storing the same name at once, the second waits for the first (PostgreSQL's unique index;
    SQLite's single writer) and then compares, as a later replay does.
    """
    existing = await _existing(session, response_id, name)
    if existing is not None:
        return _same_or_conflict(existing, received, name), False
    attachment_id = uuid.uuid4()
    values = {
        "id": attachment_id,
        "response_id": response_id,
        "name": name,
        "content_type": media_type,
        "size": received.size,
        "sha256": received.sha256,
        "received_at": utcnow(),
    }
    dialect = (await session.connection()).dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(attachment_table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["response_id", "name"])
        .returning(t.id)
    )
    if (await run(session, statement)).first() is None:
        existing = await _existing(session, response_id, name)
        return _same_or_conflict(existing, received, name), False
    await write_chunks(session, c.attachment_id, attachment_id, received.chunks())
    return AttachmentStored(**{k: v for k, v in values.items() if k != "id"}), True


# --- reading ----------------------------------------------------------------------------------


async def list_files(
    session: AsyncSession, files: ResponseFiles, *, limit: int, cursor: str | None
) -> tuple[list[AttachmentRead], str | None]:
    """The expected files in answer order, received or not; the cursor is the position."""
    names = list(files.expected)
    start = position(cursor, len(names))
    page = names[start : start + limit]
    found: dict[str, Any] = {}
    if page:
        statement = select(attachment_table).where(
            t.response_id == files.response_id, t.name.in_(page)
        )
        found = {row.name: row for row in await run(session, statement)}
    items = [
        AttachmentRead(
            name=name,
            content_type=found[name].content_type if name in found else None,
            size=found[name].size if name in found else None,
            sha256=found[name].sha256 if name in found else None,
            received=name in found,
        )
        for name in page
    ]
    following = start + limit
    return items, (str(following) if following < len(names) else None)


async def stored_file(
    session: AsyncSession, files: ResponseFiles, name: str
) -> AttachmentStored | None:
    question_type_of(files, name)
    row = await _existing(session, files.response_id, name)
    return _stored(row) if row is not None else None


async def _chunk_count(session: AsyncSession, response_id: uuid.UUID, name: str) -> Any:
    statement = (
        select(t.id, func.count(c.seq).label("chunks"))
        .select_from(attachment_table.outerjoin(attachment_chunk_table, c.attachment_id == t.id))
        .where(t.response_id == response_id, t.name == name)
        .group_by(t.id)
    )
    return (await run(session, statement)).first()


async def open_chunks(
    sessionmaker: async_sessionmaker[AsyncSession], response_id: uuid.UUID, name: str
) -> AsyncIterator[bytes]:
    """The file's bytes, CHUNKS_PER_READ chunks per short read: no connection is held between
    reads (a slow client holds none), and never more than those chunks in memory. A file is
    never changed once stored; if its response is deleted meanwhile, the stream ends early."""
    async with sessionmaker() as session:
        found = await _chunk_count(session, response_id, name)
    if found is None:
        return
    async for piece in stream_chunks(sessionmaker, c.attachment_id, found.id, found.chunks):
        yield piece


async def export_files(
    session: AsyncSession, questionnaire_id: uuid.UUID, response_ids: Sequence[uuid.UUID]
) -> AsyncIterator[tuple[uuid.UUID, str, AsyncIterator[bytes]]]:
    """The received files of these responses (of this questionnaire), by response then name,
    each as (response id, name, its bytes in chunks). Read each file's chunks before asking
    for the next file: they come through the same session."""
    if not response_ids:
        return
    statement = (
        select(t.id, t.response_id, t.name)
        .join(response_table, r.id == t.response_id)
        .where(r.questionnaire_id == questionnaire_id, t.response_id.in_(list(response_ids)))
        .order_by(t.response_id, t.name)
    )
    rows = list(await run(session, statement))
    for row in rows:
        yield row.response_id, row.name, _session_chunks(session, row.id)


async def _session_chunks(session: AsyncSession, attachment_id: uuid.UUID) -> AsyncIterator[bytes]:
    seq = 0
    while True:
        statement = select(c.data).where(c.attachment_id == attachment_id, c.seq == seq)
        data = (await run(session, statement)).scalar_one_or_none()
        if data is None:
            return
        yield bytes(data)
        seq += 1


async def store_checked(
    session: AsyncSession, response_id: uuid.UUID, files: Sequence[Checked]
) -> list[tuple[AttachmentStored, bool]]:
    """Store the files of a stored response in one unit of work (a replay of the same bytes
    stores nothing; other bytes under a received name is Conflict)."""
    return [
        await store(session, response_id, file.name, file.media_type, file.received)
        for file in files
    ]
