"""A definition's expressions, parsed and checked against its questions in one pass.

Used twice: when a definition is saved (every problem, with its place, becomes a 422) and when
a version is compiled for submissions (then there are none).
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.services.expressions.evaluate import Expression, Resolved, compile_expression
from app.services.expressions.parse import (
    ExpressionError,
    Node,
    from_condition,
    instances,
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


Scope = tuple[str, ...]  # the keys of the repeats a question is asked in, outermost first


def scoped(
    questions: Sequence[Mapping[str, Any]], loc: Loc, scope: Scope = ()
) -> Iterator[tuple[Loc, Mapping[str, Any], Scope]]:
    """Every question, group and repeat in order, with its place and the repeats it is asked
    in (a repeat itself is asked in the enclosing ones; its members in it too)."""
    for index, question in enumerate(questions):
        place: Loc = [*loc, index]
        yield place, question, scope
        if question.get("type") in CONTAINERS:
            inner = (*scope, str(question.get("key"))) if question["type"] == "repeat" else scope
            yield from scoped(question.get("questions") or [], [*place, "questions"], inner)


def encloses(outer: Scope, inner: Scope) -> bool:
    """Whether a question asked in `outer` is in view of one asked in `inner` (the same
    repeat, or one `inner` sits in; the top level encloses everything)."""
    return inner[: len(outer)] == outer


def shared_depth(place: Scope, scope: Scope) -> int:
    """How many repeats the two scopes have in common, outermost first."""
    depth = 0
    for outer, inner in zip(place, scope, strict=False):
        if outer != inner:
            break
        depth += 1
    return depth


@dataclass
class KeyIndex:
    """Where each key is asked. Questions of different repeats, neither inside the other, may
    share a key (as in XLSForm: `name` in a household-member repeat and in a visitor repeat).
    A reference `${key}` then means the one nearest (as ODK's relative paths do): the one in
    view (the same repeat or an enclosing scope), else the one whose repeats have the most in
    common with the reference's (`max(${age})` in a visit: the ages of its visitors); where two
    are equally near (e.g. from the top level) it is ambiguous."""

    places: dict[str, list[tuple[Scope, Mapping[str, Any]]]] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[tuple[Loc, Mapping[str, Any], Scope]]) -> "KeyIndex":
        index = cls()
        for _, question, scope in entries:
            index.places.setdefault(str(question.get("key")), []).append((scope, question))
        return index

    def find(self, key: str, scope: Scope) -> tuple[Scope, Mapping[str, Any]] | str | None:
        """The question `${key}` names from a question asked in `scope` (with the repeats it
        is asked in); a message when that is ambiguous; None when no question has the key."""
        found = self.places.get(key)
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        depths = [shared_depth(place, scope) for place, _ in found]
        nearest = max(depths)
        if depths.count(nearest) == 1:
            return found[depths.index(nearest)]
        repeats = ", ".join(sorted({place[-1] if place else "the top level" for place, _ in found}))
        return (
            f"'${{{key}}}' is asked in more than one repeat ({repeats}): from here it is "
            "ambiguous (name it from inside one of them)"
        )


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
    secondary: Iterable[str] | None = None,
) -> FormExpressions:
    """Every expression of the definition compiled, and the problems of those that cannot be
    (JSON conditions' problems are found by services/conditions.py, with their inner places).

    A choice_filter's bare names must be properties of its options (or `name`, the value).
    Only a calculation may read a secondary instance, one of `secondary` (the form's
    xml-external names, and the choice lists a select uses: instances of the XForm too): the
    server has none, so it keeps the client's value (services/answers/checking.py)."""
    choice_lists = choice_lists or {}
    result = FormExpressions()
    known: dict[str, frozenset[str]] = {}  # per choice list: its properties
    labels = _Labels(language, choice_lists)
    entries = list(scoped(questions, loc or ["questions"]))
    every = KeyIndex.of(entries)
    earlier: set[int] = set()  # id() of the questions before this one
    for place, question, scope in entries:
        if question.get("type") == "repeat":
            earlier.add(id(question))  # count(${roster}) after it, or inside it
        for name in FIELDS:
            raw = question.get(name)
            if raw is None or isinstance(raw, bool):
                continue
            try:
                filtering = name == "choice_filter"
                node: Node = parse(raw, filtering) if isinstance(raw, str) else from_condition(raw)
                if filtering:
                    _check_properties(node, question, choice_lists, known)
                resolver = _resolver(question, name, scope, earlier, every, labels)
                compiled = compile_expression(node, raw if isinstance(raw, str) else None, resolver)
            except ExpressionError as error:
                if isinstance(raw, str):
                    result.problems.append(([*place, name], error.message))
                continue
            except (TypeError, KeyError, ValueError, AttributeError):
                # a JSON condition whose values are of the wrong shape: services/conditions.py
                # names the place
                continue
            problem = _instance_problem(compiled.node, name, secondary)
            if problem:
                result.problems.append(([*place, name], problem))
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
            earlier.add(id(question))
    return result


def _instance_problem(node: Node, name: str, secondary: Iterable[str] | None) -> str | None:
    read = instances(node)
    if not read:
        return None
    if name != "calculation":
        return (
            "only a calculation may read a secondary instance (instance()): the server has "
            "no secondary instances, so it keeps the client's value of such a calculation"
        )
    if secondary is None:  # a stored version (checked when it was saved)
        return None
    unknown = sorted(read - set(secondary))
    if unknown:
        return (
            f"no instance '{unknown[0]}': an xml-external row, or a choice list a select "
            "uses, names an instance"
        )
    return None


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
    own: Mapping[str, Any],
    name: str,
    scope: Scope,
    earlier: set[int],
    every: KeyIndex,
    labels: _Labels,
) -> Any:
    def resolve(key: str) -> Resolved | str:
        found = every.find(key, scope)
        if found is None:
            return f"'${{{key}}}' names no question"
        if isinstance(found, str):
            return found
        question = found[1]
        if question is own:
            if name in SELF_FIELDS:
                return Resolved()
            return f"'${{{key}}}' refers to the question itself"
        if id(question) not in earlier:
            if question.get("type") == "group":
                return f"'${{{key}}}' is a group, which has no value"
            return f"'${{{key}}}' is a later question (only earlier ones may be named)"
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
    every = KeyIndex.of(scoped(questions, ["questions"]))
    labels = _Labels(language, choice_lists or {})

    def resolve(key: str) -> Resolved | str:
        found = every.find(key, ())
        if found is None:
            return f"'${{{key}}}' names no question"
        if isinstance(found, str):
            return found
        if found[1].get("type") == "group":
            return f"'${{{key}}}' is a group, which has no value"
        return Resolved(choice_labels=labels.of(found[1]))

    compiled = compile_expression(parse(text), text, resolve)
    if instances(compiled.node):
        raise ExpressionError("an instance_name does not read a secondary instance")
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
