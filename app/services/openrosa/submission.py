"""Submitted OpenRosa instances read into responses (then stored by services/responses/rules.py).

The XML is parsed by defusedxml with DTDs refused outright: no entity expansion (billion
laughs), no external entities or DTDs, whatever the document declares. Sizes are bounded by the
caller (KENES_OPENROSA_MAX_XML_BYTES).

An instance of a form built by services/openrosa/xform.py maps to a response like this: the
root's `id` and `version` name the questionnaire (slug and version); `meta/instanceID`
(`uuid:<id>`) is the response id; `_respondent/*` the respondent (of the territory cascade
`territory_1`..`territory_5`, the deepest answered is the territory_code); `_start`/`_end` the
started and submitted times; a group's elements are answers keyed by their own names (no
nesting); each element of a repeat is one instance, a dict of its answers; empty elements are
unanswered; each value is read by its question type (QUESTION_TYPES): a note's element is never
an answer, a calculate's value is text (the responses service recomputes deterministic
calculations). A repeat's count node `_count_<key>` is the form's own. Any other element is
refused by name.
"""

import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import ValidationError

from app.errors import BadRequest, Invalid
from app.models.questionnaires import Questionnaire
from app.models.responses import ResponseIn
from app.services.answers import MEDIA_TYPES
from app.services.openrosa.public_key import key_bytes
from app.services.openrosa.xform import (
    COUNT_PREFIX,
    END,
    QUESTION_TYPES,
    RESPONDENT,
    START,
    TERRITORY_DEPTH,
    TERRITORY_STEP,
    QuestionType,
    own_names,
)

RESPONDENT_FIELDS = ("group", "gender", "age_band", "territory_code")
# The territory cascade, shallowest first: the deepest answered is the territory_code.
TERRITORY_STEPS = tuple(f"{TERRITORY_STEP}{depth}" for depth in range(1, TERRITORY_DEPTH + 1))
UUID_PREFIX = "uuid:"


@dataclass(frozen=True)
class Scope:
    """The elements one level of an instance may hold."""

    questions: Mapping[str, QuestionType] = field(default_factory=dict)
    groups: Mapping[str, "Scope"] = field(default_factory=dict)
    repeats: Mapping[str, "Scope"] = field(default_factory=dict)
    # the repeats' count nodes here: the form's own, never answers
    counts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FormShape:
    """What reading an instance of one questionnaire version needs (built once per version)."""

    questionnaire_id: uuid.UUID
    slug: str
    version: int
    default_language: str
    top: Scope
    labels: Mapping[str, str]  # question key -> label in the default language
    names: Mapping[str, str]  # the form's own elements (xform.own_names)
    key_bytes: int = 0  # an encrypted form's RSA key length (public_key.py); 0 plaintext


def _scope(
    questions: Sequence[Mapping[str, Any]],
    labels: dict[str, str],
    default: str,
    names: Mapping[str, str],
) -> Scope:
    plain: dict[str, QuestionType] = {}
    groups: dict[str, Scope] = {}
    repeats: dict[str, Scope] = {}
    counts: set[str] = set()
    for question in questions:
        key, qtype = question["key"], question["type"]
        label = (question.get("label") or {}).get(default)
        if label:
            labels.setdefault(key, label)
        if qtype == "group":
            groups[key] = _scope(question["questions"], labels, default, names)
        elif qtype == "repeat":
            repeats[key] = _scope(question["questions"], labels, default, names)
            counts.add(names[COUNT_PREFIX + key])
        else:
            plain[key] = QUESTION_TYPES.get(qtype) or _media_or_fail(qtype)
    return Scope(plain, groups, repeats, frozenset(counts))


# A media question's element holds the file's name (its bytes come as a part of the POST).
MEDIA_ANSWER = QuestionType(lambda question, form: {"type": question["type"]}, str.strip)


def _media_or_fail(qtype: str) -> QuestionType:
    if qtype in MEDIA_TYPES:
        return MEDIA_ANSWER
    return QUESTION_TYPES[qtype]


def shape_of(questionnaire: Questionnaire) -> FormShape:
    labels: dict[str, str] = {}
    default = questionnaire.default_language
    questions = questionnaire.definition["questions"]
    names = own_names(questions)
    top = _scope(questions, labels, default, names)
    settings = questionnaire.definition.get("settings") or {}
    return FormShape(
        questionnaire.id,
        questionnaire.slug,
        questionnaire.version,
        default,
        top,
        labels,
        names,
        key_bytes(settings.get("public_key")),
    )


class ShapeCache:
    """Form shapes of published and closed versions by (slug, version); held on app.state."""

    def __init__(self, limit: int = 512) -> None:
        self.limit = limit
        self.entries: OrderedDict[tuple[str, int], FormShape] = OrderedDict()

    def get(self, slug: str, version: int) -> FormShape | None:
        found = self.entries.get((slug, version))
        if found is not None:
            self.entries.move_to_end((slug, version))
        return found

    def put(self, shape: FormShape) -> None:
        self.entries[(shape.slug, shape.version)] = shape
        if len(self.entries) > self.limit:
            self.entries.popitem(last=False)


# --- parsing ----------------------------------------------------------------------------------


def parse(xml: bytes) -> Element:
    """The instance's root element; BadRequest for XML that is malformed or declares a DTD."""
    try:
        root: Element = fromstring(xml, forbid_dtd=True)
    except DefusedXmlException:
        raise BadRequest(
            "The submission may not declare a DTD or entities (refused for safety)"
        ) from None
    except ParseError as error:
        raise BadRequest(f"The submission is not well-formed XML ({error})") from None
    return root


def local_name(element: Element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def form_identity(root: Element) -> tuple[str, int]:
    """(slug, version) named by the instance's root; BadRequest when it names none."""
    slug, version = root.get("id"), root.get("version")
    if not slug or not version or not version.isdigit() or len(version) > 9:
        raise BadRequest("The instance's root must carry the form's id and version")
    return slug, int(version)


# --- mapping ----------------------------------------------------------------------------------


def _text(element: Element) -> str | None:
    if len(element):
        return None
    return element.text or ""


def _read_scope(
    element: Element,
    scope: Scope,
    answers: dict[str, Any],
    errors: list[dict[str, Any]],
    loc: list[str | int],
) -> None:
    for child in element:
        name = local_name(child)
        if name in scope.groups:
            _read_scope(child, scope.groups[name], answers, errors, loc)
        elif name in scope.repeats:
            instances = answers.setdefault(name, [])
            if not isinstance(instances, list):
                _unknown(errors, loc, name, "repeated element")
                continue
            instance: dict[str, Any] = {}
            _read_scope(child, scope.repeats[name], instance, errors, [*loc, name, len(instances)])
            instances.append(instance)
        elif name in scope.questions:
            text = _text(child)
            if text is None:
                _unknown(errors, loc, name, "a question's element holds no elements")
            elif name in answers:
                _unknown(errors, loc, name, "given twice")
            elif not scope.questions[name].answered:
                continue  # display only (a note): whatever a client wrote there is no answer
            elif text.strip():
                answers[name] = scope.questions[name].value(text)
        elif name not in scope.counts:
            _unknown(errors, loc, name, "no such question here")


def _unknown(errors: list[dict[str, Any]], loc: list[str | int], name: str, message: str) -> None:
    errors.append({"loc": ["body", "answers", *loc, name], "msg": message, "type": "unknown"})


def instance_id(meta: Element | None) -> uuid.UUID:
    found = meta.find("{*}instanceID") if meta is not None else None
    text = (found.text or "").strip() if found is not None else ""
    if not text.startswith(UUID_PREFIX):
        raise BadRequest("The instance has no meta/instanceID of the form uuid:<id>")
    try:
        return uuid.UUID(text[len(UUID_PREFIX) :])
    except ValueError:
        raise BadRequest("meta/instanceID is not uuid:<a UUID>") from None


def to_response(root: Element, shape: FormShape) -> ResponseIn:
    """The response a plaintext instance holds (an encrypted one's envelope: envelope.py);
    Invalid naming every element that does not fit."""
    answers: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    respondent: dict[str, str] = {}
    times: dict[str, str] = {}
    meta: Element | None = None
    leftovers = Element(root.tag)
    own = shape.names
    for child in root:
        name = local_name(child)
        if name == "meta":
            meta = child
        elif name == own[RESPONDENT]:
            for part in child:
                field_name, text = local_name(part), (_text(part) or "").strip()
                if field_name not in RESPONDENT_FIELDS and field_name not in TERRITORY_STEPS:
                    _unknown(errors, [RESPONDENT], field_name, "no such field")
                elif text:
                    respondent[field_name] = text
            chosen = [respondent.pop(step) for step in TERRITORY_STEPS if step in respondent]
            if chosen:
                respondent["territory_code"] = chosen[-1]
        elif name in (own[START], own[END]):
            text = (_text(child) or "").strip()
            if text:
                times["started_at" if name == own[START] else "submitted_at"] = text
        else:
            leftovers.append(child)
    response_id = instance_id(meta)
    _read_scope(leftovers, shape.top, answers, errors, [])
    if errors:
        raise Invalid("The response does not fit the questionnaire", errors=errors)
    try:
        return ResponseIn.model_validate(
            {
                "id": response_id,
                "respondent": {"group": "", **respondent},
                "answers": answers,
                "channel": "mobile",
                **times,
            }
        )
    except ValidationError as error:
        raise Invalid(
            "The response does not fit the questionnaire",
            errors=[
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": "invalid_answer"}
                for e in error.errors()
            ],
        ) from None
