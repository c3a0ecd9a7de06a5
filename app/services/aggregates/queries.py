"""The SQL of survey aggregates: one pass per answer table, a pivot of per-option counts.

Each answer table (a page of a questionnaire version, services/answers.py) is read once,
grouped by the requested dimensions, with every asked question's figures as aggregates of
that one scan: `count(*) FILTER (WHERE column = option)` per option of a single choice, a
sum of each option's bit for a multiple choice, count/mean/stddev/min/max/median for
numbers. Its cost grows with the number of questions, never with the product of their answers.

What differs between the engines sits in `Dialect`: PostgreSQL packs each question's figures
into one array (a statement holds at most 1,664 columns) and computes numbers in the pass
(percentile_cont); SQLite has neither arrays nor ordered-set aggregates, so its statements are
cut at 1,800 columns and its numbers come from a histogram query (value -> count) per question.
Single choices with very many options (settlement lists) are also counted from such a grouped
query: thousands of FILTER clauses per row would cost more than grouping by the value.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    Table,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.sql import ColumnElement, FromClause

from app.models.responses import AGE_BANDS, CATEGORIES, CHANNELS, GENDERS, LANGUAGE_CODES
from app.models.territories import Territory
from app.services.aggregates.figures import Tally
from app.services.aggregates.perturbation import KEY_MODULUS
from app.services.answers import MASK_BITS, NUMBER_TYPES, CompiledQuestion, CompiledQuestionnaire

# As SQL text: a bound parameter would be sent as a 32-bit integer, which 2**31 is not.
_MODULUS = literal_column(str(KEY_MODULUS), BigInteger)
PIVOT_OPTIONS = 64  # single choices with more options are counted by a grouped query
ROLLED_UP = ("region", "district")

Decode = Callable[[Any], str | None]
Reader = Callable[[Sequence[Any]], Tally]


@dataclass(frozen=True)
class Dialect:
    pack: bool  # each question's figures in one array column
    numbers_in_pass: bool  # count/avg/stddev/min/max/median of numbers in the pass
    max_columns: int  # per statement


POSTGRESQL = Dialect(pack=True, numbers_in_pass=True, max_columns=1500)
SQLITE = Dialect(pack=False, numbers_in_pass=False, max_columns=1800)


def dialect_of(name: str) -> Dialect:
    return POSTGRESQL if name == "postgresql" else SQLITE


@dataclass
class Dimension:
    name: str
    expression: ColumnElement[Any]
    decode: Decode


@dataclass
class Measure:
    """A question's aggregates in the pivot, and how to read them back into a Tally."""

    question: CompiledQuestion
    expressions: list[str]  # SQL aggregates over the answer table's columns
    read: Reader


# --- dimensions -------------------------------------------------------------------------------


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
            question = questionnaire.by_key[name.removeprefix("answer:")]
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


# --- measures ---------------------------------------------------------------------------------


def measure(
    question: CompiledQuestion, table: Table, dialect: Dialect, *, keyed: bool = False
) -> Measure | None:
    """The question's aggregates in the pivot; None when it is counted by a grouped query.

    `keyed` (published aggregates) adds, beside every count, the sum of the counted rows'
    record keys, modulo KEY_MODULUS, in the same pass: the cell keys of the cell-key method.

    Written as SQL text over our own column names: a pivot holds thousands of these, and as
    SQLAlchemy expressions building and compiling them took about a second per request."""
    columns = [f'"{table.name}".{name}' for name in question.columns]
    column = columns[0]
    record_key = f'"{table.name}".record_key'

    def key_sum(condition: str) -> str:
        return f"coalesce(sum({record_key}) FILTER (WHERE {condition}), 0) % {KEY_MODULUS}"

    answered = key_sum(f"{column} IS NOT NULL")
    if question.type == "single_choice":
        if len(question.option_values) > PIVOT_OPTIONS:
            return None
        return _counts(
            question,
            f"{column} = {{}}",
            range(len(question.option_values)),
            question.option_values,
            key_sum if keyed else None,
        )
    if question.type == "boolean":
        return _counts(
            question, f"{column} = {{}}", (1, 0), ("true", "false"), key_sum if keyed else None
        )
    if question.type == "multiple_choice":
        labels = question.option_values
        chosen = [
            f"(({columns[n // MASK_BITS]} >> {n % MASK_BITS}) & 1)" for n in range(len(labels))
        ]
        bits = [f"coalesce(sum({bit}), 0)" for bit in chosen]
        keys = (
            [
                answered,
                *(f"coalesce(sum({bit} * {record_key}), 0) % {KEY_MODULUS}" for bit in chosen),
            ]
            if keyed
            else []
        )
        size = len(labels)

        def read_multiple(values: Sequence[Any]) -> Tally:
            counts = {o: int(v) for o, v in zip(labels, values[1 : size + 1], strict=True)}
            tally = Tally(n=int(values[0]), counts=counts)
            if keyed:
                tally.key = int(values[size + 1])
                tally.keys = {o: int(v) for o, v in zip(labels, values[size + 2 :], strict=True)}
            return tally

        return Measure(question, [f"count({column})", *bits, *keys], read_multiple)
    keys = [answered] if keyed else []
    if question.type in NUMBER_TYPES:
        if not dialect.numbers_in_pass:
            return None
        expressions = [
            f"count({column})",
            f"avg({column})",
            f"stddev_samp({column})",
            f"min({column})",
            f"max({column})",
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {column})",
            *keys,
        ]
        return Measure(question, expressions, _read_numbers)
    return Measure(question, [f"count({column})", *keys], _read_count)


def _read_count(values: Sequence[Any]) -> Tally:
    return Tally(n=int(values[0]), key=int(values[1]) if len(values) > 1 else 0)


def _counts(
    question: CompiledQuestion,
    condition: str,
    codes: Sequence[int],
    labels: Sequence[str],
    key_sum: Callable[[str], str] | None,
) -> Measure:
    """Per-option counts (and with `key_sum`, per-option key sums) of a single choice."""
    expressions = [f"count(*) FILTER (WHERE {condition.format(code)})" for code in codes]
    if key_sum is not None:
        expressions += [key_sum(condition.format(code)) for code in codes]
    size = len(labels)

    def read(values: Sequence[Any]) -> Tally:
        counts = {label: int(v) for label, v in zip(labels, values[:size], strict=True)}
        tally = Tally(n=sum(counts.values()), counts=counts)
        if key_sum is not None:
            tally.keys = {label: int(v) for label, v in zip(labels, values[size:], strict=True)}
            tally.key = sum(tally.keys.values())
        return tally

    return Measure(question, expressions, read)


def _read_numbers(values: Sequence[Any]) -> Tally:
    n = int(values[0])
    if n == 0:
        return Tally(n=0)
    mean, stddev, low, high, median = (None if v is None else float(v) for v in values[1:6])
    return Tally(
        n=n,
        numbers={"mean": mean, "median": median, "stddev": stddev, "min": low, "max": high},
        key=int(values[6]) if len(values) > 6 else 0,
    )


# --- statements -------------------------------------------------------------------------------


def pivots(
    measures: list[Measure],
    dims: list[Dimension],
    source: FromClause,
    where: list[Any],
    dialect: Dialect,
    *,
    with_total: bool,
    total_key: ColumnElement[Any] | None = None,
) -> list[tuple[Select[Any], list[Measure]]]:
    """Statements of at most `max_columns` columns, each grouped by the dimensions; the first
    also counts the rows (`with_total`), and sums `total_key` over them when given."""
    keys = [dimension.expression for dimension in dims]
    statements: list[tuple[Select[Any], list[Measure]]] = []
    chunk: list[Measure] = []
    width = 0
    for item in [*measures, None]:
        size = 0 if item is None else (1 if dialect.pack else len(item.expressions))
        if item is None or (chunk and width + size > dialect.max_columns):
            if chunk or (item is None and with_total and not statements):
                columns: list[Any] = []
                for m in chunk:
                    if dialect.pack:
                        packed = ", ".join(f"CAST({e} AS FLOAT8)" for e in m.expressions)
                        columns.append(literal_column(f"ARRAY[{packed}]"))
                    else:
                        columns.extend(literal_column(e) for e in m.expressions)
                total: list[Any] = []
                if with_total and not statements:
                    total = [func.count()]
                    if total_key is not None:  # the sum of the rows' record keys too
                        total.append(func.coalesce(func.sum(total_key), 0) % _MODULUS)
                statement = (
                    select(*keys, *total, *columns)
                    .select_from(source)
                    .where(*where)
                    .group_by(*keys)
                )
                statements.append((statement, chunk))
            chunk, width = [], 0
        if item is not None:
            chunk.append(item)
            width += size
    return statements


def read_pivot(
    row: Sequence[Any], measures: list[Measure], width: int, dialect: Dialect
) -> list[Tally]:
    """The tallies of one grouped row (after `width` dimension and total columns)."""
    tallies = []
    position = width
    for m in measures:
        if dialect.pack:
            values = row[position]
            position += 1
        else:
            values = row[position : position + len(m.expressions)]
            position += len(m.expressions)
        tallies.append(m.read(values))
    return tallies


def by_value(
    question: CompiledQuestion,
    table: Table,
    dims: list[Dimension],
    source: FromClause,
    where: list[Any],
    *,
    keyed: bool = False,
) -> Select[Any]:
    """Counts grouped by the dimensions and the question's value (a histogram); `keyed` adds
    the sum of the rows' record keys."""
    column = table.c[question.columns[0]]
    keys = [*(dimension.expression for dimension in dims), column]
    key_sum = [func.coalesce(func.sum(table.c.record_key), 0) % _MODULUS] if keyed else []
    return (
        select(*keys, func.count(), *key_sum)
        .select_from(source)
        .where(*where, column.is_not(None))
        .group_by(*keys)
    )
