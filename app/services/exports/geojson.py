"""`format=geojson`: a FeatureCollection of the responses that answered a geopoint question,
streamed; each feature's properties are the response's columns (as in the CSV, typed)."""

import json
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

import anyio
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.errors import Invalid
from app.services.answers import CompiledQuestionnaire
from app.services.exports import sources
from app.services.exports.columns import JSON, Line, header, line_maker, top_level

START = b'{"type":"FeatureCollection","features":['
END = b"]}\n"


def geopoint_key(questionnaire: CompiledQuestionnaire, geo: str | None) -> str:
    """The geopoint question that places each response: `geo`, or the first one asked once
    per response. Invalid when there is none or `geo` names something else."""
    points = [q.key for q in top_level(questionnaire) if q.type == "geopoint"]
    if geo is None and points:
        return points[0]
    if geo is not None and geo in points:
        return geo
    message = (
        "not a geopoint question asked once per response"
        if geo is not None
        else "the questionnaire has no geopoint question asked once per response"
    )
    raise Invalid(
        "No geopoint to place the responses by",
        errors=[{"loc": ["query", "geo"], "msg": message, "type": "geopoint"}],
    )


def _features(names: list[str], key: str, line: Line, rows: Sequence[Any]) -> bytes:
    """The features of these rows, each preceded by a comma (runs in a worker thread)."""
    lat, lon, altitude = (names.index(f"{key}/{part}") for part in ("lat", "lon", "altitude"))
    out = []
    for row in rows:
        cells = line(row)
        if cells[lat] is None or cells[lon] is None:
            continue
        point = [cells[lon], cells[lat]]  # GeoJSON: longitude first
        if cells[altitude] is not None:
            point.append(cells[altitude])
        feature = {
            "type": "Feature",
            "id": cells[0],
            "geometry": {"type": "Point", "coordinates": point},
            "properties": dict(zip(names, cells, strict=True)),
        }
        out.append("," + json.dumps(feature, ensure_ascii=False, separators=(",", ":")))
    return "".join(out).encode()


async def geojson(
    sessionmaker: async_sessionmaker[Any],
    statement: Select[Any],
    questionnaire: CompiledQuestionnaire,
    key: str,
) -> AsyncGenerator[bytes]:
    names, line = header(questionnaire), line_maker(questionnaire, JSON)
    yield START
    first = True
    async with aclosing(sources.rows(sessionmaker, statement)) as chunks:
        async for rows in chunks:
            text = await anyio.to_thread.run_sync(_features, names, key, line, rows)
            if first and text:
                text, first = text[1:], False  # no comma before the first feature
            if text:
                yield text
    yield END
