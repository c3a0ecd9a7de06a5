"""Consultation schedules: create, reschedule, list, import from CSV."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from anyio import CapacityLimiter
from pydantic import ValidationError
from sqlalchemy import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import Invalid, NotFound
from app.models.auth import Principal
from app.models.consultations import (
    Consultation,
    ConsultationCreate,
    ConsultationStatus,
    ConsultationUpdate,
)
from app.models.elections import Candidate, Election
from app.models.territories import LANGUAGES, i18n
from app.pagination import paginate
from app.services import audit
from app.services.csv_uploads import (
    file_error,
    flush_in_chunks,
    parse_csv_upload,
    refuse_file,
    run_off_loop,
)
from app.services.territories import in_subtree, require_territory, territories_by_code

CONSULTATION_COLUMNS = (
    "election_id",
    "territory_code",
    "host",
    "starts_at",
    "ends_at",
    "location",
    "announced_at",
    "agenda_kk",
    "agenda_ru",
    "agenda_en",
)
# Fields a calendar subscriber sees: changing one raises the event's SEQUENCE.
_CALENDAR_FIELDS = frozenset(
    {"starts_at", "ends_at", "location", "agenda", "status", "host", "territory_code"}
)


def invalid_field(loc: Sequence[str | int], message: str) -> Invalid:
    return Invalid(message, errors=[{"loc": list(loc), "msg": message, "type": "value_error"}])


@dataclass(frozen=True)
class ConsultationFilters:
    starts_from: datetime | None = None  # inclusive
    starts_to: datetime | None = None  # exclusive
    territory_code: str | None = None  # the territory and its descendants
    election_id: uuid.UUID | None = None
    status: ConsultationStatus | None = None

    async def where(self, session: AsyncSession) -> list[ColumnElement[bool]]:
        """The filters as SQL conditions; an unknown territory is 422."""
        conditions: list[ColumnElement[bool]] = []
        starts_at = col(Consultation.starts_at)
        if self.starts_from is not None:
            conditions.append(starts_at >= self.starts_from)
        if self.starts_to is not None:
            conditions.append(starts_at < self.starts_to)
        if self.territory_code is not None:
            territory = await require_territory(
                session, self.territory_code, loc=("query", "territory_code")
            )
            conditions.append(in_subtree(Consultation.territory_code, territory))
        if self.election_id is not None:
            conditions.append(col(Consultation.election_id) == self.election_id)
        if self.status is not None:
            conditions.append(col(Consultation.status) == self.status.value)
        return conditions


# --- consultations -----------------------------------------------------------------------------


async def get_consultation(session: AsyncSession, consultation_id: uuid.UUID) -> Consultation:
    consultation = await session.get(Consultation, consultation_id)
    if consultation is None:
        raise NotFound("No such consultation")
    return consultation


async def _check_links(
    session: AsyncSession,
    election_id: uuid.UUID | None,
    candidate_ids: Sequence[uuid.UUID],
) -> None:
    """The election exists and every candidate stands in it."""
    if election_id is not None and await session.get(Election, election_id) is None:
        raise invalid_field(("body", "election_id"), "unknown election")
    if not candidate_ids:
        return
    if election_id is None:
        raise invalid_field(("body", "candidate_ids"), "candidates need an election_id")
    found = set(
        (
            await session.exec(
                select(Candidate.id).where(
                    col(Candidate.id).in_(candidate_ids), col(Candidate.election_id) == election_id
                )
            )
        ).all()
    )
    for index, candidate_id in enumerate(candidate_ids):
        if candidate_id not in found:
            raise invalid_field(
                ("body", "candidate_ids", index), "not a candidate in this election"
            )


async def create_consultation(
    session: AsyncSession, actor: Principal, data: ConsultationCreate
) -> Consultation:
    await require_territory(session, data.territory_code)
    candidate_ids = list(dict.fromkeys(data.candidate_ids))
    await _check_links(session, data.election_id, candidate_ids)
    consultation = Consultation(
        election_id=data.election_id,
        territory_code=data.territory_code,
        host=data.host,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        location=data.location,
        agenda=i18n(data.agenda) if data.agenda else None,
        candidate_ids=[str(candidate_id) for candidate_id in candidate_ids],
        announced_at=data.announced_at,
        created_by=actor.id if actor.kind == "user" else None,
    )
    session.add(consultation)
    audit.record(
        session,
        actor,
        "consultation.create",
        "consultation",
        consultation.id,
        territory_code=data.territory_code,
        starts_at=data.starts_at.isoformat(),
    )
    await session.flush()
    return consultation


async def update_consultation(
    session: AsyncSession, actor: Principal, consultation_id: uuid.UUID, data: ConsultationUpdate
) -> Consultation:
    consultation = await get_consultation(session, consultation_id)
    changes = data.model_dump(exclude_unset=True)
    changes = {k: v for k, v in changes.items() if getattr(consultation, k) != _stored(k, v)}

    starts_at = changes.get("starts_at", consultation.starts_at)
    ends_at = changes.get("ends_at", consultation.ends_at)
    announced_at = changes.get("announced_at", consultation.announced_at)
    if ends_at is not None and ends_at <= starts_at:
        raise invalid_field(("body", "ends_at"), "ends_at must be after starts_at")
    if announced_at is not None and announced_at > starts_at:
        raise invalid_field(("body", "announced_at"), "announced_at must not be after starts_at")
    if "territory_code" in changes:
        await require_territory(session, changes["territory_code"])
    if {"election_id", "candidate_ids"} & changes.keys():
        await _check_links(
            session,
            changes.get("election_id", consultation.election_id),
            changes.get("candidate_ids", [uuid.UUID(c) for c in consultation.candidate_ids]),
        )

    now = utcnow()
    if "starts_at" in changes:
        entry = {"starts_at": consultation.starts_at.isoformat(), "changed_at": now.isoformat()}
        consultation.history = [*consultation.history, entry]
        # A postponed meeting with a new date is on the calendar again.
        if consultation.status == ConsultationStatus.postponed and "status" not in changes:
            changes["status"] = ConsultationStatus.scheduled
    for name, value in changes.items():
        setattr(consultation, name, _stored(name, value))
    if _CALENDAR_FIELDS & changes.keys():
        consultation.sequence += 1
    consultation.updated_at = now
    detail = data.model_dump(mode="json", exclude_unset=True)
    audit.record(
        session, actor, "consultation.update", "consultation", consultation.id, changes=detail
    )
    await session.flush()
    return consultation


def _stored(name: str, value: Any) -> Any:
    """A validated field as the table column holds it."""
    if name == "candidate_ids":
        return [str(candidate_id) for candidate_id in dict.fromkeys(value)]
    if name == "agenda" and value is not None:
        return i18n(value)
    if name == "status":
        return ConsultationStatus(value).value
    return value


async def list_consultations(
    session: AsyncSession, filters: ConsultationFilters, *, limit: int, cursor: str | None
) -> tuple[list[Consultation], str | None]:
    return await paginate(
        session,
        select(Consultation).where(*await filters.where(session)),
        created=col(Consultation.created_at),
        row_id=col(Consultation.id),
        limit=limit,
        cursor=cursor,
    )


# --- CSV import --------------------------------------------------------------------------------


def _parse_line(line: int, row: dict[str, str]) -> tuple[ConsultationCreate | None, list[Any]]:
    raw: dict[str, Any] = {
        name: row[name] or None for name in CONSULTATION_COLUMNS if not name.startswith("agenda_")
    }
    agenda = {lang: row[f"agenda_{lang}"] for lang in LANGUAGES if row[f"agenda_{lang}"]}
    raw["agenda"] = agenda or None
    try:
        return ConsultationCreate.model_validate(raw), []
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"])
            message = f"{field}: {item['msg']}" if field else item["msg"]
            problems.append(file_error(line, message))
        return None, problems


def _parse_lines(
    rows: Sequence[tuple[int, dict[str, str]]],
) -> tuple[list[tuple[int, ConsultationCreate]], list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    parsed: list[tuple[int, ConsultationCreate]] = []
    for line, row in rows:
        data, problems = _parse_line(line, row)
        errors.extend(problems)
        if data is not None:
            parsed.append((line, data))
    return parsed, errors


def _new_consultations(
    parsed: Sequence[tuple[int, ConsultationCreate]], creator: uuid.UUID | None
) -> list[Consultation]:
    return [
        Consultation(
            election_id=data.election_id,
            territory_code=data.territory_code,
            host=data.host,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            location=data.location,
            agenda=i18n(data.agenda) if data.agenda else None,
            announced_at=data.announced_at,
            created_by=creator,
        )
        for _, data in parsed
    ]


async def import_consultations(
    session: AsyncSession, actor: Principal, content: bytes, limiter: CapacityLimiter
) -> int:
    """All lines or none. A line repeating a consultation (territory, host, start) is refused."""
    rows = await run_off_loop(limiter, parse_csv_upload, content, CONSULTATION_COLUMNS)
    if not rows:
        raise Invalid("The file has no data lines", errors=[file_error(None, "no data lines")])
    parsed, errors = await run_off_loop(limiter, _parse_lines, rows)

    territories = await territories_by_code(session, {data.territory_code for _, data in parsed})
    election_ids = {data.election_id for _, data in parsed if data.election_id}
    elections = set(
        (await session.exec(select(Election.id).where(col(Election.id).in_(election_ids)))).all()
    )
    taken = await _existing_keys(session, [data for _, data in parsed])
    seen: dict[tuple[str, str, datetime], int] = {}
    for line, data in parsed:
        key = (data.territory_code, data.host, data.starts_at)
        if data.territory_code not in territories:
            errors.append(
                file_error(line, f"territory_code: unknown territory {data.territory_code}")
            )
        if data.election_id is not None and data.election_id not in elections:
            errors.append(file_error(line, f"election_id: unknown election {data.election_id}"))
        if key in taken:
            errors.append(file_error(line, "this consultation exists (territory, host, starts_at)"))
        elif key in seen:
            errors.append(file_error(line, f"repeats line {seen[key]}"))
        seen.setdefault(key, line)
    if errors:
        raise refuse_file(sorted(errors, key=lambda error: error["loc"][1:]))

    creator = actor.id if actor.kind == "user" else None
    # Building thousands of table objects is slow too (SQLModel: 1.5 ms each): off the loop.
    rows_to_add = await run_off_loop(limiter, _new_consultations, parsed, creator)
    await flush_in_chunks(session, rows_to_add)
    audit.record(session, actor, "consultation.import", "consultation", None, count=len(parsed))
    await session.flush()
    return len(parsed)


async def _existing_keys(
    session: AsyncSession, rows: Sequence[ConsultationCreate]
) -> set[tuple[str, str, datetime]]:
    if not rows:
        return set()
    codes = {data.territory_code for data in rows}
    starts = [data.starts_at for data in rows]
    found = await session.exec(
        select(Consultation).where(
            col(Consultation.territory_code).in_(codes),
            col(Consultation.starts_at) >= min(starts),
            col(Consultation.starts_at) <= max(starts),
        )
    )
    return {(row.territory_code, row.host, row.starts_at) for row in found}
