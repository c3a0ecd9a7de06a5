"""pyxform's form JSON (what `workbook_to_json` makes of a workbook) as a Kenes definition.

Each survey element becomes a question (TYPES: pyxform's type -> Kenes's), its bind, control
and columns the question's fields (COLUMNS says which column a field came from, so that a
problem of the definition names its sheet row and column). What cannot be mapped is a problem
of its row; all of them are reported together.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.services.xlsform.choices import ChoicesMixin
from app.services.xlsform.vocabulary import (
    COLUMNS,
    FLAGS,
    GROUP_LIST,
    META_KINDS,
    RELATIVE,
    SELECTS,
    TYPES,
    UNCHECKED,
    XML_EXTERNAL,
    bounds_in,
    language_code,
    slug,
    yes_no,
)

Loc = list[str | int]


@dataclass
class FormMapping(ChoicesMixin):
    rows: dict[str, int]
    default: str = "en"
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    places: dict[tuple[str | int, ...], int] = field(default_factory=dict)  # definition -> row
    lists: Mapping[str, Any] = field(default_factory=dict)  # the choices sheet, by list
    settings: dict[str, Any] = field(default_factory=dict)  # instance_name, public_key, ...
    files: Mapping[str, bytes] = field(default_factory=dict)  # uploaded media, by name
    file_lists: dict[str, str] = field(default_factory=dict)  # file name -> choice list
    files_refused: set[str] = field(default_factory=set)  # list files read with problems
    choice_rows: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (list, name)
    # (list, index) -> where the choice came from: ["file", "choices", row] or a file's line
    item_places: dict[tuple[str, int], Loc] = field(default_factory=dict)
    # (definition place of an inline option) -> its row of the choices sheet
    option_places: dict[tuple[str | int, ...], Loc] = field(default_factory=dict)
    choice_lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    externals: list[str] = field(default_factory=list)  # xml-external rows' names, in order

    def row_of(self, name: Any) -> int | str:
        return self.rows.get(str(name), "?")

    def row_for(self, name: str) -> int:
        """The row of a question, or of the one pyxform made it for (`x_other` for or_other,
        `x_count` for repeat_count)."""
        for suffix in ("", "_other", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in self.rows:
                return self.rows[name.removesuffix(suffix)] if suffix else self.rows[name]
        return 0

    def problem(self, name: Any, column: str, message: str) -> None:
        self.problems.append((["file", "survey", self.row_of(name), column], message))

    def row_loc(self, loc: Loc) -> Loc:
        """A definition location (questions, 3, questions, 0, relevant) as its sheet row."""
        found = self.choice_loc(loc)
        if found is not None:
            return found
        if loc[:2] == ["settings", "external_instances"] and len(loc) > 2:
            name = self.externals[loc[2]] if isinstance(loc[2], int) else None
            return ["file", "survey", self.row_of(name), "name"]
        if loc and loc[0] == "settings":
            # settings are on the settings sheet's one row; the whole of them: the first
            column = loc[1] if len(loc) > 1 else next(iter(self.settings), "settings")
            return ["file", "settings", 2, column]
        for end in range(len(loc), 0, -1):
            row = self.places.get(tuple(loc[:end]))
            if row is not None:
                rest = loc[end:]
                column = COLUMNS.get(str(rest[0]), str(rest[0])) if rest else "type"
                return ["file", "survey", row, column]
        return ["file", *loc]

    def text(self, value: Any, name: Any, column: str) -> dict[str, str] | None:
        """A pyxform text ({language name: text} or one string) as I18nText."""
        if value is None or value == "" or value == {}:
            return None
        if not isinstance(value, Mapping):
            return {self.default: str(value)}
        texts: dict[str, str] = {}
        for language, text in value.items():
            code = self.default if language == "default" else language_code(language)
            if code is None:
                self.problem(name, f"{column}::{language}", f"no language code in '{language}'")
                continue
            if text:
                texts.setdefault(code, str(text))
        return texts or None

    # --- the form -----------------------------------------------------------------------------

    def form(self, form: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
        language = form.get("default_language") or "default"
        if language != "default":
            code = language_code(language)
            if code is None:
                self.problems.append(
                    (
                        ["file", "settings", 2, "default_language"],
                        f"no language code in '{language}' (write it as 'Français (fr)')",
                    )
                )
            else:
                self.default = code
        self.lists = form.get("choices") or {}
        self.externals = list(_externals(form.get("children") or []))
        groups = self.groups(self.lists.get(GROUP_LIST))
        questions = self.children(form.get("children") or [], ("questions",))
        title = form.get("title") or form.get("id_string") or "form"
        access = next((v for k, v in settings.items() if str(k).strip() == "access"), "token")
        # Titles in other languages, and the description: columns of Kenes's own workbook
        # (services/xlsform/export.py); XLSForm's form_title has one language.
        titles = self.text(title, None, "form_title") or {self.default: "form"}
        more = self.text(form.get("kenes_title"), None, "kenes_title") or {}
        titles |= {code: text for code, text in more.items() if code != self.default}
        definition: dict[str, Any] = {
            "slug": slug(str(form.get("id_string") or "")) or "form",
            "title": titles,
            "default_language": self.default,
            "access": access,
            "respondent_groups": groups,
            "questions": questions,
        }
        description = self.text(form.get("kenes_description"), None, "kenes_description")
        if description:
            definition["description"] = description
        if self.choice_lists:
            definition["choice_lists"] = self.choice_lists
        form_settings: dict[str, Any] = {
            name: str(form[name]).strip()
            for name in ("instance_name", "public_key")
            if form.get(name) not in (None, "")
        }
        if "instance_name" in form_settings:
            form_settings["instance_name"] = self.expression(form_settings["instance_name"])
        if self.externals:
            form_settings["external_instances"] = self.externals
        if form_settings:
            definition["settings"] = self.settings = form_settings
        return definition

    def groups(self, listed: Any) -> list[dict[str, Any]]:
        if not listed:
            return [
                {"key": "respondent", "category": "citizen", "label": {self.default: "Respondent"}}
            ]
        return [
            {
                "key": choice.get("name"),
                "label": self.text(choice.get("label"), None, "label") or {},
                "category": choice.get("category"),
            }
            for choice in listed
        ]

    def children(
        self, elements: list[Mapping[str, Any]], path: tuple[str | int, ...]
    ) -> list[dict[str, Any]]:
        questions: list[dict[str, Any]] = []
        # pyxform writes a repeat_count expression as a calculate `<repeat>_count` of its own
        # (no sheet row) before the repeat: read back as the repeat's count.
        made = {
            str(element.get("name")): element
            for element in elements
            if element.get("type") == "calculate" and str(element.get("name")) not in self.rows
        }
        for element in elements:
            kind = str(element.get("type") or "")
            name = element.get("name")
            if kind == "group" and name == "meta":
                # pyxform's meta block: its instanceID and instanceName are the form's own;
                # an `audit` row of the sheet is put there too
                audits = [e for e in element.get("children") or [] if e.get("type") == "audit"]
                questions += self.children(audits, path)[: len(audits)]
                continue
            if str(name) in made and str(name).removesuffix("_count") in self.rows:
                continue
            if kind == XML_EXTERNAL:  # the form's (settings.external_instances), no answer
                continue
            place = (*path, len(questions))
            question = self.question(element, kind, place, made)
            if question is not None:
                self.places[place] = self.row_for(str(name))
                questions.append(question)
        return questions

    def question(
        self,
        element: Mapping[str, Any],
        kind: str,
        place: tuple[str | int, ...],
        made: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any] | None:
        name = element.get("name")
        bind = element.get("bind") or {}
        control = element.get("control") or {}
        question: dict[str, Any] = {"key": name}
        label = self.text(element.get("label"), name, "label")
        if label:
            question["label"] = label
        media = self.media(element.get("media"), name)
        if media:
            question["media"] = media
        if kind in ("group", "repeat"):
            return self.container(question, element, kind, place, made)
        if kind in META_KINDS:
            question.pop("media", None)  # shown to no one
            question.update(type="meta", meta=kind)
            self.binds(question, bind, name, "meta")
            if control.get("appearance"):
                question["appearance"] = str(control["appearance"])
            return question
        if kind in SELECTS:
            if not self.select(question, element, kind):
                return None
            listed = str(element.get("list_name") or "")
            for index, option in enumerate(question.get("options") or ()):
                row = self.choice_rows.get((listed, option["value"]))
                if row is not None:  # (or_other's "other" has none)
                    self.option_places[(*place, "options", index)] = ["file", "choices", row]
        elif kind == "hidden" and bind.get("calculate"):
            question["type"] = "calculate"  # what pyxform writes for a calculate, the same
        elif kind in TYPES:
            question["type"] = TYPES[kind]
            if kind in FLAGS:
                question[FLAGS[kind]] = True
            if question["type"] == "audio":
                self.quality(question, element)
        elif kind == "range":
            if not self.scale(question, element, name):
                return None
        else:
            self.problem(name, "type", f"type '{kind}' is not supported")
            return None
        if element.get("choice_filter") and kind not in SELECTS:
            self.problem(name, "choice_filter", "only a select takes a choice_filter")
        if question["type"] == "calculate":
            if bind.get("calculate"):
                question["calculation"] = self.expression(bind["calculate"])
        elif bind.get("calculate"):
            self.problem(name, "calculation", "only calculate questions take a calculation")
        elif "label" not in question:
            question["label"] = {self.default: str(name)}
        self.binds(question, bind, name, question["type"])
        help_text = self.text(element.get("hint"), name, "hint")
        if help_text:
            question["help"] = help_text
        guidance = self.text(element.get("guidance_hint"), name, "guidance_hint")
        if guidance and question["type"] != "calculate":
            question["guidance_hint"] = guidance
        if element.get("default") not in (None, ""):
            question["default"] = str(element["default"])
            if question["type"] == "boolean":
                question["default"] = yes_no(question["default"])
        if control.get("appearance"):
            question["appearance"] = str(control["appearance"])
        self.bounds(question, element)
        return question

    def container(
        self,
        question: dict[str, Any],
        element: Mapping[str, Any],
        kind: str,
        place: tuple[str | int, ...],
        made: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any] | None:
        name = question["key"]
        control = element.get("control") or {}
        question["type"] = kind
        if kind == "repeat" and control.get("jr:count"):
            count = str(control["jr:count"]).strip()
            counter = made.get(count.removeprefix("${").removesuffix("}"))
            if counter is not None and count == "${" + f"{name}_count" + "}":
                count = str((counter.get("bind") or {}).get("calculate") or count)
            question["count"] = self.expression(count)
        if kind == "repeat":
            self.repeat_counts(question, element, name)
            help_text = self.text(element.get("hint"), name, "hint")
            if help_text:
                question["help"] = help_text
            if "label" not in question:
                question["label"] = {self.default: str(name)}
        self.binds(question, element.get("bind") or {}, name, kind)
        if control.get("appearance"):
            question["appearance"] = str(control["appearance"])
        question["questions"] = self.children(
            list(element.get("children") or []), (*place, "questions")
        )
        if not question["questions"]:
            self.problem(name, "type", f"an empty {kind}")
            return None
        return question

    def quality(self, question: dict[str, Any], element: Mapping[str, Any]) -> None:
        """An audio's `quality` parameter (pyxform puts it on the recordaudio action of a
        background-audio, on the bind of an audio)."""
        actions = element.get("actions") or [{}]
        found = (element.get("bind") or {}).get("odk:quality") or actions[0].get("odk:quality")
        if found:
            question["quality"] = str(found)

    def repeat_counts(
        self, question: dict[str, Any], element: Mapping[str, Any], name: Any
    ) -> None:
        """`kenes_min_count` / `kenes_max_count` (XLSForm has no bounds on instances)."""
        for bound in ("min_count", "max_count"):
            value = element.get(f"kenes_{bound}")
            if value in (None, ""):
                continue
            try:
                question[bound] = int(str(value).strip())
            except ValueError:
                self.problem(name, f"kenes_{bound}", "a whole number")

    def scale(self, question: dict[str, Any], element: Mapping[str, Any], name: Any) -> bool:
        parameters = element.get("parameters") or {}
        try:
            start, end, step = (
                float(parameters.get(part, default))
                for part, default in (("start", 1), ("end", 10), ("step", 1))
            )
        except (TypeError, ValueError):
            self.problem(name, "parameters", "range parameters are numbers")
            return False
        if not all(value.is_integer() for value in (start, end, step)) or step <= 0:
            self.problem(name, "parameters", "only whole-number ranges map to a scale (yet)")
            return False
        question.update(type="scale", min=int(start), max=int(end))
        if step != 1:
            question["step"] = int(step)
        return True

    def binds(
        self, question: dict[str, Any], bind: Mapping[str, Any], name: Any, kind: str
    ) -> None:
        if bind.get("relevant"):
            question["relevant"] = self.expression(bind["relevant"])
        if kind in ("group", "repeat", "meta"):
            return
        required = bind.get("required")
        if required not in (None, "") and kind not in UNCHECKED:
            flag = yes_no(required)
            question["required"] = flag if flag is not None else self.expression(required)
        elif required not in (None, "") and yes_no(required) is not False:
            self.problem(name, "required", f"a {kind} is never answered")
        message = self.text(bind.get("jr:requiredMsg"), name, "required_message")
        if message:
            question["required_message"] = message
        if bind.get("constraint"):
            question["constraint"] = self.expression(bind["constraint"])
        message = self.text(bind.get("jr:constraintMsg"), name, "constraint_message")
        if message:
            question["constraint_message"] = message
        read_only = bind.get("readonly")
        if read_only not in (None, ""):
            flag = yes_no(read_only)
            if kind != "calculate":
                question["read_only"] = flag if flag is not None else self.expression(read_only)

    def expression(self, text: Any) -> str:
        """pyxform's own additions use relative paths (or_other: `../services`)."""
        return RELATIVE.sub(r"${\1}", str(text)).strip()

    def bounds(self, question: dict[str, Any], element: Mapping[str, Any]) -> None:
        """Bounds written as a constraint without a message (`. >= 1 and . <= 10`) become
        min/max (min_selected/max_selected, max_length): the same rule, read by every client.
        Kenes's own workbook writes bounds and a constraint of the author's as
        `(bounds) and (constraint)` with the latter alone in `kenes_constraint`: split again."""
        text, qtype = question.get("constraint"), question["type"]
        if not text:
            return
        own = self.expression(element.get("kenes_constraint") or "")
        suffix = f") and ({own})"
        if own and text.startswith("(") and text.endswith(suffix):
            found = bounds_in(text[1 : -len(suffix)], qtype)
            if found is not None:
                question.update(found, constraint=own)
            return
        if "constraint_message" in question:
            return
        found = bounds_in(text, qtype)
        if found is not None:
            question.pop("constraint")
            question.update(found)


def _externals(elements: list[Mapping[str, Any]]) -> Iterator[str]:
    """The names of the form's xml-external rows, in order (groups included)."""
    for element in elements:
        if element.get("type") == XML_EXTERNAL:
            yield str(element.get("name"))
        yield from _externals(list(element.get("children") or []))
