"""Files kept in chunk rows (`<owner>_id`, `seq`, `data`): written one chunk at a time from an
async stream, and read back a few chunks per short query. One piece of code for every table
of chunks: responses' attachments and questionnaires' form media."""

import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from sqlalchemy import Column, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.services.attachments.received import run

# Chunks fetched per query when streaming a file (1 MiB): a query per chunk cost more in round
# trips and pool checkouts than sending the chunk (25 MiB from PostgreSQL: 1.3 s one by one).
CHUNKS_PER_READ = 4


async def write_chunks(
    session: AsyncSession, owner: Column[Any], owner_id: uuid.UUID, chunks: AsyncIterable[bytes]
) -> int:
    """Insert the chunks in order under `owner` (the chunk table's owner column); how many."""
    table = owner.table
    seq = 0
    async for chunk in chunks:
        await run(session, table.insert().values({owner.name: owner_id, "seq": seq, "data": chunk}))
        seq += 1
    return seq


async def count_chunks(session: AsyncSession, owner: Column[Any], owner_id: uuid.UUID) -> int:
    statement = select(func.count()).select_from(owner.table).where(owner == owner_id)
    return int((await run(session, statement)).scalar_one())


async def stream_chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: Column[Any],
    owner_id: uuid.UUID,
    count: int,
) -> AsyncIterator[bytes]:
    """The `count` chunks of a file, CHUNKS_PER_READ per short read: no connection is held
    between reads (a slow client holds none), and never more than those chunks in memory."""
    table = owner.table
    for first in range(0, count, CHUNKS_PER_READ):
        last = min(first + CHUNKS_PER_READ, count)
        async with sessionmaker() as session:
            statement = (
                select(table.c.data)
                .where(owner == owner_id, table.c.seq >= first, table.c.seq < last)
                .order_by(table.c.seq)
            )
            pieces = list((await run(session, statement)).scalars())
        if len(pieces) != last - first:
            raise RuntimeError("the file was deleted while it was being sent")
        for piece in pieces:
            yield bytes(piece)
        del pieces
