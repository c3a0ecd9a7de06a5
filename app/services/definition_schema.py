"""A definition's schema and its rules checked in one answer.

pydantic checks the schema of the whole; each part it refuses (a question, an inline option, a
choice of a list, a respondent group, a setting, a field of the form) is neutralised in place,
and the definition rules (definitions.py) run on the rest. A refused question becomes a
placeholder of the same key at the same place (a group or repeat keeps its questions), so the
questions naming it still resolve and no place moves. What follows only from a refused part is
not reported again: problems inside it, conditions comparing with it, references to a key or a
choice list that was itself refused, the default language when that was refused.
"""

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from app.errors import Invalid
from app.models.questionnaires import (
    KEY_PATTERN,
    MAX_QUESTIONS,
    ChoiceItem,
    Language,
    Option,
    Question,
)
from app.services.definitions import check_definition
from app.services.openrosa.question_types import QUESTION_TYPES

Loc = list[str | int]
Place = tuple[str | int, ...]
QUESTION_KINDS = {*QUESTION_TYPES, "group", "repeat"}
_KEY = re.compile(KEY_PATTERN)
_QUESTION = TypeAdapter(Question)
_OPTION = TypeAdapter(Option)
_ITEM = TypeAdapter(ChoiceItem)
_LANGUAGE = TypeAdapter(Language)
M = TypeVar("M", bound=BaseModel)
# What a refused field of the form is replaced by (None: left out) for the rules' run.
_FORM_FIELDS: dict[str, Any] = {"slug": "form", "description": None, "access": None}
_LIST_LIMITS = {"questions": MAX_QUESTIONS, "respondent_groups": 50}
# A choice question's fields that depend on its options.
_OPTION_FIELDS = ("options", "choices", "choice_filter", "min_selected", "max_selected")
# How often the schema is tried again on the neutralised definition before giving up (and
# reporting the schema's problems alone, as before).
_ROUNDS = 3


def without_tags(loc: Sequence[str | int]) -> Loc:
    """A pydantic location without the question type it adds after a question's index
    (`questions, 1, multiple_choice, options, 0`: the union's tag, not a field)."""
    return [
        part
        for index, part in enumerate(loc)
        if not (index and isinstance(loc[index - 1], int) and part in QUESTION_KINDS)
    ]


@dataclass
class Checked(Generic[M]):
    """The schema's problems (pydantic's, tags kept) and the definition the rules may run on
    (the given one when the schema holds; None when it could not be made to)."""

    errors: list[dict[str, Any]]
    model: M | None
    neutral: "_Neutral"

    def follows(self, loc: Sequence[str | int], message: str, data: Any) -> bool:
        """Whether a rule's problem only follows from a part the schema refused."""
        return self.neutral.follows(list(loc), message, data)


@dataclass
class _Neutral:
    inside: list[Place] = field(default_factory=list)  # nothing reported within these
    exact: set[Place] = field(default_factory=set)  # nothing reported at these
    keys: set[str] = field(default_factory=set)  # questions conditions must not compare with
    gone: set[str] = field(default_factory=set)  # keys no longer in the definition
    lists: set[str] = field(default_factory=set)  # choice lists left out
    language: bool = False  # the default language was refused
    count: int = 0

    def key(self, value: Any) -> str:
        if isinstance(value, str) and _KEY.match(value):
            return value
        if isinstance(value, str):
            self.gone.add(value)
        self.count += 1
        return f"kenes_refused_{self.count}"

    def follows(self, loc: Loc, message: str, data: Any) -> bool:
        place = tuple(loc)
        if place in self.exact or any(place[: len(unit)] == unit for unit in self.inside):
            return True
        if self.language and "the default language" in message:
            return True
        if any(f"'${{{key}}}'" in message or f"'{key}' is not" in message for key in self.gone):
            return True
        if any(f"list '{name}'" in message for name in self.lists):
            return True
        node = data
        for part in loc:  # through a comparison with a neutralised question
            if isinstance(node, Mapping) and node.get("question") in self.keys:
                return True
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        return False


def check_schema(data: Any, model: type[M], default_language: str) -> Checked[M]:
    """`data` validated as `model`; when refused, validated again with every refused part
    neutralised (`default_language`: the placeholders' language when the data names none)."""
    try:
        return Checked([], model.model_validate(data), _Neutral())
    except ValidationError as error:
        errors: list[dict[str, Any]] = [dict(e) for e in error.errors()]
    neutral = _Neutral()
    if not isinstance(data, Mapping):
        return Checked(errors, None, neutral)
    try:
        work = copy.deepcopy(dict(data))
    except RecursionError:  # JSON the parser read, nested past what copying recurses into
        return Checked(errors, None, neutral)
    language = work.get("default_language")
    if not (isinstance(language, str) and _valid(_LANGUAGE, language)):
        language = default_language
    pending = errors
    for _ in range(_ROUNDS):
        _neutralise(work, [without_tags(e["loc"]) for e in pending], neutral, language)
        try:
            return Checked(errors, model.model_validate(work), neutral)
        except ValidationError as error:
            pending = [dict(e) for e in error.errors()]
    return Checked(errors, None, neutral)


def rule_problems(checked: Checked[Any], data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The definition rules' problems with `data` (made of `checked.model`), but for those
    that only follow from a part the schema refused; locations without a prefix."""
    try:
        check_definition(data, [])
    except Invalid as error:
        return [e for e in error.errors or [] if not checked.follows(e["loc"], e["msg"], data)]
    return []


def _neutralise(work: dict[str, Any], locs: list[Loc], neutral: _Neutral, language: str) -> None:
    questions: dict[Place, set[str | None]] = {}
    for loc in locs:
        head = loc[0] if loc else None
        if head == "questions" and len(loc) > 1:
            place, rest = _question_place(loc)
            if len(rest) >= 2 and rest[0] == "options" and isinstance(rest[1], int):
                _fix_option(work, (*place, "options", rest[1]), neutral, language)
                continue
            questions.setdefault(place, set()).add(str(rest[0]) if rest else None)
        elif head == "choice_lists" and len(loc) > 2 and isinstance(loc[2], int):
            _fix_item(work, ("choice_lists", loc[1], loc[2]), neutral, language)
        elif head == "choice_lists" and len(loc) > 1:
            _drop_list(work, str(loc[1]), neutral)
        elif head == "respondent_groups" and len(loc) > 1 and isinstance(loc[1], int):
            _fix_group(work, loc[1], neutral, language)
        elif head == "settings" and len(loc) > 1 and isinstance(work.get("settings"), dict):
            work["settings"].pop(loc[1], None)
            neutral.inside.append(("settings", loc[1]))
        elif isinstance(head, str):
            _fix_form_field(work, head, neutral, language)
    # the deepest first: a group is tried again once its questions are fixed
    for place in sorted(questions, key=len, reverse=True):
        _fix_question(work, place, questions[place], neutral, language)


def _question_place(loc: Loc) -> tuple[Place, Loc]:
    """(the place of the innermost question a location is in, the rest of the location)."""
    end = 2
    while (
        end + 1 < len(loc) and loc[end] == "questions" and isinstance(loc[end + 1], int)
    ):  # questions, 0, questions, 3, ...
        end += 2
    return tuple(loc[:end]), loc[end:]


def _at(work: Any, place: Place) -> Any:
    node = work
    for part in place:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _put(work: Any, place: Place, value: Any) -> None:
    parent = _at(work, place[:-1])
    if isinstance(parent, list | dict):
        try:
            parent[place[-1]] = value  # type: ignore[index]
        except (IndexError, TypeError):
            return


def _fix_form_field(work: dict[str, Any], name: str, neutral: _Neutral, language: str) -> None:
    if name in _LIST_LIMITS and isinstance(work.get(name), list) and work[name]:
        if len(work[name]) > _LIST_LIMITS[name]:
            work[name] = work[name][: _LIST_LIMITS[name]]
            neutral.exact.add((name,))
            return
    neutral.exact.add((name,))
    if name == "questions":
        work[name] = [{"key": neutral.key(None), "type": "text", "label": {language: "?"}}]
        neutral.inside.append(("questions", 0))
    elif name == "respondent_groups":
        work[name] = [{"key": "respondent", "category": "citizen", "label": {language: "?"}}]
        neutral.inside.append((name,))
    elif name == "title":
        work[name] = {language: "?"}
    elif name == "default_language":
        work[name], neutral.language = language, True
    elif name == "choice_lists":
        if isinstance(work.get(name), dict):
            neutral.lists.update(str(listed) for listed in work[name])
        work.pop(name, None)
        neutral.inside.append((name,))
    elif name in _FORM_FIELDS and _FORM_FIELDS[name] is not None:
        work[name] = _FORM_FIELDS[name]
    else:
        work.pop(name, None)
        neutral.inside.append((name,))


def _fix_option(work: Any, place: Place, neutral: _Neutral, language: str) -> None:
    option = _at(work, place)
    value = option.get("value") if isinstance(option, Mapping) else None
    valid = isinstance(value, str) and _valid(_OPTION, {"value": value, "label": {"x": "x"}})
    _put(work, place, {"value": value if valid else neutral.key(None), "label": {language: "?"}})
    neutral.inside.append(place)


def _fix_item(work: Any, place: Place, neutral: _Neutral, language: str) -> None:
    item = _at(work, place)
    item = item if isinstance(item, Mapping) else {}
    value = item.get("value")
    valid = isinstance(value, str) and _valid(_ITEM, {"value": value, "label": {"x": "x"}})
    kept = {
        name: text
        for name, text in item.items()
        if name not in ("value", "label", "media")
        and isinstance(text, str)
        and _valid(_ITEM, {"value": "x", "label": {"x": "x"}, name: text})
    }
    replaced = {**kept, "value": value if valid else neutral.key(None), "label": {language: "?"}}
    _put(work, place, replaced)
    neutral.inside.append(place)


def _drop_list(work: dict[str, Any], name: str, neutral: _Neutral) -> None:
    lists = work.get("choice_lists")
    if not isinstance(lists, dict) or name not in lists:
        return
    listed = lists[name]
    if isinstance(listed, list) and len(listed) > 1 and _KEY.match(name):
        lists[name] = listed[:1]  # too many options: one is enough for the rules
    else:
        del lists[name]
    neutral.lists.add(name)
    neutral.inside.append(("choice_lists", name))
    for place, question in _walk(work.get("questions")):
        if question.get("choices") == name:
            neutral.keys.add(str(question.get("key")))
            for part in ("choices", "choice_filter", "min_selected", "max_selected"):
                neutral.exact.add((*place, part))


def _fix_group(work: dict[str, Any], index: int, neutral: _Neutral, language: str) -> None:
    place: Place = ("respondent_groups", index)
    group = _at(work, place)
    key = neutral.key(group.get("key") if isinstance(group, Mapping) else None)
    _put(work, place, {"key": key, "category": "citizen", "label": {language: "?"}})
    neutral.inside.append(place)


def _fix_question(
    work: dict[str, Any], place: Place, fields: set[str | None], neutral: _Neutral, language: str
) -> None:
    question = _at(work, place)
    if not isinstance(question, Mapping):
        question = {}
    fixed = dict(question)
    for name in fields:
        if name == "label":
            fixed["label"] = {language: str(question.get("key"))}
        elif name is not None and name not in ("key", "type", "questions"):
            fixed.pop(name, None)
    if None not in fields and _valid(_QUESTION, fixed):
        _put(work, place, fixed)
        neutral.inside.extend((*place, name) for name in fields if name is not None)
        if fields & set(_OPTION_FIELDS):  # without its options, they are not counted
            neutral.inside.extend((*place, name) for name in _OPTION_FIELDS)
        return
    key = neutral.key(question.get("key"))
    neutral.keys.add(key)
    neutral.inside.append(place)
    children = question.get("questions")
    kind = question.get("type")
    if kind in ("group", "repeat") and isinstance(children, list) and children:
        placeholder = {"key": key, "type": kind, "label": {language: key}, "questions": children}
        if _valid(_QUESTION, placeholder):
            _put(work, place, placeholder)
            return
    # its questions go too: references to them are not reported either
    for _, inner in _walk(children if isinstance(children, list) else []):
        if isinstance(inner.get("key"), str):
            neutral.gone.add(inner["key"])
    _put(work, place, {"key": key, "type": "text", "label": {language: key}})


def _walk(questions: Any, loc: Place = ("questions",)) -> Iterator[tuple[Place, Mapping[str, Any]]]:
    for index, question in enumerate(questions if isinstance(questions, list) else []):
        if isinstance(question, Mapping):
            yield (*loc, index), question
            yield from _walk(question.get("questions"), (*loc, index, "questions"))


def _valid(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True
