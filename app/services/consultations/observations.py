"""Observers' reports on consultations: exactly once by id, seen only by their authors (and
staff), the consultation's status following the latest by observed_at."""

import hashlib
import json
import uuid
from datetime import timedelta

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import Conflict, NotFound
from app.models.auth import Principal, Role
from app.models.consultations import Consultation, Observation, ObservationCreate
from app.pagination import paginate
from app.services.consultations.schedules import get_consultation, invalid_field

# A device clock a little ahead is tolerated; more would let a report dated ahead decide the
# consultation's status (it follows the latest observed_at) over every report made meanwhile.
FUTURE_TOLERANCE = timedelta(minutes=5)


def observation_hash(consultation_id: uuid.UUID, data: ObservationCreate) -> str:
    """What makes two submissions "the same content": every field but the id."""
    content = data.model_dump(mode="json", exclude={"id"})
    content["consultation_id"] = str(consultation_id)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit_observation(
    session: AsyncSession, actor: Principal, consultation_id: uuid.UUID, data: ObservationCreate
) -> tuple[Observation, bool]:
    """(observation, created). Exactly once per id: a resend of the same content is a replay."""
    # The row lock serialises reports on one consultation (PostgreSQL; SQLite writes are serial).
    consultation = (
        await session.exec(
            select(Consultation).where(col(Consultation.id) == consultation_id).with_for_update()
        )
    ).first()
    if consultation is None:
        raise NotFound("No such consultation")
    # observed_at may lie before the consultation was recorded: paper logs are entered later,
    # and schedules are imported after the fact.
    if data.observed_at > utcnow() + FUTURE_TOLERANCE:
        raise invalid_field(("body", "observed_at"), "observed_at is in the future")

    observation_id = data.id or uuid.uuid4()
    digest = observation_hash(consultation_id, data)
    values = data.model_dump(exclude={"id"}, mode="python")
    values["location"] = data.location.model_dump() if data.location else None
    values["outcome"] = data.outcome.value
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Observation)
    statement = (
        insert.values(
            id=observation_id,
            consultation_id=consultation_id,
            content_hash=digest,
            submitted_by=actor.id if actor.kind == "user" else None,
            received_at=utcnow(),
            **values,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(col(Observation.id))
    )
    created = (await session.exec(statement)).first() is not None
    stored = (
        await session.exec(
            select(Observation)
            .where(col(Observation.id) == observation_id)
            .execution_options(populate_existing=True)
        )
    ).one()
    if not created:
        if stored.content_hash != digest:
            raise Conflict(f"Observation {observation_id} was stored with different content")
        return stored, False

    later = await session.exec(
        select(func.count())
        .select_from(Observation)
        .where(
            col(Observation.consultation_id) == consultation_id,
            col(Observation.id) != observation_id,
            col(Observation.observed_at) > stored.observed_at,
        )
    )
    if later.one() == 0:  # the newest report decides the status
        consultation.status = stored.outcome
        consultation.updated_at = utcnow()
        await session.flush()
    return stored, True


def _sees_all_observations(reader: Principal) -> bool:
    """Coordinators, analysts and admins see every observation; an observer only their own
    (the notes, exact location and observer of others' reports are theirs)."""
    return reader.has_any(Role.coordinator, Role.analyst)


async def get_observation(
    session: AsyncSession,
    reader: Principal,
    consultation_id: uuid.UUID,
    observation_id: uuid.UUID,
) -> Observation:
    observation = await session.get(Observation, observation_id)
    if observation is None or observation.consultation_id != consultation_id:
        raise NotFound("No such observation")
    if not _sees_all_observations(reader) and observation.submitted_by != reader.id:
        raise NotFound("No such observation")
    return observation


async def list_observations(
    session: AsyncSession,
    reader: Principal,
    consultation_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Observation], str | None]:
    await get_consultation(session, consultation_id)
    statement = select(Observation).where(col(Observation.consultation_id) == consultation_id)
    if not _sees_all_observations(reader):
        statement = statement.where(col(Observation.submitted_by) == reader.id)
    return await paginate(
        session,
        statement,
        created=col(Observation.received_at),
        row_id=col(Observation.id),
        limit=limit,
        cursor=cursor,
    )
