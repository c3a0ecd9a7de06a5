"""Responses: one head row per submission, answers in typed tables per questionnaire version.

The `response` row holds what every questionnaire shares: the respondent's dimensions as small
codes, times, the content fingerprint for exactly-once, the submitter and a random record key.
The answers live in tables made when a questionnaire version is published (see
services/responses/layout.py): a column per question in the best plain type, the respondent's
dimensions copied into each row, so an aggregate is one pass over one narrow-typed table.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.types import TypeEngine
from sqlmodel import SQLModel

from app.db import UTCDateTime
from app.models import examples as ex
from app.models.common import UtcDatetime
from app.models.examples import examples

MAX_BATCH = 1000
MAX_ANSWERS = 2000

# Stored as the index in these tuples; never reorder, only append.
GENDERS = ("female", "male", "other", "undisclosed")
AGE_BANDS = ("under_18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
CATEGORIES = ("citizen", "expert")
LANGUAGE_CODES = ("kk", "ru", "en")
CHANNELS = ("web", "mobile", "interview", "paper")
# Characters of a response's name (settings.instance_name evaluated) kept: a longer one is cut.
INSTANCE_NAME_TEXT = 500

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
    # A random key fixed at storage: published aggregates perturb a cell by its records' keys.
    Column("record_key", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("started_at", UTCDateTime),
    Column("submitted_by_user", Uuid, ForeignKey("user_account.id")),
    Column("submitted_by_collector", Uuid, ForeignKey("collector.id")),
    # settings.instance_name evaluated on the stored answers (NULL: the form has none)
    Column("instance_name", String(INSTANCE_NAME_TEXT)),
    # The listing's order; filters on submission time ride along (an index of their own cost
    # every submission an index entry and ~40 bytes, and aggregates read the answer tables).
    Index("ix_response_questionnaire_received", "questionnaire_id", "received_at", "id"),
)
# The respondent's dimensions, copied into every answer row so aggregates never join `response`.
DIMENSIONS = (
    "group_index", "category", "gender", "age_band", "language", "channel", "territory_code",
    "submitted_at", "record_key",
)  # fmt: skip

# Answer tables are made per questionnaire version at publish time, on a metadata of their own:
# Alembic and create_all never see them (migrations/env.py skips their names too).
ANSWER_TABLE_PREFIX = "answers_"
ANSWER_KINDS: dict[str, type[TypeEngine[Any]] | TypeEngine[Any]] = {
    "smallint": SmallInteger,
    "bigint": BigInteger,
    "float": Float(precision=53),
    "text": Text,
    "date": Date,
}


# The columns that place a repeat's instance: its number in the response, its enclosing
# instance's number (null at the top level) and its position among its siblings.
INSTANCE_COLUMNS = ("instance", "parent_instance", "position")


def answer_table(name: str, columns: tuple[tuple[str, str], ...], repeat: bool = False) -> Table:
    """One page of a questionnaire version's answers: the response id (and for a repeat the
    instance), the respondent's dimensions (as in `response`) and a column per answer."""
    placement = (
        [
            Column("instance", Integer, primary_key=True),
            Column("parent_instance", Integer),
            Column("position", Integer, nullable=False),
        ]
        if repeat
        else []
    )
    return Table(
        name,
        MetaData(),
        Column("response_id", Uuid, primary_key=True),
        *placement,
        # Copies without the foreign key: the head row already checked the territory.
        *(
            Column(name, response_table.c[name].type, nullable=response_table.c[name].nullable)
            for name in DIMENSIONS
        ),
        *(Column(column, ANSWER_KINDS[kind]) for column, kind in columns),
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
    answers: Annotated[dict[str, Any], MaxLen(MAX_ANSWERS)]
    language: Language | None = None
    channel: Channel | None = None
    started_at: UtcDatetime | None = None
    submitted_at: UtcDatetime | None = None


class BatchIn(BaseModel):
    """Items are checked one by one, so one malformed item (even a non-object) cannot sink the
    others."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(ex.BATCH_IN))

    responses: Annotated[list[Any], MinLen(1), MaxLen(MAX_BATCH)]


class ReadBatch(BaseModel):
    """A batch as read from its bytes in one pydantic-core call: each item a ResponseIn, or as
    sent when it is not one (the rules then word its problems, as for BatchIn's items)."""

    model_config = ConfigDict(extra="forbid")

    responses: Annotated[
        list[Annotated[ResponseIn | Any, Field(union_mode="left_to_right")]],
        MinLen(1),
        MaxLen(MAX_BATCH),
    ]


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
    # the form's settings.instance_name, evaluated by the server when the response was stored
    instance_name: str | None = None


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


ExportFormat = Literal["csv", "ndjson", "xlsx", "zip", "geojson"]
MAX_KEY_LENGTH = 64  # of a question key named in a query (`geo`): keys are shorter
