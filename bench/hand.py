"""The yardstick: a typed copy of the generated responses and hand-written one-pass SQL over it.

The copy lives in the benchmark's own database, schema `hand`, one table per form and layout,
loaded with COPY (asyncpg copy_records_to_table) from the very batch files that were posted to
the API. Columns, in the best plain types:
  "group", gender, age_band  smallint (index into the form's groups / the contract's values)
  territory_code text, submitted_at timestamptz
  single choice  smallint (option index)      boolean  boolean
  multiple choice bigint bit mask (layout "mask") or smallint[] of option indexes ("array")
  scale smallint, integer integer, decimal double precision, text text
No indexes at all (the aggregates read every row anyway; no per-breakdown index).

The SQL is one pass per statement: `count(*) FILTER (WHERE ...)` per option of every choice
question, count/avg/stddev_samp/min/max/percentile_cont(0.5) per number, count per text, grouped by
the dimensions; each question's figures are packed in one array column (PostgreSQL allows 1664
result columns; the wide form needs ~2,800 aggregates). Region and district come from the demo
`territory` table (region_code, district_code). Two plans for a rolled-up territory dimension:
  "join":    every row joined to its territory (a hash join on a 68-row table), one statement;
  "prefold": choice counts grouped by territory first, those groups joined and summed (exact for
             counts), plus a second statement for numbers with the per-row join (medians do not
             sum); only when the counts fit in 1600 columns.
  "split":   "join" statements for the counts (of at most 1600 aggregates each) and one for the
             numbers (two passes or more, but counts may then run in parallel workers, which an
             ordered-set aggregate prevents, and a partial aggregate has a column per aggregate).
The benchmark times every plan (and JIT on and off) and keeps the fastest.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from forms import AGE_BANDS, GENDERS, Form, read_batch

ROLLED_UP = {"region": "region_code", "district": "district_code"}
CHOICE = ("single_choice", "boolean", "multiple_choice")
NUMBER = ("integer", "decimal", "scale")
SQL_TYPES = {
    "single_choice": "smallint",
    "boolean": "boolean",
    "scale": "smallint",
    "integer": "integer",
    "decimal": "double precision",
    "text": "text",
    "date": "date",
}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_name(form: Form, layout: str) -> str:
    return f"{form.name}_{layout}"


# --- the typed copy -----------------------------------------------------------------------------


def columns(form: Form, layout: str) -> list[tuple[str, str]]:
    out = [
        ("group", "smallint NOT NULL"),
        ("gender", "smallint"),
        ("age_band", "smallint"),
        ("territory_code", "text"),
        ("submitted_at", "timestamptz NOT NULL"),
    ]
    for question in form.questions:
        kind = question["type"]
        if kind == "multiple_choice":
            out.append((question["key"], "bigint" if layout == "mask" else "smallint[]"))
        else:
            out.append((question["key"], SQL_TYPES[kind]))
    return out


async def create(connection: asyncpg.Connection, form: Form, layout: str) -> str:
    if layout == "mask" and any(
        len(q["options"]) > 63 for q in form.questions if q["type"] == "multiple_choice"
    ):
        raise ValueError("a bigint mask holds 63 options at most")
    table = table_name(form, layout)
    body = ", ".join(f"{quote(name)} {kind}" for name, kind in columns(form, layout))
    await connection.execute("CREATE SCHEMA IF NOT EXISTS hand")
    await connection.execute(f"CREATE TABLE IF NOT EXISTS hand.{table} ({body})")
    return table


def recorder(form: Form, layout: str) -> Any:
    """A function from a posted item to the typed row."""
    groups = {key: index for index, key in enumerate(form.group_keys)}
    genders = {value: index for index, value in enumerate(GENDERS)}
    bands = {value: index for index, value in enumerate(AGE_BANDS)}
    converters = []
    for question in form.questions:
        kind, key = question["type"], question["key"]
        if kind in ("single_choice", "multiple_choice"):
            index = {option["value"]: i for i, option in enumerate(question["options"])}
            if kind == "single_choice":
                converters.append((key, index.__getitem__))
            elif layout == "mask":
                converters.append((key, lambda v, index=index: sum(1 << index[o] for o in v)))
            else:
                converters.append((key, lambda v, index=index: sorted(index[o] for o in v)))
        elif kind == "decimal":
            converters.append((key, float))
        else:
            converters.append((key, None))

    def record(item: dict[str, Any]) -> tuple[Any, ...]:
        respondent, answers = item["respondent"], item["answers"]
        gender, band = respondent.get("gender"), respondent.get("age_band")
        row: list[Any] = [
            groups[respondent["group"]],
            None if gender is None else genders[gender],
            None if band is None else bands[band],
            respondent.get("territory_code"),
            datetime.fromisoformat(item["submitted_at"]),
        ]
        for key, convert in converters:
            value = answers.get(key)
            row.append(value if value is None or convert is None else convert(value))
        return tuple(row)

    return record


async def load(
    connection: asyncpg.Connection, form: Form, layout: str, directory: Path, indexes: range
) -> tuple[int, float]:
    """COPY the batches into hand.<form>_<layout>; returns (rows, seconds)."""
    table = await create(connection, form, layout)
    record = recorder(form, layout)
    names = [name for name, _ in columns(form, layout)]
    started, rows = time.perf_counter(), 0
    for index in indexes:
        records = [record(item) for item in read_batch(directory, index)]
        await connection.copy_records_to_table(
            table, schema_name="hand", columns=names, records=records
        )
        rows += len(records)
    return rows, time.perf_counter() - started


# --- the hand-written aggregates ----------------------------------------------------------------


@dataclass
class Query:
    """Statements giving, per group, each asked question's figures as one array."""

    statements: list[str]
    by: list[str]
    keys: list[str]
    plan: str
    layout: str


def _dimension(name: str, form: Form) -> str:
    if name in ROLLED_UP:
        return f"t.{ROLLED_UP[name]}"
    if name == "territory":
        return "r.territory_code"
    if name in ("group", "gender", "age_band"):
        return f"r.{quote(name)}"
    if name.startswith("answer:"):
        return f"r.{quote(name.removeprefix('answer:'))}"
    raise ValueError(f"dimension {name} is not written by hand here")


def _counts(question: dict[str, Any], layout: str) -> list[str]:
    """The count aggregates of a choice or text question (n first for multiple choice)."""
    column, kind = f"r.{quote(question['key'])}", question["type"]
    if kind == "single_choice":
        return [f"count(*) FILTER (WHERE {column} = {i})" for i in range(len(question["options"]))]
    if kind == "boolean":
        return [f"count(*) FILTER (WHERE {column})", f"count(*) FILTER (WHERE NOT {column})"]
    if kind == "multiple_choice":
        if layout == "mask":
            tests = [f"{column} & {1 << i} <> 0" for i in range(len(question["options"]))]
        else:
            tests = [f"{column} @> '{{{i}}}'::smallint[]" for i in range(len(question["options"]))]
        return [f"count({column})", *(f"count(*) FILTER (WHERE {test})" for test in tests)]
    return [f"count({column})"]  # text, date


def _numbers(question: dict[str, Any]) -> list[str]:
    column = f"r.{quote(question['key'])}"
    return [
        f"count({column})::float8",
        f"avg({column})::float8",
        f"stddev_samp({column})::float8",
        f"min({column})::float8",
        f"max({column})::float8",
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {column})",
    ]


def _aggregates(question: dict[str, Any], layout: str) -> list[str]:
    return _numbers(question) if question["type"] in NUMBER else _counts(question, layout)


def _joined(
    form: Form, table: str, by: list[str], questions: list[dict[str, Any]], layout: str
) -> str:
    dims = [_dimension(name, form) for name in by]
    packed = [f"ARRAY[{', '.join(_aggregates(q, layout))}] AS {quote(q['key'])}" for q in questions]
    join = (
        " LEFT JOIN public.territory t ON t.code = r.territory_code"
        if any(name in ROLLED_UP for name in by)
        else ""
    )
    group = f" GROUP BY {', '.join(dims)}" if dims else ""
    labelled = [f"{d} AS _d{i}" for i, d in enumerate(dims)]
    return f"SELECT {', '.join([*labelled, *packed])} FROM hand.{table} r{join}{group}"


def _prefolded(
    form: Form, table: str, by: list[str], questions: list[dict[str, Any]], layout: str
) -> str:
    """Counts grouped by territory and the other dimensions, then joined and summed."""
    inner_dims = ["r.territory_code"] + [_dimension(n, form) for n in by if n not in ROLLED_UP]
    inner_cols = [f"{d} AS d{i}" for i, d in enumerate(inner_dims)]
    aggregates = []
    outer = []
    for q in questions:
        parts = _counts(q, layout)
        names = [f"a{len(aggregates) + i}" for i in range(len(parts))]
        aggregates += [f"{part} AS {name}" for part, name in zip(parts, names, strict=True)]
        outer.append(
            f"ARRAY[{', '.join(f'sum(g.{name})::int8' for name in names)}] AS {quote(q['key'])}"
        )
    inner = (
        f"SELECT {', '.join(inner_cols + aggregates)} FROM hand.{table} r "
        f"GROUP BY {', '.join(inner_dims)}"
    )
    position = iter(range(1, len(inner_dims)))
    outer_dims = [f"t.{ROLLED_UP[n]}" if n in ROLLED_UP else f"g.d{next(position)}" for n in by]
    labelled = [f"{d} AS _d{i}" for i, d in enumerate(outer_dims)]
    return (
        f"SELECT {', '.join(labelled + outer)} FROM ({inner}) g "
        f"LEFT JOIN public.territory t ON t.code = g.d0 GROUP BY {', '.join(outer_dims)}"
    )


def queries(
    form: Form, by: list[str], keys: list[str] | None, layouts: Sequence[str]
) -> list[Query]:
    """Every plan worth timing for these dimensions and questions."""
    asked = [q for q in form.questions if keys is None or q["key"] in keys]
    out = []
    for layout in layouts:
        table = table_name(form, layout)
        names = [q["key"] for q in asked]
        out.append(Query([_joined(form, table, by, asked, layout)], by, names, "join", layout))
        counted = [q for q in asked if q["type"] not in NUMBER]
        numbers = [q for q in asked if q["type"] in NUMBER]
        if counted and numbers:
            # Counts can be aggregated in parallel workers (ordered-set aggregates cannot); a
            # partial aggregate returns each aggregate as a column, 1664 at most.
            chunks: list[list[dict[str, Any]]] = [[]]
            for question in counted:
                if (
                    sum(len(_counts(q, layout)) for q in chunks[-1])
                    + len(_counts(question, layout))
                    > 1600
                ):
                    chunks.append([])
                chunks[-1].append(question)
            split = [_joined(form, table, by, chunk, layout) for chunk in chunks]
            split.append(_joined(form, table, by, numbers, layout))
            out.append(Query(split, by, names, "split", layout))
        width = sum(len(_counts(q, layout)) for q in counted)
        if any(name in ROLLED_UP for name in by) and counted and width <= 1600:
            statements = [_prefolded(form, table, by, counted, layout)]
            if numbers:
                statements.append(_joined(form, table, by, numbers, layout))
            out.append(Query(statements, by, names, "prefold", layout))
    return out


async def run(connection: asyncpg.Connection, query: Query) -> list[list[asyncpg.Record]]:
    return [await connection.fetch(statement) for statement in query.statements]


# --- the figures, shaped as the API gives them ----------------------------------------------------


def figures(
    form: Form, query: Query, results: list[list[asyncpg.Record]]
) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """{question key: {group (decoded, in `by` order): {"n", "counts" | numbers}}}, n > 0 only."""
    by_key = {q["key"]: q for q in form.questions}
    out: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {key: {} for key in query.keys}
    decoders = [_decoder(name, form) for name in query.by]
    width = len(query.by)
    for rows in results:
        for row in rows:
            group = tuple(decode(row[i]) for i, decode in enumerate(decoders))
            for position, key in enumerate(list(row.keys())[width:], start=width):
                question, values = by_key[key], row[position]
                cell = _cell(question, values)
                if cell["n"]:
                    out[key][group] = cell
    return out


def _decoder(name: str, form: Form) -> Any:
    if name == "group":
        return lambda v: None if v is None else form.group_keys[v]
    if name == "gender":
        return lambda v: None if v is None else GENDERS[v]
    if name == "age_band":
        return lambda v: None if v is None else AGE_BANDS[v]
    if name.startswith("answer:"):
        question = next(q for q in form.questions if q["key"] == name.removeprefix("answer:"))
        if question["type"] == "boolean":
            return lambda v: None if v is None else ("true" if v else "false")
        if question["type"] == "scale":
            return lambda v: None if v is None else str(v)
        values = [option["value"] for option in question["options"]]
        return lambda v: None if v is None else values[v]
    return lambda v: v


def _cell(question: dict[str, Any], values: Sequence[Any]) -> dict[str, Any]:
    kind = question["type"]
    if kind in NUMBER:
        n, mean, stddev, low, high, median = values
        return {
            "n": int(n),
            "mean": mean,
            "median": median,
            "stddev": stddev,
            "min": low,
            "max": high,
        }
    if kind == "single_choice":
        options = [o["value"] for o in question["options"]]
        return {"n": sum(values), "counts": dict(zip(options, values, strict=True))}
    if kind == "boolean":
        return {"n": sum(values), "counts": {"true": values[0], "false": values[1]}}
    if kind == "multiple_choice":
        options = [o["value"] for o in question["options"]]
        return {"n": values[0], "counts": dict(zip(options, values[1:], strict=True))}
    return {"n": values[0]}


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)), abs(float(b)))


def compare(
    api: dict[str, Any], hand: dict[str, dict[tuple[Any, ...], dict[str, Any]]], by: list[str]
) -> tuple[int, list[str]]:
    """Checks the API's cells against the hand-written figures: (cells compared, mismatches)."""
    problems: list[str] = []
    compared = 0
    seen = {q["key"] for q in api["questions"]}
    for key in hand:
        if key not in seen:
            problems.append(f"{key}: missing from the API's answer")
    for question in api["questions"]:
        key = question["key"]
        if key not in hand:
            problems.append(f"{key}: in the API's answer, not asked of the hand SQL")
            continue
        expected = hand[key]
        groups = set()
        for cell in question["cells"]:
            group = tuple(cell["group"].get(name) for name in by)
            groups.add(group)
            mine = expected.get(group)
            if mine is None:
                problems.append(f"{key} {group}: a cell the hand SQL does not have")
                continue
            if cell["suppressed"]:
                continue
            compared += 1
            if cell["n"] != mine["n"]:
                problems.append(f"{key} {group}: n {cell['n']} != {mine['n']}")
            if "counts" in mine and cell.get("counts") != mine["counts"]:
                problems.append(f"{key} {group}: counts {cell.get('counts')} != {mine['counts']}")
            for figure in ("mean", "median", "stddev", "min", "max"):
                if figure in mine and not _close(cell.get(figure), mine[figure]):
                    problems.append(f"{key} {group}: {figure} {cell.get(figure)} != {mine[figure]}")
        for group in expected.keys() - groups:
            problems.append(f"{key} {group}: a cell (n={expected[group]['n']}) the API left out")
    return compared, problems
