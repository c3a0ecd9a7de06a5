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

from app.models.auth import Principal
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


def _still_allowed(first: int) -> str:
    """True when the principal in parameters $first.. is as it was when resolved: a collector
    ($first) not revoked, a user ($first+1) active with the same roles ($first+2, as a JSON
    array; containment both ways ignores order). True with no principal (public)."""
    collector, user, roles = f"${first}::uuid", f"${first + 1}::uuid", f"${first + 2}::jsonb"
    return f"""CASE
  WHEN {collector} IS NOT NULL THEN EXISTS (
    SELECT 1 FROM collector WHERE id = {collector} AND revoked_at IS NULL)
  WHEN {user} IS NOT NULL THEN EXISTS (
    SELECT 1 FROM user_account WHERE id = {user} AND is_active
    AND roles @> {roles} AND roles <@ {roles})
  ELSE true END"""  # noqa: S608 - parameter numbers only


# What every storing statement checks first ($1 the questionnaire, $2..$4 the principal), and
# what it answers (see _insert_sql).
_GUARDS = f"""WITH q AS (SELECT status FROM questionnaire WHERE id = $1 FOR SHARE),
a AS (SELECT {_still_allowed(2)} AS ok)"""  # noqa: S608 - our names
_ALLOWED = f"(SELECT status FROM q) = '{Status.published.value}' AND (SELECT ok FROM a)"  # noqa: S608
_RESULT = """SELECT (SELECT status FROM q) AS status, (SELECT ok FROM a) AS authorized,
  array(SELECT id FROM head) AS inserted"""
_FIRST_COLUMN = 5  # the parameter number of the first column's value


def _principal_args(principal: Principal | None) -> tuple[Any, Any, Any]:
    if principal is None:
        return None, None, None
    if principal.kind == "collector":
        return principal.id, None, None
    return None, principal.id, orjson.dumps(sorted(principal.roles)).decode()


async def still_allowed(connection: asyncpg.Connection, principal: Principal | None) -> bool:
    """The storing statement's check on the principal, on its own."""
    allowed: bool = await connection.fetchval(
        f"SELECT {_still_allowed(1)}", *_principal_args(principal)
    )
    return allowed


@functools.lru_cache(maxsize=256)
def _insert_sql(slots: tuple[str, ...], many: bool) -> str:
    """One INSERT of head and detail rows guarded by the questionnaire's status.

    The principal is checked again here (_still_allowed), so one remembered in memory is
    still refused at once after a revocation, a deactivation or a change of roles.
    One row: plain parameters. Many rows: one array parameter per column, unnested; the
    statement text stays the same for every batch size (prepared once per connection).
    """
    head = [*HEAD, *((slot, _slot_type(slot)) for slot in slots)]
    head_names = ", ".join(name for name, _ in head)
    detail_names = ", ".join(name for name, _ in DETAIL)
    if many:
        columns = [*head, *DETAIL]
        arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(columns, _FIRST_COLUMN))
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
    values = ", ".join(f"${n}::{kind}" for n, (_, kind) in enumerate(head, _FIRST_COLUMN))
    detail_start = len(head) + _FIRST_COLUMN
    detail_values = ", ".join(f"${n}::{kind}" for n, (_, kind) in enumerate(DETAIL, detail_start))
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
    authorized: bool  # False: the principal is not as it was (then nothing was stored)
    ids: set[uuid.UUID]


async def insert(
    connection: asyncpg.Connection,
    questionnaire_id: uuid.UUID,
    principal: Principal | None,
    slots: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    *,
    many: bool = False,
) -> Inserted:
    """Insert the rows whose id is new, with their details, if the questionnaire is published
    and the principal still allowed.

    Raises asyncpg.ForeignKeyViolationError when a row names an unknown territory (then
    nothing of the statement is stored).
    """
    guard = (questionnaire_id, *_principal_args(principal))
    if len(rows) == 1 and not many:
        record = await connection.fetchrow(
            _insert_sql(slots, False), *guard, *_values(rows[0], slots)
        )
    else:
        width = len(HEAD) + len(slots) + len(DETAIL)  # empty arrays for an empty batch
        columns = [list(c) for c in zip(*(_values(row, slots) for row in rows), strict=True)]
        record = await connection.fetchrow(
            _insert_sql(slots, True), *guard, *(columns or [[]] * width)
        )
    assert record is not None  # noqa: S101 - the statement always returns one row
    return Inserted(record["status"], record["authorized"], set(record["inserted"]))


async def unknown_territories(connection: asyncpg.Connection, codes: set[str]) -> set[str]:
    known = await connection.fetch(
        "SELECT code FROM territory WHERE code = ANY($1::varchar[])", list(codes)
    )
    return codes - {record["code"] for record in known}


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
