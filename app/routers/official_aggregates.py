"""Consultation and candidate aggregates (public meetings and officials: not suppressed)."""

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from app.deps import ResponseReader, SessionDep
from app.models.common import UtcDatetime
from app.models.official_aggregates import CandidateAggregates, ConsultationAggregates
from app.routers.problems import responses
from app.services import official_aggregates as service

router = APIRouter(prefix="/api/v1/aggregates", tags=["aggregates"])

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}
}
Format = Annotated[Literal["json", "csv"], Query(description="csv: one row per cell, with BOM")]


def _csv(body: bytes, name: str) -> Response:
    return Response(
        body,
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/consultations",
    response_model=ConsultationAggregates,
    responses={**CSV_RESPONSE, **responses(401, 403, 422)},
)
async def consultation_aggregates(
    _: ResponseReader,
    session: SessionDep,
    by: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Up to 3 of region, district, territory, host, comma-separated; "
            "none gives one overall cell",
        ),
    ] = None,
    starts_from: Annotated[UtcDatetime | None, Query(alias="from")] = None,
    starts_to: Annotated[UtcDatetime | None, Query(alias="to")] = None,
    election_id: uuid.UUID | None = None,
    format: Format = "json",
) -> Response | ConsultationAggregates:
    """Consultations by current status, observed, attendance at each one's latest observation
    reporting both counts, and the median notice in days. `from` (inclusive) and `to`
    (exclusive) bound starts_at."""
    dimensions = service.parse_consultation_by(by)
    scope = service.ConsultationScope(
        starts_from=starts_from, starts_to=starts_to, election_id=election_id
    )
    result = await service.consultation_aggregates(session, dimensions, scope)
    if format == "csv":
        body = service.to_csv(result.by, service.CONSULTATION_FIGURES, result.cells)
        return _csv(body, "consultations")
    return result


@router.get(
    "/elections/{election_id}/candidates",
    response_model=CandidateAggregates,
    responses={**CSV_RESPONSE, **responses(401, 403, 404, 422)},
)
async def candidate_aggregates(
    election_id: uuid.UUID,
    _: ResponseReader,
    session: SessionDep,
    by: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Up to 3 of region, district, party, social_status, comma-separated; "
            "none gives one overall cell",
        ),
    ] = None,
    format: Format = "json",
) -> Response | CandidateAggregates:
    """Candidates (withdrawn excluded) and those elected, women among them and their shares."""
    dimensions = service.parse_candidate_by(by)
    result = await service.candidate_aggregates(session, election_id, dimensions)
    if format == "csv":
        body = service.to_csv(result.by, service.CANDIDATE_FIGURES, result.cells)
        return _csv(body, f"candidates-{election_id}")
    return result
