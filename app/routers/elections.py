"""Elections and candidates: written by coordinators and admins, read by every staff role."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.deps import PageDep, RequireRoles, SessionDep
from app.models.auth import Principal, Role
from app.models.elections import (
    Candidate,
    CandidateCreate,
    CandidateRead,
    CandidateStatus,
    CandidateUpdate,
    Election,
    ElectionCreate,
    ElectionKind,
    ElectionRead,
    ElectionUpdate,
)
from app.pagination import Page
from app.routers.problems import responses
from app.services import elections as service

router = APIRouter(prefix="/api/v1", tags=["elections"])

Writer = Annotated[Principal, Depends(RequireRoles(Role.coordinator))]
Reader = Annotated[Principal, Depends(RequireRoles(Role.coordinator, Role.observer, Role.analyst))]


def _election(election: Election) -> ElectionRead:
    return ElectionRead.model_validate(election, from_attributes=True)


def _candidate(candidate: Candidate) -> CandidateRead:
    return CandidateRead.model_validate(candidate, from_attributes=True)


@router.post(
    "/elections",
    response_model=ElectionRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 422),
)
async def create_election(
    data: ElectionCreate, actor: Writer, session: SessionDep, response: Response
) -> ElectionRead:
    """A new election, optionally tied to a territory."""
    election = await service.create_election(session, actor, data)
    response.headers["Location"] = f"/api/v1/elections/{election.id}"
    return _election(election)


@router.get(
    "/elections", response_model=Page[ElectionRead], responses=responses(400, 401, 403, 422)
)
async def list_elections(
    _: Reader,
    session: SessionDep,
    page: PageDep,
    kind: ElectionKind | None = None,
    territory_code: str | None = None,
) -> Page[ElectionRead]:
    """`territory_code` keeps elections held in that territory or below it."""
    rows, next_cursor = await service.list_elections(
        session, kind=kind, territory_code=territory_code, limit=page.limit, cursor=page.cursor
    )
    return Page(items=[_election(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/elections/{election_id}", response_model=ElectionRead, responses=responses(401, 403, 404)
)
async def get_election(election_id: uuid.UUID, _: Reader, session: SessionDep) -> ElectionRead:
    """One election."""
    return _election(await service.get_election(session, election_id))


@router.patch(
    "/elections/{election_id}",
    response_model=ElectionRead,
    responses=responses(401, 403, 404, 409, 422),
)
async def update_election(
    election_id: uuid.UUID, data: ElectionUpdate, actor: Writer, session: SessionDep
) -> ElectionRead:
    """A new territory_code must still contain every candidate's territory (else 409)."""
    return _election(await service.update_election(session, actor, election_id, data))


@router.post(
    "/elections/{election_id}/candidates",
    response_model=CandidateRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 404, 409, 422),
)
async def create_candidate(
    election_id: uuid.UUID,
    data: CandidateCreate,
    actor: Writer,
    session: SessionDep,
    response: Response,
) -> CandidateRead:
    """The contested territory must lie in the election's; one `elected` per territory (409)."""
    candidate = await service.create_candidate(session, actor, election_id, data)
    response.headers["Location"] = f"/api/v1/candidates/{candidate.id}"
    return _candidate(candidate)


@router.get(
    "/elections/{election_id}/candidates",
    response_model=Page[CandidateRead],
    responses=responses(400, 401, 403, 404, 422),
)
async def list_candidates(
    election_id: uuid.UUID,
    _: Reader,
    session: SessionDep,
    page: PageDep,
    candidate_status: Annotated[CandidateStatus | None, Query(alias="status")] = None,
    territory_code: str | None = None,
) -> Page[CandidateRead]:
    """The election's candidates, in creation order."""
    rows, next_cursor = await service.list_candidates(
        session,
        election_id,
        status=candidate_status,
        territory_code=territory_code,
        limit=page.limit,
        cursor=page.cursor,
    )
    return Page(items=[_candidate(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/candidates/{candidate_id}", response_model=CandidateRead, responses=responses(401, 403, 404)
)
async def get_candidate(candidate_id: uuid.UUID, _: Reader, session: SessionDep) -> CandidateRead:
    """One candidate."""
    return _candidate(await service.get_candidate(session, candidate_id))


@router.patch(
    "/candidates/{candidate_id}",
    response_model=CandidateRead,
    responses=responses(401, 403, 404, 409, 422),
)
async def update_candidate(
    candidate_id: uuid.UUID, data: CandidateUpdate, actor: Writer, session: SessionDep
) -> CandidateRead:
    """Status moves nominated -> registered -> elected | not_elected, or -> withdrawn (final)."""
    return _candidate(await service.update_candidate(session, actor, candidate_id, data))
