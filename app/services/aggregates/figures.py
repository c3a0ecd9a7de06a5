"""Figures of survey aggregates from grouped tallies: shares, Wilson intervals, numeric
statistics, small-cell protection, and the CSV form."""

import csv
import io
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.models.aggregates import Z95
from app.services.answers import CompiledQuestion

CHOICE_TYPES = ("single_choice", "boolean", "multiple_choice")
NUMBER_TYPES = ("integer", "decimal", "scale")


@dataclass(slots=True)
class Tally:
    """What one cell of one question accumulates: respondents who answered, counts per option,
    and for numbers either a histogram of values or the statistics the database computed."""

    n: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    values: dict[float, int] = field(default_factory=dict)
    numbers: dict[str, float | None] | None = None
    # Published aggregates only: the sums of record keys of the `n` cell and of each option's.
    key: int = 0
    keys: dict[str, int] = field(default_factory=dict)
    # `counts` holds every option of the question, in its order (as a pivot reads them): the
    # cell shows it as it is.
    complete: bool = False


def wilson(count: int, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval for a proportion count/n."""
    p = count / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def median(ordered: list[tuple[float, int]], n: int) -> float:
    """The median of `n` answers given as (value, count) in ascending order of value, as
    percentile_cont(0.5) gives it (the mean of the two middle answers when n is even)."""

    def nth(position: int) -> float:  # 0-based position in the sorted answers
        seen = 0
        for value, count in ordered:
            seen += count
            if position < seen:
                return value
        raise IndexError(position)

    return nth(n // 2) if n % 2 else (nth(n // 2 - 1) + nth(n // 2)) / 2


def statistics(values: dict[float, int], n: int) -> dict[str, float | None]:
    ordered = sorted(values.items())
    mean = sum(value * count for value, count in ordered) / n
    spread = sum(count * (value - mean) ** 2 for value, count in ordered)
    return {
        "mean": mean,
        "median": median(ordered, n),
        "stddev": math.sqrt(spread / (n - 1)) if n >= 2 else None,
        "min": ordered[0][0],
        "max": ordered[-1][0],
    }


# A cell as app.models.aggregates.Cell gives it, every field present. Cells are plain dicts: a
# breakdown by group, gender and region is thousands of them, and building and dumping them as
# models took a third of such a request (bench/aggregates.py, py-spy).
CELL_FIELDS = (
    "group", "n", "suppressed", "counts", "shares", "ci95", "mean", "median", "stddev", "min",
    "max",
)  # fmt: skip
_EMPTY_CELL: dict[str, Any] = dict.fromkeys(CELL_FIELDS)
CellData = dict[str, Any]


@dataclass(slots=True)
class QuestionCells:
    key: str
    type: str
    cells: list[CellData]
    repeat: str | None = None  # the repeat it is asked in (a key repeats may share)


@dataclass(slots=True)
class Figures:
    """The answer of a survey aggregates query, shaped as app.models.aggregates.SurveyAggregates
    (the schema the API documents)."""

    questionnaire_id: uuid.UUID
    n_responses: int
    by: list[str]
    min_cell: int
    questions: list[QuestionCells]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "questionnaire_id": str(self.questionnaire_id),
                "n_responses": self.n_responses,
                "by": self.by,
                "min_cell": self.min_cell,
                "questions": [
                    {"key": q.key, "type": q.type, "cells": q.cells, "repeat": q.repeat}
                    for q in self.questions
                ],
            }
        )


BOOLEAN_OPTIONS = ("true", "false")


def _shares(counts: dict[str, int], n: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each option's share and Wilson interval (wilson(), its terms in n computed once), in one
    loop: a breakdown by group, gender and region is tens of thousands of these."""
    z2 = Z95 * Z95
    denominator = 1 + z2 / n
    shift, spread = z2 / (2 * n), z2 / (4 * n * n)
    sqrt = math.sqrt
    shares, intervals = {}, {}
    for option, count in counts.items():
        p = count / n
        shares[option] = p
        centre = (p + shift) / denominator
        half = Z95 * sqrt(p * (1 - p) / n + spread) / denominator
        low, high = centre - half, centre + half
        intervals[option] = [low if low > 0.0 else 0.0, high if high < 1.0 else 1.0]
    return shares, intervals


def cell(group: dict[str, str | None], tally: Tally, question: CompiledQuestion) -> CellData:
    n = tally.n
    kind = question.type
    if kind in CHOICE_TYPES:
        if tally.complete:
            counts = tally.counts
        else:
            options = question.option_values if kind != "boolean" else BOOLEAN_OPTIONS
            tallied = tally.counts
            counts = {option: tallied.get(option, 0) for option in options}
        shares, intervals = _shares(counts, n)
        return {
            "group": group, "n": n, "suppressed": False, "counts": counts, "shares": shares,
            "ci95": intervals, "mean": None, "median": None, "stddev": None, "min": None,
            "max": None,
        }  # fmt: skip
    out = dict(_EMPTY_CELL)
    out["group"], out["n"], out["suppressed"] = group, n, False
    if kind in NUMBER_TYPES:
        numbers = tally.numbers
        out.update(numbers if numbers is not None else statistics(tally.values, n))
    return out


def protect(cells: list[CellData], min_cell: int) -> list[CellData]:
    """Primary suppression below min_cell, and secondary when exactly one cell is hidden."""
    hidden = {index for index, cell in enumerate(cells) if (cell["n"] or 0) < min_cell}
    if len(hidden) == 1:
        shown = [index for index in range(len(cells)) if index not in hidden]
        if shown:
            hidden.add(min(shown, key=lambda index: cells[index]["n"] or 0))
    for index in hidden:
        cells[index] = {**_EMPTY_CELL, "group": cells[index]["group"], "suppressed": True}
    return cells


def order(cell: CellData) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in cell["group"].values())


# --- CSV --------------------------------------------------------------------------------------

FIGURE_COLUMNS = (
    "n", "suppressed", "option", "count", "share", "ci95_low", "ci95_high", "mean", "median",
    "stddev", "min", "max",
)  # fmt: skip


def to_csv(result: Figures) -> bytes:
    """One row per cell and option (one per cell for other types), with a byte-order mark."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["question", "type", *result.by, *FIGURE_COLUMNS, "repeat"])
    for question in result.questions:
        for cell in question.cells:
            for line in _csv_lines(question, cell, result.by):
                writer.writerow([*line, question.repeat or ""])
    return ("\ufeff" + buffer.getvalue()).encode()


def _csv_lines(question: QuestionCells, cell: CellData, by: list[str]) -> Iterable[list[Any]]:
    start = [question.key, question.type, *(cell["group"].get(name) or "" for name in by)]
    blank = "" if cell["n"] is None else cell["n"]
    if cell["suppressed"]:
        yield [*start, "", "true", *[""] * (len(FIGURE_COLUMNS) - 2)]
    elif cell["counts"] is not None:
        for option, count in cell["counts"].items():
            share = cell["shares"][option]
            low, high = cell["ci95"][option]
            yield [*start, blank, "false", option, count, share, low, high, "", "", "", "", ""]
    else:
        numbers = [cell[name] for name in ("mean", "median", "stddev", "min", "max")]
        yield [
            *start,
            blank,
            "false",
            "",
            "",
            "",
            "",
            "",
            *("" if v is None else v for v in numbers),
        ]
