"""Streaming exports of responses as CSV, NDJSON or XLSX, in chunks from a server-side cursor.

Memory stays flat however many responses there are: rows are fetched a chunk at a time and
written out before the next chunk is read (XLSX goes through openpyxl's write-only mode into a
temporary file, which is then streamed).
"""

import asyncio
import csv
import io
import tempfile
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from typing import Any

from openpyxl import Workbook
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models.responses import ResponseRead, response_table
from app.services.answers import CompiledQuestionnaire
from app.services.responses import body_of
from app.services.responses.reads import instances

CHUNK_ROWS = 1000
FILE_CHUNK_BYTES = 64 * 1024
BASE_COLUMNS = (
    "id", "questionnaire_version", "submitted_at", "received_at", "group", "category",
    "gender", "age_band", "territory_code", "language", "channel",
)  # fmt: skip
# A cell starting with one of these would run as a formula in a spreadsheet program.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def header(questionnaire: CompiledQuestionnaire) -> list[str]:
    columns = list(BASE_COLUMNS)
    for question in top_level(questionnaire):
        if question.type == "multiple_choice":
            columns += [f"{question.key}/{value}" for value in question.option_values]
        else:
            columns.append(question.key)
    return columns


def top_level(questionnaire: CompiledQuestionnaire) -> list[Any]:
    """The questions asked once per response: the columns of the main sheet (questions inside
    repeats are in NDJSON's lists)."""
    return [question for question in questionnaire.questions if question.repeat is None]


def neutralise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def cells(body: Mapping[str, Any], questionnaire: CompiledQuestionnaire) -> list[Any]:
    """One export line: respondent columns, then the answers (0/1 per multiple-choice option)."""
    respondent = body["respondent"]
    line: list[Any] = [
        str(body["id"]),
        body["questionnaire_version"],
        body["submitted_at"].isoformat(),
        body["received_at"].isoformat(),
        respondent["group"],
        respondent["category"],
        respondent["gender"],
        respondent["age_band"],
        respondent["territory_code"],
        body["language"],
        body["channel"],
    ]
    answers = body["answers"]
    for question in top_level(questionnaire):
        answer = answers.get(question.key)
        if question.type == "multiple_choice":
            chosen = set(answer or ())
            line += [
                ("" if answer is None else int(value in chosen)) for value in question.option_values
            ]
        elif isinstance(answer, bool):
            line.append("true" if answer else "false")
        else:
            line.append(neutralise(answer))
    return ["" if value is None else value for value in line]


async def _bodies(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
) -> AsyncGenerator[list[dict[str, Any]]]:
    t = response_table.c
    async with sessionmaker() as session:
        assert isinstance(session, AsyncSession)  # noqa: S101
        ordered = statement.order_by(t.received_at, t.id).execution_options(yield_per=CHUNK_ROWS)
        result = await session.stream(ordered)
        async for chunk in result.partitions(CHUNK_ROWS):
            ids = [row.id for row in chunk] if questionnaire.repeats else []
            repeated = await instances(session, questionnaire, ids)
            yield [body_of(row, questionnaire, repeated) for row in chunk]


async def export(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
    fmt: str,
) -> AsyncGenerator[bytes]:
    """The export's bytes. Closing this generator (the response does, also when the client
    stopped reading) closes the cursor and returns its connection at once."""
    if fmt == "csv":
        async with aclosing(_csv(sessionmaker, statement, questionnaire)) as pieces:
            async for piece in pieces:
                yield piece
    elif fmt == "ndjson":
        async with aclosing(_bodies(sessionmaker, statement, questionnaire)) as chunks:
            async for bodies in chunks:
                lines = (ResponseRead.model_validate(b).model_dump_json() + "\n" for b in bodies)
                yield "".join(lines).encode()
    else:
        async with aclosing(_xlsx(sessionmaker, statement, questionnaire)) as pieces:
            async for piece in pieces:
                yield piece


def _csv_text(lines: Iterable[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)
    return buffer.getvalue().encode()


async def _csv(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
) -> AsyncGenerator[bytes]:
    # The byte-order mark makes spreadsheet programs read the file as UTF-8 (Cyrillic).
    yield "\ufeff".encode() + _csv_text([header(questionnaire)])
    async with aclosing(_bodies(sessionmaker, statement, questionnaire)) as chunks:
        async for bodies in chunks:
            yield _csv_text(cells(body, questionnaire) for body in bodies)


async def _xlsx(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
) -> AsyncGenerator[bytes]:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("responses")
    sheet.append(header(questionnaire))
    async with aclosing(_bodies(sessionmaker, statement, questionnaire)) as chunks:
        async for bodies in chunks:
            for body in bodies:
                sheet.append(cells(body, questionnaire))
    with tempfile.TemporaryFile() as handle:
        await asyncio.to_thread(workbook.save, handle)  # zips the sheet: CPU-bound
        handle.seek(0)
        while piece := handle.read(FILE_CHUNK_BYTES):
            yield piece
