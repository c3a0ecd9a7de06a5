"""The rules of a questionnaire definition (beyond its schema): every problem with its place,
all found in one pass, so that one 422 names them all."""

import re
from collections.abc import Iterator, Mapping
from typing import Any

from app.errors import Invalid
from app.models.questionnaires import (
    KEY_PATTERN,
    MAX_MULTIPLE_OPTIONS,
    MAX_NESTING,
    MAX_OPTIONS,
    MAX_QUESTIONS,
)
from app.services import conditions
from app.services.expressions.forms import (
    KeyIndex,
    Scope,
    compile_definition,
    encloses,
    instance_name_problem,
    option_properties,
    options_of,
    scoped,
)
from app.services.openrosa.public_key import public_key_problem

CONTAINER_TYPES = ("group", "repeat")
# Options in all of a questionnaire's choice lists together (one list holds up to MAX_OPTIONS):
# every version keeps its lists, and every submission's compiled form holds them.
MAX_LISTED_OPTIONS = 50_000
CHOICE_TYPES = ("single_choice", "multiple_choice", "rank")
# Options a question may have, by type (a choice list may hold more, for other questions).
OPTION_LIMITS = {"single_choice": MAX_OPTIONS, "multiple_choice": MAX_MULTIPLE_OPTIONS}
OPTION_LIMITS["rank"] = MAX_MULTIPLE_OPTIONS

Loc = list[str | int]
KEY = re.compile(KEY_PATTERN)


def check_definition(data: Mapping[str, Any], prefix: Loc | None = None) -> None:
    """Raise Invalid naming every place where a (schema-valid) definition breaks a rule."""
    errors = [
        # `prefix is None`, not falsy: an empty prefix ([], the XLSForm import's) is a prefix
        {"loc": [*(["body"] if prefix is None else prefix), *loc], "msg": msg, "type": "definition"}
        for loc, msg in _definition_problems(data)
    ]
    if errors:
        raise Invalid("The questionnaire definition breaks a rule", errors=errors)


def _definition_problems(data: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    default = data["default_language"]
    for place, text in _texts(data):
        if default not in text:
            yield place, f"must include the default language '{default}'"

    yield from _duplicates([g["key"] for g in data["respondent_groups"]], ["respondent_groups"])
    choice_lists = data.get("choice_lists") or {}
    total = sum(len(options) for options in choice_lists.values())
    if total > MAX_LISTED_OPTIONS:
        yield ["choice_lists"], f"at most {MAX_LISTED_OPTIONS} options in all the lists together"
    for name, options in choice_lists.items():
        yield from _duplicates([o["value"] for o in options], ["choice_lists", name], key="value")
        for index, option in enumerate(options):
            for prop in option_properties(option):
                if not KEY.match(prop):
                    yield (
                        ["choice_lists", name, index, prop],
                        "a property's name is like a question key (letters, digits, _ . -)",
                    )
    yield from settings_problems(data)
    yield from _external_problems(data, choice_lists)
    entries = list(walk(data["questions"]))
    in_scopes = list(scoped(data["questions"], ["questions"]))
    yield from _shared_keys(in_scopes)
    if len(entries) > MAX_QUESTIONS:
        yield ["questions"], f"at most {MAX_QUESTIONS} questions, groups and repeats in all"

    by_key = KeyIndex.of(in_scopes)
    earlier: dict[int, Mapping[str, Any]] = {}  # id() -> the definition conditions compare with
    condition_cost = 0
    for (loc, question, depth), (_, _, scope) in zip(entries, in_scopes, strict=True):
        if depth > MAX_NESTING:
            yield loc, f"groups and repeats nest at most {MAX_NESTING} deep"
        yield from _question_problems(question, loc, choice_lists)
        if isinstance(question.get("relevant"), Mapping):
            condition_cost += conditions.cost(question["relevant"])
            if condition_cost > conditions.MAX_DEFINITION_COST:
                yield (
                    [*loc, "relevant"],
                    f"the conditions of one questionnaire may hold at most "
                    f"{conditions.MAX_DEFINITION_COST} comparisons and listed values in all",
                )
                break
            visible = _Visible(by_key, scope, earlier)
            yield from conditions.problems(question["relevant"], visible, [*loc, "relevant"])
        if question["type"] not in CONTAINER_TYPES:
            seen = question
            if question.get("choices"):  # conditions compare with its list's options
                seen = {**question, "options": options_of(question, choice_lists)}
            earlier[id(question)] = seen
    # the instances an XForm of it has: its xml-external ones, and the lists selects use
    secondary = {
        *((data.get("settings") or {}).get("external_instances") or ()),
        *(str(q["choices"]) for _, q, _ in entries if q.get("choices")),
    }
    yield from compile_definition(
        data["questions"], default, choice_lists=choice_lists, secondary=secondary
    ).problems


def walk(
    questions: list[Mapping[str, Any]], loc: Loc | None = None, depth: int = 0
) -> Iterator[tuple[Loc, Mapping[str, Any], int]]:
    """Every question, group and repeat in order, with its place and how deep it sits."""
    for index, question in enumerate(questions):
        place: Loc = [*(loc or ["questions"]), index]
        yield place, question, depth
        if question["type"] in CONTAINER_TYPES:
            yield from walk(question["questions"], [*place, "questions"], depth + 1)


class _Visible(Mapping[str, Mapping[str, Any] | str]):
    """The earlier questions a JSON condition of a question asked in `scope` may name, by key
    (a message for a key that is ambiguous there)."""

    def __init__(self, index: KeyIndex, scope: Scope, earlier: Mapping[int, Any]) -> None:
        self.index, self.scope, self.earlier = index, scope, earlier

    def __getitem__(self, key: str) -> Mapping[str, Any] | str:
        found = self.index.find(key, self.scope)
        if isinstance(found, str):
            return found
        if found is None or id(found[1]) not in self.earlier:
            raise KeyError(key)
        return self.earlier[id(found[1])]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self.index.places)

    def __len__(self) -> int:
        return len(self.index.places)


def _shared_keys(entries: list[tuple[Loc, Mapping[str, Any], Scope]]) -> Iterator[tuple[Loc, str]]:
    """Keys are unique, except that questions (and groups) of different repeats, neither
    inside the other, may share one; a repeat's key is unique in the whole questionnaire (it
    names the repeat's file in exports and its scope in expressions), as in pyxform."""
    seen: dict[str, list[tuple[Loc, Mapping[str, Any], Scope]]] = {}
    for loc, question, scope in entries:
        key = question["key"]
        for other_loc, other, other_scope in seen.get(key, ()):
            if other_scope == scope:
                yield [*loc, "key"], f"'{key}' is used twice"
            elif "repeat" in (question["type"], other["type"]):
                yield (
                    [*loc, "key"],
                    f"'{key}' is used twice: a repeat's key is used by nothing else",
                )
            elif encloses(other_scope, scope) or encloses(scope, other_scope):
                yield (
                    [*loc, "key"],
                    f"'{key}' is used twice: also at {_place(other_loc)}, in view of this one "
                    "(only questions of different repeats, neither inside the other, may "
                    "share a key)",
                )
            else:
                continue
            break
        seen.setdefault(key, []).append((loc, question, scope))


def _place(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _question_problems(
    question: Mapping[str, Any], loc: Loc, choice_lists: Mapping[str, Any]
) -> Iterator[tuple[Loc, str]]:
    qtype = question["type"]
    options = options_of(question, choice_lists)
    yield from _duplicates(
        [o["value"] for o in question.get("options") or []], [*loc, "options"], key="value"
    )
    if qtype in CHOICE_TYPES:
        yield from _choice_problems(question, loc, choice_lists)
    low, high = question.get("min"), question.get("max")
    if qtype == "multiple_choice":
        least, most = question.get("min_selected"), question.get("max_selected")
        if least is not None and least > len(options):
            yield [*loc, "min_selected"], "more than there are options"
        if most is not None and most > len(options):
            yield [*loc, "max_selected"], "more than there are options"
        if least is not None and most is not None and least > most:
            yield [*loc, "min_selected"], "greater than max_selected"
    elif qtype in ("integer", "decimal") and low is not None and high is not None and low > high:
        yield [*loc, "min"], "greater than max"
    elif qtype == "scale" and low is not None and high is not None and not 0 < high - low <= 100:
        yield [*loc, "max"], "a scale runs from min to a larger max, at most 100 steps"
    elif qtype == "note" and question.get("required"):
        yield [*loc, "required"], "a note is never answered"
    elif qtype == "audio" and question.get("background") and question.get("quality") == "external":
        yield [*loc, "quality"], "background audio is recorded by the device, not another app"
    elif qtype == "repeat":
        least, most = question.get("min_count"), question.get("max_count")
        if least is not None and most is not None and least > most:
            yield [*loc, "min_count"], "greater than max_count"


def _choice_problems(
    question: Mapping[str, Any], loc: Loc, choice_lists: Mapping[str, Any]
) -> Iterator[tuple[Loc, str]]:
    """Inline options or a known choice list, exactly one; at most the type's options."""
    name, inline = question.get("choices"), question.get("options")
    if name is not None and inline is not None:
        yield [*loc, "choices"], "either inline options or a choice list, not both"
    elif name is None and inline is None:
        yield [*loc, "options"], "a choice question needs options or a choice list (choices)"
    elif name is not None and name not in choice_lists:
        yield [*loc, "choices"], f"no choice list '{name}' in the questionnaire's choice_lists"
    elif name is not None:
        limit = OPTION_LIMITS[question["type"]]
        if len(choice_lists[name]) > limit:
            yield (
                [*loc, "choices"],
                f"a {question['type']} question has at most {limit} options; "
                f"'{name}' has {len(choice_lists[name])}",
            )


def settings_problems(data: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    settings = data.get("settings") or {}
    if settings.get("public_key") is not None:
        problem = public_key_problem(settings["public_key"])
        if problem:
            yield ["settings", "public_key"], problem
    if settings.get("instance_name") is not None:
        problem = instance_name_problem(settings["instance_name"], data["questions"])
        if problem:
            yield ["settings", "instance_name"], problem


# Instances of the XForm Kenes writes besides the form's choice lists (services/openrosa)
RESERVED_INSTANCES = ("territories",)


def _external_problems(
    data: Mapping[str, Any], choice_lists: Mapping[str, Any]
) -> Iterator[tuple[Loc, str]]:
    """Secondary instances (xml-external): each name once, and not the name of a question,
    a choice list or an instance of Kenes's own (each is an instance id in the XForm)."""
    names = (data.get("settings") or {}).get("external_instances") or []
    keys = {question["key"] for _, question, _ in walk(data["questions"])}
    loc: Loc = ["settings", "external_instances"]
    yield from _duplicates(names, loc, key="name")
    for index, name in enumerate(names):
        if name in keys:
            yield [*loc, index], f"'{name}' is also a question's name"
        elif name in choice_lists:
            yield [*loc, index], f"'{name}' is also a choice list's name"
        elif name in RESERVED_INSTANCES or name.startswith("_"):
            yield [*loc, index], f"'{name}' is a name the service's own forms use"


def _duplicates(values: list[str], loc: Loc, key: str = "key") -> Iterator[tuple[Loc, str]]:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            yield [*loc, index, key], f"'{value}' is used twice"
        seen.add(value)


def _texts(data: Mapping[str, Any]) -> Iterator[tuple[Loc, Mapping[str, str]]]:
    yield ["title"], data["title"]
    if data.get("description"):
        yield ["description"], data["description"]
    for index, group in enumerate(data["respondent_groups"]):
        yield ["respondent_groups", index, "label"], group["label"]
    for loc, question, _ in walk(data["questions"]):
        if question.get("label"):
            yield [*loc, "label"], question["label"]
        for name in ("help", "constraint_message", "required_message", "guidance_hint"):
            if question.get(name):
                yield [*loc, name], question[name]
        for number, option in enumerate(question.get("options") or []):
            yield [*loc, "options", number, "label"], option["label"]
    for name, options in (data.get("choice_lists") or {}).items():
        for number, option in enumerate(options):
            yield ["choice_lists", name, number, "label"], option["label"]
