"""Survey aggregates: distributions and cross-tabs with small-cell protection."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.deps import ResponseReader, SessionDep, SettingsDep
from app.errors import Invalid
from app.models.aggregates import SurveyAggregates
from app.routers.problems import responses
from app.routers.responses import Filters
from app.services import aggregate_views as views_service
from app.services import aggregates as service
from app.services import questionnaires as questionnaire_service

router = APIRouter(prefix="/api/v1", tags=["aggregates"])


@router.get(
    "/questionnaires/{questionnaire_id}/aggregates",
    response_model=SurveyAggregates,
    responses={
        200: {"content": {"text/csv": {}}},
        **responses(401, 403, 404, 422),
    },
)
async def survey_aggregates(
    questionnaire_id: uuid.UUID,
    _: ResponseReader,
    session: SessionDep,
    settings: SettingsDep,
    filters: Filters,
    by: Annotated[str | None, Query(max_length=400, description="up to 3, comma-separated")] = None,
    min_cell: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    questions: Annotated[
        str | None, Query(max_length=2000, description="only these question keys, comma-separated")
    ] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    protected: Annotated[
        bool, Query(description="preview what a published view shows (the cell-key protection)")
    ] = False,
    view: Annotated[
        uuid.UUID | None,
        Query(description="with `protected`: preview this aggregate view, its rules included"),
    ] = None,
) -> Response | SurveyAggregates:
    """Per question and cell: counts, shares and Wilson 95% intervals, or mean, median,
    standard deviation, min and max. Cells under `min_cell` (never below KENES_MIN_CELL) are
    suppressed, and a second cell when only one would be.

    `protected=true` shows what a published view would: with `view=<id>` exactly that view's
    answer to this query (its questions, dimensions, filters and `min_cell`, raised by
    `min_cell` if given); without, the protection alone (every question, dimension and filter)."""
    questionnaire = await questionnaire_service.compiled(session, questionnaire_id)
    dimensions = service.parse_by(by, questionnaire)
    keys = service.parse_questions(questions, questionnaire)
    applied = max(settings.min_cell, min_cell or 0)
    if view is not None and not protected:
        raise Invalid(
            "`view` previews a published view: add protected=true",
            errors=[{"loc": ["query", "view"], "msg": "needs protected=true", "type": "view"}],
        )
    if protected:
        rules = await views_service.preview_rules(session, questionnaire, view, applied)
        result = await views_service.published_aggregates(
            session, questionnaire, rules, filters, by=dimensions, keys=keys
        )
    else:
        result = await service.survey_aggregates(
            session, questionnaire, filters, by=dimensions, min_cell=applied, keys=keys
        )
    if format == "csv":
        return Response(service.to_csv(result), media_type="text/csv; charset=utf-8")
    # Plain data, serialised once (the schema above documents it): as a model, FastAPI would
    # validate every cell again (a 300-question breakdown is tens of thousands of cells).
    return Response(result.to_json(), media_type="application/json")
