"""What exports read: the responses' rows, a repeat's instance rows, the responses' ids.

Rows come a chunk at a time from a server-side cursor, so memory stays flat however many
responses there are; every read keeps the export's filters (the WHERE of `statement`, which
`services.responses.filtered` built on `response` alone).
"""

import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models.questionnaires import Status
from app.models.responses import response_table
from app.services.answers import CompiledQuestionnaire
from app.services.responses.reads import answer_tables

CHUNK_ROWS = 1000
t = response_table.c


async def rows(
    sessionmaker: async_sessionmaker[Any], statement: Select[Any]
) -> AsyncGenerator[Sequence[Any]]:
    """Chunks of rows of `statement`, in the export's order (as received)."""
    async with aclosing(_stream(sessionmaker, statement.order_by(t.received_at, t.id))) as chunks:
        async for chunk in chunks:
            yield chunk


async def _stream(
    sessionmaker: async_sessionmaker[Any], statement: Select[Any]
) -> AsyncGenerator[Sequence[Any]]:
    """Closing this generator closes the cursor and returns the connection at once."""
    async with sessionmaker() as session:
        result = await session.stream(statement.execution_options(yield_per=CHUNK_ROWS))
        async for chunk in result.partitions(CHUNK_ROWS):
            yield chunk


def repeat_select(
    questionnaire: CompiledQuestionnaire, statement: Select[Any], key: str
) -> Select[Any]:
    """The instances of repeat `key` in the responses `statement` selects: the response's id,
    the instance's number, its enclosing instance's number, its position, then its answer
    columns page by page; in the responses' order, and in order within each response (a
    repeat's instances are numbered as they come, enclosing instances first)."""
    repeat = questionnaire.repeats[key]
    tables = answer_tables(questionnaire)
    first = tables[repeat.pages[0]]
    source: Any = response_table.join(first, first.c.response_id == t.id)
    columns: list[Any] = [t.id, first.c.instance, first.c.parent_instance, first.c.position]
    for number in repeat.pages:
        table = tables[number]
        if table is not first:
            source = source.outerjoin(
                table,
                and_(
                    table.c.response_id == first.c.response_id,
                    table.c.instance == first.c.instance,
                ),
            )
        columns += [table.c[name] for name, _ in questionnaire.pages[number].columns]
    return (
        select(*columns)
        .select_from(source)
        .where(*_filters(statement))
        .order_by(t.received_at, t.id, first.c.instance)
    )


def _filters(statement: Select[Any]) -> list[Any]:
    return [] if statement.whereclause is None else [statement.whereclause]


async def instance_rows(
    sessionmaker: async_sessionmaker[Any],
    questionnaire: CompiledQuestionnaire,
    statement: Select[Any],
    key: str,
) -> AsyncGenerator[Sequence[Any]]:
    """Chunks of the rows of repeat_select (none for a draft: it has no answer tables)."""
    if questionnaire.status == Status.draft:
        return
    ordered = repeat_select(questionnaire, statement, key)
    async with aclosing(_stream(sessionmaker, ordered)) as chunks:
        async for chunk in chunks:
            yield chunk


async def response_ids(
    session: AsyncSession, statement: Select[Any]
) -> AsyncGenerator[list[uuid.UUID]]:
    """The ids of the responses `statement` selects, a chunk at a time, read page by page (no
    cursor stays open, so the session is free for other reads between chunks)."""
    after: Any = None
    while True:
        query = select(t.id, t.received_at).where(*_filters(statement))
        if after is not None:
            query = query.where(
                or_(
                    t.received_at > after.received_at,
                    and_(t.received_at == after.received_at, t.id > after.id),
                )
            )
        ordered = query.order_by(t.received_at, t.id).limit(CHUNK_ROWS)
        connection = await session.connection()  # the plain SQLAlchemy result (rows)
        found = (await connection.execute(ordered)).all()
        if not found:
            return
        yield [row.id for row in found]
        after = found[-1]
