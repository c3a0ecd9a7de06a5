"""CSV exports written by PostgreSQL itself (COPY ... TO STDOUT): the export's SELECT, with
every cell formatted in SQL as exports.line_maker formats it in Python for SQLite.

Formatting a million rows in Python ran at about 45,000 rows a second (bench/export.py); the
server's COPY streams the same bytes several times faster and no row becomes a Python object.
"""

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models.responses import AGE_BANDS, CATEGORIES, CHANNELS, GENDERS, LANGUAGE_CODES
from app.services.answers import MASK_BITS, CompiledQuestion, CompiledQuestionnaire

# COPY waits for a slow reader once this many pieces are unread. asyncpg hands on what it has
# received, up to ~256 KiB at once when the reader lags (a ZIP export's compressor, a slow
# client): such pieces are queued in parts of at most PIECE_BYTES, so at most ~2 MiB wait.
QUEUED_PIECES = 32
PIECE_BYTES = 64 * 1024
SEND_BYTES = 64 * 1024
FORMULA = "ARRAY['=', '+', '-', '@', E'\\t', E'\\r']"


def _time(column: str) -> str:
    """As Python's isoformat() of an aware UTC time: microseconds only when not zero."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
        f"extract(microseconds FROM {column})::int % 1000000 <> 0 THEN to_char({utc}, '.US') "
        "ELSE '' END || '+00:00'"
    )


class _Arrays:
    """Labels passed as text[] parameters (never spliced into the SQL)."""

    def __init__(self, first: int) -> None:
        self.values: list[list[str]] = []
        self.first = first

    def label(self, labels: tuple[str, ...] | list[str], code: str) -> str:
        self.values.append(list(labels))
        return f"(${self.first + len(self.values) - 1}::text[])[{code} + 1]"


def _answer(question: CompiledQuestion, at: str, arrays: _Arrays) -> list[str]:
    columns = [f"s.p{at}_{name}" for name in question.columns]
    column = columns[0]
    qtype = question.type
    if qtype == "multiple_choice":
        return [
            f"CASE WHEN {column} IS NOT NULL THEN"
            f" ({columns[n // MASK_BITS]} >> {n % MASK_BITS}) & 1 END"
            for n in range(len(question.option_values))
        ]
    if qtype == "single_choice":
        return [arrays.label(question.option_values, column)]
    if qtype == "boolean":
        return [f"CASE {column} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"]
    if qtype in ("integer", "scale"):
        return [f"{column}::bigint"]
    if qtype == "date":
        return [f"to_char({column}, 'YYYY-MM-DD')"]
    if qtype in ("text", "calculate"):
        return [_text(column)]
    return [column]


def _text(column: str) -> str:
    """Text with a leading ' where a spreadsheet would run it as a formula."""
    return f"CASE WHEN left({column}, 1) = ANY({FORMULA}) THEN '''' || {column} ELSE {column} END"


def copy_statement(
    inner: str, parameters: int, questionnaire: CompiledQuestionnaire, top: list[CompiledQuestion]
) -> tuple[str, list[list[str]]]:
    """The SELECT of the formatted columns over `inner` (the export's SELECT, with `parameters`
    parameters of its own), to COPY; the label arrays to pass after them."""
    arrays = _Arrays(parameters + 1)
    cells = [
        "s.id",
        "s.questionnaire_version",
        _time("s.submitted_at"),
        _time("s.received_at"),
        arrays.label(list(questionnaire.group_keys), "s.group_index"),
        arrays.label(CATEGORIES, "s.category"),
        arrays.label(GENDERS, "s.gender"),
        arrays.label(AGE_BANDS, "s.age_band"),
        "s.territory_code",
        arrays.label(LANGUAGE_CODES, "s.language"),
        arrays.label(CHANNELS, "s.channel"),
        _text("s.instance_name"),
    ]
    for question in top:
        cells += _answer(question, str(question.page), arrays)
    select = f"SELECT {', '.join(cells)} FROM ({inner}) AS s ORDER BY s.received_at, s.id"  # noqa: S608
    return select, arrays.values


async def stream(
    connection: AsyncConnection,
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
    top: list[CompiledQuestion],
) -> AsyncGenerator[bytes]:
    """The CSV lines (no header) of `statement`, as PostgreSQL writes them."""
    compiled = statement.compile(dialect=connection.dialect)
    values = compiled.construct_params()
    # The driver-level values SQLAlchemy itself would send (UTC times, UUIDs).
    processors: Any = compiled._bind_processors
    names = compiled.positiontup or []
    arguments = [
        processors[name](values[name]) if name in processors else values[name] for name in names
    ]
    sql, labels = copy_statement(compiled.string, len(arguments), questionnaire, top)
    raw: Any = (await connection.get_raw_connection()).driver_connection
    pieces: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUED_PIECES)

    async def put(piece: bytes) -> None:
        view = memoryview(piece)
        for start in range(0, len(view), PIECE_BYTES):
            await pieces.put(bytes(view[start : start + PIECE_BYTES]))

    async def copy() -> None:
        # The end mark goes in the queue unless the reader cancelled us: then nobody reads, and
        # a full queue would hold this task (and the connection) for good.
        try:
            await raw.copy_from_query(sql, *arguments, *labels, output=put, format="csv")
        except asyncio.CancelledError:
            raise
        except Exception:
            await pieces.put(None)
            raise
        await pieces.put(None)

    task = asyncio.create_task(copy())
    try:
        # The server's pieces are small (a row or so each): send them on in parts of about
        # 64 KiB, or each would cost a trip through the response and the socket.
        buffer = bytearray()
        while (piece := await pieces.get()) is not None:
            buffer += piece
            if len(buffer) >= SEND_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
        await task  # raises what the COPY raised
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: S110 - the stream is ending
                pass
