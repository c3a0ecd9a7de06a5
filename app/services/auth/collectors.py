"""Collectors: tokens bound to questionnaires, for field devices."""

import uuid
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import NotFound
from app.models.auth import (
    Collector,
    CollectorCreate,
    Principal,
)
from app.pagination import paginate
from app.security import (
    new_collector_token,
)
from app.services import audit


async def create_collector(
    session: AsyncSession, actor: Principal, data: CollectorCreate
) -> tuple[Collector, str]:
    token, token_hash = new_collector_token()
    collector = Collector(
        name=data.name,
        token_hash=token_hash,
        questionnaire_ids=[str(q) for q in dict.fromkeys(data.questionnaire_ids)],
        created_by=actor.id if actor.kind == "user" else None,
    )
    session.add(collector)
    audit.record(
        session,
        actor,
        "collector.create",
        "collector",
        collector.id,
        name=data.name,
        questionnaire_ids=collector.questionnaire_ids,
    )
    await session.flush()
    return collector, token


async def list_collectors(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Collector], str | None]:
    return await paginate(
        session,
        select(Collector),
        created=col(Collector.created_at),
        row_id=col(Collector.id),
        limit=limit,
        cursor=cursor,
    )


async def revoke_collector(
    session: AsyncSession, actor: Principal, collector_id: uuid.UUID
) -> datetime:
    collector = await session.get(Collector, collector_id)
    if collector is None:
        raise NotFound("No such collector")
    if collector.revoked_at is None:
        collector.revoked_at = utcnow()
        audit.record(session, actor, "collector.revoke", "collector", collector.id)
        await session.flush()
    return collector.revoked_at
