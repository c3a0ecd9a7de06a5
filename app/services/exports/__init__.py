"""Streaming exports of responses: CSV, NDJSON, XLSX, ZIP (CSV per table and attachments) and
GeoJSON, read in chunks from server-side cursors.

Memory stays flat however many responses there are: rows are fetched a chunk at a time and
written out (or to a temporary file, for XLSX) before the next chunk is read.
"""

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models.responses import ResponseRead
from app.services.answers import CompiledQuestionnaire
from app.services.exports import archive, csvs, geojson, sources, xlsx
from app.services.exports.columns import (
    BASE_COLUMNS,
    FORMULA_STARTS,
    header,
    line_maker,
    neutralise,
    top_level,
)
from app.services.responses import body_of
from app.services.responses.reads import instances

__all__ = [
    "BASE_COLUMNS", "FORMULA_STARTS", "MEDIA_TYPES", "check", "export", "header",
    "line_maker", "neutralise", "top_level",
]  # fmt: skip

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "zip": "application/zip",
    "geojson": "application/geo+json",
}


def check(questionnaire: CompiledQuestionnaire, fmt: str, geo: str | None) -> str | None:
    """Refuse what cannot be exported before anything is sent (Invalid): XLSX wider than
    Excel, GeoJSON without a geopoint. Gives GeoJSON's geopoint key."""
    if fmt == "xlsx":
        xlsx.check_width(questionnaire)
    return geojson.geopoint_key(questionnaire, geo) if fmt == "geojson" else None


async def export(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
    fmt: str,
    geo: str | None = None,
) -> AsyncGenerator[bytes]:
    """The export's bytes. Closing this generator (the response does, also when the client
    stopped reading) closes the cursor and returns its connection at once."""
    if fmt == "csv":
        pieces = csvs.responses_csv(sessionmaker, statement, questionnaire)
    elif fmt == "ndjson":
        pieces = _ndjson(sessionmaker, statement, questionnaire)
    elif fmt == "xlsx":
        pieces = xlsx.xlsx(sessionmaker, statement, questionnaire)
    elif fmt == "zip":
        pieces = archive.archive(sessionmaker, statement, questionnaire)
    else:
        key = geojson.geopoint_key(questionnaire, geo)
        pieces = geojson.geojson(sessionmaker, statement, questionnaire, key)
    async with aclosing(pieces) as source:
        async for piece in source:
            yield piece


async def _ndjson(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
) -> AsyncGenerator[bytes]:
    """One response per line as the API shows it (repeats as lists)."""
    ordered = statement.order_by(sources.t.received_at, sources.t.id)
    async with sessionmaker() as session:
        assert isinstance(session, AsyncSession)  # noqa: S101
        result = await session.stream(ordered.execution_options(yield_per=sources.CHUNK_ROWS))
        async for chunk in result.partitions(sources.CHUNK_ROWS):
            ids = [row.id for row in chunk] if questionnaire.repeats else []
            repeated = await instances(session, questionnaire, ids)
            bodies = (body_of(row, questionnaire, repeated) for row in chunk)
            lines = (ResponseRead.model_validate(b).model_dump_json() + "\n" for b in bodies)
            yield "".join(lines).encode()
