"""Schemas of the survey aggregates (figures per question and cell, small cells suppressed)."""

import uuid

from pydantic import BaseModel

Z95 = 1.959964
MAX_DIMENSIONS = 3
PLAIN_DIMENSIONS = (
    "category", "group", "gender", "age_band", "region", "district", "territory", "language",
    "channel",
)  # fmt: skip
ANSWER_DIMENSION_TYPES = ("single_choice", "multiple_choice", "boolean", "scale")


class Cell(BaseModel):
    """One breakdown cell; every figure but `group` is null when `suppressed`."""

    group: dict[str, str | None]
    n: int | None
    suppressed: bool
    counts: dict[str, int] | None = None
    shares: dict[str, float] | None = None
    ci95: dict[str, list[float]] | None = None
    mean: float | None = None
    median: float | None = None
    stddev: float | None = None
    min: float | None = None
    max: float | None = None


class QuestionFigures(BaseModel):
    key: str
    type: str
    cells: list[Cell]
    # The repeat the question is asked in (null at the top level): questions of different
    # repeats may share a key, and are listed once each.
    repeat: str | None = None


class SurveyAggregates(BaseModel):
    questionnaire_id: uuid.UUID
    n_responses: int
    by: list[str]
    min_cell: int
    questions: list[QuestionFigures]
