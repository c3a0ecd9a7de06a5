"""Consultations, their calendar feed and observers' reports."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Header, Query, Request, Response, UploadFile, status
from pydantic import BaseModel

from app.deps import PageDep, RequireRoles, SessionDep, UploadWork
from app.models.auth import Principal, Role
from app.models.common import UtcDatetime
from app.models.consultations import (
    Consultation,
    ConsultationCreate,
    ConsultationRead,
    ConsultationStatus,
    ConsultationUpdate,
    Observation,
    ObservationCreate,
    ObservationRead,
)
from app.pagination import Page
from app.routers.calendar_feeds import CALENDAR_ANSWERS, calendar_answer
from app.routers.problems import responses
from app.services import consultations as service

router = APIRouter(prefix="/api/v1", tags=["consultations"])

Writer = Annotated[Principal, Depends(RequireRoles(Role.coordinator))]
Reader = Annotated[Principal, Depends(RequireRoles(Role.coordinator, Role.observer, Role.analyst))]
Observer = Annotated[Principal, Depends(RequireRoles(Role.coordinator, Role.observer))]


class ImportResult(BaseModel):
    imported: int


async def filters(
    starts_from: Annotated[UtcDatetime | None, Query(alias="from")] = None,
    starts_to: Annotated[UtcDatetime | None, Query(alias="to")] = None,
    territory_code: str | None = None,
    election_id: uuid.UUID | None = None,
    consultation_status: Annotated[ConsultationStatus | None, Query(alias="status")] = None,
) -> service.ConsultationFilters:
    """`from` (inclusive) and `to` (exclusive) bound starts_at; a territory includes its subtree."""
    return service.ConsultationFilters(
        starts_from=starts_from,
        starts_to=starts_to,
        territory_code=territory_code,
        election_id=election_id,
        status=consultation_status,
    )


FiltersDep = Annotated[service.ConsultationFilters, Depends(filters)]


def _consultation(consultation: Consultation) -> ConsultationRead:
    return ConsultationRead.model_validate(consultation, from_attributes=True)


def _observation(observation: Observation) -> ObservationRead:
    return ObservationRead.model_validate(observation, from_attributes=True)


@router.post(
    "/consultations",
    response_model=ConsultationRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 422),
)
async def create_consultation(
    data: ConsultationCreate, actor: Writer, session: SessionDep, response: Response
) -> ConsultationRead:
    """A new scheduled consultation."""
    consultation = await service.create_consultation(session, actor, data)
    response.headers["Location"] = f"/api/v1/consultations/{consultation.id}"
    return _consultation(consultation)


@router.get(
    "/consultations",
    response_model=Page[ConsultationRead],
    responses=responses(400, 401, 403, 422),
)
async def list_consultations(
    _: Reader, session: SessionDep, page: PageDep, where: FiltersDep
) -> Page[ConsultationRead]:
    """Consultations in creation order, filtered like the calendar."""
    rows, next_cursor = await service.list_consultations(
        session, where, limit=page.limit, cursor=page.cursor
    )
    return Page(items=[_consultation(row) for row in rows], next_cursor=next_cursor)


# Declared before /consultations/{consultation_id} routes, so the literal paths win.
@router.get(
    "/consultations.ics",
    response_class=Response,
    responses={**CALENDAR_ANSWERS, **responses(401, 403, 422)},
)
@router.head("/consultations.ics", include_in_schema=False)
async def consultations_calendar(
    _: Reader,
    session: SessionDep,
    where: FiltersDep,
    request: Request,
    lang: Literal["kk", "ru", "en"] | None = None,
    accept_language: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """One VEVENT per consultation (same filters as the list), in `lang` or Accept-Language.

    Also HEAD; an ETag, and 304 for If-None-Match. Phones subscribe with a calendar feed.
    """
    language = service.pick_language(lang, accept_language)
    body = await service.calendar(session, where, language)
    return calendar_answer(request, body, "consultations.ics", if_none_match)


@router.post(
    "/consultations/import",
    response_model=ImportResult,
    responses=responses(401, 403, 413, 415, 422),
)
async def import_consultations(
    actor: Writer, session: SessionDep, file: Annotated[UploadFile, File()], uploads: UploadWork
) -> ImportResult:
    """CSV `election_id,territory_code,host,starts_at,ends_at,location,announced_at,agenda_kk,
    agenda_ru,agenda_en`; all lines or none."""
    count = await service.import_consultations(session, actor, await file.read(), uploads)
    return ImportResult(imported=count)


@router.get(
    "/consultations/{consultation_id}",
    response_model=ConsultationRead,
    responses=responses(401, 403, 404),
)
async def get_consultation(
    consultation_id: uuid.UUID, _: Reader, session: SessionDep
) -> ConsultationRead:
    """One consultation, with its reschedule history."""
    return _consultation(await service.get_consultation(session, consultation_id))


@router.patch(
    "/consultations/{consultation_id}",
    response_model=ConsultationRead,
    responses=responses(401, 403, 404, 422),
)
async def update_consultation(
    consultation_id: uuid.UUID, data: ConsultationUpdate, actor: Writer, session: SessionDep
) -> ConsultationRead:
    """A new starts_at is a reschedule: the old time is kept in `history`."""
    return _consultation(await service.update_consultation(session, actor, consultation_id, data))


@router.post(
    "/consultations/{consultation_id}/observations",
    response_model=ObservationRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "A replay: this id was stored with the same content"},
        **responses(401, 403, 404, 409, 422),
    },
)
async def submit_observation(
    consultation_id: uuid.UUID,
    data: ObservationCreate,
    actor: Observer,
    session: SessionDep,
    response: Response,
) -> ObservationRead:
    """Exactly once by `id`: the same content again is 200, different content 409."""
    observation, created = await service.submit_observation(session, actor, consultation_id, data)
    if created:
        response.headers["Location"] = (
            f"/api/v1/consultations/{consultation_id}/observations/{observation.id}"
        )
    else:
        response.status_code = status.HTTP_200_OK
    return _observation(observation)


@router.get(
    "/consultations/{consultation_id}/observations",
    response_model=Page[ObservationRead],
    responses=responses(400, 401, 403, 404, 422),
)
async def list_observations(
    consultation_id: uuid.UUID, reader: Reader, session: SessionDep, page: PageDep
) -> Page[ObservationRead]:
    """In the order they were received; an observer sees only their own."""
    rows, next_cursor = await service.list_observations(
        session, reader, consultation_id, limit=page.limit, cursor=page.cursor
    )
    return Page(items=[_observation(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/consultations/{consultation_id}/observations/{observation_id}",
    response_model=ObservationRead,
    responses=responses(401, 403, 404),
)
async def get_observation(
    consultation_id: uuid.UUID, observation_id: uuid.UUID, reader: Reader, session: SessionDep
) -> ObservationRead:
    """An observer may read only their own observations (others' are 404)."""
    return _observation(
        await service.get_observation(session, reader, consultation_id, observation_id)
    )
