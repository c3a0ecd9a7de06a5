"""Consultation and candidate figures, each computed by the database in one GROUP BY query.

Only the aggregated cells reach Python; the shares and the day conversion are arithmetic on
those cells, so both databases give the same figures (notice times are whole seconds, summed
and averaged as integers).
"""

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    select,
)
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Invalid, NotFound
from app.models.consultations import Consultation, ConsultationStatus, Observation
from app.models.elections import Candidate, CandidateStatus, Election, Gender
from app.models.official_aggregates import (
    CandidateAggregates,
    CandidateCell,
    CandidateDimension,
    ConsultationAggregates,
    ConsultationCell,
    ConsultationDimension,
    Group,
)
from app.models.territories import Territory
from app.services.exports import neutralise

MAX_DIMENSIONS = 3
SECONDS_PER_DAY = 86_400


def _invalid(loc: Sequence[str | int], message: str) -> Invalid:
    return Invalid(message, errors=[{"loc": list(loc), "msg": message, "type": "value_error"}])


Dimension = TypeVar("Dimension", ConsultationDimension, CandidateDimension)


def _parse_by(raw: str | None, kind: type[Dimension]) -> list[Dimension]:
    """`by` as a comma list of up to 3 distinct dimensions; none gives one overall cell."""
    if raw is None or not raw.strip():
        return []
    names = [part.strip() for part in raw.split(",")]
    allowed = ", ".join(kind)
    dimensions: list[Dimension] = []
    for name in names:
        if name not in kind.__members__:
            raise _invalid(("query", "by"), f"unknown dimension {name!r}; use {allowed}")
        dimension = kind(name)
        if dimension in dimensions:
            raise _invalid(("query", "by"), f"dimension {name!r} is given twice")
        dimensions.append(dimension)
    if len(dimensions) > MAX_DIMENSIONS:
        raise _invalid(("query", "by"), f"at most {MAX_DIMENSIONS} dimensions")
    return dimensions


def parse_consultation_by(raw: str | None) -> list[ConsultationDimension]:
    return _parse_by(raw, ConsultationDimension)


def parse_candidate_by(raw: str | None) -> list[CandidateDimension]:
    return _parse_by(raw, CandidateDimension)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _sort_key(group: Group) -> tuple[tuple[bool, str], ...]:
    """Cells in group order, nulls last: the same order on both databases."""
    return tuple((value is None, value or "") for value in group.values())


def _grouped(keys: Sequence[ColumnElement[Any]]) -> list[ColumnElement[Any]] | None:
    return list(keys) or None


# --- consultations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsultationScope:
    starts_from: datetime | None = None  # inclusive
    starts_to: datetime | None = None  # exclusive
    election_id: uuid.UUID | None = None


def _consultation_keys(by: Sequence[ConsultationDimension]) -> list[ColumnElement[Any]]:
    columns: dict[ConsultationDimension, Any] = {
        ConsultationDimension.region: col(Territory.region_code),
        ConsultationDimension.district: col(Territory.district_code),
        ConsultationDimension.territory: col(Consultation.territory_code),
        ConsultationDimension.host: col(Consultation.host),
    }
    return [columns[dimension] for dimension in by]


def _epoch_seconds(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 (truncated alike on both databases)."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    return cast(func.floor(extract("epoch", column)), BigInteger)


async def consultation_aggregates(
    session: AsyncSession, by: Sequence[ConsultationDimension], scope: ConsultationScope
) -> ConsultationAggregates:
    if scope.starts_from and scope.starts_to and scope.starts_to <= scope.starts_from:
        raise _invalid(("query", "to"), "to must be after from")
    if scope.election_id is not None and await session.get(Election, scope.election_id) is None:
        raise _invalid(("query", "election_id"), f"unknown election {scope.election_id}")
    conditions: list[ColumnElement[bool]] = []
    starts_at = col(Consultation.starts_at)
    if scope.starts_from is not None:
        conditions.append(starts_at >= scope.starts_from)
    if scope.starts_to is not None:
        conditions.append(starts_at < scope.starts_to)
    if scope.election_id is not None:
        conditions.append(col(Consultation.election_id) == scope.election_id)
    chosen = select(col(Consultation.id)).where(*conditions)

    # Each chosen consultation's observations reporting both counts, newest first (ties: the
    # later received, as for the consultation's status).
    consultation_id = col(Observation.consultation_id)
    reported = (
        select(
            consultation_id.label("consultation_id"),
            col(Observation.attendees_total).label("total"),
            col(Observation.attendees_women).label("women"),
            func.row_number()
            .over(
                partition_by=consultation_id,
                order_by=(
                    col(Observation.observed_at).desc(),
                    col(Observation.received_at).desc(),
                    col(Observation.id).desc(),
                ),
            )
            .label("recency"),
        )
        .where(
            col(Observation.attendees_total).is_not(None),
            col(Observation.attendees_women).is_not(None),
            consultation_id.in_(chosen),
        )
        .subquery("reported")
    )

    dialect = session.get_bind().dialect.name
    announced_at = col(Consultation.announced_at)
    notice = case(
        (
            announced_at.is_not(None),
            _epoch_seconds(starts_at, dialect) - _epoch_seconds(announced_at, dialect),
        )
    )
    keys = _consultation_keys(by)
    observed = exists().where(consultation_id == col(Consultation.id))
    base = (
        select(
            *(key.label(f"g{index}") for index, key in enumerate(keys)),
            col(Consultation.status).label("status"),
            case((observed, 1), else_=0).label("observed"),
            reported.c.total,
            reported.c.women,
            notice.label("notice"),
            # Announced consultations first, by notice: the middle one or two give the median.
            func.row_number()
            .over(partition_by=_grouped(keys), order_by=notice.asc().nulls_last())
            .label("notice_rank"),
            func.count(notice).over(partition_by=_grouped(keys)).label("notice_count"),
        )
        .select_from(Consultation)
        .join(Territory, col(Territory.code) == col(Consultation.territory_code))
        .outerjoin(
            reported,
            and_(reported.c.consultation_id == col(Consultation.id), reported.c.recency == 1),
        )
        .where(*conditions)
        .subquery("base")
    )
    groups = [base.c[f"g{index}"] for index in range(len(keys))]
    rank, count = base.c.notice_rank, base.c.notice_count
    middle = and_(base.c.notice.is_not(None), (rank * 2).between(count, count + 2))
    statement = select(
        *groups,
        func.count().label("total"),
        *(
            func.count(case((base.c.status == status.value, 1))).label(status.value)
            for status in ConsultationStatus
        ),
        func.coalesce(func.sum(base.c.observed), 0).label("observed"),
        func.count(base.c.total).label("attendees_reported"),
        func.coalesce(func.sum(base.c.total), 0).label("attendees_total"),
        func.coalesce(func.sum(base.c.women), 0).label("attendees_women"),
        func.count(base.c.notice).label("announced"),
        func.avg(case((middle, base.c.notice))).label("median_notice_seconds"),
    ).group_by(*groups)
    connection = await session.connection()
    rows = (await connection.execute(statement)).mappings().all()

    cells = []
    for row in rows:
        if not row["total"]:
            continue  # no consultation at all (the one row of an ungrouped query)
        group: Group = {dim.value: row[f"g{index}"] for index, dim in enumerate(by)}
        median = row["median_notice_seconds"]
        total, women = int(row["attendees_total"]), int(row["attendees_women"])
        cells.append(
            ConsultationCell(
                group=group,
                total=row["total"],
                **{status.value: row[status.value] for status in ConsultationStatus},
                observed=int(row["observed"]),
                attendees_reported=row["attendees_reported"],
                attendees_total=total,
                attendees_women=women,
                women_share=_share(women, total),
                announced=row["announced"],
                median_notice_days=(
                    None if median is None else float(Decimal(median)) / SECONDS_PER_DAY
                ),
            )
        )
    cells.sort(key=lambda cell: _sort_key(cell.group))
    return ConsultationAggregates(by=list(by), cells=cells)


# --- candidates --------------------------------------------------------------------------------


def _candidate_keys(by: Sequence[CandidateDimension]) -> list[ColumnElement[Any]]:
    columns: dict[CandidateDimension, Any] = {
        CandidateDimension.region: col(Territory.region_code),
        CandidateDimension.district: col(Territory.district_code),
        CandidateDimension.party: col(Candidate.party),
        CandidateDimension.social_status: col(Candidate.social_status),
    }
    return [columns[dimension] for dimension in by]


async def candidate_aggregates(
    session: AsyncSession, election_id: uuid.UUID, by: Sequence[CandidateDimension]
) -> CandidateAggregates:
    if await session.get(Election, election_id) is None:
        raise NotFound("No such election")
    keys = _candidate_keys(by)
    woman = col(Candidate.gender) == Gender.female.value
    elected = col(Candidate.status) == CandidateStatus.elected.value
    statement = (
        select(
            *(key.label(f"g{index}") for index, key in enumerate(keys)),
            func.count().label("candidates"),
            func.count(case((woman, 1))).label("candidates_women"),
            func.count(case((elected, 1))).label("elected"),
            func.count(case((and_(elected, woman), 1))).label("elected_women"),
        )
        .select_from(Candidate)
        .join(Territory, col(Territory.code) == col(Candidate.territory_code))
        .where(
            col(Candidate.election_id) == election_id,
            col(Candidate.status) != CandidateStatus.withdrawn.value,
        )
        .group_by(*keys)
    )
    connection = await session.connection()
    rows = (await connection.execute(statement)).mappings().all()
    cells = [
        CandidateCell(
            group={dim.value: row[f"g{index}"] for index, dim in enumerate(by)},
            candidates=row["candidates"],
            candidates_women=row["candidates_women"],
            elected=row["elected"],
            elected_women=row["elected_women"],
            women_share_candidates=_share(row["candidates_women"], row["candidates"]),
            women_share_elected=_share(row["elected_women"], row["elected"]),
        )
        for row in rows
        if row["candidates"]
    ]
    cells.sort(key=lambda cell: _sort_key(cell.group))
    return CandidateAggregates(election_id=election_id, by=list(by), cells=cells)


# --- CSV ---------------------------------------------------------------------------------------

CONSULTATION_FIGURES = (
    "total", "scheduled", "held", "not_held", "postponed", "cancelled", "observed",
    "attendees_reported", "attendees_total", "attendees_women", "women_share", "announced",
    "median_notice_days",
)  # fmt: skip
CANDIDATE_FIGURES = (
    "candidates", "candidates_women", "elected", "elected_women", "women_share_candidates",
    "women_share_elected",
)  # fmt: skip


def to_csv(
    by: Sequence[str], figures: Sequence[str], cells: Iterable[ConsultationCell | CandidateCell]
) -> bytes:
    """One row per cell: the group columns, then the figures; UTF-8 with a byte-order mark."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*by, *figures])
    for cell in cells:
        values = cell.model_dump()
        groups = [neutralise(cell.group.get(name) or "") for name in by]
        writer.writerow([*groups, *("" if values[f] is None else values[f] for f in figures)])
    return ("\ufeff" + buffer.getvalue()).encode()
