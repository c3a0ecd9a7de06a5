"""Territories: the KATO hierarchy of regions, cities, districts and settlements."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, Column, String
from sqlmodel import Field, SQLModel

from app.db import JSONType, UTCDateTime, utcnow


class TerritoryLevel(StrEnum):
    region = "region"
    city = "city"
    district = "district"
    rural_district = "rural_district"
    settlement = "settlement"


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
    path: str = Field(sa_column=Column(String(400), nullable=False, index=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
