"""CSV exports: the responses (PostgreSQL writes them itself where it can, see csv_copy) and
one file per repeat."""

import csv
import io
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import aclosing
from typing import Any

import anyio
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.services import csv_copy
from app.services.answers import CompiledQuestionnaire
from app.services.exports import sources
from app.services.exports.columns import (
    Line,
    header,
    line_maker,
    repeat_header,
    repeat_line_maker,
    top_level,
)

# Types csv_copy formats in SQL; a questionnaire with others is written by Python.
COPY_TYPES = frozenset(
    {"single_choice", "multiple_choice", "boolean", "integer", "scale", "decimal", "date",
     "text", "calculate"}
)  # fmt: skip
BOM = "\ufeff".encode()
# PostgreSQL's limit on a SELECT's columns: a wider CSV (a multiple choice of 1,000 options is
# 1,000 columns) is formatted by Python.
COPY_MAX_COLUMNS = 1664


def csv_text(lines: Iterable[list[Any]]) -> bytes:
    buffer = io.StringIO()
    # "\n" as PostgreSQL's COPY writes it, so both engines give the same file.
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue().encode()


def _text(line: Line, rows: Sequence[Any]) -> bytes:
    """Runs in a worker thread: formatting a chunk of rows is CPU work."""
    return csv_text(map(line, rows))


async def responses_csv(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
) -> AsyncGenerator[bytes]:
    # The byte-order mark makes spreadsheet programs read the file as UTF-8 (Cyrillic).
    columns = header(questionnaire)
    yield BOM + csv_text([columns])
    top = top_level(questionnaire)
    if len(columns) <= COPY_MAX_COLUMNS and all(q.type in COPY_TYPES for q in top):
        async with sessionmaker() as session:
            connection = await session.connection()
            if connection.dialect.name == "postgresql":
                lines = csv_copy.stream(connection, statement, questionnaire, top)
                async with aclosing(lines) as pieces:
                    async for piece in pieces:
                        yield piece
                return
    line = line_maker(questionnaire)
    async with aclosing(sources.rows(sessionmaker, statement)) as chunks:
        async for rows in chunks:
            yield await anyio.to_thread.run_sync(_text, line, rows)


async def repeat_csv(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
    key: str,
) -> AsyncGenerator[bytes]:
    """The instances of repeat `key`: parent_id, index, the repeat's columns, id."""
    yield BOM + csv_text([repeat_header(questionnaire, key)])
    line = repeat_line_maker(questionnaire, key)
    found = sources.instance_rows(sessionmaker, questionnaire, statement, key)
    async with aclosing(found) as chunks:
        async for rows in chunks:
            yield await anyio.to_thread.run_sync(_text, line, rows)
