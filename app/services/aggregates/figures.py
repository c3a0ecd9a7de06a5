"""Figures of survey aggregates from grouped tallies: shares, Wilson intervals, numeric
statistics, small-cell protection, and the CSV form."""

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.models.aggregates import Z95, Cell, QuestionFigures, SurveyAggregates
from app.services.answers import CompiledQuestion

CHOICE_TYPES = ("single_choice", "boolean", "multiple_choice")
NUMBER_TYPES = ("integer", "decimal", "scale")


@dataclass
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


def wilson(count: int, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval for a proportion count/n."""
    p = count / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def statistics(values: dict[float, int], n: int) -> dict[str, float | None]:
    ordered = sorted(values.items())
    mean = sum(value * count for value, count in ordered) / n

    def nth(position: int) -> float:  # 0-based position in the sorted answers
        seen = 0
        for value, count in ordered:
            seen += count
            if position < seen:
                return value
        raise IndexError(position)

    median = nth(n // 2) if n % 2 else (nth(n // 2 - 1) + nth(n // 2)) / 2
    spread = sum(count * (value - mean) ** 2 for value, count in ordered)
    return {
        "mean": mean,
        "median": median,
        "stddev": math.sqrt(spread / (n - 1)) if n >= 2 else None,
        "min": ordered[0][0],
        "max": ordered[-1][0],
    }


def cell(group: dict[str, str | None], tally: Tally, question: CompiledQuestion) -> Cell:
    figures: dict[str, Any] = {}
    if question.type in CHOICE_TYPES:
        options = list(question.option_values) if question.type != "boolean" else ["true", "false"]
        counts = {option: tally.counts.get(option, 0) for option in options}
        figures = {
            "counts": counts,
            "shares": {option: count / tally.n for option, count in counts.items()},
            "ci95": {option: wilson(count, tally.n) for option, count in counts.items()},
        }
    elif question.type in NUMBER_TYPES:
        figures = tally.numbers if tally.numbers is not None else statistics(tally.values, tally.n)
    # Built from figures computed here, so not validated again: a breakdown by group, gender
    # and region is thousands of cells, and validating them took most of such a request.
    return Cell.model_construct(group=group, n=tally.n, suppressed=False, **figures)


def protect(cells: list[Cell], min_cell: int) -> list[Cell]:
    """Primary suppression below min_cell, and secondary when exactly one cell is hidden."""
    hidden = {index for index, cell in enumerate(cells) if (cell.n or 0) < min_cell}
    if len(hidden) == 1:
        shown = [index for index in range(len(cells)) if index not in hidden]
        if shown:
            hidden.add(min(shown, key=lambda index: cells[index].n or 0))
    return [
        Cell.model_construct(group=cell.group, n=None, suppressed=True) if index in hidden else cell
        for index, cell in enumerate(cells)
    ]


def order(group: dict[str, str | None]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in group.values())


# --- CSV --------------------------------------------------------------------------------------

FIGURE_COLUMNS = (
    "n", "suppressed", "option", "count", "share", "ci95_low", "ci95_high", "mean", "median",
    "stddev", "min", "max",
)  # fmt: skip


def to_csv(result: SurveyAggregates) -> bytes:
    """One row per cell and option (one per cell for other types), with a byte-order mark."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["question", "type", *result.by, *FIGURE_COLUMNS])
    for question in result.questions:
        for cell in question.cells:
            writer.writerows(_csv_lines(question, cell, result.by))
    return ("\ufeff" + buffer.getvalue()).encode()


def _csv_lines(question: QuestionFigures, cell: Cell, by: list[str]) -> Iterable[list[Any]]:
    start = [question.key, question.type, *(cell.group.get(name) or "" for name in by)]
    blank = "" if cell.n is None else cell.n
    if cell.suppressed:
        yield [*start, "", "true", *[""] * (len(FIGURE_COLUMNS) - 2)]
    elif cell.counts is not None:
        for option, count in cell.counts.items():
            share = (cell.shares or {})[option]
            low, high = (cell.ci95 or {})[option]
            yield [*start, blank, "false", option, count, share, low, high, "", "", "", "", ""]
    else:
        numbers = [cell.mean, cell.median, cell.stddev, cell.min, cell.max]
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
