"""XLSForm workbooks to questionnaire definitions, read as pyxform reads them.

pyxform does the reading and the normalising (`get_xlsform`, then `workbook_to_json`): header
and type aliases (`list name`, `Label`, `select one x`, `select all that apply x`, `int`,
`image`, ...), `label::English (en)`, `label::English`, `label:English`, `or_other`, comment
rows, `repeat_count`, names with capitals or dots, `.xls`, a missing `form_id` (taken from the
file name). Its form JSON is then mapped to a definition; rows are found again by name in the
sheet pyxform read, so that every problem is reported as `["file", "survey", row, column]`, all
of them in one answer.

Mapped: text, integer, decimal, date, select_one / select_multiple (with their lists), range
(-> scale, default 1..10 step 1), note, calculate, groups and repeats (with relevant and
repeat_count), and per question relevant, required (yes/no or an expression), required_message,
constraint, constraint_message, hint (-> help), guidance_hint, default, appearance, read_only.
Metadata rows (start, end, today, deviceid, username, ...) are left out. Other types (geopoint,
media, time, select_one_from_file, rank, ...) and choice_filter are refused, each row named.
Respondent groups come from the choice list `respondent_group` (its `category` column says
citizen or expert); without one the form gets one group `respondent` (citizen). A form with a
`public_key` (encrypted submissions) is refused.

Kenes's own workbook (services/xlsform/export.py) adds `kenes_*` columns for what XLSForm cannot
say (a boolean, bounds next to an author's constraint, a repeat's min/max count, the title in
other languages, the description); read here, so that its import gives the definition back.
"""

import io
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePath
from typing import Any

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from pydantic import ValidationError
from pyxform import aliases
from pyxform.errors import PyXFormError
from pyxform.xls2json import workbook_to_json
from pyxform.xls2json_backends import DefinitionData, get_xlsform

from app.errors import Invalid
from app.models.questionnaires import LANGUAGES, QuestionnaireCreate
from app.services.questionnaires import check_definition

MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
MAX_ZIP_ENTRIES = 200
GROUP_LIST = "respondent_group"
EXTENSIONS = {".xlsx": ".xlsx", ".xlsm": ".xlsx", ".xls": ".xls"}
# Answered by the device, not the respondent: not part of the definition (yet).
META_TYPES = {
    "start",
    "end",
    "today",
    "deviceid",
    "imei",
    "phonenumber",
    "username",
    "email",
    "simserial",
    "subscriberid",
    "audit",
    "start-geopoint",
    "background-audio",
}
SIMPLE_TYPES = {
    "text": "text",
    "string": "text",
    "int": "integer",
    "integer": "integer",
    "decimal": "decimal",
    "date": "date",
    "note": "note",
    "calculate": "calculate",
}
LANGUAGE_NAMES = {
    "english": "en",
    "английский": "en",
    "ағылшын": "en",
    "ағылшынша": "en",
    "russian": "ru",
    "русский": "ru",
    "орыс": "ru",
    "орысша": "ru",
    "kazakh": "kk",
    "қазақ": "kk",
    "қазақша": "kk",
    "қазақ тілі": "kk",
    "казахский": "kk",
}
# Where a definition field came from on the survey sheet.
COLUMNS = {
    "key": "name",
    "label": "label",
    "help": "hint",
    "options": "type",
    "relevant": "relevant",
    "required": "required",
    "required_message": "required_message",
    "constraint": "constraint",
    "constraint_message": "constraint_message",
    "calculation": "calculation",
    "min": "parameters",
    "max": "parameters",
    "step": "parameters",
    "count": "repeat_count",
    "default": "default",
    "appearance": "appearance",
    "read_only": "read_only",
    "guidance_hint": "guidance_hint",
}
_CODE = re.compile(r"\(\s*([A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*)\s*\)\s*$")
_RELATIVE = re.compile(r"\.\./([A-Za-z_][A-Za-z0-9_.\-]*)")
_BOUND = re.compile(
    r"^(count-selected\(\.\)|string-length\(\.\)|\.)\s*(<=|>=)\s*(-?\d+(?:\.\d+)?)$"
)
_PYXFORM_ROW = re.compile(r"\[row\s*:\s*(\d+)\]")

Loc = list[str | int]


async def read_definition(
    content: bytes, *, filename: str, limiter: CapacityLimiter
) -> QuestionnaireCreate:
    """to_definition in a worker thread: reading a workbook is CPU-bound (a 2 MiB one held
    the event loop for 7.3 s), and at most `limiter` are read at once."""
    work = partial(to_definition, content, filename=filename)
    return await anyio.to_thread.run_sync(work, limiter=limiter)


def to_definition(content: bytes, *, filename: str) -> QuestionnaireCreate:
    """The draft definition in an XLSForm, or Invalid listing everything that cannot be mapped."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in EXTENSIONS:
        _refuse(["file"], "expected an XLSForm workbook (.xlsx or .xls)")
    if EXTENSIONS[suffix] == ".xlsx":
        _check_archive(content)
    book = _read(content, EXTENSIONS[suffix], PurePath(filename).stem)
    try:
        form = workbook_to_json(
            book, fallback_form_name=book.fallback_form_name, default_language="default"
        )
    except PyXFormError as error:
        _refuse(_pyxform_loc(str(error)), f"pyxform: {error}")
    except Exception as error:  # noqa: BLE001 - pyxform's own bugs on odd cells: 422, not 500
        _refuse(["file"], f"pyxform cannot read this workbook ({type(error).__name__}: {error})")
    mapping = _Mapping(rows=_rows_by_name(book.survey or []))
    data = mapping.form(form, book)
    errors = [{"loc": loc, "msg": msg, "type": "xlsform"} for loc, msg in mapping.problems]
    definition = None
    try:
        definition = QuestionnaireCreate.model_validate(data)
    except ValidationError as error:
        errors += [
            {"loc": mapping.row_loc(list(e["loc"])), "msg": e["msg"], "type": e["type"]}
            for e in error.errors()
        ]
    if definition is not None:
        try:
            dumped = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
            check_definition(dumped, [])
        except Invalid as error:
            errors += [{**e, "loc": mapping.row_loc(e["loc"])} for e in error.errors or []]
    if errors or definition is None:
        raise Invalid("The XLSForm does not make a valid questionnaire", errors=errors)
    return definition


def _refuse(loc: Loc, message: str) -> Any:
    raise Invalid(message, errors=[{"loc": loc, "msg": message, "type": "xlsform"}])


def _pyxform_loc(message: str) -> Loc:
    """pyxform names a row as '[row : 5]' and a sheet by name in its messages."""
    row = _PYXFORM_ROW.search(message)
    sheet = next((s for s in ("choices", "settings", "survey") if f"'{s}'" in message), None)
    if row:
        return ["file", sheet or "survey", int(row.group(1))]
    return ["file", sheet] if sheet else ["file"]


def _check_archive(content: bytes) -> None:
    """Refuse zip bombs before any XML is parsed."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        _refuse(["file"], "not a readable .xlsx workbook")
    if len(entries) > MAX_ZIP_ENTRIES:
        _refuse(["file"], "the workbook has too many parts")
    if sum(entry.file_size for entry in entries) > MAX_UNCOMPRESSED_BYTES:
        _refuse(["file"], "the workbook unpacks to more than 50 MB")


def _read(content: bytes, file_type: str, stem: str) -> DefinitionData:
    try:
        book = get_xlsform(io.BytesIO(content), file_type=file_type)
    except PyXFormError as error:
        _refuse(["file"], f"not a readable {file_type} workbook ({error})")
    except (AttributeError, TypeError) as error:
        # pyxform strips header cells as text: a number, boolean or date there breaks it
        _refuse(_odd_header(content, file_type) or ["file"], f"a header cell is not text ({error})")
    except Exception as error:  # noqa: BLE001 - bad XML, bad OLE: the file, not the server
        _refuse(["file"], f"not a readable {file_type} workbook ({type(error).__name__})")
    # pyxform takes the form id from the file name only when it reads a path; we read bytes
    book.fallback_form_name = _slug(stem) or "form"
    return book


def _odd_header(content: bytes, file_type: str) -> Loc | None:
    """Where a header cell holds something other than text (None if it cannot be found)."""
    if file_type != ".xlsx":
        return None
    from openpyxl import load_workbook  # noqa: PLC0415 - only on this error path

    try:
        book = load_workbook(io.BytesIO(content), read_only=True)
    except Exception:  # noqa: BLE001
        return None
    for sheet in book.worksheets:
        for row in sheet.iter_rows(min_row=1, max_row=1):
            for cell in row:
                if cell.value is not None and not isinstance(cell.value, str):
                    return ["file", sheet.title, 1, getattr(cell, "column_letter", "?")]
    return None


def _rows_by_name(survey: Any) -> dict[str, int]:
    """Survey sheet rows by the name given in them (pyxform's rows are numbered from 2)."""
    rows: dict[str, int] = {}
    for number, row in enumerate(survey, start=2):
        for header, value in (row or {}).items():
            if isinstance(header, str) and header.strip().lower() in ("name", "value", "tag"):
                if isinstance(value, str) and value.strip():
                    rows.setdefault(value.strip(), number)
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")


def _language_code(name: str) -> str | None:
    match = _CODE.search(name)
    if match:
        return match.group(1).lower()
    plain = name.strip().lower()
    return LANGUAGE_NAMES.get(plain) or (plain if plain in LANGUAGES else None)


def _yes_no(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return aliases.yes_no.get(str(value).strip()) if value is not None else None


@dataclass
class _Mapping:
    rows: dict[str, int]
    default: str = "en"
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    places: dict[tuple[str | int, ...], int] = field(default_factory=dict)  # definition -> row

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
            code = self.default if language == "default" else _language_code(language)
            if code is None:
                self.problem(name, f"{column}::{language}", f"no language code in '{language}'")
                continue
            if code not in LANGUAGES:
                self.problem(name, f"{column}::{language}", "languages are kk, ru and en (yet)")
                continue
            if text:
                texts.setdefault(code, str(text))
        return texts or None

    # --- the form -----------------------------------------------------------------------------

    def form(self, form: Mapping[str, Any], book: DefinitionData) -> dict[str, Any]:
        settings = (book.settings or [{}])[0] or {}
        language = form.get("default_language") or "default"
        if language != "default":
            code = _language_code(language)
            if code not in LANGUAGES:
                self.problems.append(
                    (["file", "settings", 2, "default_language"], "must be kk, ru or en")
                )
            else:
                self.default = code
        if form.get("public_key"):
            # Taking the form would collect in plaintext what its author meant to be encrypted.
            self.problems.append(
                (["file", "settings", 2, "public_key"], "encrypted forms are not supported yet")
            )
        choices = form.get("choices") or {}
        groups = self.groups(choices.get(GROUP_LIST))
        questions = self.children(form.get("children") or [], ("questions",))
        title = form.get("title") or form.get("id_string") or "form"
        access = next((v for k, v in settings.items() if str(k).strip() == "access"), "token")
        # Titles in other languages, and the description: columns of Kenes's own workbook
        # (services/xlsform/export.py); XLSForm's form_title has one language.
        titles = self.text(title, None, "form_title") or {self.default: "form"}
        more = self.text(form.get("kenes_title"), None, "kenes_title") or {}
        titles |= {code: text for code, text in more.items() if code != self.default}
        definition: dict[str, Any] = {
            "slug": _slug(str(form.get("id_string") or "")) or "form",
            "title": titles,
            "default_language": self.default,
            "access": access,
            "respondent_groups": groups,
            "questions": questions,
        }
        description = self.text(form.get("kenes_description"), None, "kenes_description")
        if description:
            definition["description"] = description
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
            if kind in META_TYPES or (kind == "group" and name == "meta"):
                continue  # metadata, and pyxform's own meta/instanceID
            if str(name) in made and str(name).removesuffix("_count") in self.rows:
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
        if kind in ("group", "repeat"):
            question["type"] = kind
            if kind == "repeat" and control.get("jr:count"):
                count = str(control["jr:count"]).strip()
                counter = made.get(count.removeprefix("${").removesuffix("}"))
                if counter is not None and count == "${" + f"{name}_count" + "}":
                    count = str((counter.get("bind") or {}).get("calculate") or count)
                question["count"] = self.expression(count)
            if kind == "repeat":
                self.repeat_counts(question, element, name)
            if kind == "repeat" and "label" not in question:
                question["label"] = {self.default: str(name)}
            self.binds(question, bind, name, kind)
            if control.get("appearance"):
                question["appearance"] = str(control["appearance"])
            question["questions"] = self.children(
                list(element.get("children") or []), (*place, "questions")
            )
            if not question["questions"]:
                self.problem(name, "type", f"an empty {kind}")
                return None
            return question
        if element.get("choice_filter"):
            self.problem(name, "choice_filter", "choice_filter is not supported yet")
            return None
        if kind in ("select one", "select all that apply"):
            if element.get("itemset") and "." in str(element.get("itemset")):
                self.problem(name, "type", "choices from a file are not supported yet")
                return None
            question["type"] = "single_choice" if kind == "select one" else "multiple_choice"
            if self.boolean(element):
                question["type"] = "boolean"
            else:
                question["options"] = [
                    {
                        "value": choice.get("name"),
                        "label": self.text(choice.get("label"), name, "label")
                        or {self.default: str(choice.get("name"))},
                    }
                    for choice in element.get("choices") or []
                ]
        elif kind in SIMPLE_TYPES:
            question["type"] = SIMPLE_TYPES[kind]
        elif kind == "range":
            if not self.scale(question, element, name):
                return None
        else:
            self.problem(name, "type", f"type '{kind}' is not supported yet")
            return None
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
                question["default"] = _yes_no(question["default"])
        if control.get("appearance"):
            question["appearance"] = str(control["appearance"])
        self.bounds(question, element)
        return question

    def boolean(self, element: Mapping[str, Any]) -> bool:
        """A yes/no select that Kenes's own workbook marks as a boolean (`kenes_type`)."""
        values = [choice.get("name") for choice in element.get("choices") or []]
        marked = str(element.get("kenes_type") or "").strip() == "boolean"
        return marked and element.get("type") == "select one" and values == ["true", "false"]

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
        if kind in ("group", "repeat"):
            return
        required = bind.get("required")
        if required not in (None, "") and kind not in ("calculate", "note"):
            flag = _yes_no(required)
            question["required"] = flag if flag is not None else self.expression(required)
        elif required not in (None, "") and _yes_no(required) is not False:
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
            flag = _yes_no(read_only)
            if flag is None:
                self.problem(name, "read_only", "read_only is yes or no (an expression: not yet)")
            elif kind != "calculate":
                question["read_only"] = flag

    def expression(self, text: Any) -> str:
        """pyxform's own additions use relative paths (or_other: `../services`)."""
        return _RELATIVE.sub(r"${\1}", str(text)).strip()

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
            found = _bounds_in(text[1 : -len(suffix)], qtype)
            if found is not None:
                question.update(found, constraint=own)
            return
        if "constraint_message" in question:
            return
        found = _bounds_in(text, qtype)
        if found is not None:
            question.pop("constraint")
            question.update(found)


def _bounds_in(text: str, qtype: str) -> dict[str, Any] | None:
    """The bounds a constraint states (`. >= 1 and . <= 10`), or None if it says more."""
    bounds: dict[str, Any] = {}
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _BOUND.match(part.strip())
        if not match:
            return None
        subject, op, number = match.groups()
        whole = re.fullmatch(r"-?\d+", number) is not None
        if subject == "." and qtype in ("integer", "decimal"):
            if qtype == "integer" and not whole:
                return None
            bounds["min" if op == ">=" else "max"] = int(number) if whole else float(number)
        elif subject == "count-selected(.)" and qtype == "multiple_choice" and whole:
            if int(number) < 1:
                return None
            bounds["min_selected" if op == ">=" else "max_selected"] = int(number)
        elif subject == "string-length(.)" and qtype == "text" and whole and op == "<=":
            bounds["max_length"] = int(number)
        else:
            return None
    return bounds
