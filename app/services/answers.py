"""A questionnaire version compiled once: answer checks, and the typed columns that hold them.

Compiling parses the stored definition a single time; submissions then run plain Python checks
(no per-request model building), which keeps the submission hot path fast.

Where answers are stored (the layout) follows from the definition alone: each question gets
one column in the best plain type (a multiple choice one BIGINT bit mask per 63 options), and
the columns are cut into pages, one table each, small enough for any row to fit a database page
(PostgreSQL: 1,600 columns and about 8 KB of fixed-width data at most). Every page row carries
the respondent's dimensions, so an aggregate reads one table in one pass. The layout of a
published version never changes: its tables are made from it at publish time.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from app.services.conditions import evaluate

# Integers are stored in DOUBLE columns; beyond 2**53 they would silently lose digits.
MAX_SAFE_INTEGER = 2**53
MASK_BITS = 63  # options per BIGINT bit mask (the sign bit stays clear)
PAGE_COLUMNS = 1000
PAGE_BYTES = 6000  # fixed-width bytes of answer columns per page row

# Column kinds and their fixed width in a PostgreSQL row (text: a TOAST pointer at most).
KIND_BYTES = {"smallint": 2, "bigint": 8, "float": 8, "date": 4, "text": 18}
NUMBER_TYPES = ("integer", "decimal", "scale")
COLUMN_KIND = {
    "single_choice": "smallint",
    "boolean": "smallint",
    "multiple_choice": "bigint",
    "integer": "float",
    "decimal": "float",
    "scale": "float",
    "text": "text",
    "date": "date",
}

Encoded = tuple[Any, ...]
Check = Callable[[Any], tuple[str | None, Encoded]]
Decode = Callable[[Sequence[Any]], Any]


@dataclass(frozen=True)
class CompiledQuestion:
    key: str
    type: str
    required: bool
    relevant: Mapping[str, Any] | None
    page: int  # which answer table
    columns: tuple[str, ...]  # its columns there
    check: Check  # (problem, column values)
    decode: Decode  # column values -> the answer as the API shows it
    option_values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class AnswerPage:
    table: str
    columns: tuple[tuple[str, str], ...]  # (name, kind)


@dataclass(frozen=True)
class CompiledQuestionnaire:
    id: Any
    version: int
    status: str
    access: str
    groups: Mapping[str, tuple[int, str]]  # key -> (index, category)
    group_keys: tuple[str, ...]
    questions: tuple[CompiledQuestion, ...]
    pages: tuple[AnswerPage, ...] = ()
    by_key: Mapping[str, CompiledQuestion] = field(default_factory=dict)

    def check_answers(
        self, answers: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], list[list[Any]]]:
        """(errors, the column values of each answer page) for a submission's answers."""
        errors: list[dict[str, Any]] = []
        given = {key: value for key, value in answers.items() if value is not None}
        for key in given:
            if key not in self.by_key:
                errors.append(_error(key, "no such question in this questionnaire", "unknown"))
        pages: list[list[Any]] = [[] for _ in self.pages]
        for question in self.questions:
            shown = question.relevant is None or evaluate(question.relevant, given)
            value = given.get(question.key)
            values = pages[question.page]
            if value is None:
                if shown and question.required:
                    errors.append(_error(question.key, "an answer is required", "missing"))
                values.extend(None for _ in question.columns)
                continue
            if not shown:
                errors.append(
                    _error(question.key, "this question is not relevant here", "not_relevant")
                )
                continue
            message, encoded = question.check(value)
            if message is not None:
                errors.append(_error(question.key, message, "invalid_answer"))
            else:
                values.extend(encoded)
        return errors, pages

    def answers_from(self, pages: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """The answers as the API shows them, from the column values of each answer page."""
        answers: dict[str, Any] = {}
        positions = [0] * len(self.pages)
        for question in self.questions:
            start = positions[question.page]
            end = start + len(question.columns)
            positions[question.page] = end
            values = pages[question.page][start:end]
            if values[0] is not None:
                answers[question.key] = question.decode(values)
        return answers


def _error(key: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", "answers", key], "msg": message, "type": kind}


def table_prefix(questionnaire_id: UUID) -> str:
    """Answer tables of a questionnaire version are named <prefix><page>."""
    return f"answers_{questionnaire_id.hex}_p"


def column_kinds(question: Mapping[str, Any]) -> list[str]:
    kind = COLUMN_KIND[question["type"]]
    if question["type"] == "multiple_choice":
        return [kind] * max(1, math.ceil(len(question["options"]) / MASK_BITS))
    return [kind]


def compile_questionnaire(
    *, id: Any, version: int, status: str, access: str, definition: Mapping[str, Any]
) -> CompiledQuestionnaire:
    groups = {
        group["key"]: (index, group["category"])
        for index, group in enumerate(definition["respondent_groups"])
    }
    compiled = []
    pages: list[list[tuple[str, str]]] = [[]]
    page_bytes = 0
    for number, question in enumerate(definition["questions"], start=1):
        kinds = column_kinds(question)
        width = sum(KIND_BYTES[kind] for kind in kinds)
        if len(pages[-1]) + len(kinds) > PAGE_COLUMNS or page_bytes + width > PAGE_BYTES:
            pages.append([])
            page_bytes = 0
        names = [f"a{number}"] if len(kinds) == 1 else [f"a{number}_{n}" for n in range(len(kinds))]
        pages[-1].extend(zip(names, kinds, strict=True))
        page_bytes += width
        compiled.append(
            CompiledQuestion(
                key=question["key"],
                type=question["type"],
                required=question.get("required", False),
                relevant=question.get("relevant"),
                page=len(pages) - 1,
                columns=tuple(names),
                check=_checker(question),
                decode=_decoder(question),
                option_values=tuple(o["value"] for o in question.get("options", ())),
                low=question.get("min"),
                high=question.get("max"),
            )
        )
    prefix = table_prefix(id) if isinstance(id, UUID) else "answers_unsaved_p"
    return CompiledQuestionnaire(
        id=id,
        version=version,
        status=status,
        access=access,
        groups=groups,
        group_keys=tuple(groups),
        questions=tuple(compiled),
        pages=tuple(AnswerPage(f"{prefix}{n}", tuple(columns)) for n, columns in enumerate(pages)),
        by_key={question.key: question for question in compiled},
    )


def _decoder(question: Mapping[str, Any]) -> Decode:
    qtype = question["type"]
    if qtype == "single_choice":
        values = tuple(o["value"] for o in question["options"])
        return lambda columns: values[columns[0]]
    if qtype == "multiple_choice":
        values = tuple(o["value"] for o in question["options"])

        def chosen(columns: Sequence[Any]) -> list[str]:
            return [
                value
                for n, value in enumerate(values)
                if (columns[n // MASK_BITS] or 0) >> (n % MASK_BITS) & 1
            ]

        return chosen
    if qtype == "boolean":
        return lambda columns: bool(columns[0])
    if qtype in ("integer", "scale"):
        return lambda columns: int(columns[0])
    if qtype == "decimal":
        return lambda columns: float(columns[0])
    if qtype == "date":
        return lambda columns: _iso_date(columns[0])
    return lambda columns: columns[0]


def _iso_date(value: Any) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(value: float, low: float | None, high: float | None) -> str | None:
    if low is not None and value < low:
        return f"must be at least {low}"
    if high is not None and value > high:
        return f"must be at most {high}"
    return None


def _checker(question: Mapping[str, Any]) -> Check:
    qtype = question["type"]
    low, high = question.get("min"), question.get("max")

    if qtype == "single_choice":
        index = {o["value"]: n for n, o in enumerate(question["options"])}

        def single(value: Any) -> tuple[str | None, Encoded]:
            if not isinstance(value, str) or value not in index:
                return "not one of the options", ()
            return None, (index[value],)

        return single

    if qtype == "multiple_choice":
        index = {o["value"]: n for n, o in enumerate(question["options"])}
        least, most = question.get("min_selected") or 1, question.get("max_selected")
        chunks = len(column_kinds(question))

        def multiple(value: Any) -> tuple[str | None, Encoded]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return "expected a list of option values", ()
            if len(set(value)) != len(value):
                return "an option is chosen twice", ()
            unknown = [v for v in value if v not in index]
            if unknown:
                return f"not options: {', '.join(unknown[:10])}", ()
            if len(value) < least:
                return f"choose at least {least}", ()
            if most is not None and len(value) > most:
                return f"choose at most {most}", ()
            masks = [0] * chunks
            for v in value:
                position = index[v]
                masks[position // MASK_BITS] |= 1 << (position % MASK_BITS)
            return None, tuple(masks)

        return multiple

    if qtype == "text":
        limit = question.get("max_length", 2000)

        def text(value: Any) -> tuple[str | None, Encoded]:
            if not isinstance(value, str) or not value.strip():
                return "expected non-empty text", ()
            if len(value) > limit:
                return f"at most {limit} characters", ()
            if "\x00" in value:
                return "text may not contain NUL characters", ()
            return None, (value,)

        return text

    if qtype in ("integer", "scale"):

        def integer(value: Any) -> tuple[str | None, Encoded]:
            # 1.0 is the integer 1 ("same content compares values", contract: Responses).
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not _is_int(value) or abs(value) > MAX_SAFE_INTEGER:
                return "expected an integer", ()
            return _in_range(value, low, high), (float(value),)

        return integer

    if qtype == "decimal":

        def decimal(value: Any) -> tuple[str | None, Encoded]:
            ok = isinstance(value, float) or _is_int(value)
            # A JSON integer may have any number of digits; past 2**53 a double cannot hold it.
            if not ok or (_is_int(value) and abs(value) > MAX_SAFE_INTEGER):
                return "expected a finite number of at most 2**53", ()
            if not math.isfinite(value):
                return "expected a finite number of at most 2**53", ()
            return _in_range(value, low, high), (float(value),)

        return decimal

    if qtype == "boolean":

        def boolean(value: Any) -> tuple[str | None, Encoded]:
            if not isinstance(value, bool):
                return "expected true or false", ()
            return None, (int(value),)

        return boolean

    if qtype == "date":

        def iso_date(value: Any) -> tuple[str | None, Encoded]:
            if not isinstance(value, str) or len(value) != 10 or value[4] != "-":
                return "expected a date as YYYY-MM-DD", ()
            try:
                return None, (date.fromisoformat(value),)
            except ValueError:
                return "expected a date as YYYY-MM-DD", ()

        return iso_date

    raise ValueError(f"unknown question type {qtype}")
