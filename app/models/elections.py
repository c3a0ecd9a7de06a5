"""Elections and the candidates who stand in them."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator
from sqlalchemy import CheckConstraint, Column, Index, text
from sqlmodel import Field, SQLModel

from app.db import JSONType, UTCDateTime, utcnow
from app.models.territories import I18nText


class ElectionKind(StrEnum):
    rural_akim = "rural_akim"
    city_akim = "city_akim"
    maslikhat = "maslikhat"
    other = "other"


class Gender(StrEnum):
    female = "female"
    male = "male"


class CandidateStatus(StrEnum):
    nominated = "nominated"
    registered = "registered"
    withdrawn = "withdrawn"
    elected = "elected"
    not_elected = "not_elected"


# Allowed status changes: a result may be corrected (elected <-> not_elected); withdrawal is final.
CANDIDATE_TRANSITIONS: dict[CandidateStatus, frozenset[CandidateStatus]] = {
    CandidateStatus.nominated: frozenset({CandidateStatus.registered, CandidateStatus.withdrawn}),
    CandidateStatus.registered: frozenset(
        {CandidateStatus.withdrawn, CandidateStatus.elected, CandidateStatus.not_elected}
    ),
    CandidateStatus.elected: frozenset({CandidateStatus.not_elected}),
    CandidateStatus.not_elected: frozenset({CandidateStatus.elected}),
    CandidateStatus.withdrawn: frozenset(),
}


class Election(SQLModel, table=True):
    __tablename__ = "election"
    __table_args__ = (
        CheckConstraint("kind IN ('rural_akim', 'city_akim', 'maslikhat', 'other')", name="kind"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    title: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    kind: str = Field(max_length=16)
    election_date: date
    territory_code: str | None = Field(
        default=None, foreign_key="territory.code", index=True, max_length=16
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Candidate(SQLModel, table=True):
    __tablename__ = "candidate"
    __table_args__ = (
        CheckConstraint("gender IN ('female', 'male')", name="gender"),
        CheckConstraint(
            "status IN ('nominated', 'registered', 'withdrawn', 'elected', 'not_elected')",
            name="status",
        ),
        # At most one winner per contested territory and election, whatever races happen.
        Index(
            "uq_candidate_one_elected",
            "election_id",
            "territory_code",
            unique=True,
            postgresql_where=text("status = 'elected'"),
            sqlite_where=text("status = 'elected'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    election_id: uuid.UUID = Field(foreign_key="election.id", index=True)
    full_name: str = Field(max_length=200)
    gender: str = Field(max_length=8)
    party: str | None = Field(default=None, max_length=200)
    social_status: str | None = Field(default=None, max_length=200)
    territory_code: str = Field(foreign_key="territory.code", index=True, max_length=16)
    status: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null")
    return value


class ElectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: I18nText
    kind: ElectionKind
    election_date: date
    territory_code: str | None = None


class ElectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: I18nText | None = None
    kind: ElectionKind | None = None
    election_date: date | None = None
    territory_code: str | None = None

    reject_null = field_validator("title", "kind", "election_date")(_not_null)


class ElectionRead(BaseModel):
    id: uuid.UUID
    title: dict[str, str]
    kind: ElectionKind
    election_date: date
    territory_code: str | None
    created_at: datetime
    updated_at: datetime


class CandidateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: Text200
    gender: Gender
    party: Text200 | None = None
    social_status: Text200 | None = None
    territory_code: str
    status: CandidateStatus = CandidateStatus.nominated


class CandidateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: Text200 | None = None
    gender: Gender | None = None
    party: Text200 | None = None
    social_status: Text200 | None = None
    territory_code: str | None = None
    status: CandidateStatus | None = None

    reject_null = field_validator("full_name", "gender", "territory_code", "status")(_not_null)


class CandidateRead(BaseModel):
    id: uuid.UUID
    election_id: uuid.UUID
    full_name: str
    gender: Gender
    party: str | None
    social_status: str | None
    territory_code: str
    status: CandidateStatus
    created_at: datetime
    updated_at: datetime
