"""Aggregate views: published, protected aggregates for the public and partners."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status

from app.deps import (
    BEARER_SECURITY,
    CoordinatorUser,
    PageDep,
    ResponseReader,
    SessionDep,
    SettingsDep,
    bearer_token,
)
from app.models.aggregate_views import (
    AggregateView,
    AggregateViewCreate,
    AggregateViewCreated,
    AggregateViewRead,
)
from app.models.aggregates import SurveyAggregates
from app.pagination import Page
from app.routers.problems import responses
from app.routers.responses import Filters
from app.services import aggregate_views as service
from app.services import aggregates as aggregates_service
from app.services import questionnaires as questionnaire_service
from app.services import ratelimit
from app.services.auth import throttle_unit

router = APIRouter(prefix="/api/v1", tags=["aggregates"])


def _read(view: AggregateView, request: Request) -> AggregateViewRead:
    url = str(request.url_for("public_aggregates", view_id=view.id))
    return AggregateViewRead.model_validate({**view.model_dump(), "url": url})


@router.post(
    "/questionnaires/{questionnaire_id}/aggregate-views",
    response_model=AggregateViewCreated,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 404, 409, 422),
)
async def create_view(
    questionnaire_id: uuid.UUID,
    data: AggregateViewCreate,
    actor: CoordinatorUser,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> AggregateViewCreated:
    """Publishes the questionnaire's aggregates through a view: only its `questions`
    (default all), `dimensions` and `filters`, cells under its `min_cell` (never below
    KENES_MIN_CELL) hidden. A `token` view's token is shown here only."""
    questionnaire = await questionnaire_service.compiled(session, questionnaire_id)
    view, token = await service.create_view(session, actor, questionnaire, data, settings.min_cell)
    response.headers["Location"] = f"/api/v1/aggregate-views/{view.id}"
    return AggregateViewCreated(**_read(view, request).model_dump(), token=token)


@router.get(
    "/aggregate-views",
    response_model=Page[AggregateViewRead],
    responses=responses(400, 401, 403, 422),
)
async def list_views(
    _: ResponseReader,
    session: SessionDep,
    page: PageDep,
    request: Request,
    questionnaire_id: uuid.UUID | None = None,
) -> Page[AggregateViewRead]:
    """Views in creation order (tokens are never shown again)."""
    rows, next_cursor = await service.list_views(
        session, questionnaire_id=questionnaire_id, limit=page.limit, cursor=page.cursor
    )
    return Page(items=[_read(row, request) for row in rows], next_cursor=next_cursor)


@router.get(
    "/aggregate-views/{view_id}",
    response_model=AggregateViewRead,
    responses=responses(401, 403, 404),
)
async def get_view(
    view_id: uuid.UUID, _: ResponseReader, session: SessionDep, request: Request
) -> AggregateViewRead:
    """One view: what it allows and its URL (a `token` view's token is not shown again)."""
    return _read(await service.get_view(session, view_id), request)


@router.delete(
    "/aggregate-views/{view_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404),
)
async def withdraw_view(
    view_id: uuid.UUID, actor: CoordinatorUser, session: SessionDep
) -> Response:
    """Withdraws the view at once: its URL answers 404 from now on."""
    await service.withdraw_view(session, actor, view_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/public/aggregates/{view_id}",
    response_model=SurveyAggregates,
    openapi_extra=BEARER_SECURITY,
    responses={
        200: {"content": {"text/csv": {}}},
        **responses(401, 404, 422, 429),
    },
)
async def public_aggregates(
    view_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    filters: Filters,
    by: Annotated[str | None, Query(max_length=400, description="up to 3, comma-separated")] = None,
    questions: Annotated[
        str | None, Query(max_length=2000, description="only these question keys, comma-separated")
    ] = None,
    key: Annotated[str | None, Query(max_length=200, description="a `token` view's key")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    """The view's figures, protected: counts perturbed by the cell-key method (the same cell,
    the same figure), cells under the view's `min_cell` suppressed, filters that leave too few
    responses in or out refused, numeric statistics only for cells of 2 * `min_cell` and no
    min/max, whole months only, territories at the view's levels. Anyone for a `public` view;
    `?key=` or a Bearer token for a `token` view. Rate limited per client address."""
    address = request.client.host if request.client else None
    await ratelimit.enforce_in_own_transaction(
        request.app.state.sessionmaker,
        f"aggregates:{throttle_unit(address) or '-'}",
        limit=settings.public_aggregates_limit,
        window_seconds=settings.public_aggregates_window_seconds,
        detail="Too many aggregate requests from this address; slow down",
    )
    token = key if key is not None else await bearer_token(request)
    view = await service.open_view(session, view_id, token)
    questionnaire = await questionnaire_service.compiled(session, view.questionnaire_id)
    result = await service.published_aggregates(
        session,
        questionnaire,
        service.rules_of(view),
        filters,
        by=aggregates_service.parse_by(by, questionnaire),
        keys=aggregates_service.parse_questions(questions, questionnaire),
    )
    if format == "csv":
        return Response(aggregates_service.to_csv(result), media_type="text/csv; charset=utf-8")
    return Response(result.to_json(), media_type="application/json")
