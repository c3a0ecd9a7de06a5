"""A questionnaire version compiled once: answer checks and the slot each answer is stored in.

Compiling parses the stored definition a single time; submissions then run plain Python checks
(no per-request model building), which keeps the submission hot path fast.
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from app.models.responses import CHOICE_SLOTS, NUMBER_SLOTS
from app.services.conditions import evaluate

# Integers are stored in DOUBLE slots; beyond 2**53 they would silently lose digits.
MAX_SAFE_INTEGER = 2**53

Check = Callable[[Any], tuple[str | None, int | float | None]]


@dataclass(frozen=True)
class CompiledQuestion:
    key: str
    type: str
    required: bool
    relevant: Mapping[str, Any] | None
    slot: str
    check: Check
    option_values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class CompiledQuestionnaire:
    id: Any
    version: int
    status: str
    access: str
    groups: Mapping[str, tuple[int, str]]  # key -> (index, category)
    group_keys: tuple[str, ...]
    questions: tuple[CompiledQuestion, ...]
    by_key: Mapping[str, CompiledQuestion] = field(default_factory=dict)
    slots: tuple[str, ...] = ()  # the slot columns of the questions, in order

    def check_answers(
        self, answers: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, int | float]]:
        """(errors, answers without nulls, slot values) for a submission's answers."""
        errors: list[dict[str, Any]] = []
        given = {key: value for key, value in answers.items() if value is not None}
        for key in given:
            if key not in self.by_key:
                errors.append(_error(key, "no such question in this questionnaire", "unknown"))
        slots: dict[str, int | float] = {}
        for question in self.questions:
            shown = question.relevant is None or evaluate(question.relevant, given)
            value = given.get(question.key)
            if value is None:
                if shown and question.required:
                    errors.append(_error(question.key, "an answer is required", "missing"))
                continue
            if not shown:
                errors.append(
                    _error(question.key, "this question is not relevant here", "not_relevant")
                )
                continue
            message, encoded = question.check(value)
            if message is not None:
                errors.append(_error(question.key, message, "invalid_answer"))
            elif encoded is not None:
                slots[question.slot] = encoded
        return errors, given, slots


def _error(key: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", "answers", key], "msg": message, "type": kind}


def compile_questionnaire(
    *, id: Any, version: int, status: str, access: str, definition: Mapping[str, Any]
) -> CompiledQuestionnaire:
    groups = {
        group["key"]: (index, group["category"])
        for index, group in enumerate(definition["respondent_groups"])
    }
    choice_slot, number_slot = 0, 0
    compiled = []
    for question in definition["questions"]:
        if question["type"] in ("integer", "decimal", "scale"):
            number_slot += 1
            slot = f"x{number_slot}"
        else:
            choice_slot += 1
            slot = f"k{choice_slot}"
        compiled.append(
            CompiledQuestion(
                key=question["key"],
                type=question["type"],
                required=question.get("required", False),
                relevant=question.get("relevant"),
                slot=slot,
                check=_checker(question),
                option_values=tuple(o["value"] for o in question.get("options", ())),
                low=question.get("min"),
                high=question.get("max"),
            )
        )
    if choice_slot > CHOICE_SLOTS or number_slot > NUMBER_SLOTS:
        raise ValueError("too many questions for the answer slots")
    return CompiledQuestionnaire(
        id=id,
        version=version,
        status=status,
        access=access,
        groups=groups,
        group_keys=tuple(groups),
        questions=tuple(compiled),
        by_key={question.key: question for question in compiled},
        slots=tuple(question.slot for question in compiled),
    )


def slot_counts(questions: list[Mapping[str, Any]]) -> tuple[int, int]:
    """How many choice-like and numeric slots a list of questions needs."""
    numbers = sum(1 for q in questions if q["type"] in ("integer", "decimal", "scale"))
    return len(questions) - numbers, numbers


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

        def single(value: Any) -> tuple[str | None, int | None]:
            if not isinstance(value, str) or value not in index:
                return "not one of the options", None
            return None, index[value]

        return single

    if qtype == "multiple_choice":
        index = {o["value"]: n for n, o in enumerate(question["options"])}
        least, most = question.get("min_selected") or 1, question.get("max_selected")

        def multiple(value: Any) -> tuple[str | None, int | None]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return "expected a list of option values", None
            if len(set(value)) != len(value):
                return "an option is chosen twice", None
            unknown = [v for v in value if v not in index]
            if unknown:
                return f"not options: {', '.join(unknown)}", None
            if len(value) < least:
                return f"choose at least {least}", None
            if most is not None and len(value) > most:
                return f"choose at most {most}", None
            mask = 0
            for v in value:
                mask |= 1 << index[v]
            return None, mask

        return multiple

    if qtype == "text":
        limit = question.get("max_length", 2000)

        def text(value: Any) -> tuple[str | None, int | None]:
            if not isinstance(value, str) or not value.strip():
                return "expected non-empty text", None
            if len(value) > limit:
                return f"at most {limit} characters", None
            if "\x00" in value:
                return "text may not contain NUL characters", None
            return None, 1

        return text

    if qtype in ("integer", "scale"):

        def integer(value: Any) -> tuple[str | None, int | None]:
            if not _is_int(value) or abs(value) > MAX_SAFE_INTEGER:
                return "expected an integer", None
            return _in_range(value, low, high), value

        return integer

    if qtype == "decimal":

        def decimal(value: Any) -> tuple[str | None, float | None]:
            ok = isinstance(value, float) or _is_int(value)
            # A JSON integer may have any number of digits; past 2**53 a double cannot hold it.
            if not ok or (_is_int(value) and abs(value) > MAX_SAFE_INTEGER):
                return "expected a finite number of at most 2**53", None
            if not math.isfinite(value):
                return "expected a finite number of at most 2**53", None
            return _in_range(value, low, high), float(value)

        return decimal

    if qtype == "boolean":

        def boolean(value: Any) -> tuple[str | None, int | None]:
            if not isinstance(value, bool):
                return "expected true or false", None
            return None, int(value)

        return boolean

    if qtype == "date":

        def iso_date(value: Any) -> tuple[str | None, int | None]:
            if not isinstance(value, str) or len(value) != 10:
                return "expected a date as YYYY-MM-DD", None
            try:
                date.fromisoformat(value)
            except ValueError:
                return "expected a date as YYYY-MM-DD", None
            return None, 1

        return iso_date

    raise ValueError(f"unknown question type {qtype}")
