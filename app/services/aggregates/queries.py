"""The SQL of survey aggregates: one pass per answer table, a pivot of per-option counts.

Each answer table (a page of a questionnaire version, services/answers/) is read once,
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
    Select,
    Table,
    func,
    literal_column,
    select,
)
from sqlalchemy.sql import FromClause

from app.services.aggregates.dimensions import Dimension
from app.services.aggregates.figures import Tally, median
from app.services.aggregates.perturbation import KEY_MODULUS, KEY_VALUES
from app.services.answers import MASK_BITS, NUMBER_TYPES, CompiledQuestion

# As SQL text: a bound parameter would be sent as a 32-bit integer, which 2**31 is not.
_MODULUS = literal_column(str(KEY_MODULUS), BigInteger)
PIVOT_OPTIONS = 64  # single choices with more options are counted by a grouped query
# Integer and scale questions with at most this many possible values (Likert scales, 0..10
# ratings) get a count per value in the pass, and their median from those counts.
COUNTED_VALUES = 32

Reader = Callable[[Sequence[Any]], Tally]


@dataclass(frozen=True)
class Dialect:
    pack: bool  # each question's figures in one array column
    numbers_in_pass: bool  # count/avg/stddev/min/max/median of numbers in the pass
    max_columns: int  # aggregates per statement
    before_ordered: str | None = None  # run before a statement of medians


# A median (percentile_cont) cannot be computed in parallel workers, and PostgreSQL prices each
# row they would pass up at parallel_tuple_cost (0.1): it then scans the whole table in one
# process. Priced at 0.01, workers scan, join and sort, and the leader merges and computes the
# medians: a decimal of the 300-question form asked alone, 100,000 responses, by gender and
# region, 187 -> 127 ms (median of 7, alternating, quiet machine). For this transaction only.
POSTGRESQL = Dialect(
    pack=True,
    numbers_in_pass=True,
    max_columns=1500,
    before_ordered="SET LOCAL parallel_tuple_cost = 0.01",
)
SQLITE = Dialect(pack=False, numbers_in_pass=False, max_columns=1800)


def dialect_of(name: str) -> Dialect:
    return POSTGRESQL if name == "postgresql" else SQLITE


@dataclass
class Measure:
    """A question's aggregates in the pivot, and how to read them back into a Tally."""

    question: CompiledQuestion
    expressions: list[str]  # SQL aggregates over the answer table's columns
    read: Reader
    # Holds an ordered-set aggregate (a median): such a statement cannot run in parallel
    # workers, so these go into statements of their own (see pivots).
    ordered: bool = False


# --- measures ---------------------------------------------------------------------------------


# Published aggregates count a cell and sum its record keys in one aggregate: each row adds
# (record_key mod KEY_VALUES) * 2**COUNT_BITS + 1 (a 32-bit integer), so the sum, modulo 2**31,
# holds the count in its low COUNT_BITS bits and the cell key above them. A second aggregate per
# count made the pass about 1.6 times as long (bench/published.py, 200,000 responses).
COUNT_BITS = 24  # a published cell holds fewer than 16,777,216 rows
_COUNT_MASK = (1 << COUNT_BITS) - 1


def unpack(value: Any) -> tuple[int, int]:
    """(count, cell key) from a packed sum."""
    packed = int(value)
    return packed & _COUNT_MASK, packed >> COUNT_BITS


def _counting(table: Table, keyed: bool) -> Callable[[str], str]:
    """The SQL counting the rows that meet a condition: plainly, or packed with their keys."""
    if not keyed:
        return lambda condition: f"count(*) FILTER (WHERE {condition})"
    row = f'(("{table.name}".record_key & {KEY_VALUES - 1}) * {1 << COUNT_BITS} + 1)'
    return lambda condition: f"coalesce(sum({row}) FILTER (WHERE {condition}), 0) % {1 << 31}"


def _read_counted(keyed: bool) -> Callable[[Any], tuple[int, int]]:
    return unpack if keyed else (lambda value: (int(value), 0))


def measure(
    question: CompiledQuestion, table: Table, dialect: Dialect, *, keyed: bool = False
) -> Measure | None:
    """The question's aggregates in the pivot; None when it is counted by a grouped query.

    `keyed` (published aggregates) counts every cell packed with its cell key (see COUNT_BITS),
    in the same pass: the keys of the cell-key method.

    Written as SQL text over our own column names: a pivot holds thousands of these, and as
    SQLAlchemy expressions building and compiling them took about a second per request."""
    columns = [f'"{table.name}".{name}' for name in question.columns]
    column = columns[0]
    count_where, read = _counting(table, keyed), _read_counted(keyed)
    answered = count_where(f"{column} IS NOT NULL") if keyed else f"count({column})"
    if question.type in ("single_choice", "boolean"):
        codes: tuple[int, ...]
        labels: Sequence[str]
        if question.type == "boolean":
            codes, labels = (1, 0), ("true", "false")
        elif len(question.option_values) > PIVOT_OPTIONS:
            return None
        else:
            codes, labels = tuple(range(len(question.option_values))), question.option_values
        expressions = [count_where(f"{column} = {code}") for code in codes]

        def read_choice(values: Sequence[Any]) -> Tally:
            counted = [read(value) for value in values]
            tally = Tally(counts={label: c for label, (c, _) in zip(labels, counted, strict=True)})
            tally.keys = {label: k for label, (_, k) in zip(labels, counted, strict=True)}
            tally.n = sum(c for c, _ in counted)
            tally.key = sum(k for _, k in counted)
            tally.complete = True
            return tally

        def read_plain_choice(values: Sequence[Any]) -> Tally:
            counts = dict(zip(labels, map(int, values), strict=True))
            return Tally(n=sum(counts.values()), counts=counts, complete=True)

        return Measure(question, expressions, read_choice if keyed else read_plain_choice)
    if question.type == "multiple_choice":
        options_of = question.option_values
        # A count of the rows whose mask has the option's bit: about 6% less work per row than
        # summing the shifted bit, which PostgreSQL adds up as numeric (bench/aggregates.py, the
        # 40-option question of the 300-question form, CPU time of the statement).
        options = [
            count_where(f"({columns[n // MASK_BITS]} & {1 << (n % MASK_BITS)}) <> 0")
            for n in range(len(options_of))
        ]

        def read_multiple(values: Sequence[Any]) -> Tally:
            n, key = read(values[0])
            counted = [read(value) for value in values[1:]]
            tally = Tally(n=n, key=key, complete=True)
            tally.counts = {o: c for o, (c, _) in zip(options_of, counted, strict=True)}
            tally.keys = {o: k for o, (_, k) in zip(options_of, counted, strict=True)}
            return tally

        def read_plain_multiple(values: Sequence[Any]) -> Tally:
            counts = dict(zip(options_of, map(int, values[1:]), strict=True))
            return Tally(n=int(values[0]), counts=counts, complete=True)

        return Measure(
            question, [answered, *options], read_multiple if keyed else read_plain_multiple
        )
    if question.type in NUMBER_TYPES:
        if not dialect.numbers_in_pass:
            return None
        moments = [
            answered,
            f"avg({column})",
            f"stddev_samp({column})",
            f"min({column})",
            f"max({column})",
        ]
        domain = counted_values(question)
        if domain is not None:
            per_value = [f"count(*) FILTER (WHERE {column} = {value})" for value in domain]
            return Measure(
                question,
                [*moments, *per_value],
                lambda values: _read_counted_numbers(values, read, domain),
            )
        median = f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {column})"
        return Measure(
            question,
            [*moments, median],
            lambda values: _read_numbers(values, read),
            ordered=True,
        )

    def read_answered(values: Sequence[Any]) -> Tally:
        n, key = read(values[0])
        return Tally(n=n, key=key)

    return Measure(question, [answered], read_answered)


def counted_values(question: CompiledQuestion) -> range | None:
    """The values an integer or scale question can take, when they are few enough
    (COUNTED_VALUES) to count each in the pass: its median then comes from those counts, and
    the pass needs no ordered-set aggregate, which would keep it out of parallel workers (see
    pivots). Answers are checked against min and max when stored, so every one is counted."""
    low, high = question.low, question.high
    if question.type not in ("integer", "scale") or low is None or high is None:
        return None
    if low != int(low) or high != int(high) or not 0 <= high - low < COUNTED_VALUES:
        return None
    return range(int(low), int(high) + 1)


def _read_counted_numbers(
    values: Sequence[Any], read: Callable[[Any], tuple[int, int]], domain: range
) -> Tally:
    tally = _read_numbers([*values[:5], None], read)
    if tally.numbers is not None:
        histogram = [(float(v), int(c)) for v, c in zip(domain, values[5:], strict=True) if c]
        tally.numbers["median"] = median(histogram, tally.n)
    return tally


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _read_numbers(values: Sequence[Any], read: Callable[[Any], tuple[int, int]]) -> Tally:
    n, key = read(values[0])
    if n == 0:
        return Tally(n=0)
    mean, stddev, low, high, median = map(_float, values[1:6])
    return Tally(
        n=n,
        numbers={"mean": mean, "median": median, "stddev": stddev, "min": low, "max": high},
        key=key,
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
    keyed_table: Table | None = None,
) -> list[tuple[Select[Any], list[Measure]]]:
    """Statements of at most `max_columns` columns, each grouped by the dimensions; the first
    also counts the rows (`with_total`), packed with their keys when `keyed_table` is given."""
    keyed = keyed_table is not None
    count_all = _counting(keyed_table, True)("true") if keyed_table is not None else ""
    keys = [dimension.expression for dimension in dims]
    statements: list[tuple[Select[Any], list[Measure]]] = []
    chunk: list[Measure] = []
    width = 0
    # Counts first, medians after, never in one statement: PostgreSQL runs a pass of counts in
    # parallel workers, which one median in it prevents (bench/aggregates.py, 200,000
    # responses by group, gender and region: 1.57 s -> 1.30 s).
    counted = [m for m in measures if not m.ordered]
    ordered = [m for m in measures if m.ordered]
    items = [*counted, None, *ordered, None] if ordered else [*counted, None]
    for position, item in enumerate(items):
        # Cut by aggregates, not by output columns, even when packed: a parallel plan passes
        # every partial aggregate from the workers as a column of its own, and PostgreSQL
        # refuses more than 1,664 (the 300-question bench form needs about 2,900).
        size = 0 if item is None else len(item.expressions)
        if item is None or (chunk and width + size > dialect.max_columns):
            # The total rides in the first statement, of counts or of medians: a statement of
            # its own only when no question needs one (one pass less for numbers asked alone:
            # an integer of the 300-question form, 100,000 responses, by gender and region).
            last = position == len(items) - 1
            if chunk or (last and with_total and not statements):
                columns: list[Any] = []
                for m in chunk:
                    if dialect.pack:
                        packed = ", ".join(f"CAST({e} AS FLOAT8)" for e in m.expressions)
                        columns.append(literal_column(f"ARRAY[{packed}]"))
                    else:
                        columns.extend(literal_column(e) for e in m.expressions)
                total: list[Any] = []
                if with_total and not statements:
                    total = [func.count() if not keyed else literal_column(count_all)]
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
