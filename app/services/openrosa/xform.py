"""A stored definition as an ODK XForm: XLSForm rows built here, the XML built by pyxform.

Each question type is mapped in one place, QUESTION_TYPES: the XLSForm columns it becomes and
how its value in a submitted instance becomes an answer (services/openrosa/submission.py reads
that half). A new question type is one entry there.

The respondent's dimensions are questions of the form, in a group `_respondent` at the top
(`group`; `gender`, `age_band`, and the territory, all optional since the definition has no way
yet to say which it asks for: `territory_code` typed in, or when the server has territories a
cascade `territory_1`..`territory_5` over the form media territories.csv,
services/openrosa/media.py); `_start` and `_end` are the device's start and end times. A
repeat's number of instances is `jr:count` of a node `_count_<key>` before it: with a `count`
expression a calculate of it (the client makes exactly that many, as the server requires);
else, with `min_count`/`max_count`, an integer question whose constraint holds the bounds.
Keys may start with `_` too: where a key already takes one of these names the form's own
element gets a numbered one (`_start_2`; `own_names`, which submission reading uses too).

Expression strings (`relevant`, `required`, `constraint`, `calculation`, `count`) are XLSForm
syntax already and pass through as written; JSON conditions are written as XLSForm expressions
by `xpath`.
"""

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from pyxform.errors import PyXFormError
from pyxform.xls2xform import convert

from app.errors import Invalid
from app.models.questionnaires import Questionnaire, Status
from app.models.responses import AGE_BANDS, GENDERS

ROOT = "data"
RESPONDENT = "_respondent"
START, END = "_start", "_end"
COUNT_PREFIX = "_count_"
# The territory cascade (when the server has territories): one optional select per depth of
# the tree (a root, then its child, ... at most a settlement: five levels), each listing the
# children of the one chosen before; the deepest answered is the respondent's territory.
TERRITORY_STEP = "territory_"
TERRITORY_DEPTH = 5
TERRITORY_LIST = "territories"  # instance('territories'), from territories.csv
LANGUAGE_NAMES = {"kk": "Қазақша (kk)", "ru": "Русский (ru)", "en": "English (en)"}

Texts = Mapping[str, str]
Row = dict[str, str]


def _language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, f"{code} ({code})")


# --- words the form adds (the definition has its own labels for everything else) -------------

WORDS: dict[str, dict[str, str]] = {
    "respondent": {"kk": "Респондент", "ru": "Респондент", "en": "Respondent"},
    "group": {"kk": "Респонденттер тобы", "ru": "Группа респондентов", "en": "Respondent group"},
    "gender": {"kk": "Жынысы", "ru": "Пол", "en": "Gender"},
    "age_band": {"kk": "Жас тобы", "ru": "Возрастная группа", "en": "Age band"},
    "territory_code": {
        "kk": "Аумақ коды (ҚАТО)",
        "ru": "Код территории (КАТО)",
        "en": "Territory code (KATO)",
    },
    "territory_root": {
        "kk": "Облыс немесе республикалық маңызы бар қала",
        "ru": "Область или город республиканского значения",
        "en": "Region or city of republican significance",
    },
    "territory_next": {
        "kk": "Оның ішінде (міндетті емес)",
        "ru": "В том числе (необязательно)",
        "en": "Within it (optional)",
    },
    "how_many": {"kk": "{label}: саны", "ru": "{label}: сколько?", "en": "{label}: how many?"},
    "allowed": {
        "kk": "Рұқсат етілген: {range}",
        "ru": "Допустимо: {range}",
        "en": "Allowed: {range}",
    },
    "selected": {
        "kk": "Таңдалғандар саны: {range}",
        "ru": "Выбрано должно быть: {range}",
        "en": "Number selected: {range}",
    },
    "characters": {
        "kk": "Ең көбі {n} таңба",
        "ru": "Не более {n} символов",
        "en": "At most {n} characters",
    },
    "true": {"kk": "Иә", "ru": "Да", "en": "Yes"},
    "false": {"kk": "Жоқ", "ru": "Нет", "en": "No"},
}
GENDER_WORDS = {
    "female": {"kk": "Әйел", "ru": "Женский", "en": "Female"},
    "male": {"kk": "Ер", "ru": "Мужской", "en": "Male"},
    "other": {"kk": "Басқа", "ru": "Другой", "en": "Other"},
    "undisclosed": {"kk": "Айтқым келмейді", "ru": "Предпочитаю не говорить", "en": "Undisclosed"},
}
AGE_WORDS = {
    "under_18": {"kk": "18-ге дейін", "ru": "До 18", "en": "Under 18"},
    "65+": {"kk": "65 және одан жоғары", "ru": "65 и старше", "en": "65 and over"},
}
BOOLEAN_LIST = "_boolean"


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{low}…{high}"
    return f"≥ {low}" if low is not None else f"≤ {high}"


def _bounds(subject: str, low: Any, high: Any) -> str:
    parts = []
    if low is not None:
        parts.append(f"{subject} >= {low}")
    if high is not None:
        parts.append(f"{subject} <= {high}")
    return " and ".join(parts)


# --- conditions as XPath ----------------------------------------------------------------------


def _literal(value: Any, qtype: str, ordered: bool = False) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # XPath numbers have no exponent: 1e-05 is written 0.00001.
        return repr(value) if "e" not in repr(value) else f"{value:.20f}".rstrip("0")
    text = str(value)
    if qtype == "date" and ordered:
        return f"date('{text}')"
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    pieces = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{piece}'" for piece in pieces) + ")"


_COMPARISONS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def xpath(condition: Mapping[str, Any], types: Mapping[str, str]) -> str:
    """A JSON condition as an XLSForm expression (`${key}` references), meaning the same
    (services/conditions.py): an unanswered question is '' in XPath, so `!=` and `not(...)`
    hold for it and every other comparison fails, as there."""
    if "all" in condition:
        return "(" + " and ".join(xpath(part, types) for part in condition["all"]) + ")"
    if "any" in condition:
        return "(" + " or ".join(xpath(part, types) for part in condition["any"]) + ")"
    if "not" in condition:
        return f"not({xpath(condition['not'], types)})"
    key, op, value = condition["question"], condition["op"], condition.get("value")
    qtype = types.get(key, "text")
    ref = "${" + key + "}"
    if op == "answered":
        return f"{ref} != ''"
    if op == "contains":
        return f"selected({ref}, {_literal(value, qtype)})"
    if op in ("in", "not_in"):
        either = " or ".join(f"{ref} = {_literal(item, qtype)}" for item in value or ())
        return f"({either})" if op == "in" else f"not({either})"
    ordered = op in ("gt", "gte", "lt", "lte")
    return f"{ref} {_COMPARISONS[op]} {_literal(value, qtype, ordered)}"


# --- question types: one entry each -----------------------------------------------------------


def _as_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text  # the answer check names the problem


def _as_number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    if number != number or number in (float("inf"), float("-inf")):
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def _as_boolean(text: str) -> Any:
    return {"true": True, "1": True, "false": False, "0": False}.get(text, text)


def _as_list(text: str) -> Any:
    return text.split()


def _as_text(text: str) -> Any:
    return text


@dataclass(frozen=True)
class QuestionType:
    """How one Kenes question type is asked in an XForm, and read back from an instance."""

    columns: Callable[[Mapping[str, Any], "_Form"], Row]
    value: Callable[[str], Any]
    # false for display-only types: their element is in the instance but never an answer
    answered: bool = True
    # takes `required` and `constraint` (a calculate has neither; a note is never answered)
    checked: bool = True


def _choice_columns(kind: str, question: Mapping[str, Any], form: "_Form") -> Row:
    name = form.choice_list(question["key"], question["options"])
    row = {"type": f"{kind} {name}"}
    least, most = question.get("min_selected"), question.get("max_selected")
    if least is not None or most is not None:
        row["constraint"] = _bounds("count-selected(.)", least, most)
        row |= form.texts("constraint_message", form.word("selected", range=_range(least, most)))
    return row


def _number_columns(kind: str, question: Mapping[str, Any], form: "_Form") -> Row:
    row = {"type": kind}
    low, high = question.get("min"), question.get("max")
    if low is not None or high is not None:
        row["constraint"] = _bounds(".", low, high)
        row |= form.texts("constraint_message", form.word("allowed", range=_range(low, high)))
    return row


def _text_columns(question: Mapping[str, Any], form: "_Form") -> Row:
    limit = question.get("max_length", 2000)
    return {
        "type": "text",
        "constraint": f"string-length(.) <= {limit}",
        **form.texts("constraint_message", form.word("characters", n=limit)),
    }


def _scale_columns(question: Mapping[str, Any], form: "_Form") -> Row:
    start, end, step = question["min"], question["max"], question.get("step") or 1
    return {"type": "range", "parameters": f"start={start} end={end} step={step}"}


def _boolean_columns(question: Mapping[str, Any], form: "_Form") -> Row:
    form.boolean_list()
    return {"type": f"select_one {BOOLEAN_LIST}"}


QUESTION_TYPES: dict[str, QuestionType] = {
    "single_choice": QuestionType(partial(_choice_columns, "select_one"), _as_text),
    "multiple_choice": QuestionType(partial(_choice_columns, "select_multiple"), _as_list),
    "text": QuestionType(_text_columns, _as_text),
    "integer": QuestionType(partial(_number_columns, "integer"), _as_int),
    "decimal": QuestionType(partial(_number_columns, "decimal"), _as_number),
    "scale": QuestionType(_scale_columns, _as_int),
    "boolean": QuestionType(_boolean_columns, _as_boolean),
    "date": QuestionType(lambda question, form: {"type": "date"}, _as_text),
    "note": QuestionType(lambda question, form: {"type": "note"}, _as_text, False, False),
    # ODK sends a calculation's value as text; the server recomputes deterministic ones.
    "calculate": QuestionType(
        lambda question, form: {"type": "calculate", "calculation": question["calculation"]},
        _as_text,
        checked=False,
    ),
}


# --- the form ---------------------------------------------------------------------------------


class _Form:
    """The XLSForm sheets being written for one definition."""

    def __init__(self, definition: Mapping[str, Any], default: str) -> None:
        self.default = default
        self.languages = _languages(definition, default)
        self.survey: list[Row] = []
        self.choices: list[Row] = []
        self.lists: set[str] = set()
        self.types: dict[str, str] = {}
        self.names = own_names(definition["questions"])

    def texts(self, column: str, texts: Texts | None) -> Row:
        if not texts:
            return {}
        return {
            f"{column}::{_language_name(code)}": text
            for code, text in texts.items()
            if code in self.languages
        }

    def word(self, name: str, **values: Any) -> dict[str, str]:
        return {
            code: WORDS[name][code].format(**values)
            for code in self.languages
            if code in WORDS[name]
        }

    def add_list(self, name: str, options: Sequence[tuple[str, Texts]]) -> None:
        self.lists.add(name)
        for value, label in options:
            self.choices.append({"list_name": name, "name": value, **self.texts("label", label)})

    def choice_list(self, key: str, options: Sequence[Mapping[str, Any]]) -> str:
        """A list per question, named by its key (a second question of that key, in another
        repeat, gets a numbered name)."""
        name, number = key, 1
        while name in self.lists or name == BOOLEAN_LIST:
            number += 1
            name = f"{key}_{number}"
        self.add_list(name, [(option["value"], option["label"]) for option in options])
        return name

    def boolean_list(self) -> None:
        if BOOLEAN_LIST not in self.lists:
            self.add_list(BOOLEAN_LIST, [("true", WORDS["true"]), ("false", WORDS["false"])])

    def respondent(self, groups: Sequence[Mapping[str, Any]], territories: bool) -> None:
        self.survey.append(
            {
                "type": "begin_group",
                "name": self.names[RESPONDENT],
                **self.texts("label", WORDS["respondent"]),
            }
        )
        if len(groups) == 1:
            # One group: nothing to ask.
            self.survey.append(
                {"type": "calculate", "name": "group", "calculation": f"'{groups[0]['key']}'"}
            )
        else:
            self.add_list("_group", [(group["key"], group["label"]) for group in groups])
            self.survey.append(
                {
                    "type": "select_one _group",
                    "name": "group",
                    "required": "yes",
                    **self.texts("label", WORDS["group"]),
                }
            )
        self.add_list("_gender", [(value, GENDER_WORDS[value]) for value in GENDERS])
        self.add_list(
            "_age_band", [(value, AGE_WORDS.get(value, _same(value))) for value in AGE_BANDS]
        )
        for name, kind in (("gender", "select_one _gender"), ("age_band", "select_one _age_band")):
            self.survey.append({"type": kind, "name": name, **self.texts("label", WORDS[name])})
        if territories:
            self.territory_cascade()
        else:
            self.survey.append(
                {
                    "type": "text",
                    "name": "territory_code",
                    **self.texts("label", WORDS["territory_code"]),
                }
            )
        self.survey.append({"type": "end_group"})

    def territory_cascade(self) -> None:
        """`territory_1` lists the roots (`parent` empty); each next one the children of the
        one before, asked only when it was answered and has children."""
        for depth in range(1, TERRITORY_DEPTH + 1):
            row: Row = {
                "type": f"select_one_from_file {TERRITORY_LIST}.csv",
                "name": f"{TERRITORY_STEP}{depth}",
            }
            if depth == 1:
                row["choice_filter"] = "parent=''"
                row |= self.texts("label", WORDS["territory_root"])
            else:
                before = "${" + f"{TERRITORY_STEP}{depth - 1}" + "}"
                row["choice_filter"] = f"parent={before}"
                row["relevant"] = (
                    f"{before} != '' and "
                    f"count(instance('{TERRITORY_LIST}')/root/item[parent={before}]) > 0"
                )
                row |= self.texts("label", WORDS["territory_next"])
            self.survey.append(row)

    def condition(self, relevant: Mapping[str, Any] | str) -> str:
        """A `relevant`: an expression string as written, a JSON condition as XPath."""
        return relevant if isinstance(relevant, str) else xpath(relevant, self.types)

    def questions(self, questions: Sequence[Mapping[str, Any]]) -> None:
        for question in questions:
            qtype = question["type"]
            common: Row = {
                "name": question["key"],
                **self.texts("label", question.get("label")),
                **self.texts("hint", question.get("help")),
                **self.texts("guidance_hint", question.get("guidance_hint")),
            }
            if question.get("relevant") is not None:
                common["relevant"] = self.condition(question["relevant"])
            if question.get("appearance"):
                common["appearance"] = question["appearance"]
            if qtype == "group":
                self.survey.append({"type": "begin_group", **common})
                self.questions(question["questions"])
                self.survey.append({"type": "end_group"})
            elif qtype == "repeat":
                self.repeat(question, common)
            else:
                kind = QUESTION_TYPES[qtype]
                row = kind.columns(question, self)
                if kind.checked:
                    row = self.with_rules(question, row)
                if question.get("default") is not None:
                    row["default"] = _default(question["default"])
                if question.get("read_only"):
                    row["read_only"] = "yes"
                self.survey.append({**common, **row})
                self.types[question["key"]] = qtype

    def with_rules(self, question: Mapping[str, Any], row: Row) -> Row:
        """The row with the question's `required` and `constraint`, the user's constraint
        joined to the one its type brings (both must hold). One message per bind: the user's
        when given, else, with a user constraint, none (the client's own wording): the type's
        message would name a bound the answer may well keep."""
        rules: Row = {}
        required = question.get("required", False)
        if required is not False:
            rules["required"] = "yes" if required is True else required
            rules |= self.texts("required_message", question.get("required_message"))
        constraint = question.get("constraint")
        if constraint:
            own = row.get("constraint")
            rules["constraint"] = f"({own}) and ({constraint})" if own else constraint
            row = {name: text for name, text in row.items() if not name.startswith("constraint_")}
            rules |= self.texts("constraint_message", question.get("constraint_message"))
        return row | rules

    def repeat(self, question: Mapping[str, Any], common: Row) -> None:
        """The repeat, after its count node when it has one. With `count` (an expression) the
        node is a calculate of it: the client makes exactly that many instances, which is what
        the server checks (`min_count`/`max_count` are then checked by the server alone); else
        with `min_count`/`max_count` it is a question asking how many, bounded."""
        least, most = question.get("min_count"), question.get("max_count")
        begin: Row = {"type": "begin_repeat", **common}
        count = self.names[COUNT_PREFIX + question["key"]]
        relevant = {"relevant": common["relevant"]} if "relevant" in common else {}
        if question.get("count"):
            self.survey.append(
                {"type": "calculate", "name": count, "calculation": question["count"], **relevant}
            )
            begin["repeat_count"] = "${" + count + "}"
        elif least is not None or most is not None:
            label = question["label"]
            self.survey.append(
                {
                    "type": "integer",
                    "name": count,
                    "required": "yes",
                    "constraint": _bounds(".", least or 0, most),
                    **self.texts("label", _how_many(label)),
                    **self.texts(
                        "constraint_message", self.word("allowed", range=_range(least or 0, most))
                    ),
                    **relevant,
                }
            )
            begin["repeat_count"] = "${" + count + "}"
        self.survey.append(begin)
        self.questions(question["questions"])
        self.survey.append({"type": "end_repeat"})


def _default(value: Any) -> str:
    """A `default` as XForm text (a boolean is the yes/no select's value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def own_names(questions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The names of the elements the form adds (RESPONDENT, START, END, and COUNT_PREFIX +
    each repeat's key) -> the name each has in this form: itself, or numbered when a question
    already has it (keys are unique in a definition, and may start with `_`)."""
    taken: set[str] = set()
    repeats: list[str] = []
    stack = list(questions)
    while stack:
        question = stack.pop()
        taken.add(question["key"])
        if question["type"] == "repeat":
            repeats.append(question["key"])
        stack.extend(question.get("questions") or ())
    names: dict[str, str] = {}
    for base in (RESPONDENT, START, END, *(COUNT_PREFIX + key for key in sorted(repeats))):
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}_{number}"
        taken.add(name)
        names[base] = name
    return names


def _same(value: str) -> dict[str, str]:
    return {code: value for code in LANGUAGE_NAMES}


def _how_many(label: Texts) -> dict[str, str]:
    template = WORDS["how_many"]
    return {
        code: template.get(code, "{label}: #").format(label=text) for code, text in label.items()
    }


def _languages(definition: Mapping[str, Any], default: str) -> list[str]:
    """The languages of the title: the form is offered in these, the default first."""
    codes = [default, *(code for code in definition["title"] if code != default)]
    return codes


def xlsform_rows(
    definition: Mapping[str, Any],
    *,
    slug: str,
    version: int,
    default: str,
    territories: bool = False,
) -> dict[str, list[Row]]:
    """The XLSForm sheets (survey, choices, settings) for a definition; with `territories`,
    the territory is asked as a cascade over territories.csv, else its code is typed in."""
    form = _Form(definition, default)
    form.respondent(definition["respondent_groups"], territories)
    form.questions(definition["questions"])
    form.survey += [
        {"type": "start", "name": form.names[START]},
        {"type": "end", "name": form.names[END]},
    ]
    settings = {
        "form_id": slug,
        "version": str(version),
        "form_title": definition["title"][default],
        "default_language": _language_name(default),
    }
    return {"survey": form.survey, "choices": form.choices, "settings": [settings]}


@dataclass(frozen=True)
class XForm:
    xml: bytes
    md5: str  # of `xml`, as the form list's `hash` gives it ("md5:<hex>")


def build_xform(
    definition: Mapping[str, Any],
    *,
    slug: str,
    version: int,
    default: str,
    territories: bool = False,
) -> XForm:
    """The XForm pyxform makes of the definition (CPU-bound: call it off the event loop)."""
    sheets = xlsform_rows(
        definition, slug=slug, version=version, default=default, territories=territories
    )
    try:
        xml = convert(sheets, form_name=ROOT).xform.encode("utf-8")
    except PyXFormError as error:
        # A definition Kenes accepts that pyxform does not (a key `meta`): said, never a 500.
        # Its row numbers are of the rows written here, not of anything the author has.
        reason = re.sub(r"^\[row : \d+\] ", "", str(error))
        raise Invalid(
            f"This questionnaire cannot be written as an XForm: {reason}",
            errors=[{"loc": ["questions"], "msg": reason, "type": "xform"}],
        ) from None
    return XForm(xml, hashlib.md5(xml, usedforsecurity=False).hexdigest())


class XFormCache:
    """XForms of published and closed versions (their definitions never change), most
    recently used kept; held on app.state."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self.entries: OrderedDict[Any, XForm] = OrderedDict()

    def get(self, key: Any) -> XForm | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: Any, xform: XForm) -> None:
        self.entries[key] = xform
        if len(self.entries) > self.limit:
            self.entries.popitem(last=False)


async def xform_of(
    questionnaire: Questionnaire,
    cache: XFormCache,
    limiter: CapacityLimiter,
    territories: bool = False,
) -> XForm:
    """The questionnaire's XForm, built in a worker thread once per published version (and
    per whether territories are offered as a list: services/openrosa/media.py)."""
    frozen = questionnaire.status != Status.draft
    key = (questionnaire.id, territories)
    if frozen:
        cached = cache.get(key)
        if cached is not None:
            return cached
    work = partial(
        build_xform,
        questionnaire.definition,
        slug=questionnaire.slug,
        version=questionnaire.version,
        default=questionnaire.default_language,
        territories=territories,
    )
    xform = await anyio.to_thread.run_sync(work, limiter=limiter)
    if frozen:
        cache.put(key, xform)
    return xform
