"""Reading responses: filters, listing, one response, deleting, and the rows exports stream.

A response is its `response` row joined one to one with its questionnaire version's answer
pages; the answers are decoded from their typed columns.
"""

import functools
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, Table, and_, delete, null, or_, select
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession
from sqlalchemy.sql import ColumnElement
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Forbidden, Invalid, NotFound
from app.models.auth import Principal, Role
from app.models.questionnaires import Status
from app.models.responses import (
    GENDERS,
    INSTANCE_COLUMNS,
    ResponseFilters,
    answer_table,
    response_table,
)
from app.pagination import decode_cursor, encode_cursor
from app.services import audit
from app.services import questionnaires as questionnaire_service
from app.services.answers import AnswerPage, CompiledQuestionnaire
from app.services.responses.rules import to_body
from app.services.territories import in_subtree

READ_ROLES = (Role.coordinator, Role.analyst)
t = response_table.c
HEAD_COLUMNS = (
    t.id, t.questionnaire_id, t.questionnaire_version, t.group_index, t.category, t.gender,
    t.age_band, t.language, t.channel, t.territory_code, t.started_at, t.submitted_at,
    t.received_at, t.instance_name,
)  # fmt: skip


@functools.lru_cache(maxsize=512)
def _tables(pages: tuple[AnswerPage, ...]) -> tuple[Table, ...]:
    return tuple(answer_table(page.table, page.columns, page.repeat is not None) for page in pages)


def answer_tables(questionnaire: CompiledQuestionnaire) -> tuple[Table, ...]:
    """The questionnaire version's answer tables (SQLAlchemy objects, built once)."""
    return _tables(questionnaire.pages)


def authorize_read(principal: Principal) -> None:
    if principal.kind != "user" or not principal.has_any(*READ_ROLES):
        raise Forbidden("Reading responses needs the analyst, coordinator or admin role")


def conditions(
    questionnaire: CompiledQuestionnaire, filters: ResponseFilters, table: Table = response_table
) -> list[ColumnElement[bool]]:
    """WHERE conditions for the response filters, on `response` or an answer table (both hold
    the respondent's dimensions)."""
    c = table.c
    where: list[ColumnElement[bool]] = []
    if table is response_table:
        where.append(t.questionnaire_id == questionnaire.id)
    if filters.group is not None:
        group = questionnaire.groups.get(filters.group)
        if group is None:
            raise Invalid(
                "Unknown group",
                errors=[{"loc": ["query", "group"], "msg": "unknown group", "type": "unknown"}],
            )
        where.append(c.group_index == group[0])
    if filters.gender is not None:
        where.append(c.gender == GENDERS.index(filters.gender))
    if filters.territory_code is not None:
        where.append(in_subtree(c.territory_code, filters.territory_code))
    if filters.submitted_from is not None:
        where.append(c.submitted_at >= filters.submitted_from)
    if filters.submitted_to is not None:
        where.append(c.submitted_at < filters.submitted_to)
    return where


# A statement returns at most 1,664 columns on PostgreSQL and 2,000 on SQLite; a form at the
# contract's 2,000 questions has more. Answer pages past this many columns are read by
# response id in statements of their own (`instances`), and put back in place by body_of.
READ_COLUMNS = 1500


def detached_pages(questionnaire: CompiledQuestionnaire) -> frozenset[int]:
    """The top-level answer pages that read_select leaves out (past READ_COLUMNS)."""
    width, out = len(HEAD_COLUMNS), set()
    for number, page in enumerate(questionnaire.pages):
        if page.repeat is not None:
            continue
        width += len(page.columns)
        if width > READ_COLUMNS:
            out.add(number)
    return frozenset(out)


def read_select(questionnaire: CompiledQuestionnaire) -> Select[Any]:
    """`response` rows with their answer columns (labelled p<page>_<column>), but for the
    pages of repeats and the detached ones (read by `instances`)."""
    source: Any = response_table
    answer_columns: list[Any] = []
    detached = detached_pages(questionnaire)
    for number, table in enumerate(answer_tables(questionnaire)):
        page = questionnaire.pages[number]
        if page.repeat is not None or number in detached:
            continue  # instances and detached pages: read by `instances`
        if questionnaire.status == Status.draft:  # no answer tables yet, and no responses
            answer_columns += [null().label(f"p{number}_{name}") for name, _ in page.columns]
            continue
        source = source.outerjoin(table, table.c.response_id == t.id)
        answer_columns += [table.c[name].label(f"p{number}_{name}") for name, _ in page.columns]
    return select(*HEAD_COLUMNS, *answer_columns).select_from(source)


Instances = dict[uuid.UUID, dict[int, list[Any]]]  # response -> page -> instance rows


def body_of(
    row: Any, questionnaire: CompiledQuestionnaire, instances: Instances | None = None
) -> dict[str, Any]:
    """A row of read_select (with the response's repeat instances) as the API shows it."""
    values = tuple(row)
    width = len(HEAD_COLUMNS)
    found = (instances or {}).get(row.id, {})
    detached = detached_pages(questionnaire)
    pages: list[Any] = []
    for number, page in enumerate(questionnaire.pages):
        if page.repeat is not None:
            pages.append(found.get(number, []))
            continue
        if number in detached:
            pages.append(found.get(number) or [[None] * len(page.columns)])
            continue
        pages.append([values[width : width + len(page.columns)]])
        width += len(page.columns)
    mapping: Mapping[str, Any] = row._mapping
    return to_body(mapping, questionnaire.answers_from(pages), questionnaire)


async def instances(
    session: SAAsyncSession, questionnaire: CompiledQuestionnaire, ids: list[uuid.UUID]
) -> Instances:
    """The repeat instances of these responses, and their detached pages (see READ_COLUMNS),
    as rows per answer page."""
    found: Instances = {}
    if questionnaire.status == Status.draft or not ids:
        return found
    detached = detached_pages(questionnaire)
    for number, table in enumerate(answer_tables(questionnaire)):
        page = questionnaire.pages[number]
        if page.repeat is None and number not in detached:
            continue
        own = tuple(name for name, _ in page.columns)
        names = (*INSTANCE_COLUMNS, *own) if page.repeat is not None else own
        columns = [table.c[name] for name in names]
        statement = select(table.c.response_id, *columns).where(table.c.response_id.in_(ids))
        for line in await _run(session, statement):
            found.setdefault(line[0], {}).setdefault(number, []).append(list(line[1:]))
    return found


async def filtered(
    session: AsyncSession, questionnaire_id: uuid.UUID, filters: ResponseFilters
) -> tuple[Select[Any], CompiledQuestionnaire]:
    """The select of this questionnaire's responses matching the filters."""
    questionnaire = await questionnaire_service.compiled(session, questionnaire_id)
    statement = read_select(questionnaire).where(*conditions(questionnaire, filters))
    return statement, questionnaire


async def _run(session: SAAsyncSession, statement: Any) -> Any:
    connection = await session.connection()
    return await connection.execute(statement)


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
    rows = list(await _run(session, statement))[: limit + 1]
    repeated = await instances(session, questionnaire, [row.id for row in rows[:limit]])
    bodies = [body_of(row, questionnaire, repeated) for row in rows[:limit]]
    if len(rows) <= limit:
        return bodies, None
    last = bodies[-1]
    return bodies, encode_cursor(last["received_at"], last["id"])


async def _questionnaire_of(session: AsyncSession, response_id: uuid.UUID) -> CompiledQuestionnaire:
    statement = select(t.questionnaire_id).where(t.id == response_id)
    questionnaire_id = (await _run(session, statement)).scalar_one_or_none()
    if questionnaire_id is None:
        raise NotFound("No such response")
    return await questionnaire_service.compiled(session, questionnaire_id)


async def get_response(session: AsyncSession, response_id: uuid.UUID) -> dict[str, Any]:
    questionnaire = await _questionnaire_of(session, response_id)
    row = (await _run(session, read_select(questionnaire).where(t.id == response_id))).first()
    if row is None:
        raise NotFound("No such response")
    return body_of(row, questionnaire, await instances(session, questionnaire, [response_id]))


async def delete_response(session: AsyncSession, actor: Principal, response_id: uuid.UUID) -> None:
    questionnaire = await _questionnaire_of(session, response_id)
    for table in answer_tables(questionnaire):
        await _run(session, delete(table).where(table.c.response_id == response_id))
    await _run(session, delete(response_table).where(t.id == response_id))
    audit.record(
        session,
        actor,
        "response.delete",
        "response",
        response_id,
        questionnaire_id=str(questionnaire.id),
    )
