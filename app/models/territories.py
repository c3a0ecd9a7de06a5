"""Territories: the KATO hierarchy of regions, cities, districts and settlements."""

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from annotated_types import MinLen
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator
from sqlalchemy import CheckConstraint, Column, String
from sqlmodel import Field, SQLModel

from app.db import JSONType, UTCDateTime, utcnow

LANGUAGES = ("kk", "ru", "en")
Language = Literal["kk", "ru", "en"]
I18nString = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
# {"kk": "...", "ru": "...", "en": "..."}: at least one supported language.
I18nText = Annotated[dict[Language, I18nString], MinLen(1)]


def i18n(text: Mapping[Language, str]) -> dict[str, Any]:
    """Validated multilingual text as the JSON column stores it."""
    return {str(lang): value for lang, value in text.items()}


# Every character sorts before "~", which closes a subtree's range (see services.territories).
CODE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_.\-]{0,15}$"
TerritoryCode = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]


class TerritoryLevel(StrEnum):
    region = "region"
    city = "city"
    district = "district"
    rural_district = "rural_district"
    settlement = "settlement"


# A parent's rank is lower than its child's. Regions and cities may be roots; a city may sit in
# a region (regional significance) and have districts or rural districts of its own.
LEVEL_RANK = {
    TerritoryLevel.region: 0,
    TerritoryLevel.city: 1,
    TerritoryLevel.district: 2,
    TerritoryLevel.rural_district: 3,
    TerritoryLevel.settlement: 4,
}
ROOT_LEVELS = frozenset({TerritoryLevel.region, TerritoryLevel.city})

# The path sorts byte-wise on PostgreSQL too, so a subtree is an index range (or LIKE prefix)
# whatever the database's collation.
PathType = String(400).with_variant(String(400, collation="C"), "postgresql")


class Territory(SQLModel, table=True):
    __tablename__ = "territory"
    __table_args__ = (
        CheckConstraint(
            "level IN ('region', 'city', 'district', 'rural_district', 'settlement')",
            name="level",
        ),
    )

    code: str = Field(primary_key=True, max_length=16)
    parent_code: str | None = Field(
        default=None, foreign_key="territory.code", index=True, max_length=16
    )
    level: str = Field(max_length=16)
    name: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    # Materialised path "/root/.../code/": a subtree is one indexed prefix match.
    path: str = Field(sa_column=Column(PathType, nullable=False, index=True))
    # Denormalised roll-up keys, kept by services.territories on every write and move:
    # the root's code (a region or a city of republican significance; a root's own code),
    # and the code of the district-level territory on the path (itself included), if any.
    region_code: str | None = Field(default=None, index=True, max_length=16)
    district_code: str | None = Field(default=None, index=True, max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class TerritoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: TerritoryCode
    name: I18nText
    level: TerritoryLevel
    parent_code: str | None = None


class TerritoryUpdate(BaseModel):
    """Names, or a move under another parent (the whole subtree moves along)."""

    model_config = ConfigDict(extra="forbid")

    name: I18nText | None = None
    parent_code: str | None = None

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            raise ValueError("name may not be null")
        return value


class TerritoryRead(BaseModel):
    code: str
    name: dict[str, str]
    level: TerritoryLevel
    parent_code: str | None
    region_code: str | None
    district_code: str | None
    created_at: datetime
