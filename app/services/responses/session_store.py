"""Storing responses through an SQLAlchemy session: the ResponseStore of SQLite.

A submission is one write transaction (BEGIN IMMEDIATE: writers queue instead of failing) that
re-reads the questionnaire's status and inserts the `response` rows whose id is new with their
answer pages. `insert_rows` is also how the demo data is stored.
"""

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import col
from sqlmodel import select as model_select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import session_scope
from app.models.auth import Collector, Principal, User
from app.models.questionnaires import Questionnaire, Status
from app.models.responses import DIMENSIONS, INSTANCE_COLUMNS, answer_table, response_table
from app.models.territories import Territory
from app.security import TokenService
from app.services import auth as auth_service
from app.services import questionnaires as questionnaire_service
from app.services.answers import CompiledQuestionnaire, PageRows
from app.services.responses.stores import Accept, Inserted, Row

t = response_table.c


async def insert_rows(
    session: AsyncSession, questionnaire: CompiledQuestionnaire, rows: Sequence[Row]
) -> set[uuid.UUID]:
    """Insert the rows whose id is new, with their answer pages; the ids inserted.

    Parameters go separately from the (cached) statements; SQLAlchemy packs many rows into
    multi-row INSERTs ("insertmanyvalues"), so a batch costs a few round trips, not one a row.
    """
    if not rows:
        return set()
    connection = await session.connection()
    dialect = connection.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(response_table).on_conflict_do_nothing(index_elements=["id"]).returning(t.id)
    heads = [row.head for row in rows]
    result = await connection.execute(statement, heads if len(heads) > 1 else heads[0])
    inserted = set(result.scalars())
    new = [row for row in rows if row.id in inserted]
    for number, page in enumerate(questionnaire.pages):
        table = answer_table(page.table, page.columns, page.repeat is not None)
        names = [name for name, _ in page.columns]
        if page.repeat is not None:
            names = [*INSTANCE_COLUMNS, *names]
        names = ["response_id", *DIMENSIONS, *names]
        lines = [
            (row.id, *(row.head[name] for name in DIMENSIONS), *page_row)
            for row in new
            for page_row in row.pages[number]
        ]
        if dialect == "sqlite" and len(lines) > 1:
            await _insert_in_driver_thread(connection, table, names, lines)
        elif lines:
            values = [dict(zip(names, line, strict=True)) for line in lines]
            await connection.execute(table.insert(), values if len(values) > 1 else values[0])
    return inserted


async def _insert_in_driver_thread(
    connection: AsyncConnection, table: Table, names: list[str], lines: list[tuple[Any, ...]]
) -> None:
    """Many answer rows through aiosqlite's own thread, their parameters converted in a worker
    thread: through SQLAlchemy, turning the parameters of 1000 rows of 500 answers into SQLite
    values took 0.3 s on the event loop. The statement and the conversions are SQLAlchemy's
    (its compiled INSERT and each column type's bind processor), so the stored values are the
    same either way."""
    dialect = connection.dialect
    compiled = table.insert().compile(dialect=dialect, column_keys=names)
    position = {name: index for index, name in enumerate(names)}
    order = [position[name] for name in compiled.positiontup or ()]
    processors = [table.c[names[i]].type.bind_processor(dialect) for i in order]

    def parameters() -> list[tuple[Any, ...]]:
        steps = list(zip(order, processors, strict=True))
        return [
            tuple(line[i] if convert is None else convert(line[i]) for i, convert in steps)
            for line in lines
        ]

    converted = await anyio.to_thread.run_sync(parameters)
    raw = await connection.get_raw_connection()
    await raw.driver_connection.executemany(compiled.string, converted)  # type: ignore[union-attr]


async def current_status(session: AsyncSession, questionnaire_id: uuid.UUID) -> str | None:
    """The questionnaire's status, under a share lock on PostgreSQL (a close waits for the
    submissions in flight); SQLite's write transaction already excludes the close."""
    statement = model_select(Questionnaire.status).where(col(Questionnaire.id) == questionnaire_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(read=True)
    return (await session.exec(statement)).first()


class SessionResponseStore:
    """Each call in a session of its own, committed before it returns."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def submitter(
        self,
        tokens: TokenService,
        token: str | None,
        questionnaire_id: uuid.UUID,
        accept: Accept,
    ) -> tuple[Principal | None, CompiledQuestionnaire]:
        """Resolved afresh on every request (nothing is remembered), so `accept` has nothing to
        reconsider."""
        async with self.sessionmaker() as session:
            principal = await auth_service.resolve_token(session, tokens, token) if token else None
            questionnaire = await questionnaire_service.compiled(session, questionnaire_id)
        return principal, questionnaire

    async def insert(
        self,
        questionnaire: CompiledQuestionnaire,
        principal: Principal | None,
        rows: Sequence[Row],
        *,
        many: bool = False,
    ) -> Inserted:
        async for session in session_scope(self.sessionmaker, write=True):
            status = await current_status(session, questionnaire.id)
            if status != Status.published:
                outcome = Inserted(status, True, set())
                continue
            try:
                async with session.begin_nested():
                    outcome = Inserted(
                        status, True, await insert_rows(session, questionnaire, rows)
                    )
            except IntegrityError:
                # The only reference a valid row can break is its territory.
                outcome = Inserted(status, True, set(), territory_refused=True)
        return outcome

    async def heads(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Mapping[str, Any]]:
        async with self.sessionmaker() as session:
            connection = await session.connection()
            result = await connection.execute(select(response_table).where(t.id.in_(ids)))
            return {row.id: dict(row._mapping) for row in result}

    async def answer_pages(
        self, questionnaire: CompiledQuestionnaire, response_id: uuid.UUID
    ) -> PageRows:
        pages: PageRows = []
        async with self.sessionmaker() as session:
            connection = await session.connection()
            for page in questionnaire.pages:
                table = answer_table(page.table, page.columns, page.repeat is not None)
                names = [name for name, _ in page.columns]
                if page.repeat is not None:
                    names = [*INSTANCE_COLUMNS, *names]
                statement = select(*(table.c[name] for name in names)).where(
                    table.c.response_id == response_id
                )
                pages.append([list(row) for row in await connection.execute(statement)])
        return pages

    async def unknown_territories(self, codes: set[str]) -> set[str]:
        async with self.sessionmaker() as session:
            known = await session.exec(
                model_select(Territory.code).where(col(Territory.code).in_(codes))
            )
            return codes - set(known)

    async def still_allowed(self, principal: Principal | None) -> bool:
        if principal is None:
            return True
        async with self.sessionmaker() as session:
            if principal.kind == "collector":
                collector = await session.get(Collector, principal.id)
                return collector is not None and collector.revoked_at is None
            user = await session.get(User, principal.id)
            return user is not None and user.is_active and set(user.roles) == set(principal.roles)
