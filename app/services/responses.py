"""Submitting responses exactly once (single and batch), listing, reading and deleting them."""

import hashlib
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import ValidationError
from sqlalchemy import CursorResult, Select, and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel import select as model_select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import raw_connection, session_scope, utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from app.models.auth import Principal, Role
from app.models.questionnaires import Access, Questionnaire, QuestionnaireCreate, Status
from app.models.responses import (
    AGE_BANDS,
    CATEGORIES,
    CHANNELS,
    DETAIL_COLUMNS,
    GENDERS,
    LANGUAGE_CODES,
    BatchResult,
    ItemError,
    ResponseFilters,
    ResponseIn,
    response_detail_table,
    response_table,
)
from app.pagination import decode_cursor, encode_cursor
from app.security import TokenService
from app.services import audit, responses_pg
from app.services import auth as auth_service
from app.services import questionnaires as questionnaire_service
from app.services.answers import CompiledQuestionnaire
from app.services.territories import in_subtree

SUBMIT_ROLES = (Role.observer, Role.coordinator)
READ_ROLES = (Role.coordinator, Role.analyst)

t = response_table.c
d = response_detail_table.c
READ_COLUMNS = (
    t.id, t.questionnaire_id, t.questionnaire_version, t.group_index, t.category, t.gender,
    t.age_band, t.language, t.channel, t.territory_code, d.answers, d.started_at,
    t.submitted_at, t.received_at,
)  # fmt: skip
# Where listings, exports and replays read from: a response with its detail.
WITH_DETAIL = response_table.join(response_detail_table, d.id == t.id)


@dataclass(frozen=True)
class Stored:
    """A stored response as the API shows it, and whether this call created it."""

    body: dict[str, Any]
    created: bool


# --- who may submit ---------------------------------------------------------------------------


def may_submit(principal: Principal | None, questionnaire: CompiledQuestionnaire) -> bool:
    try:
        authorize_submit(principal, questionnaire)
    except (Unauthorized, Forbidden):
        return False
    return True


def authorize_submit(principal: Principal | None, questionnaire: CompiledQuestionnaire) -> None:
    if questionnaire.access == Access.public:
        return
    if principal is None:
        raise Unauthorized()
    if principal.kind == "collector":
        if questionnaire.access == Access.token and questionnaire.id in principal.questionnaire_ids:
            return
        raise Forbidden("This collector is not bound to the questionnaire")
    if not principal.has_any(*SUBMIT_ROLES):
        raise Forbidden("Your roles do not allow submitting responses")


async def _run(session: AsyncSession, statement: Any, parameters: Any = None) -> CursorResult[Any]:
    """Run a Core statement on the response table in the session's transaction."""
    connection = await session.connection()
    result: CursorResult[Any] = await connection.execute(statement, parameters)
    return result


# --- building rows ----------------------------------------------------------------------------


def content_hash(item: ResponseIn) -> str:
    """A fingerprint of what was submitted (not of what the server added), for exactly-once.

    The canonical form is that of `item.model_dump(mode="json")` without the id, times in UTC
    and null answers dropped, built by hand because this runs on every submission.
    """
    respondent = item.respondent
    content = {
        "respondent": {
            "group": respondent.group,
            "gender": respondent.gender,
            "age_band": respondent.age_band,
            "territory_code": respondent.territory_code,
        },
        "answers": {k: v for k, v in item.answers.items() if v is not None},
        "language": item.language,
        "channel": item.channel,
        "started_at": _iso_utc(item.started_at),
        "submitted_at": _iso_utc(item.submitted_at),
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _iso_utc(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def build_row(
    questionnaire: CompiledQuestionnaire,
    principal: Principal | None,
    item: ResponseIn,
    received_at: datetime,
) -> dict[str, Any]:
    """The row to insert, or Invalid listing every problem with the item."""
    errors, answers, slots = questionnaire.check_answers(item.answers)
    group = questionnaire.groups.get(item.respondent.group)
    if group is None:
        errors.insert(
            0,
            {
                "loc": ["body", "respondent", "group"],
                "msg": f"unknown group; one of {', '.join(questionnaire.group_keys)}",
                "type": "unknown",
            },
        )
    if errors:
        raise Invalid("The response does not fit the questionnaire", errors=errors)
    assert group is not None  # noqa: S101 - checked just above
    respondent = item.respondent
    row: dict[str, Any] = {
        "id": item.id or uuid.uuid4(),
        "questionnaire_id": questionnaire.id,
        "questionnaire_version": questionnaire.version,
        "group_index": group[0],
        "category": CATEGORIES.index(group[1]),
        "gender": _code(GENDERS, respondent.gender),
        "age_band": _code(AGE_BANDS, respondent.age_band),
        "language": _code(LANGUAGE_CODES, item.language),
        "channel": _code(CHANNELS, item.channel),
        "territory_code": respondent.territory_code,
        "answers": answers,
        "content_hash": content_hash(item),
        "started_at": _utc(item.started_at),
        "submitted_at": _utc(item.submitted_at) or received_at,
        "received_at": received_at,
        "submitted_by_user": principal.id if principal and principal.kind == "user" else None,
        "submitted_by_collector": (
            principal.id if principal and principal.kind == "collector" else None
        ),
    }
    for question in questionnaire.questions:
        row[question.slot] = slots.get(question.slot)
    return row


def _unknown_territory(code: str | None) -> Invalid:
    loc = ["body", "respondent", "territory_code"]
    return Invalid(
        f"Unknown territory {code}",
        errors=[{"loc": loc, "msg": f"unknown territory {code}", "type": "unknown"}],
    )


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _code(values: Sequence[str], value: str | None) -> int | None:
    return None if value is None else values.index(value)


def _value(values: Sequence[str], code: int | None) -> str | None:
    return None if code is None else values[code]


def to_body(row: Mapping[Any, Any], group_keys: Sequence[str]) -> dict[str, Any]:
    """A stored row as the API shows it."""
    return {
        "id": row["id"],
        "questionnaire_id": row["questionnaire_id"],
        "questionnaire_version": row["questionnaire_version"],
        "respondent": {
            "group": group_keys[row["group_index"]],
            "category": CATEGORIES[row["category"]],
            "gender": _value(GENDERS, row["gender"]),
            "age_band": _value(AGE_BANDS, row["age_band"]),
            "territory_code": row["territory_code"],
        },
        "answers": row["answers"],
        "language": _value(LANGUAGE_CODES, row["language"]),
        "channel": _value(CHANNELS, row["channel"]),
        "started_at": _aware(row["started_at"]),
        "submitted_at": _aware(row["submitted_at"]),
        "received_at": _aware(row["received_at"]),
    }


def _aware(value: datetime | None) -> datetime | None:
    # Core RETURNING/SELECT on SQLite hands back naive UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# --- storing ----------------------------------------------------------------------------------


async def _ensure_published(session: AsyncSession, questionnaire_id: uuid.UUID) -> None:
    """Re-read the status under a share lock: a close waits for submissions in flight."""
    statement = model_select(Questionnaire.status).where(col(Questionnaire.id) == questionnaire_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(read=True)
    status = (await session.exec(statement)).first()
    if status != Status.published:
        raise _closed(status)


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert rows whose id is new (with their detail); returns the ids actually inserted.

    Parameters go separately from the (cached) statements; SQLAlchemy packs many rows into
    multi-row INSERTs ("insertmanyvalues"), so a batch costs a few round trips, not one a row.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    heads = [{k: v for k, v in row.items() if k not in DETAIL_COLUMNS} for row in rows]
    statement = insert(response_table).on_conflict_do_nothing(index_elements=["id"]).returning(t.id)
    result = await _run(session, statement, heads if len(heads) > 1 else heads[0])
    inserted = set(result.scalars())
    details = [
        {"id": row["id"], **{name: row[name] for name in DETAIL_COLUMNS}}
        for row in rows
        if row["id"] in inserted
    ]
    if details:
        await _run(
            session, response_detail_table.insert(), details if len(details) > 1 else details[0]
        )
    return inserted


async def _stored(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Mapping[Any, Any]]:
    statement = select(*READ_COLUMNS, d.content_hash).select_from(WITH_DETAIL).where(t.id.in_(ids))
    return {row.id: row._mapping for row in await _run(session, statement)}


async def submission_access(
    sessionmaker: async_sessionmaker[AsyncSession],
    raw_pool: asyncpg.Pool | None,
    tokens: TokenService,
    token: str | None,
    questionnaire_id: uuid.UUID,
) -> tuple[Principal | None, CompiledQuestionnaire]:
    """The caller and the questionnaire they submit to, once they may submit to it.

    Takes the session factory and, on PostgreSQL, the raw pool rather than a session: with
    the questionnaire compiled in memory, resolving the token is the only query, and a bare
    asyncpg connection runs it for a fraction of a session's cost (the hot path).
    """
    questionnaire = questionnaire_service.cached_compiled(questionnaire_id)
    if raw_pool is not None and questionnaire is not None:
        principal = await _caller_raw(raw_pool, tokens, token, questionnaire)
    else:
        async with sessionmaker() as session:
            principal = await auth_service.resolve_token(session, tokens, token) if token else None
            questionnaire = await questionnaire_service.compiled(session, questionnaire_id)
    authorize_submit(principal, questionnaire)
    return principal, questionnaire


async def _caller_raw(
    raw_pool: asyncpg.Pool,
    tokens: TokenService,
    token: str | None,
    questionnaire: CompiledQuestionnaire,
) -> Principal | None:
    """The caller on the hot path: remembered, if that may submit here; otherwise looked up
    afresh (it may have gained a role since it was remembered: only a fresh look refuses)."""
    if token is None:
        return None
    principal = auth_service.remembered(token)
    if principal is not None and may_submit(principal, questionnaire):
        return principal
    if principal is not None:
        auth_service.forget(principal.id)
    async with raw_connection(raw_pool) as connection:
        return await auth_service.resolve_token_raw(connection, tokens, token)


async def store(
    sessionmaker: async_sessionmaker[AsyncSession],
    raw_pool: asyncpg.Pool | None,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    item: ResponseIn,
) -> Stored:
    """Store one response exactly once: a replay answers the stored one, a changed one 409.

    PostgreSQL: one statement on a bare connection (services/responses_pg.py). SQLite: the
    session path, in a write transaction of its own, committed before this returns.
    """
    if raw_pool is None:
        async for session in session_scope(sessionmaker, write=True):
            # Assigned, not returned, inside the loop: the scope commits when the loop resumes it.
            stored = await submit(session, principal, questionnaire, item)
        return stored
    _require_published(questionnaire)
    try:
        row = build_row(questionnaire, principal, item, utcnow())
    except Invalid:
        # A remembered principal may have been revoked since: 401 comes before 422.
        if principal is not None:
            async with raw_connection(raw_pool) as connection:
                allowed = await responses_pg.still_allowed(connection, principal)
            if not allowed:
                raise _no_longer_allowed(principal) from None
        raise
    async with raw_connection(raw_pool) as connection:
        try:
            inserted = await responses_pg.insert(
                connection, questionnaire.id, principal, questionnaire.slots, [row]
            )
        except asyncpg.ForeignKeyViolationError:
            raise _unknown_territory(item.respondent.territory_code) from None
        _check_accepted(inserted, principal)
        if row["id"] in inserted.ids:
            return Stored(to_body(row, questionnaire.group_keys), created=True)
        existing = (await responses_pg.stored(connection, [row["id"]]))[row["id"]]
    return _replay(existing, row, questionnaire)


def _no_longer_allowed(principal: Principal | None) -> Unauthorized:
    """The remembered principal was revoked, deactivated or given other roles: forget it; the
    next request with the token resolves it afresh."""
    if principal is not None:
        auth_service.forget(principal.id)
    if principal is not None and principal.kind == "collector":
        return Unauthorized("Unknown or revoked collector token")
    return Unauthorized("This account changed since the token was checked; try again")


async def submit(
    session: AsyncSession,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    item: ResponseIn,
) -> Stored:
    """store() in a session (SQLite, and the demo data).

    The caller has checked `authorize_submit` for this principal and questionnaire.
    """
    _require_published(questionnaire)
    row = build_row(questionnaire, principal, item, utcnow())
    await _ensure_published(session, questionnaire.id)
    try:
        inserted = await _insert(session, [row])
    except IntegrityError:
        # The only reference a valid response can break is its territory (checked by the
        # foreign key rather than by an extra query on this hot path).
        raise _unknown_territory(item.respondent.territory_code) from None
    if row["id"] in inserted:
        return Stored(to_body(row, questionnaire.group_keys), created=True)
    existing = (await _stored(session, [row["id"]]))[row["id"]]
    return _replay(existing, row, questionnaire)


def _require_published(questionnaire: CompiledQuestionnaire) -> None:
    if questionnaire.status != Status.published:
        raise _closed(questionnaire.status)


def _closed(status: str | None) -> Conflict:
    return Conflict(f"The questionnaire is {status or 'gone'}; it takes no responses")


def _check_accepted(inserted: responses_pg.Inserted, principal: Principal | None) -> None:
    """Raise what the storing statement found in the way, if anything (then it stored nothing)."""
    if not inserted.authorized:
        raise _no_longer_allowed(principal)
    if inserted.status != Status.published:
        raise _closed(inserted.status)


def _replay(
    existing: Mapping[str, Any], row: Mapping[str, Any], questionnaire: CompiledQuestionnaire
) -> Stored:
    """The stored response for a replay of the same content; 409 for different content."""
    if existing["questionnaire_id"] != questionnaire.id or (
        existing["content_hash"] != row["content_hash"]
    ):
        raise Conflict("A different response was already stored under this id")
    return Stored(to_body(existing, questionnaire.group_keys), created=False)


async def store_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    raw_pool: asyncpg.Pool | None,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    items: list[dict[str, Any]],
) -> list[BatchResult]:
    """Each item stands or falls alone, in order; one statement stores all the new ones.

    PostgreSQL: on a bare connection (services/responses_pg.py); SQLite: in a session.
    """
    _require_published(questionnaire)
    results, pending = _prepare_batch(questionnaire, principal, items)
    # Sorted by id: concurrent batches with overlapping ids then take their row locks in the
    # same order and wait for each other instead of deadlocking.
    rows = sorted((row for _, row in pending.values()), key=lambda row: row["id"])
    existing: Mapping[uuid.UUID, Mapping[str, Any]]
    if raw_pool is None:
        async for session in session_scope(sessionmaker, write=True):
            await _ensure_published(session, questionnaire.id)
            inserted = await _insert_each_alone_on_failure(session, rows, results)
            leftover = [row["id"] for row in rows if row["id"] not in inserted]
            existing = await _stored(session, leftover) if leftover else {}
    else:
        async with raw_connection(raw_pool) as connection:
            inserted = await _insert_batch_pg(connection, principal, questionnaire, rows, results)
            leftover = [row["id"] for row in rows if row["id"] not in inserted]
            existing = await responses_pg.stored(connection, leftover) if leftover else {}
    for row_id in leftover:
        index = pending[row_id][0]
        if results[index].status == "invalid":
            continue
        stored = existing.get(row_id)
        same = (
            stored is not None
            and stored["questionnaire_id"] == questionnaire.id
            and stored["content_hash"] == pending[row_id][1]["content_hash"]
        )
        results[index] = BatchResult(
            index=index, id=row_id, status="duplicate" if same else "conflict"
        )
    return results


def _prepare_batch(
    questionnaire: CompiledQuestionnaire,
    principal: Principal | None,
    items: list[dict[str, Any]],
) -> tuple[list[BatchResult], dict[uuid.UUID, tuple[int, dict[str, Any]]]]:
    """Results so far (created, invalid, repeated within the batch) and the rows to store."""
    received_at = utcnow()
    results: list[BatchResult] = []
    pending: dict[uuid.UUID, tuple[int, dict[str, Any]]] = {}
    for index, raw in enumerate(items):
        result, row = _prepare_item(questionnaire, principal, index, raw, received_at)
        if row is not None:
            earlier = pending.get(row["id"])
            if earlier is not None:
                same = earlier[1]["content_hash"] == row["content_hash"]
                result = BatchResult(
                    index=index, id=row["id"], status="duplicate" if same else "conflict"
                )
            else:
                pending[row["id"]] = (index, row)
        results.append(result)
    return results, pending


async def _insert_batch_pg(
    connection: asyncpg.Connection,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    rows: list[dict[str, Any]],
    results: list[BatchResult],
) -> set[uuid.UUID]:
    """One statement for the lot; rows naming unknown territories are marked invalid first
    if the database refuses it for that reason (the only reference a valid row can break)."""
    try:
        inserted = await responses_pg.insert(
            connection, questionnaire.id, principal, questionnaire.slots, rows, many=True
        )
    except asyncpg.ForeignKeyViolationError:
        unknown = await responses_pg.unknown_territories(
            connection, {row["territory_code"] for row in rows if row["territory_code"]}
        )
        index_of = {result.id: result.index for result in results}
        for row in rows:
            if row["territory_code"] in unknown:
                index = index_of[row["id"]]
                problem = _unknown_territory(row["territory_code"])
                results[index] = BatchResult(
                    index=index,
                    id=row["id"],
                    status="invalid",
                    errors=[ItemError(**error) for error in problem.errors or []],
                )
        rows = [row for row in rows if row["territory_code"] not in unknown]
        inserted = await responses_pg.insert(
            connection, questionnaire.id, principal, questionnaire.slots, rows, many=True
        )
    _check_accepted(inserted, principal)
    return inserted.ids


def _prepare_item(
    questionnaire: CompiledQuestionnaire,
    principal: Principal | None,
    index: int,
    raw: dict[str, Any],
    received_at: datetime,
) -> tuple[BatchResult, dict[str, Any] | None]:
    try:
        item = ResponseIn.model_validate(raw)
        row = build_row(questionnaire, principal, item, received_at)
    except ValidationError as error:
        errors = [
            ItemError(loc=["body", *e["loc"]], msg=e["msg"], type=e["type"]) for e in error.errors()
        ]
        return BatchResult(index=index, id=_raw_id(raw), status="invalid", errors=errors), None
    except Invalid as error:
        errors = [ItemError(**e) for e in error.errors or []]
        return BatchResult(index=index, id=item.id, status="invalid", errors=errors), None
    return BatchResult(index=index, id=row["id"], status="created"), row


def _raw_id(raw: Mapping[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw.get("id")))
    except ValueError:
        return None


async def _insert_each_alone_on_failure(
    session: AsyncSession, rows: list[dict[str, Any]], results: list[BatchResult]
) -> set[uuid.UUID]:
    """All rows in one go; if the database refuses the lot, each row alone in a savepoint."""
    if not rows:
        return set()
    try:
        async with session.begin_nested():
            return await _insert(session, rows)
    except IntegrityError:
        pass
    inserted: set[uuid.UUID] = set()
    index_of = {result.id: result.index for result in results}
    for row in rows:
        try:
            async with session.begin_nested():
                inserted |= await _insert(session, [row])
        except IntegrityError:
            index = index_of[row["id"]]
            problem = _unknown_territory(row["territory_code"])
            results[index] = BatchResult(
                index=index,
                id=row["id"],
                status="invalid",
                errors=[ItemError(**error) for error in problem.errors or []],
            )
    return inserted


# --- reading ----------------------------------------------------------------------------------


def authorize_read(principal: Principal) -> None:
    if principal.kind != "user" or not principal.has_any(*READ_ROLES):
        raise Forbidden("Reading responses needs the analyst, coordinator or admin role")


def conditions(questionnaire: CompiledQuestionnaire, filters: ResponseFilters) -> list[Any]:
    """WHERE conditions on the response table for a questionnaire and the response filters."""
    where: list[Any] = [t.questionnaire_id == questionnaire.id]
    if filters.group is not None:
        group = questionnaire.groups.get(filters.group)
        if group is None:
            raise Invalid(
                "Unknown group",
                errors=[{"loc": ["query", "group"], "msg": "unknown group", "type": "unknown"}],
            )
        where.append(t.group_index == group[0])
    if filters.gender is not None:
        where.append(t.gender == GENDERS.index(filters.gender))
    if filters.territory_code is not None:
        where.append(in_subtree(t.territory_code, filters.territory_code))
    if filters.submitted_from is not None:
        where.append(t.submitted_at >= filters.submitted_from)
    if filters.submitted_to is not None:
        where.append(t.submitted_at < filters.submitted_to)
    return where


async def filtered(
    session: AsyncSession, questionnaire_id: uuid.UUID, filters: ResponseFilters
) -> tuple[Select[Any], CompiledQuestionnaire]:
    """The select of this questionnaire's responses matching the filters."""
    questionnaire = await questionnaire_service.compiled(session, questionnaire_id)
    statement = (
        select(*READ_COLUMNS).select_from(WITH_DETAIL).where(*conditions(questionnaire, filters))
    )
    return statement, questionnaire


async def list_responses(
    session: AsyncSession,
    questionnaire_id: uuid.UUID,
    filters: ResponseFilters,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    statement, questionnaire = await filtered(session, questionnaire_id, filters)
    if cursor is not None:
        after_at, after_id = decode_cursor(cursor)
        statement = statement.where(
            or_(t.received_at > after_at, and_(t.received_at == after_at, t.id > after_id))
        )
    statement = statement.order_by(t.received_at, t.id).limit(limit + 1)
    rows = [row._mapping for row in await _run(session, statement)]
    bodies = [to_body(row, questionnaire.group_keys) for row in rows[:limit]]
    if len(rows) <= limit:
        return bodies, None
    last = bodies[-1]
    return bodies, encode_cursor(last["received_at"], last["id"])


async def get_response(session: AsyncSession, response_id: uuid.UUID) -> dict[str, Any]:
    statement = select(*READ_COLUMNS).select_from(WITH_DETAIL).where(t.id == response_id)
    row = (await _run(session, statement)).first()
    if row is None:
        raise NotFound("No such response")
    questionnaire = await questionnaire_service.compiled(session, row.questionnaire_id)
    return to_body(row._mapping, questionnaire.group_keys)


async def delete_response(session: AsyncSession, actor: Principal, response_id: uuid.UUID) -> None:
    result = await _run(
        session, delete(response_table).where(t.id == response_id).returning(t.questionnaire_id)
    )
    questionnaire_id = result.scalar_one_or_none()
    if questionnaire_id is None:
        raise NotFound("No such response")
    audit.record(
        session,
        actor,
        "response.delete",
        "response",
        response_id,
        questionnaire_id=str(questionnaire_id),
    )


# --- demo data --------------------------------------------------------------------------------

DEMO_RESPONSES = 400
_DEMO_NAMESPACE = uuid.UUID("6a0d3c5e-4f1b-4c7e-9a55-2d1e0f7b8c01")


async def load_demo(session: AsyncSession, definition_path: Any) -> dict[str, int]:
    """The Almaty survey, published, with synthetic responses; ids are derived, so reruns add
    nothing. The answers are random (seeded), not real survey results."""
    definition = json.loads(definition_path.read_text(encoding="utf-8"))
    existing = (
        await session.exec(
            model_select(Questionnaire).where(col(Questionnaire.slug) == definition["slug"])
        )
    ).first()
    added_questionnaires = 0
    if existing is None:
        actor = audit.SYSTEM
        created = await questionnaire_service.create(
            session, actor, QuestionnaireCreate.model_validate(definition)
        )
        existing = await questionnaire_service.change_status(
            session, actor, created.id, Status.published
        )
        added_questionnaires = 1
    questionnaire = await questionnaire_service.compiled(session, existing.id)
    rows = [
        build_row(questionnaire, None, item, item.submitted_at or utcnow())
        for item in _demo_items(existing.id)
    ]
    added = len(await _insert(session, rows))
    return {"questionnaires": added_questionnaires, "responses": added}


SOURCES = ["tv", "social", "akimat_site", "press", "people", "ngos"]


def _demo_items(questionnaire_id: uuid.UUID) -> list[ResponseIn]:
    rng = random.Random(2013)  # noqa: S311 - demo data, not security
    places = ["750000000"] * 6 + ["192010001", "192210001", "192020001", "710000000"]
    groups = ["student"] * 4 + ["ngo"] * 3 + ["sme"] * 3 + [
        "lawyer", "political_scientist", "organisation_expert",
    ]  # fmt: skip
    start = datetime(2013, 11, 1, 9, tzinfo=UTC)
    items = []
    for n in range(DEMO_RESPONSES):
        group = rng.choice(groups)
        expert = group in ("lawyer", "political_scientist", "organisation_expert")
        aware = rng.choices(["yes", "partly", "no"], [5, 3, 2] if expert else [2, 4, 4])[0]
        participated = rng.random() < (0.45 if expert else 0.2)
        answers: dict[str, Any] = {
            "aware": aware,
            "participated": participated,
            "trust_akimat": rng.choices([1, 2, 3, 4, 5], [3, 4, 3, 2, 1])[0],
            "info_sources": rng.sample(SOURCES, rng.randint(1, 3)),
        }
        if aware != "no":
            answers["channels_known"] = rng.sample(
                ["hearings", "reception", "maslikhat", "petitions", "public_councils"],
                rng.randint(1, 3),
            )
        if participated:
            answers["times_participated"] = rng.randint(1, 6)
            if "hearings" in answers.get("channels_known", []):
                day = start - timedelta(days=rng.randint(30, 700))
                answers["last_hearing"] = day.date().isoformat()
        if rng.random() < 0.8:
            answers["influence"] = rng.randint(1, 5)
        if rng.random() < 0.9:
            answers["information_access"] = rng.choice(
                ["easy", "difficult", "very_difficult", "never_tried"]
            )
        if rng.random() < 0.15:
            answers["suggestions"] = rng.choice(
                [
                    "Публиковать проекты решений заранее",
                    "Шешімдерді алдын ала жариялау керек",
                    "Hold hearings in the evening",
                    "Больше онлайн-обсуждений",
                ]
            )
        items.append(
            ResponseIn(
                id=uuid.uuid5(_DEMO_NAMESPACE, f"{questionnaire_id}/{n}"),
                respondent={
                    "group": group,
                    "gender": rng.choices(["female", "male", "undisclosed"], [52, 45, 3])[0],
                    "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55-64"])
                    if group != "student"
                    else rng.choice(["under_18", "18-24", "18-24", "25-34"]),
                    "territory_code": rng.choice(places),
                },
                answers=answers,
                language=rng.choices(["ru", "kk", "en"], [6, 4, 1])[0],
                channel=rng.choices(["interview", "paper", "web", "mobile"], [4, 3, 2, 1])[0],
                submitted_at=start + timedelta(minutes=rng.randint(0, 60 * 24 * 45)),
            )
        )
    return items
