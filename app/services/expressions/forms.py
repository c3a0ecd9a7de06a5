"""A definition's expressions, parsed and checked against its questions in one pass.

Used twice: when a definition is saved (every problem, with its place, becomes a 422) and when
a version is compiled for submissions (then there are none).
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.services.expressions.evaluate import Expression, Resolved, compile_expression
from app.services.expressions.parse import (
    ExpressionError,
    Node,
    from_condition,
    parse,
    properties,
)

Loc = list[str | int]
# The fields holding expressions, in the order the service evaluates them.
FIELDS = (
    "relevant",
    "calculation",
    "required",
    "constraint",
    "count",
    "choice_filter",
    "read_only",
)
# May name the question itself (as `.` does): a constraint or required rule about its own answer.
SELF_FIELDS = ("required", "constraint")
CONTAINERS = ("group", "repeat")
# Keys of a choice list's option that are not extra properties.
OPTION_FIELDS = frozenset({"value", "label", "media"})
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


def option_properties(option: Mapping[str, Any]) -> dict[str, str]:
    """A choice list option's extra properties (what a choice_filter's bare names read)."""
    return {name: value for name, value in option.items() if name not in OPTION_FIELDS}


def options_of(
    question: Mapping[str, Any], choice_lists: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    """A choice question's options: inline, or its choice list's ([] for an unknown list)."""
    name = question.get("choices")
    if name:
        found = choice_lists.get(name)
        return list(found) if isinstance(found, list) else []
    return list(question.get("options") or [])


def _choice_labels(
    question: Mapping[str, Any], language: str, choice_lists: Mapping[str, Any]
) -> dict[str, str]:
    labels: dict[str, str] = {}
    for option in options_of(question, choice_lists):
        label = option.get("label") or {}
        labels[option["value"]] = label.get(language) or next(iter(label.values()), "")
    return labels


def compile_definition(
    questions: list[Mapping[str, Any]],
    language: str,
    loc: Loc | None = None,
    choice_lists: Mapping[str, Any] | None = None,
) -> FormExpressions:
    """Every expression of the definition compiled, and the problems of those that cannot be
    (JSON conditions' problems are found by services/conditions.py, with their inner places).

    A choice_filter's bare names must be properties of its options (or `name`, the value)."""
    choice_lists = choice_lists or {}
    result = FormExpressions()
    known: dict[str, frozenset[str]] = {}  # per choice list: its properties
    labels = _Labels(language, choice_lists)
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
                filtering = name == "choice_filter"
                node: Node = parse(raw, filtering) if isinstance(raw, str) else from_condition(raw)
                if filtering:
                    _check_properties(node, question, choice_lists, known)
                resolver = _resolver(key, name, earlier, every, labels)
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


def _check_properties(
    node: Node,
    question: Mapping[str, Any],
    choice_lists: Mapping[str, Any],
    known: dict[str, frozenset[str]],
) -> None:
    used = properties(node)
    if not used:
        return
    list_name = str(question.get("choices") or "")
    names = known.get(list_name) if list_name else None
    if names is None:
        found = {"name"}
        for option in options_of(question, choice_lists):
            found.update(option_properties(option))
        names = frozenset(found)
        if list_name:
            known[list_name] = names
    unknown = sorted(used - names)
    if unknown:
        where = f"choice list '{list_name}'" if list_name else "the inline options"
        raise ExpressionError(
            f"'{unknown[0]}' is not a property of {where} (it has: {', '.join(sorted(names))})"
        )


@dataclass
class _Labels:
    """Option labels for jr:choice-name, made once per question or choice list."""

    language: str
    choice_lists: Mapping[str, Any]
    made: dict[Any, dict[str, str]] = field(default_factory=dict)

    def of(self, question: Mapping[str, Any]) -> dict[str, str]:
        name = question.get("choices") or id(question)
        found = self.made.get(name)
        if found is None:
            found = _choice_labels(question, self.language, self.choice_lists)
            self.made[name] = found
        return found


def _resolver(
    own: str,
    name: str,
    earlier: Mapping[str, Mapping[str, Any]],
    every: Mapping[str, Mapping[str, Any]],
    labels: _Labels,
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
        return Resolved(choice_labels=labels.of(question))

    return resolve


def instance_name_expression(
    text: str,
    questions: list[Mapping[str, Any]],
    language: str = "en",
    choice_lists: Mapping[str, Any] | None = None,
) -> Expression:
    """A form's instance_name compiled (ExpressionError when it cannot be used): it is
    evaluated once the whole response is known, so it may name any question, but no group
    and not `.`."""
    every = {str(q.get("key")): q for _, q in _walk(questions, ["questions"])}
    labels = _Labels(language, choice_lists or {})

    def resolve(key: str) -> Resolved | str:
        if key not in every:
            return f"'${{{key}}}' names no question"
        if every[key].get("type") == "group":
            return f"'${{{key}}}' is a group, which has no value"
        return Resolved(choice_labels=labels.of(every[key]))

    compiled = compile_expression(parse(text), text, resolve)
    if compiled.current:
        raise ExpressionError("'.' (this answer) is only used in constraint and required")
    return compiled


def instance_name_problem(
    text: str, questions: list[Mapping[str, Any]], choice_lists: Mapping[str, Any] | None = None
) -> str | None:
    """Why a form's instance_name cannot be used (None when it can)."""
    try:
        instance_name_expression(text, questions, choice_lists=choice_lists)
    except ExpressionError as error:
        return error.message
    return None
