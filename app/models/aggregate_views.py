"""Aggregate views: what a questionnaire's published aggregates may show, to whom."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from app.db import JSONType, UTCDateTime, utcnow
from app.models.examples import examples

VIEW_TOKEN_PREFIX = "kv_"  # noqa: S105 - a prefix, not a secret
# The response filters a view may allow, named as the query parameters.
FILTER_NAMES = ("group", "gender", "territory_code", "submitted_from", "submitted_to")
ViewFilter = Literal["group", "gender", "territory_code", "submitted_from", "submitted_to"]
ViewAccess = Literal["public", "token"]
MAX_VIEW_QUESTIONS = 2000


class AggregateView(SQLModel, table=True):
    """A published view of a questionnaire's aggregates; deleting it withdraws it at once.

    For `token` access only the token's SHA-256 is kept; the token is shown once."""

    __tablename__ = "aggregate_view"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    questionnaire_id: uuid.UUID = Field(foreign_key="questionnaire.id", index=True)
    name: str = Field(max_length=200)
    # Question keys (null: all of them), `by` dimensions and filter names the view allows.
    questions: list[str] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    dimensions: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    filters: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    access: str = Field(max_length=16)
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    min_cell: int
    created_by: uuid.UUID = Field(foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


_VIEW: dict[str, Any] = {
    "name": "Participation by gender and region",
    "questions": ["aware", "participated", "trust_akimat"],
    "dimensions": ["gender", "region", "age_band"],
    "filters": ["gender", "territory_code", "submitted_from", "submitted_to"],
    "access": "public",
    "min_cell": 10,
}

DimensionName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
QuestionKey = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AggregateViewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(_VIEW))

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    questions: Annotated[list[QuestionKey], MinLen(1), MaxLen(MAX_VIEW_QUESTIONS)] | None = None
    dimensions: Annotated[list[DimensionName], MaxLen(50)]
    filters: Annotated[list[ViewFilter], MaxLen(len(FILTER_NAMES))] = []
    access: ViewAccess
    min_cell: Annotated[int, Field(ge=0, le=100_000)] | None = None


class AggregateViewRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                **_VIEW,
                "id": "5b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
                "questionnaire_id": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
                "url": "https://kenes.example.org/api/v1/public/aggregates/"
                "5b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
                "created_at": "2026-12-07T10:00:00Z",
            }
        )
    )

    id: uuid.UUID
    questionnaire_id: uuid.UUID
    name: str
    questions: list[str] | None
    dimensions: list[str]
    filters: list[str]
    access: ViewAccess
    min_cell: int
    url: str
    created_at: datetime


class AggregateViewCreated(AggregateViewRead):
    """The view as created; for `token` access the only time the token is shown."""

    token: str | None = None
