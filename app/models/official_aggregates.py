"""Figures on consultations and candidates: officials and public meetings, never suppressed."""

import uuid
from enum import StrEnum

from pydantic import BaseModel, Field


class ConsultationDimension(StrEnum):
    region = "region"
    district = "district"
    territory = "territory"
    host = "host"


class CandidateDimension(StrEnum):
    region = "region"
    district = "district"
    party = "party"
    social_status = "social_status"


Group = dict[str, str | None]


class ConsultationCell(BaseModel):
    group: Group = Field(description="One value per `by` dimension; null when there is none")
    total: int
    scheduled: int
    held: int
    not_held: int
    postponed: int
    cancelled: int
    observed: int = Field(description="Consultations with at least one observation")
    attendees_reported: int = Field(
        description="Consultations with an observation reporting both attendee counts; "
        "the figures below are over each one's latest such observation"
    )
    attendees_total: int
    attendees_women: int
    women_share: float | None
    announced: int = Field(description="Consultations with announced_at")
    median_notice_days: float | None = Field(
        description="Median of starts_at - announced_at in days, over those announced"
    )


class ConsultationAggregates(BaseModel):
    by: list[ConsultationDimension]
    cells: list[ConsultationCell]


class CandidateCell(BaseModel):
    group: Group
    candidates: int = Field(description="Candidates not withdrawn")
    candidates_women: int
    elected: int
    elected_women: int
    women_share_candidates: float | None
    women_share_elected: float | None


class CandidateAggregates(BaseModel):
    election_id: uuid.UUID
    by: list[CandidateDimension]
    cells: list[CandidateCell]
