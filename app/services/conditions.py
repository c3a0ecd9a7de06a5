"""`relevant` conditions: a small interpreter over condition objects (never `eval`).

Conditions are plain dicts as stored in a definition:
`{"question", "op", "value"}`, `{"all": [...]}`, `{"any": [...]}`, `{"not": cond}`.
An unanswered question has no value: every comparison with it is false, except `ne` and
`not_in`, which hold (as in XLSForm, where an empty answer is not equal to 'x').
"""

from collections.abc import Iterator, Mapping
from typing import Any

from app.models.common import is_iso_date
from app.services.expressions import Env, compile_expression, from_condition
from app.services.expressions.evaluate import Resolved

Condition = Mapping[str, Any]

MAX_DEPTH = 10
ORDERED_TYPES = {"integer", "decimal", "scale", "date"}
# Answered with a string that a condition may compare with another string.
TEXT_TYPES = {"text", "time", "datetime", "barcode", "meta", "image", "audio", "video", "file"}


def evaluate(condition: Condition, answers: Mapping[str, Any]) -> bool:
    """Whether the condition holds for these answers (through the one expression evaluator)."""
    expression = compile_expression(from_condition(condition), None, lambda key: Resolved())
    return expression.holds(Env(lookup=answers.get))


# Comparisons, combinators and listed values in all the conditions of one definition. Every
# response is checked against every condition, so this bounds the work one submission (and a
# batch of 1000) can cause: an anonymous batch against a form with megabytes of conditions
# held the event loop for 4 s.
MAX_DEFINITION_COST = 1000


def cost(condition: Any) -> int:
    """The size of a condition: one per node, plus one per value of an `in`/`not_in` list."""
    total = 0
    stack = [condition]
    while stack:
        node = stack.pop()
        total += 1
        if not isinstance(node, Mapping):
            continue
        for kind in ("all", "any"):
            if isinstance(node.get(kind), list):
                stack.extend(node[kind])
        if "not" in node:
            stack.append(node["not"])
        if isinstance(node.get("value"), list):
            total += len(node["value"])
    return total


def referenced(condition: Condition) -> Iterator[str]:
    """Keys of the questions a condition refers to."""
    for kind in ("all", "any"):
        if kind in condition:
            for part in condition[kind]:
                yield from referenced(part)
            return
    if "not" in condition:
        yield from referenced(condition["not"])
        return
    yield condition["question"]


def problems(
    condition: Condition,
    earlier: Mapping[str, Mapping[str, Any] | str],
    loc: list[str | int],
    depth: int = 0,
) -> Iterator[tuple[list[str | int], str]]:
    """(location, message) for each way the condition is wrong.

    `earlier` maps the keys of the questions before this one to their definitions (or to why
    a key cannot be named here: it is ambiguous).
    """
    if depth > MAX_DEPTH:
        yield loc, f"conditions may nest at most {MAX_DEPTH} deep"
        return
    for kind in ("all", "any"):
        if kind in condition:
            for index, part in enumerate(condition[kind]):
                yield from problems(part, earlier, [*loc, kind, index], depth + 1)
            return
    if "not" in condition:
        yield from problems(condition["not"], earlier, [*loc, "not"], depth + 1)
        return

    key, op, value = condition["question"], condition["op"], condition.get("value")
    question = earlier.get(key)
    if question is None:
        yield [*loc, "question"], f"'{key}' is not an earlier question"
        return
    if isinstance(question, str):
        yield [*loc, "question"], question
        return
    qtype = question["type"]
    if op == "answered":
        if value is not None:
            yield [*loc, "value"], "'answered' takes no value"
        return
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            yield [*loc, "value"], f"'{op}' needs a non-empty list"
            return
        for index, item in enumerate(value):
            message = _value_problem(question, item)
            if message:
                yield [*loc, "value", index], message
        return
    if op == "contains":
        if qtype != "multiple_choice":
            yield [*loc, "op"], "'contains' applies to multiple_choice questions"
            return
    elif op in ("gt", "gte", "lt", "lte") and qtype not in ORDERED_TYPES:
        yield [*loc, "op"], f"'{op}' applies to numbers, scales and dates, not {qtype}"
        return
    elif qtype == "multiple_choice":
        yield [*loc, "op"], "compare multiple_choice answers with 'contains' or 'answered'"
        return
    message = _value_problem(question, value)
    if message:
        yield [*loc, "value"], message


def _value_problem(question: Mapping[str, Any], value: Any) -> str | None:
    """Why `value` cannot be an answer to `question` (None when it can)."""
    qtype = question["type"]
    if qtype in ("single_choice", "multiple_choice"):
        values = [option["value"] for option in question["options"]]
        return None if value in values else f"{value!r} is not an option of '{question['key']}'"
    if qtype == "boolean":
        return None if isinstance(value, bool) else "expected true or false"
    if qtype in ("integer", "scale"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "expected an integer"
    if qtype == "decimal":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "expected a number"
    if qtype == "date":
        return None if is_iso_date(value) else "expected a date as YYYY-MM-DD"
    if qtype in TEXT_TYPES:
        return None if isinstance(value, str) else "expected a string"
    if qtype == "acknowledge":
        return None if value is True else "an acknowledgement is only ever true"
    return f"cannot compare with a {qtype} question"
