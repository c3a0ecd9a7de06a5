"""Survey aggregates: grouped in the database, one pass per answer table (queries.py); figures
and small-cell protection from the grouped tallies (figures.py). PostgreSQL and SQLite give the
same figures."""

from typing import Any

from sqlalchemy import func, select, text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Conflict, Invalid
from app.models.aggregates import (
    ANSWER_DIMENSION_TYPES,
    MAX_DIMENSIONS,
    PLAIN_DIMENSIONS,
)
from app.models.questionnaires import Status
from app.models.responses import ResponseFilters
from app.services.aggregates import dimensions, perturbation, queries
from app.services.aggregates.figures import (
    Figures,
    QuestionCells,
    Tally,
    cell,
    order,
    protect,
    to_csv,
    wilson,
)
from app.services.answers import CompiledQuestion, CompiledQuestionnaire
from app.services.responses import answer_tables, conditions

__all__ = [
    "Figures",
    "parse_by",
    "parse_questions",
    "protect",
    "survey_aggregates",
    "to_csv",
    "wilson",
]

# By question: (its repeat, its key), since repeats may share a key.
Tallies = dict[tuple[str | None, str], dict[tuple[Any, ...], Tally]]


def _named(question: CompiledQuestion) -> tuple[str | None, str]:
    return question.repeat, question.key


def parse_by(raw: str | None, questionnaire: CompiledQuestionnaire) -> list[str]:
    names = [part.strip() for part in (raw or "").split(",") if part.strip()]
    problems = []
    if len(names) > MAX_DIMENSIONS:
        problems.append(f"at most {MAX_DIMENSIONS} dimensions")
    if len(set(names)) != len(names):
        problems.append("a dimension is repeated")
    for name in names:
        if name.startswith("answer:"):
            same = questionnaire.by_key.get(name.removeprefix("answer:"), ())
            question = same[0] if same else None
            if len(same) > 1:
                repeats = ", ".join(str(q.repeat) for q in same)
                problems.append(f"'{name}' is ambiguous: asked in the repeats {repeats}")
            elif question is None or question.type not in ANSWER_DIMENSION_TYPES:
                problems.append(f"'{name}' names no choice, boolean or scale question")
            elif question.repeat is not None:
                problems.append(f"'{name}' is asked in a repeat: not a respondent's dimension")
        elif name not in PLAIN_DIMENSIONS:
            problems.append(f"unknown dimension '{name}'")
    if problems:
        raise Invalid(
            "; ".join(problems),
            errors=[{"loc": ["query", "by"], "msg": msg, "type": "by"} for msg in problems],
        )
    return names


def parse_questions(raw: str | None, questionnaire: CompiledQuestionnaire) -> list[str] | None:
    """The question keys asked for (None: all of them); unknown keys are 422. A key that
    repeats share asks for each of their questions."""
    if not raw:
        return None
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [key for key in keys if key not in questionnaire.by_key]
    if unknown:
        message = f"no such questions: {', '.join(unknown[:20])}"
        raise Invalid(
            message, errors=[{"loc": ["query", "questions"], "msg": message, "type": "unknown"}]
        )
    return keys


async def _rows(session: AsyncSession, statement: Any) -> list[Any]:
    connection = await session.connection()
    return list((await connection.execute(statement)).all())


async def _tally_page(
    session: AsyncSession,
    questionnaire: CompiledQuestionnaire,
    page: int,
    questions: list[CompiledQuestion],
    filters: ResponseFilters,
    by: list[str],
    dialect: queries.Dialect,
    tallies: Tallies,
    keyed: bool,
) -> Tally | None:
    """Tally the page's asked questions into `tallies`; the responses matching the filters
    (their number, and with `keyed` the sum of their record keys) when that comes out of the
    same pass (page 0, no multiple-choice dimension)."""
    tables = answer_tables(questionnaire)
    table = tables[page]
    where = conditions(questionnaire, filters, table)
    dims, source = dimensions.dimensions(by, questionnaire, table, tables)
    width = len(dims)
    measures, grouped = [], []
    for question in questions:
        measured = queries.measure(question, table, dialect, keyed=keyed)
        if measured is None:
            grouped.append(question)
        else:
            measures.append(measured)
    counts_rows = page == 0 and not any(
        questionnaire.by_key[name.removeprefix("answer:")][0].type == "multiple_choice"
        for name in by
        if name.startswith("answer:")
    )
    total = None
    statements = queries.pivots(
        measures,
        dims,
        source,
        where,
        dialect,
        with_total=counts_rows,
        keyed_table=table if keyed else None,
    )
    for index, (statement, chunk) in enumerate(statements):
        skip = width + (1 if counts_rows and index == 0 else 0)
        into = [tallies[_named(m.question)] for m in chunk]
        if dialect.before_ordered and chunk and chunk[0].ordered:
            await (await session.connection()).execute(text(dialect.before_ordered))
        for row in await _rows(session, statement):
            group = tuple(row[:width])
            if counts_rows and index == 0:
                n, key = queries.unpack(row[width]) if keyed else (int(row[width]), 0)
                total = total or Tally()
                total.n += n
                total.key += key
            read = queries.read_pivot(row, chunk, skip, dialect)
            for cells, tally in zip(into, read, strict=True):
                if tally.n:
                    cells[group] = tally
    for question in grouped:
        statement = queries.by_value(question, table, dims, source, where, keyed=keyed)
        decode = dimensions.answer_decoder(question)
        for row in await _rows(session, statement):
            tally = tallies[_named(question)].setdefault(tuple(row[:width]), Tally())
            value, count = row[width], int(row[width + 1])
            key = int(row[width + 2]) if keyed else 0
            tally.n += count
            tally.key += key
            if question.type == "single_choice":
                label = decode(value)
                assert label is not None  # noqa: S101 - nulls are filtered out
                tally.counts[label] = tally.counts.get(label, 0) + count
                tally.keys[label] = tally.keys.get(label, 0) + key
            else:
                tally.values[float(value)] = tally.values.get(float(value), 0) + count
    return total


async def population(
    session: AsyncSession, questionnaire: CompiledQuestionnaire, filters: ResponseFilters
) -> Tally:
    """The responses matching the filters: their number and the sum of their record keys."""
    if questionnaire.status == Status.draft:  # no answer tables yet, and no responses
        return Tally()
    table = answer_tables(questionnaire)[0]
    statement = select(func.count(), func.coalesce(func.sum(table.c.record_key), 0)).where(
        *conditions(questionnaire, filters, table)
    )
    count, key = (await _rows(session, statement))[0]
    return Tally(n=int(count), key=int(key))


def _restricts(filters: ResponseFilters) -> bool:
    return any(value is not None for value in filters.model_dump().values())


def _query_set_size(part: Tally, whole: Tally | None, threshold: int) -> int:
    """The perturbed number of responses the query covers, after the query-set-size check:
    the filtered population and the rest of the questionnaire's (`whole` minus it, when filters
    apply) both at least `threshold`, perturbed too (an exact test would itself tell whether a
    count is under the threshold), so that no small group is isolated by subtracting one query
    from another."""
    shown = perturbation.perturb(part.n, part.key)
    problems = []
    if shown < threshold:
        problems.append(f"the filters leave fewer than {threshold} responses")
    # A filter that leaves nobody out isolates nobody: it shows the very same cells as no
    # filter at all (the same records, the same keys, the same figures).
    if whole is not None and whole.n > part.n:
        rest = perturbation.perturb(whole.n - part.n, whole.key - part.key)
        if rest < threshold:
            problems.append(f"the filters leave out fewer than {threshold} responses")
    if problems:
        message = "; ".join(problems) + ": too small a group to publish"
        raise Invalid(message, errors=[{"loc": ["query"], "msg": message, "type": "too_small"}])
    return shown


def refuse_encrypted(questionnaire: CompiledQuestionnaire) -> None:
    """An encrypted questionnaire's answers are unknown to the server: no figures (409), rather
    than figures that look like nobody answered."""
    if questionnaire.encrypted:
        raise Conflict(
            "The questionnaire is encrypted (settings.public_key): its answers are not "
            "aggregated; export the responses (format=zip) and decrypt them"
        )


def _groups(
    by: list[str], questionnaire: CompiledQuestionnaire, tallies: Tallies
) -> list[tuple[tuple[Any, ...], dict[str, str | None]]]:
    """Every group any question has, as (the database's values, the decoded group), in the
    order cells are shown (figures.order): decoded and sorted once, not once per question."""
    tables = answer_tables(questionnaire)
    decoders = [d.decode for d in dimensions.dimensions(by, questionnaire, tables[0], tables)[0]]
    seen: set[tuple[Any, ...]] = set()
    for cells in tallies.values():
        seen.update(cells)
    decoded = [
        (values, dict(zip(by, (d(v) for d, v in zip(decoders, values, strict=True)), strict=True)))
        for values in seen
    ]
    decoded.sort(key=lambda item: order({"group": item[1]}))
    return decoded


async def survey_aggregates(
    session: AsyncSession,
    questionnaire: CompiledQuestionnaire,
    filters: ResponseFilters,
    *,
    by: list[str],
    min_cell: int,
    keys: list[str] | None = None,
    protected: bool = False,
) -> Figures:
    """The figures of the chosen questions per cell. `protected` (published aggregates): every
    count perturbed by its cell key, the query-set size checked, numeric statistics only for
    cells of at least 2 * min_cell and with noise, no min or max; suppression as for staff,
    after the perturbation."""
    refuse_encrypted(questionnaire)
    # Published: the whole population first (one count, when filters apply), for the
    # query-set-size check once the pass has counted the filtered one.
    whole = None
    if protected and _restricts(filters):
        whole = await population(session, questionnaire, ResponseFilters())
    dialect = queries.dialect_of((await session.connection()).dialect.name)
    chosen = [q for q in questionnaire.questions if keys is None or q.key in keys]
    tallies: Tallies = {_named(question): {} for question in chosen}
    responses = None
    # A draft has no answer tables yet (they are made at publish time), and no responses.
    pages = 0 if questionnaire.status == Status.draft else len(questionnaire.pages)
    if pages == 0:
        responses = Tally()
    for page in range(pages):
        questions = [question for question in chosen if question.page == page]
        if questions or page == 0:
            total = await _tally_page(
                session, questionnaire, page, questions, filters, by, dialect, tallies, protected
            )
            if page == 0:
                responses = total
    if responses is None:
        responses = await population(session, questionnaire, filters)
    n_responses = responses.n
    if protected:
        n_responses = _query_set_size(responses, whole, min_cell)
    groups = _groups(by, questionnaire, tallies)
    figures = []
    for question in chosen:
        cells = []
        tallied = tallies[_named(question)]
        for group_values, group in groups:
            tally = tallied.get(group_values)
            if tally is None:
                continue
            if protected:
                tally = perturbation.perturb_tally(tally, numbers_from=2 * min_cell)
                if tally.n == 0:
                    continue  # as a cell nobody is in: a published zero is left out
            cells.append(cell(group, tally, question))
        figures.append(
            QuestionCells(
                key=question.key,
                type=question.type,
                cells=protect(cells, min_cell),
                repeat=question.repeat,
            )
        )
    return Figures(
        questionnaire_id=questionnaire.id,
        n_responses=n_responses,
        by=by,
        min_cell=min_cell,
        questions=figures,
    )
