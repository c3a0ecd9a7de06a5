"""XLSForm workbooks (read by pyxform) to questionnaire definitions.

Mapped: sheets `survey`, `choices`, `settings`; `label::Language (code)` and `hint::...` columns;
types select_one, select_multiple, text, integer, decimal, range (as scale), date, and the
metadata types start/end/today/deviceid (ignored); `required`; `relevant` in the forms
`${q} = 'v'`, `!=`, `<`, `<=`, `>`, `>=`, `selected(${q}, 'v')`, `and`, `or`, `not(...)`.
Respondent groups come from the choice list `respondent_group`, whose `category` column says
citizen or expert. Anything else (groups, repeats, calculations, other functions) is refused
with 422 naming the sheet and row.
"""

import io
import re
import zipfile
from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from pydantic import ValidationError
from pyxform.errors import PyXFormError
from pyxform.xls2json_backends import xlsx_to_dict

from app.errors import Invalid
from app.models.questionnaires import LANGUAGES, QuestionnaireCreate
from app.services.questionnaires import check_definition

MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
MAX_ZIP_ENTRIES = 200
GROUP_LIST = "respondent_group"
IGNORED_TYPES = {"start", "end", "today", "deviceid"}
SIMPLE_TYPES = {"text": "text", "integer": "integer", "decimal": "decimal", "date": "date"}
TRUE_WORDS = {"yes", "true", "1", "true()"}
_LANGUAGE_IN_HEADER = re.compile(r"^(label|hint|title)(?:::(?:.*\()?([a-z]{2})\)?)?$")

Loc = list[str | int]


class _RowError(Exception):
    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


async def read_definition(
    content: bytes, *, filename: str, limiter: CapacityLimiter
) -> QuestionnaireCreate:
    """to_definition in a worker thread: reading a workbook is CPU-bound (a 2 MiB one held
    the event loop for 7.3 s), and at most `limiter` are read at once."""
    work = partial(to_definition, content, filename=filename)
    return await anyio.to_thread.run_sync(work, limiter=limiter)


def to_definition(content: bytes, *, filename: str) -> QuestionnaireCreate:
    """The draft definition in an XLSForm, or Invalid naming what cannot be mapped."""
    if not filename.lower().endswith(".xlsx"):
        _refuse(["file"], "expected an XLSForm workbook (.xlsx)")
    _check_archive(content)
    try:
        book = xlsx_to_dict(io.BytesIO(content))
    except (PyXFormError, ValueError, KeyError, SyntaxError, TypeError) as error:  # bad XML too
        _refuse(["file"], f"not a readable .xlsx workbook ({error})")
    try:
        data, rows = _map(book)
    except _RowError as error:
        _refuse(error.loc, error.message)
    try:
        definition = QuestionnaireCreate.model_validate(data)
    except ValidationError as error:
        raise Invalid(
            "The XLSForm does not make a valid questionnaire",
            errors=[
                {"loc": _row_loc(list(e["loc"]), rows), "msg": e["msg"], "type": e["type"]}
                for e in error.errors()
            ],
        ) from None
    try:
        check_definition(definition.model_dump(mode="json", by_alias=True, exclude_none=True), [])
    except Invalid as error:
        error.errors = [{**e, "loc": _row_loc(e["loc"], rows)} for e in error.errors or []]
        raise
    return definition


def _refuse(loc: Loc, message: str) -> Any:
    raise Invalid(message, errors=[{"loc": loc, "msg": message, "type": "xlsform"}])


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


def _row_loc(loc: Loc, rows: dict[int, int]) -> Loc:
    """A definition location (questions, 3, ...) as the survey sheet row it came from."""
    if len(loc) >= 2 and loc[0] == "questions" and isinstance(loc[1], int):
        return ["file", "survey", rows.get(loc[1], loc[1]), *loc[2:]]
    return ["file", *loc]


def _texts(row: dict[str, str], kind: str, default: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for header, value in row.items():
        match = _LANGUAGE_IN_HEADER.match(header.strip().lower())
        if match and match.group(1) == kind and value:
            texts[match.group(2) or default] = value
    return texts


def _map(book: dict[str, Any]) -> tuple[dict[str, Any], dict[int, int]]:
    settings = (book.get("settings") or [{}])[0]
    default = _language(settings.get("default_language", "en"))
    choices = _choice_lists(book.get("choices") or [], default)
    groups = choices.pop(GROUP_LIST, None)
    if not groups:
        raise _RowError(["file", "choices"], f"a choice list '{GROUP_LIST}' names the groups")
    slug = (settings.get("form_id") or "").strip().lower().replace("_", "-")
    title = _texts(settings, "title", default)
    if settings.get("form_title"):
        title.setdefault(default, settings["form_title"])

    questions: list[dict[str, Any]] = []
    rows: dict[int, int] = {}
    for number, row in _survey_rows(book.get("survey") or []):
        question = _question(row, number, choices, default)
        if question is not None:
            rows[len(questions)] = number
            questions.append(question)
    kinds = {q["key"]: q.get("type") for q in questions}
    for question in questions:
        if "relevant" in question:
            _select_one_as_eq(question["relevant"], kinds)
    data = {
        "slug": slug,
        "title": title,
        "default_language": default,
        "access": settings.get("access", "token"),
        "respondent_groups": [
            {"key": g["value"], "label": g["label"], "category": g.get("category")} for g in groups
        ],
        "questions": questions,
    }
    return data, rows


def _select_one_as_eq(condition: dict[str, Any], kinds: dict[str, Any]) -> None:
    """`selected(${q}, 'v')` on a select_one question means q = 'v'."""
    for part in condition.get("all") or condition.get("any") or []:
        _select_one_as_eq(part, kinds)
    if "not" in condition:
        _select_one_as_eq(condition["not"], kinds)
    if condition.get("op") == "contains" and kinds.get(condition["question"]) == "single_choice":
        condition["op"] = "eq"


def _language(text: str) -> str:
    match = re.search(r"\(([a-z]{2})\)", text) or re.fullmatch(r"\s*([a-z]{2})\s*", text)
    if not match or match.group(1) not in LANGUAGES:
        raise _RowError(["file", "settings", 2, "default_language"], "must be kk, ru or en")
    return match.group(1)


def _choice_lists(rows: list[dict[str, str]], default: str) -> dict[str, list[dict[str, Any]]]:
    lists: dict[str, list[dict[str, Any]]] = {}
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        name, value = row.get("list_name"), row.get("name")
        if not name or not value:
            raise _RowError(["file", "choices", number], "list_name and name are required")
        option: dict[str, Any] = {"value": value, "label": _texts(row, "label", default)}
        if row.get("category"):
            option["category"] = row["category"]
        lists.setdefault(name, []).append(option)
    return lists


def _survey_rows(rows: list[dict[str, str]]) -> Iterator[tuple[int, dict[str, str]]]:
    for number, row in enumerate(rows, start=2):
        if row:
            yield number, row


def _question(
    row: dict[str, str], number: int, choices: dict[str, list[dict[str, Any]]], default: str
) -> dict[str, Any] | None:
    loc: Loc = ["file", "survey", number]
    kind, _, list_name = (row.get("type") or "").strip().partition(" ")
    if kind in IGNORED_TYPES:
        return None
    for column in ("calculation", "repeat_count", "choice_filter"):
        if row.get(column):
            raise _RowError([*loc, column], f"'{column}' is not supported")
    question: dict[str, Any] = {
        "key": row.get("name"),
        "label": _texts(row, "label", default),
        "required": (row.get("required") or "").strip().lower() in TRUE_WORDS,
    }
    hint = _texts(row, "hint", default)
    if hint:
        question["help"] = hint
    if kind in ("select_one", "select_multiple"):
        options = choices.get(list_name.strip())
        if not options:
            raise _RowError([*loc, "type"], f"no choice list '{list_name.strip()}'")
        question["type"] = "single_choice" if kind == "select_one" else "multiple_choice"
        question["options"] = [{"value": o["value"], "label": o["label"]} for o in options]
    elif kind in SIMPLE_TYPES:
        question["type"] = SIMPLE_TYPES[kind]
    elif kind == "range":
        params = dict(re.findall(r"(\w+)\s*=\s*(-?\d+)", row.get("parameters") or ""))
        if params.get("step", "1") != "1":
            raise _RowError([*loc, "parameters"], "only ranges with step=1 map to a scale")
        question.update(
            type="scale", min=int(params.get("start", 1)), max=int(params.get("end", 5))
        )
    else:
        raise _RowError([*loc, "type"], f"type '{kind or '(empty)'}' is not supported")
    if row.get("constraint"):
        question.update(_constraint(row["constraint"], question["type"], [*loc, "constraint"]))
    if row.get("relevant"):
        try:
            question["relevant"] = parse_relevant(row["relevant"])
        except ValueError as error:
            raise _RowError([*loc, "relevant"], str(error)) from None
    return question


_BOUND = re.compile(r"^(count-selected\(\.\)|\.)\s*(<=|>=)\s*(-?\d+(?:\.\d+)?)$")


def _constraint(text: str, qtype: str, loc: Loc) -> dict[str, Any]:
    """Bounds written as constraints: `. >= 1 and . <= 10`, `count-selected(.) <= 3`."""
    bounds: dict[str, Any] = {}
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _BOUND.match(part.strip())
        if not match:
            raise _RowError(loc, f"only bounds like '. <= 10' map; not '{part}'")
        subject, op, number = match.groups()
        if subject == "." and qtype in ("integer", "decimal", "scale"):
            value: Any = float(number) if qtype == "decimal" else int(float(number))
            bounds["min" if op == ">=" else "max"] = value
        elif subject != "." and qtype == "multiple_choice":
            bounds["min_selected" if op == ">=" else "max_selected"] = int(float(number))
        else:
            raise _RowError(loc, f"'{part}' does not apply to a {qtype} question")
    return bounds


# --- relevant expressions ---------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<ref>\$\{[a-z][a-z0-9_]*\})|(?P<str>'[^']*'|\"[^\"]*\")|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op>!=|<=|>=|=|<|>)|(?P<punct>[(),])|(?P<word>[a-z_][a-z0-9_-]*))"
)
_OPS = {"=": "eq", "!=": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot read the expression at '{text[position : position + 10]}'")
        kind = match.lastgroup
        assert kind is not None  # noqa: S101 - every alternative is a named group
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_relevant(text: str) -> dict[str, Any]:
    """An XLSForm `relevant` expression as a condition object."""
    parser = _Parser(_tokens(text))
    condition = parser.disjunction()
    if parser.position != len(parser.tokens):
        raise ValueError("unexpected text after the expression")
    return condition


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise ValueError(f"expected {value or kind}")
        self.position += 1
        return token[1]

    def disjunction(self) -> dict[str, Any]:
        parts = [self.conjunction()]
        while self.peek() == ("word", "or"):
            self.position += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else {"any": parts}

    def conjunction(self) -> dict[str, Any]:
        parts = [self.term()]
        while self.peek() == ("word", "and"):
            self.position += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else {"all": parts}

    def term(self) -> dict[str, Any]:
        token = self.peek()
        if token == ("punct", "("):
            self.position += 1
            inner = self.disjunction()
            self.take("punct", ")")
            return inner
        if token == ("word", "not"):
            self.position += 1
            self.take("punct", "(")
            inner = self.disjunction()
            self.take("punct", ")")
            return {"not": inner}
        if token == ("word", "selected"):
            self.position += 1
            self.take("punct", "(")
            key = self.reference()
            self.take("punct", ",")
            value = self.literal()
            self.take("punct", ")")
            return {"question": key, "op": "contains", "value": value}
        if token is not None and token[0] == "word":
            raise ValueError(f"the function or word '{token[1]}' is not supported")
        key = self.reference()
        op = _OPS[self.take("op")]
        return {"question": key, "op": op, "value": self.literal()}

    def reference(self) -> str:
        return self.take("ref")[2:-1]

    def literal(self) -> Any:
        token = self.peek()
        if token is None:
            raise ValueError("expected a value")
        self.position += 1
        kind, value = token
        if kind == "str":
            return value[1:-1]
        if kind == "num":
            return float(value) if "." in value else int(value)
        if token == ("word", "true") or token == ("word", "false"):
            return value == "true"
        raise ValueError(f"expected a value, found '{value}'")
