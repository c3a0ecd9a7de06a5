"""The dimensions of survey aggregates: the respondent's (decoded from their codes), the territory
levels (rolled up through the territory table) and `answer:<key>` (a single choice's value or
a multiple choice's options, one row per chosen option)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    Table,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.sql import ColumnElement, FromClause

from app.models.responses import AGE_BANDS, CATEGORIES, CHANNELS, GENDERS, LANGUAGE_CODES
from app.models.territories import Territory
from app.services.answers import MASK_BITS, CompiledQuestion, CompiledQuestionnaire

ROLLED_UP = ("region", "district")  # territory levels, reached through the territory table
Decode = Callable[[Any], str | None]


@dataclass
class Dimension:
    name: str
    expression: ColumnElement[Any]
    decode: Decode


def _decoder(values: Sequence[str]) -> Decode:
    return lambda code: None if code is None else values[int(code)]


def _plain(value: Any) -> str | None:
    return None if value is None else str(value)


def answer_decoder(question: CompiledQuestion) -> Decode:
    if question.type in ("single_choice", "multiple_choice"):
        return _decoder(question.option_values)
    if question.type == "boolean":
        return lambda code: None if code is None else ("true" if code else "false")
    return lambda value: None if value is None else str(int(value))


def dimensions(
    names: list[str],
    questionnaire: CompiledQuestionnaire,
    table: Table,
    tables: Sequence[Table],
) -> tuple[list[Dimension], FromClause]:
    """The dimensions' expressions over one answer table, and the FROM clause they need."""
    source: FromClause = table
    coded = {
        "category": ("category", CATEGORIES),
        "group": ("group_index", questionnaire.group_keys),
        "gender": ("gender", GENDERS),
        "age_band": ("age_band", AGE_BANDS),
        "language": ("language", LANGUAGE_CODES),
        "channel": ("channel", CHANNELS),
    }
    territory: Any = None
    joined: dict[int, Any] = {}
    result = []
    for name in names:
        if name in coded:
            column, values = coded[name]
            result.append(Dimension(name, table.c[column], _decoder(values)))
        elif name == "territory":
            result.append(Dimension(name, table.c.territory_code, _plain))
        elif name in ROLLED_UP:
            if territory is None:
                territory = Territory.__table__.alias("respondent_territory")  # type: ignore[attr-defined]
                source = source.outerjoin(territory, territory.c.code == table.c.territory_code)
            result.append(Dimension(name, territory.c[f"{name}_code"], _plain))
        else:
            question = questionnaire.by_key[name.removeprefix("answer:")][0]
            holder: Any = table
            if tables[question.page] is not table:
                # The question lives in another page of the same responses: one to one.
                holder = joined.get(question.page)
                if holder is None:
                    holder = tables[question.page].alias(f"dimension_page{question.page}")
                    joined[question.page] = holder
                    source = source.outerjoin(holder, holder.c.response_id == table.c.response_id)
            if question.type == "multiple_choice":
                # A respondent counts in each option chosen: one joined row per option chosen.
                options = union_all(
                    *(
                        select(literal_column(str(i), Integer).label("i"))
                        for i in range(len(question.option_values))
                    )
                ).subquery(f"options_{len(result)}")
                bit = _bit(holder, question, options.c.i)
                source = source.outerjoin(options, bit == 1)
                result.append(Dimension(name, options.c.i, _decoder(question.option_values)))
            else:
                column = holder.c[question.columns[0]]
                result.append(Dimension(name, column, answer_decoder(question)))
    return result, source


def _bit(table: Any, question: CompiledQuestion, position: Any) -> ColumnElement[Any]:
    """Whether the option numbered in column `position` is chosen: 1 or 0."""
    # A joined list of option numbers: pick the mask, then the bit (masks of 63 options each).
    masks = [table.c[name] for name in question.columns]
    mask: Any = masks[0]
    if len(masks) > 1:
        from sqlalchemy import case  # noqa: PLC0415 - only for wide multiple choices

        mask = case(*((position / MASK_BITS == n, m) for n, m in enumerate(masks)), else_=None)
    chosen_at: ColumnElement[Any] = mask.op(">>")(position % MASK_BITS).op("&")(1)
    return chosen_at
