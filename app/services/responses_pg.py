"""Storing responses on PostgreSQL over a bare asyncpg connection: the submission hot path.

services/responses.py holds the rules and calls these on PostgreSQL (SQLite takes the session
path there). Each statement here runs outside an explicit transaction, so it commits on its own
and is atomic as one statement. The statement re-reads the questionnaire's status under a share
lock (a close waits for submissions in flight) and inserts the responses whose id is new, with
their details, only while it is published: one round trip per submission or batch.
"""

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from app.models.questionnaires import Status

# (column, PostgreSQL type) of the hot row before its answer slots, and of the detail row.
HEAD = (
    ("id", "uuid"),
    ("questionnaire_id", "uuid"),
    ("questionnaire_version", "int"),
    ("group_index", "smallint"),
    ("category", "smallint"),
    ("gender", "smallint"),
    ("age_band", "smallint"),
    ("language", "smallint"),
    ("channel", "smallint"),
    ("territory_code", "varchar"),
    ("submitted_at", "timestamptz"),
    ("received_at", "timestamptz"),
)
DETAIL = (
    ("answers", "jsonb"),
    ("content_hash", "varchar"),
    ("started_at", "timestamptz"),
    ("submitted_by_user", "uuid"),
    ("submitted_by_collector", "uuid"),
)


def _slot_type(slot: str) -> str:
    return "bigint" if slot.startswith("k") else "float8"


# What every storing statement checks first, and what it answers (see _insert_sql).
_GUARDS = """WITH q AS (SELECT status FROM questionnaire WHERE id = $1 FOR SHARE),
a AS (SELECT $2::uuid IS NULL OR EXISTS (
  SELECT 1 FROM collector WHERE id = $2::uuid AND revoked_at IS NULL) AS ok)"""
_ALLOWED = f"(SELECT status FROM q) = '{Status.published.value}' AND (SELECT ok FROM a)"  # noqa: S608
_RESULT = """SELECT (SELECT status FROM q) AS status, (SELECT ok FROM a) AS authorized,
  array(SELECT id FROM head) AS inserted"""


@functools.lru_cache(maxsize=256)
def _insert_sql(slots: tuple[str, ...], many: bool) -> str:
    """One INSERT of head and detail rows guarded by the questionnaire's status.

    $1 is the questionnaire, $2 the collector submitting (or null): the collector's
    revocation is checked here, so a principal remembered in memory is still refused at once.
    One row: plain parameters. Many rows: one array parameter per column, unnested; the
    statement text stays the same for every batch size (prepared once per connection).
    """
    head = [*HEAD, *((slot, _slot_type(slot)) for slot in slots)]
    head_names = ", ".join(name for name, _ in head)
    detail_names = ", ".join(name for name, _ in DETAIL)
    if many:
        columns = [*head, *DETAIL]
        arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(columns, 3))
        names = ", ".join(name for name, _ in columns)
        values = ", ".join(f"v.{name}" for name, _ in head)
        detail_values = ", ".join(f"v.{name}" for name, _ in DETAIL)
        return f"""{_GUARDS},
v AS (SELECT * FROM unnest({arrays}) AS v({names})),
head AS (
  INSERT INTO response ({head_names}) SELECT {values} FROM v WHERE {_ALLOWED}
  ORDER BY v.id ON CONFLICT (id) DO NOTHING RETURNING id
),
detail AS (
  INSERT INTO response_detail (id, {detail_names})
  SELECT v.id, {detail_values} FROM v JOIN head USING (id)
)
{_RESULT}"""  # noqa: S608 - our names
    values = ", ".join(f"${n}::{kind}" for n, (_, kind) in enumerate(head, 3))
    detail_values = ", ".join(f"${n}::{kind}" for n, (_, kind) in enumerate(DETAIL, len(head) + 3))
    return f"""{_GUARDS},
head AS (
  INSERT INTO response ({head_names}) SELECT {values} WHERE {_ALLOWED}
  ON CONFLICT (id) DO NOTHING RETURNING id
),
detail AS (INSERT INTO response_detail (id, {detail_names}) SELECT id, {detail_values} FROM head)
{_RESULT}"""  # noqa: S608 - our names


def _values(row: Mapping[str, Any], slots: Sequence[str]) -> list[Any]:
    values = [row[name] for name, _ in HEAD]
    values.extend(row[slot] for slot in slots)
    values.append(orjson.dumps(row["answers"]).decode())
    values.extend(row[name] for name, _ in DETAIL[1:])
    return values


@dataclass(frozen=True)
class Inserted:
    status: str | None  # the questionnaire's, None when it is gone
    authorized: bool  # False: the collector was revoked (then nothing was stored)
    ids: set[uuid.UUID]


async def insert(
    connection: asyncpg.Connection,
    questionnaire_id: uuid.UUID,
    collector_id: uuid.UUID | None,
    slots: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    *,
    many: bool = False,
) -> Inserted:
    """Insert the rows whose id is new, with their details, if the questionnaire is published
    and the collector (if any) not revoked.

    Raises asyncpg.ForeignKeyViolationError when a row names an unknown territory (then
    nothing of the statement is stored).
    """
    if len(rows) == 1 and not many:
        arguments = _values(rows[0], slots)
        record = await connection.fetchrow(
            _insert_sql(slots, False), questionnaire_id, collector_id, *arguments
        )
    else:
        width = len(HEAD) + len(slots) + len(DETAIL)  # empty arrays for an empty batch
        columns = [list(c) for c in zip(*(_values(row, slots) for row in rows), strict=True)]
        record = await connection.fetchrow(
            _insert_sql(slots, True), questionnaire_id, collector_id, *(columns or [[]] * width)
        )
    assert record is not None  # noqa: S101 - the statement always returns one row
    return Inserted(record["status"], record["authorized"], set(record["inserted"]))


async def unknown_territories(connection: asyncpg.Connection, codes: set[str]) -> set[str]:
    known = await connection.fetch(
        "SELECT code FROM territory WHERE code = ANY($1::varchar[])", list(codes)
    )
    return codes - {record["code"] for record in known}


async def collector_active(connection: asyncpg.Connection, collector_id: uuid.UUID) -> bool:
    found = await connection.fetchval(
        "SELECT 1 FROM collector WHERE id = $1 AND revoked_at IS NULL", collector_id
    )
    return found is not None


async def stored(
    connection: asyncpg.Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """Stored responses with their detail and content hash, by id."""
    records = await connection.fetch(
        "SELECT r.*, d.answers, d.started_at, d.content_hash "
        "FROM response r JOIN response_detail d ON d.id = r.id WHERE r.id = ANY($1::uuid[])",
        list(ids),
    )
    found = {}
    for record in records:
        row = dict(record)
        row["answers"] = orjson.loads(row["answers"])
        found[row["id"]] = row
    return found
