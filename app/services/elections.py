"""Elections and candidates: who stands where, and the one winner per contested territory."""

import uuid
from typing import Any

from sqlalchemy import not_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.models.auth import Principal
from app.models.elections import (
    CANDIDATE_TRANSITIONS,
    Candidate,
    CandidateCreate,
    CandidateStatus,
    CandidateUpdate,
    Election,
    ElectionCreate,
    ElectionKind,
    ElectionUpdate,
)
from app.models.territories import Territory, TerritoryLevel, i18n
from app.pagination import paginate
from app.services import audit
from app.services.territories import in_subtree, require_territory

# Rural akims are elected for a rural district, or for a village outside any rural district.
_RURAL_AKIM_LEVELS = frozenset({TerritoryLevel.rural_district, TerritoryLevel.settlement})


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(
        message, errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}]
    )


# --- elections ---------------------------------------------------------------------------------


async def get_election(session: AsyncSession, election_id: uuid.UUID) -> Election:
    election = await session.get(Election, election_id)
    if election is None:
        raise NotFound("No such election")
    return election


async def create_election(
    session: AsyncSession, actor: Principal, data: ElectionCreate
) -> Election:
    if data.territory_code is not None:
        await require_territory(session, data.territory_code)
    election = Election(
        title=i18n(data.title),
        kind=data.kind.value,
        election_date=data.election_date,
        territory_code=data.territory_code,
    )
    session.add(election)
    audit.record(session, actor, "election.create", "election", election.id, kind=data.kind)
    await session.flush()
    return election


async def update_election(
    session: AsyncSession, actor: Principal, election_id: uuid.UUID, data: ElectionUpdate
) -> Election:
    election = await get_election(session, election_id)
    changes = data.model_dump(exclude_unset=True, mode="json")
    if changes.get("territory_code") is not None:
        scope = await require_territory(session, changes["territory_code"])
        outside = await session.exec(
            select(func.count())
            .select_from(Candidate)
            .where(
                col(Candidate.election_id) == election.id,
                not_(in_subtree(Candidate.territory_code, scope)),
            )
        )
        if outside.one():
            raise Conflict("Some candidates stand outside that territory")
    if "title" in changes:
        election.title = i18n(changes["title"])
    for name in ("kind", "territory_code"):
        if name in changes:
            setattr(election, name, changes[name])
    if data.election_date is not None:
        election.election_date = data.election_date
    election.updated_at = utcnow()
    audit.record(session, actor, "election.update", "election", election.id, changes=changes)
    await session.flush()
    return election


async def list_elections(
    session: AsyncSession,
    *,
    kind: ElectionKind | None,
    territory_code: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Election], str | None]:
    statement = select(Election)
    if kind is not None:
        statement = statement.where(col(Election.kind) == kind.value)
    if territory_code is not None:
        territory = await require_territory(
            session, territory_code, loc=("query", "territory_code")
        )
        statement = statement.where(in_subtree(Election.territory_code, territory))
    return await paginate(
        session,
        statement,
        created=col(Election.created_at),
        row_id=col(Election.id),
        limit=limit,
        cursor=cursor,
    )


# --- candidates --------------------------------------------------------------------------------


async def get_candidate(session: AsyncSession, candidate_id: uuid.UUID) -> Candidate:
    candidate = await session.get(Candidate, candidate_id)
    if candidate is None:
        raise NotFound("No such candidate")
    return candidate


async def _check_territory(session: AsyncSession, election: Election, code: str) -> Territory:
    """The contested territory exists, lies in the election's territory and suits its kind."""
    territory = await require_territory(session, code)
    if election.territory_code is not None:
        scope = await session.get(Territory, election.territory_code)
        if scope is not None and not territory.path.startswith(scope.path):
            raise _invalid("territory_code", f"{code} is outside the election's territory")
    if election.kind == ElectionKind.rural_akim and territory.level not in _RURAL_AKIM_LEVELS:
        raise _invalid(
            "territory_code", "a rural akim is elected for a rural district or a settlement"
        )
    return territory


async def _check_one_winner(session: AsyncSession, candidate: Candidate) -> None:
    if candidate.status != CandidateStatus.elected:
        return
    # Serialise declaring winners within an election (PostgreSQL row lock; SQLite writes are
    # serial anyway), so the check below sees a rival's committed result.
    await session.exec(
        select(Election.id).where(col(Election.id) == candidate.election_id).with_for_update()
    )
    winner = await session.exec(
        select(Candidate.id).where(
            col(Candidate.election_id) == candidate.election_id,
            col(Candidate.territory_code) == candidate.territory_code,
            col(Candidate.status) == CandidateStatus.elected.value,
            col(Candidate.id) != candidate.id,
        )
    )
    if winner.first() is not None:
        raise Conflict(f"Another candidate is already elected in {candidate.territory_code}")


async def _flush_candidate(session: AsyncSession, candidate: Candidate) -> None:
    territory_code = candidate.territory_code
    try:
        await session.flush()
    except IntegrityError:
        # The unique index is the last line of defence; the row lock above should win first.
        raise Conflict(f"Another candidate is already elected in {territory_code}") from None


async def create_candidate(
    session: AsyncSession, actor: Principal, election_id: uuid.UUID, data: CandidateCreate
) -> Candidate:
    election = await get_election(session, election_id)
    await _check_territory(session, election, data.territory_code)
    candidate = Candidate(
        election_id=election.id,
        full_name=data.full_name,
        gender=data.gender.value,
        party=data.party,
        social_status=data.social_status,
        territory_code=data.territory_code,
        status=data.status.value,
    )
    await _check_one_winner(session, candidate)
    session.add(candidate)
    audit.record(
        session,
        actor,
        "candidate.create",
        "candidate",
        candidate.id,
        election_id=str(election.id),
        status=candidate.status,
    )
    await _flush_candidate(session, candidate)
    return candidate


async def update_candidate(
    session: AsyncSession, actor: Principal, candidate_id: uuid.UUID, data: CandidateUpdate
) -> Candidate:
    candidate = await get_candidate(session, candidate_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True, mode="json")
    if "status" in changes and changes["status"] != candidate.status:
        current = CandidateStatus(candidate.status)
        wanted = CandidateStatus(changes["status"])
        if wanted not in CANDIDATE_TRANSITIONS[current]:
            raise Conflict(f"A candidate cannot go from {current} to {wanted}")
    if "territory_code" in changes:
        election = await get_election(session, candidate.election_id)
        await _check_territory(session, election, changes["territory_code"])
    for name, value in changes.items():
        setattr(candidate, name, value)
    await _check_one_winner(session, candidate)
    candidate.updated_at = utcnow()
    audit.record(session, actor, "candidate.update", "candidate", candidate.id, changes=changes)
    await _flush_candidate(session, candidate)
    return candidate


async def list_candidates(
    session: AsyncSession,
    election_id: uuid.UUID,
    *,
    status: CandidateStatus | None,
    territory_code: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Candidate], str | None]:
    await get_election(session, election_id)
    statement = select(Candidate).where(col(Candidate.election_id) == election_id)
    if status is not None:
        statement = statement.where(col(Candidate.status) == status.value)
    if territory_code is not None:
        territory = await require_territory(
            session, territory_code, loc=("query", "territory_code")
        )
        statement = statement.where(in_subtree(Candidate.territory_code, territory))
    return await paginate(
        session,
        statement,
        created=col(Candidate.created_at),
        row_id=col(Candidate.id),
        limit=limit,
        cursor=cursor,
    )
