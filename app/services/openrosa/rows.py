"""A stored definition as XLSForm sheets (survey, choices, settings): the rows pyxform turns
into the XForm clients fill in, and the rows of the XLSForm workbook given back to authors.
One mapping, two readers (`exact`): what differs is said where it differs.

For the XForm, the respondent's dimensions are questions of the form, in a group `_respondent`
at the top (`group`; `gender`, `age_band`, and the territory, all optional since the definition
has no way yet to say which it asks for: `territory_code` typed in, or when the server has
territories a cascade `territory_1`..`territory_5` over the form media territories.csv,
services/openrosa/media.py); `_start` and `_end` are the device's start and end times. A
repeat's number of instances is `jr:count` of a node `_count_<key>` before it: with a `count`
expression a calculate of it (the client makes exactly that many, as the server requires);
else, with `min_count`/`max_count`, an integer question whose constraint holds the bounds.
Keys may start with `_` too: where a key already takes one of these names the form's own
element gets a numbered one (`_start_2`; `own_names`, which submission reading uses too).

For the author's workbook (`exact`), none of these: the respondent groups are the choice list
`respondent_group` (with its `category` column), a repeat's `count` is its `repeat_count`, and
what XLSForm has no column for is in `kenes_*` columns (kenes_type, kenes_constraint,
kenes_min_count, kenes_max_count; in settings kenes_title::<language>, kenes_description::...).

Expression strings (`relevant`, `required`, `constraint`, `calculation`, `count`) are XLSForm
syntax already and pass through as written; JSON conditions are written as XLSForm expressions
by `xpath`.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from app.services.openrosa.question_types import (
    BOOLEAN_LIST,
    QUESTION_TYPES,
    Row,
    Texts,
    bounds,
    value_range,
    xpath,
)
from app.services.openrosa.respondent import (
    RESPONDENT,
    respondent,
)
from app.services.openrosa.shared_keys import SharedNames
from app.services.openrosa.words import (
    WORDS,
    how_many,
    language_name,
)

ROOT = "data"
START, END = "_start", "_end"
COUNT_PREFIX = "_count_"
GROUP_LIST = "respondent_group"  # the respondent groups, in the author's workbook
# Fields of a definition that hold I18nText.
TEXT_FIELDS = (
    "title",
    "description",
    "label",
    "help",
    "required_message",
    "constraint_message",
    "guidance_hint",
    "image",
    "audio",
    "video",
)
MEDIA_KINDS = ("image", "audio", "video")


class Sheets:
    """The XLSForm sheets being written for one definition."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        default: str,
        *,
        exact: bool,
        shared: SharedNames | None = None,
    ) -> None:
        self.default = default
        self.exact = exact
        # For the XForm: questions of keys that repeats share, named apart for pyxform
        self.shared = shared
        self.scope: tuple[str, ...] = ()  # the repeats being written, outermost first
        self.languages = _languages(definition, default, every=exact)
        self.survey: list[Row] = []
        self.choices: list[Row] = []
        self.lists: set[str] = set()
        self.types: dict[str, str] = {}
        self.names = own_names(definition["questions"])
        for name, items in (definition.get("choice_lists") or {}).items():
            self.lists.add(name)
            for item in items:
                extra = {
                    column: str(value)
                    for column, value in item.items()
                    if column not in ("value", "label", "media") and value is not None
                }
                self.choices.append(
                    {
                        "list_name": name,
                        "name": item["value"],
                        **self.texts("label", item["label"]),
                        **self.media(item.get("media")),
                        **extra,
                    }
                )

    def texts(self, column: str, texts: Texts | None) -> Row:
        if not texts:
            return {}
        return {
            f"{column}::{language_name(code)}": texts[code]
            for code in self.languages
            if code in texts
        }

    def media(self, media: Mapping[str, Texts] | None) -> Row:
        """Media files per language as `image::<language>` (`audio::`, `video::`) columns."""
        row: Row = {}
        for kind in MEDIA_KINDS:
            row |= self.texts(kind, (media or {}).get(kind))
        return row

    def named_list(self, name: str) -> str:
        """One of the questionnaire's choice lists (written once, in __init__)."""
        return name

    def ours(self, words: Texts) -> dict[str, str]:
        """The service's own words (kk, ru, en) in every language of the form: English where
        the service has none (a form may be in any language)."""
        return {code: words.get(code, words["en"]) for code in self.languages}

    def word(self, name: str, **values: Any) -> dict[str, str]:
        return {code: text.format(**values) for code, text in self.ours(WORDS[name]).items()}

    def add_list(
        self, name: str, options: Sequence[tuple[str, Texts]], extra: Sequence[Row] = ()
    ) -> None:
        self.lists.add(name)
        for number, (value, label) in enumerate(options):
            more = extra[number] if extra else {}
            self.choices.append(
                {"list_name": name, "name": value, **self.texts("label", label), **more}
            )

    def choice_list(self, key: str, options: Sequence[Mapping[str, Any]]) -> str:
        """A list per question, named by its key (a second question of that key, in another
        repeat, or a choice list of that name, gets a numbered name)."""
        name, number = key, 1
        while name in self.lists or name == BOOLEAN_LIST:
            number += 1
            name = f"{key}_{number}"
        self.add_list(
            name,
            [(option["value"], option["label"]) for option in options],
            [self.media(option.get("media")) for option in options],
        )
        return name

    def boolean_list(self) -> None:
        if BOOLEAN_LIST not in self.lists:
            self.add_list(
                BOOLEAN_LIST,
                [("true", self.ours(WORDS["true"])), ("false", self.ours(WORDS["false"]))],
            )

    def respondent_groups(self, groups: Sequence[Mapping[str, Any]]) -> None:
        """The author's workbook: the groups as the list the import reads them from (unless a
        choice list of that name is there already: an imported form's own, the same rows)."""
        if GROUP_LIST in self.lists:
            return
        self.add_list(
            GROUP_LIST,
            [(group["key"], group["label"]) for group in groups],
            [{"category": group["category"]} for group in groups],
        )

    def condition(self, relevant: Mapping[str, Any] | str) -> str:
        """A `relevant`: an expression string as written, a JSON condition as XPath."""
        return relevant if isinstance(relevant, str) else xpath(relevant, self.types)

    def questions(self, questions: Sequence[Mapping[str, Any]]) -> None:
        for question in questions:
            qtype = question["type"]
            start = len(self.survey)
            common: Row = {
                "name": self.shared.name_of(question) if self.shared else question["key"],
                **self.texts("label", question.get("label")),
                **self.texts("hint", question.get("help")),
                **self.texts("guidance_hint", question.get("guidance_hint")),
                **self.media(question.get("media")),
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
                read_only = question.get("read_only")
                if isinstance(read_only, bool):
                    row["read_only"] = "yes" if read_only else "no"
                elif read_only is not None:
                    row["read_only"] = read_only  # an expression
                self.survey.append({**common, **row})
                self.types[question["key"]] = qtype
            if self.shared is not None:  # a repeat's own rows: in the enclosing scope
                for written in self.survey[start:]:
                    self.shared.rewrite(written, self.scope)

    def with_rules(self, question: Mapping[str, Any], row: Row) -> Row:
        """The row with the question's `required` and `constraint`, the user's constraint
        joined to the one its type brings (both must hold). One message per bind: the user's
        when given, else, with a user constraint, none (the client's own wording): the type's
        message would name a bound the answer may well keep. In the author's workbook the
        user's constraint alone is in `kenes_constraint` too, so that the import can tell the
        two apart again."""
        rules: Row = {}
        required = question.get("required", False)
        if required is not False:
            rules["required"] = "yes" if required is True else required
            rules |= self.texts("required_message", question.get("required_message"))
        constraint = question.get("constraint")
        if constraint:
            own = row.get("constraint")
            rules["constraint"] = f"({own}) and ({constraint})" if own else constraint
            if own and self.exact:
                rules["kenes_constraint"] = constraint
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
        outer, self.scope = self.scope, (*self.scope, question["key"])
        try:
            self._repeat(question, begin, common, least, most)
        finally:
            self.scope = outer

    def _repeat(
        self, question: Mapping[str, Any], begin: Row, common: Row, least: Any, most: Any
    ) -> None:
        if self.exact:
            if question.get("count"):
                begin["repeat_count"] = question["count"]
            for name in ("min_count", "max_count"):
                if question.get(name) is not None:
                    begin[f"kenes_{name}"] = str(question[name])
            self.survey.append(begin)
            self.questions(question["questions"])
            self.survey.append({"type": "end_repeat"})
            return
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
                    "constraint": bounds(".", least or 0, most),
                    **self.texts("label", how_many(label)),
                    **self.texts(
                        "constraint_message",
                        self.word("allowed", range=value_range(least or 0, most)),
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


def _texts_in(value: Any) -> Iterator[Mapping[str, str]]:
    """Every I18nText of a definition (questions, options, groups, nested)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for name, inner in item.items():
                if name in TEXT_FIELDS and isinstance(inner, Mapping):
                    yield inner
                elif isinstance(inner, Mapping | list):
                    stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def _languages(definition: Mapping[str, Any], default: str, *, every: bool) -> list[str]:
    """The languages the form is offered in, the default first: those of the title (the
    XForm), or every language any text has, in code order (the author's workbook: nothing is
    left out)."""
    codes = [default, *(code for code in definition["title"] if code != default)]
    if every:
        # sorted: PostgreSQL's JSONB keeps no key order, and the columns should not move
        found = {code for texts in _texts_in(definition) for code in texts}
        codes = [default, *sorted((found | set(codes)) - {default})]
    return codes


def xlsform_rows(
    definition: Mapping[str, Any],
    *,
    slug: str,
    version: int,
    default: str,
    territories: bool = False,
    shared: SharedNames | None = None,
) -> dict[str, list[Row]]:
    """The XLSForm sheets (survey, choices, settings) pyxform makes the XForm of; with
    `territories`, the territory is asked as a cascade over territories.csv, else its code is
    typed in; with `shared`, the questions of keys that repeats share named apart."""
    sheets = Sheets(definition, default, exact=False, shared=shared)
    respondent(sheets, definition["respondent_groups"], territories)
    sheets.questions(definition["questions"])
    sheets.survey += _externals(definition)
    sheets.survey += [
        {"type": "start", "name": sheets.names[START]},
        {"type": "end", "name": sheets.names[END]},
    ]
    settings = {
        "form_id": slug,
        "version": str(version),
        "form_title": definition["title"][default],
        "default_language": language_name(default),
        **_settings(definition),
    }
    return {"survey": sheets.survey, "choices": sheets.choices, "settings": [settings]}


def _settings(definition: Mapping[str, Any]) -> Row:
    """instance_name (names each response) and public_key (encrypted submissions)."""
    settings = definition.get("settings") or {}
    return {name: settings[name] for name in ("instance_name", "public_key") if settings.get(name)}


def _externals(definition: Mapping[str, Any]) -> list[Row]:
    """An xml-external row per secondary instance: `<instance id=name src=jr://file/name.xml>`."""
    names = (definition.get("settings") or {}).get("external_instances") or ()
    return [{"type": "xml-external", "name": name} for name in names]


def author_rows(
    definition: Mapping[str, Any], *, slug: str, version: int, default: str, access: str
) -> dict[str, list[Row]]:
    """The XLSForm sheets of the author's workbook: importing them gives the definition back."""
    sheets = Sheets(definition, default, exact=True)
    sheets.respondent_groups(definition["respondent_groups"])
    sheets.questions(definition["questions"])
    sheets.survey += _externals(definition)
    settings = {
        "form_id": slug,
        "version": str(version),
        "form_title": definition["title"][default],
        "default_language": language_name(default),
        "access": access,
        **_settings(definition),
    }
    for field in ("title", "description"):
        texts = dict(definition.get(field) or {})
        if field == "title":
            texts.pop(default, None)
        settings |= sheets.texts(f"kenes_{field}", texts)
    return {"survey": sheets.survey, "choices": sheets.choices, "settings": [settings]}
