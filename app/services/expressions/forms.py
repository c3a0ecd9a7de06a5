"""A definition's expressions, parsed and checked against its questions in one pass.

Used twice: when a definition is saved (every problem, with its place, becomes a 422) and when
a version is compiled for submissions (then there are none).
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.services.expressions.evaluate import Expression, Resolved, compile_expression
from app.services.expressions.parse import ExpressionError, Node, from_condition, parse

Loc = list[str | int]
# The fields holding expressions, in the order the service evaluates them.
FIELDS = ("relevant", "calculation", "required", "constraint", "count")
# May name the question itself (as `.` does): a constraint or required rule about its own answer.
SELF_FIELDS = ("required", "constraint")
CONTAINERS = ("group", "repeat")
# Expression nodes in one definition, all expressions together: with the per-response step
# budget this keeps the checking of one submission (and a batch) short.
MAX_DEFINITION_NODES = 20_000


@dataclass
class FormExpressions:
    # (id(question), field) -> its expression
    by_place: dict[tuple[int, str], Expression] = field(default_factory=dict)
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    size: int = 0

    def of(self, question: Mapping[str, Any], name: str) -> Expression | None:
        return self.by_place.get((id(question), name))


def _walk(questions: list[Mapping[str, Any]], loc: Loc) -> Iterator[tuple[Loc, Mapping[str, Any]]]:
    for index, question in enumerate(questions):
        place: Loc = [*loc, index]
        yield place, question
        if question.get("type") in CONTAINERS:
            yield from _walk(question.get("questions") or [], [*place, "questions"])


def _choice_labels(question: Mapping[str, Any], language: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for option in question.get("options") or []:
        label = option.get("label") or {}
        labels[option["value"]] = label.get(language) or next(iter(label.values()), "")
    return labels


def compile_definition(
    questions: list[Mapping[str, Any]], language: str, loc: Loc | None = None
) -> FormExpressions:
    """Every expression of the definition compiled, and the problems of those that cannot be
    (JSON conditions' problems are found by services/conditions.py, with their inner places)."""
    result = FormExpressions()
    entries = list(_walk(questions, loc or ["questions"]))
    every = {str(question.get("key")): question for _, question in entries}
    earlier: dict[str, Mapping[str, Any]] = {}
    for place, question in entries:
        key = str(question.get("key"))
        if question.get("type") == "repeat":
            earlier[key] = question  # count(${roster}) after it, or inside it
        for name in FIELDS:
            raw = question.get(name)
            if raw is None or isinstance(raw, bool):
                continue
            try:
                node: Node = parse(raw) if isinstance(raw, str) else from_condition(raw)
                resolver = _resolver(key, name, earlier, every, language)
                compiled = compile_expression(node, raw if isinstance(raw, str) else None, resolver)
            except ExpressionError as error:
                if isinstance(raw, str):
                    result.problems.append(([*place, name], error.message))
                continue
            except (TypeError, KeyError, ValueError, AttributeError):
                # a JSON condition whose values are of the wrong shape: services/conditions.py
                # names the place
                continue
            if compiled.current and name not in ("constraint", "required"):
                result.problems.append(
                    ([*place, name], "'.' (this answer) is only used in constraint and required")
                )
                continue
            result.size += compiled.size
            if result.size > MAX_DEFINITION_NODES:
                result.problems.append(
                    (
                        [*place, name],
                        f"the expressions of one questionnaire may hold at most "
                        f"{MAX_DEFINITION_NODES} terms in all",
                    )
                )
                return result
            result.by_place[(id(question), name)] = compiled
        if question.get("type") != "group":
            earlier[key] = question
    return result


def _resolver(
    own: str,
    name: str,
    earlier: Mapping[str, Mapping[str, Any]],
    every: Mapping[str, Mapping[str, Any]],
    language: str,
) -> Any:
    def resolve(key: str) -> Resolved | str:
        if key == own:
            if name in SELF_FIELDS:
                return Resolved()
            return f"'${{{key}}}' refers to the question itself"
        question = earlier.get(key)
        if question is None:
            if key in every:
                if every[key].get("type") == "group":
                    return f"'${{{key}}}' is a group, which has no value"
                return f"'${{{key}}}' is a later question (only earlier ones may be named)"
            return f"'${{{key}}}' names no question"
        return Resolved(choice_labels=_choice_labels(question, language))

    return resolve
