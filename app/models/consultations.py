"""Consultations district akims hold with residents, and what observers saw there."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from annotated_types import MaxLen
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic import Field as PydanticField
from sqlalchemy import CheckConstraint, Column, Index, Text
from sqlmodel import Field, SQLModel

from app.db import JSONType, UTCDateTime, utcnow
from app.models import examples as ex
from app.models.common import UtcDatetime
from app.models.examples import examples
from app.models.territories import I18nText


class ConsultationStatus(StrEnum):
    scheduled = "scheduled"
    held = "held"
    not_held = "not_held"
    postponed = "postponed"
    cancelled = "cancelled"


class Outcome(StrEnum):
    held = "held"
    not_held = "not_held"
    postponed = "postponed"
    cancelled = "cancelled"


class Consultation(SQLModel, table=True):
    __tablename__ = "consultation"
    __table_args__ = (
        CheckConstraint(
            "status IN ('scheduled', 'held', 'not_held', 'postponed', 'cancelled')", name="status"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    election_id: uuid.UUID | None = Field(default=None, foreign_key="election.id", index=True)
    territory_code: str = Field(foreign_key="territory.code", index=True, max_length=16)
    host: str = Field(max_length=200)
    starts_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    location: str = Field(max_length=500)
    agenda: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    candidate_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    announced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default=ConsultationStatus.scheduled.value, max_length=16)
    # Earlier start times, oldest first: [{"starts_at", "changed_at"}].
    history: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    # iCalendar SEQUENCE: grows with every change a subscriber's calendar must pick up.
    sequence: int = 0
    created_by: uuid.UUID | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Observation(SQLModel, table=True):
    """One observer's report; never edited (a correction is a newer observation)."""

    __tablename__ = "consultation_observation"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('held', 'not_held', 'postponed', 'cancelled')", name="outcome"
        ),
        CheckConstraint("attendees_women <= attendees_total", name="women_within_total"),
        Index("ix_consultation_observation_latest", "consultation_id", "observed_at"),
    )

    # The client's id when it sent one: the primary key makes a resend a no-op.
    id: uuid.UUID = Field(primary_key=True)
    consultation_id: uuid.UUID = Field(foreign_key="consultation.id")
    observed_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    outcome: str = Field(max_length=16)
    attendees_total: int | None = None
    attendees_women: int | None = None
    candidates_presented: StrictBool | None = None
    residents_spoke: StrictBool | None = None
    notes: str | None = Field(default=None, sa_column=Column(Text))
    location: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    content_hash: str = Field(max_length=64)
    submitted_by: uuid.UUID | None = Field(default=None, foreign_key="user_account.id")
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# --- request and response schemas ---------------------------------------------------------------

Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text500 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Count = Annotated[StrictInt, PydanticField(ge=0, le=1_000_000)]  # "40" is not a count


class ConsultationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(ex.CONSULTATION_CREATE))

    election_id: uuid.UUID | None = None
    territory_code: str
    host: Text200
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None = None
    location: Text500
    agenda: I18nText | None = None
    candidate_ids: Annotated[list[uuid.UUID], MaxLen(200)] = []
    announced_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _times_in_order(self) -> Self:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.announced_at is not None and self.announced_at > self.starts_at:
            raise ValueError("announced_at must not be after starts_at")
        return self


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null")
    return value


class ConsultationUpdate(BaseModel):
    """Any field; a new starts_at is a reschedule (the old time goes to `history`)."""

    model_config = ConfigDict(extra="forbid")

    election_id: uuid.UUID | None = None
    territory_code: str | None = None
    host: Text200 | None = None
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    location: Text500 | None = None
    agenda: I18nText | None = None
    candidate_ids: Annotated[list[uuid.UUID], MaxLen(200)] | None = None
    announced_at: UtcDatetime | None = None
    status: ConsultationStatus | None = None

    reject_null = field_validator(
        "territory_code", "host", "starts_at", "location", "candidate_ids", "status"
    )(_not_null)


class Reschedule(BaseModel):
    starts_at: datetime
    changed_at: datetime


class ConsultationRead(BaseModel):
    id: uuid.UUID
    election_id: uuid.UUID | None
    territory_code: str
    host: str
    starts_at: datetime
    ends_at: datetime | None
    location: str
    agenda: dict[str, str] | None
    candidate_ids: list[uuid.UUID]
    announced_at: datetime | None
    status: ConsultationStatus
    history: list[Reschedule]
    created_at: datetime
    updated_at: datetime


class GeoPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: Annotated[float, PydanticField(ge=-90, le=90)]
    lon: Annotated[float, PydanticField(ge=-180, le=180)]


class ObservationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(ex.OBSERVATION_CREATE))

    id: uuid.UUID | None = None
    observed_at: UtcDatetime
    outcome: Outcome
    attendees_total: Count | None = None
    attendees_women: Count | None = None
    candidates_presented: StrictBool | None = None
    residents_spoke: StrictBool | None = None
    notes: Annotated[str, StringConstraints(max_length=4000)] | None = None
    location: GeoPoint | None = None

    @model_validator(mode="after")
    def _women_within_total(self) -> Self:
        total, women = self.attendees_total, self.attendees_women
        if total is not None and women is not None and women > total:
            raise ValueError("attendees_women must not exceed attendees_total")
        return self


class ObservationRead(BaseModel):
    id: uuid.UUID
    consultation_id: uuid.UUID
    observed_at: datetime
    outcome: Outcome
    attendees_total: int | None
    attendees_women: int | None
    candidates_presented: bool | None
    residents_spoke: bool | None
    notes: str | None
    location: GeoPoint | None
    submitted_by: uuid.UUID | None
    received_at: datetime
