"""Calendar feeds: a user's filtered consultation calendar, served at a secret URL."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from app.db import JSONType, UTCDateTime, utcnow
from app.models.consultations import ConsultationStatus
from app.models.examples import examples

FEED_TOKEN_PREFIX = "kf_"  # noqa: S105 - a prefix, not a secret


class CalendarFeed(SQLModel, table=True):
    """Only the token's SHA-256 is kept; the token itself is shown once, in the feed's URL."""

    __tablename__ = "calendar_feed"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user_account.id", index=True)
    name: str = Field(max_length=200)
    filters: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class FeedFilters(BaseModel):
    """The consultation list's filters a feed keeps (its time window is always 'all')."""

    model_config = ConfigDict(extra="forbid")

    territory_code: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None
    election_id: uuid.UUID | None = None
    status: ConsultationStatus | None = None


_FEED = {
    "name": "Talgar district consultations",
    "filters": {"territory_code": "195620100", "status": "scheduled"},
}


class CalendarFeedCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(_FEED))

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    filters: FeedFilters = FeedFilters()


class CalendarFeedRead(BaseModel):
    id: uuid.UUID
    name: str
    filters: FeedFilters
    created_at: datetime


class CalendarFeedCreated(CalendarFeedRead):
    """The feed with its URL: the only time the token is shown."""

    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                **_FEED,
                "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "created_at": "2026-12-07T10:00:00Z",
                "url": "https://kenes.example.org/api/v1/calendar/kf_Zm9vYmFyYmF6cXV4.ics",
            }
        )
    )

    url: str
