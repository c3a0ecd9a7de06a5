"""Responses: one row per submission, shaped for GROUP BY, and their schemas.

A `response` row carries the respondent's dimensions as small codes and every answer in a
typed "slot" column: k1..k64 (BIGINT: an option's index, a multiple-choice bit mask, 0/1 for
booleans, 1 for answered text/date) and x1..x32 (DOUBLE: integers, decimals, scales). A
questionnaire version maps its questions to slots once (services/answers.py), so aggregates
group by plain columns instead of parsing JSON per row. The answers as submitted (JSON) and the
rest live in `response_detail`, one row each: keeping them out of the row aggregates scan
halves what a GROUP BY over a million responses reads.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Uuid,
)
from sqlmodel import SQLModel

from app.db import JSONType, UTCDateTime
from app.models import examples as ex
from app.models.common import UtcDatetime
from app.models.examples import examples

CHOICE_SLOTS = 64
NUMBER_SLOTS = 32
MAX_BATCH = 1000

# Stored as the index in these tuples; never reorder, only append.
GENDERS = ("female", "male", "other", "undisclosed")
AGE_BANDS = ("under_18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
CATEGORIES = ("citizen", "expert")
LANGUAGE_CODES = ("kk", "ru", "en")
CHANNELS = ("web", "mobile", "interview", "paper")

response_table = Table(
    "response",
    SQLModel.metadata,
    Column("id", Uuid, primary_key=True),
    Column(
        "questionnaire_id",
        Uuid,
        ForeignKey("questionnaire.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("questionnaire_version", Integer, nullable=False),
    Column("group_index", SmallInteger, nullable=False),
    Column("category", SmallInteger, nullable=False),
    Column("gender", SmallInteger),
    Column("age_band", SmallInteger),
    Column("language", SmallInteger),
    Column("channel", SmallInteger),
    Column("territory_code", String(16), ForeignKey("territory.code"), index=True),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    *(Column(f"k{n}", BigInteger) for n in range(1, CHOICE_SLOTS + 1)),
    *(Column(f"x{n}", Float(precision=53)) for n in range(1, NUMBER_SLOTS + 1)),
    Index("ix_response_questionnaire_received", "questionnaire_id", "received_at", "id"),
    Index("ix_response_questionnaire_submitted", "questionnaire_id", "submitted_at"),
)

response_detail_table = Table(
    "response_detail",
    SQLModel.metadata,
    Column("id", Uuid, ForeignKey("response.id", ondelete="CASCADE"), primary_key=True),
    Column("answers", JSONType, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("started_at", UTCDateTime),
    Column("submitted_by_user", Uuid, ForeignKey("user_account.id")),
    Column("submitted_by_collector", Uuid, ForeignKey("collector.id")),
)
DETAIL_COLUMNS = (
    "answers",
    "content_hash",
    "started_at",
    "submitted_by_user",
    "submitted_by_collector",
)

Gender = Literal["female", "male", "other", "undisclosed"]
AgeBand = Literal["under_18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
Language = Literal["kk", "ru", "en"]
Channel = Literal["web", "mobile", "interview", "paper"]


class RespondentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    gender: Gender | None = None
    age_band: AgeBand | None = None
    territory_code: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(ex.RESPONSE_IN))

    id: uuid.UUID | None = None
    respondent: RespondentIn
    # Any, not JsonValue: the body was parsed from JSON, so its values are JSON already, and
    # JsonValue checks every value again through a Python callback on each submission.
    answers: Annotated[dict[str, Any], MaxLen(200)]
    language: Language | None = None
    channel: Channel | None = None
    started_at: UtcDatetime | None = None
    submitted_at: UtcDatetime | None = None


class BatchIn(BaseModel):
    """Items are checked one by one, so one malformed item cannot sink the others."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(ex.BATCH_IN))

    responses: Annotated[list[dict[str, Any]], MinLen(1), MaxLen(MAX_BATCH)]


class RespondentRead(BaseModel):
    group: str
    category: Literal["citizen", "expert"]
    gender: Gender | None
    age_band: AgeBand | None
    territory_code: str | None


class ResponseRead(BaseModel):
    model_config = ConfigDict(json_schema_extra=examples(ex.RESPONSE_READ))

    id: uuid.UUID
    questionnaire_id: uuid.UUID
    questionnaire_version: int
    respondent: RespondentRead
    answers: dict[str, Any]
    language: Language | None
    channel: Channel | None
    started_at: datetime | None
    submitted_at: datetime
    received_at: datetime


class ItemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class BatchResult(BaseModel):
    index: int
    id: uuid.UUID | None
    status: Literal["created", "duplicate", "conflict", "invalid"]
    errors: list[ItemError] | None = None


class BatchOut(BaseModel):
    model_config = ConfigDict(json_schema_extra=examples(ex.BATCH_OUT))

    results: list[BatchResult]


class ResponseFilters(BaseModel):
    group: str | None = None
    gender: Gender | None = None
    territory_code: str | None = None
    submitted_from: UtcDatetime | None = None
    submitted_to: UtcDatetime | None = None


ExportFormat = Literal["csv", "ndjson", "xlsx"]
