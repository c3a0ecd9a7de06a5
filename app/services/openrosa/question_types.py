"""Each Kenes question type in one place: the XLSForm columns it becomes, and how its value in a
submitted OpenRosa instance becomes an answer (services/openrosa/submission.py reads that half).
A new question type is one entry in QUESTION_TYPES.

The columns are written for one of two readers (`Sheets.exact`): pyxform building the XForm
clients fill in (the type's own rules written out with their messages, so the client explains
them), or an author who downloads the XLSForm and may import it again (the type's rules in the
one spelling the import reads back into the same fields, and what XLSForm cannot say at all in
`kenes_*` columns, which pyxform and other tools leave alone).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

Texts = Mapping[str, str]
Row = dict[str, str]
BOOLEAN_LIST = "_boolean"
DEFAULT_MAX_LENGTH = 2000
# The column saying a select of BOOLEAN_LIST is a Kenes boolean (XLSForm has no boolean type).
KENES_TYPE = "kenes_type"


class Sheets(Protocol):
    """What a column writer needs of the sheets being written (rows.Sheets)."""

    exact: bool

    def texts(self, column: str, texts: Texts | None) -> Row: ...

    def word(self, name: str, **values: Any) -> dict[str, str]: ...

    def choice_list(self, key: str, options: Sequence[Mapping[str, Any]]) -> str: ...

    def named_list(self, name: str) -> str: ...

    def boolean_list(self) -> None: ...


def value_range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{low}…{high}"
    return f"≥ {low}" if low is not None else f"≤ {high}"


def bounds(subject: str, low: Any, high: Any) -> str:
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


# --- values in a submitted instance -----------------------------------------------------------


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


def _as_geopoint(text: str) -> Any:
    """ODK's "lat lon altitude accuracy" (the last two optional) as a geopoint answer."""
    parts = text.split()
    if not 2 <= len(parts) <= 4:
        return text
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        return text
    point = dict(zip(("lat", "lon", "altitude", "accuracy"), numbers, strict=False))
    return point if all(math.isfinite(number) for number in numbers) else text


def _as_points(text: str) -> Any:
    """ODK's geotrace / geoshape: geopoints separated by ";"."""
    points = [_as_geopoint(part.strip()) for part in text.split(";") if part.strip()]
    return points if all(isinstance(point, dict) for point in points) else text


def _as_acknowledge(text: str) -> Any:
    return True if text == "OK" else text


# --- columns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionType:
    """How one Kenes question type is asked in an XForm, and read back from an instance."""

    columns: Callable[[Mapping[str, Any], Sheets], Row]
    value: Callable[[str], Any]
    # false for display-only types: their element is in the instance but never an answer
    answered: bool = True
    # takes `required` and `constraint` (a calculate has neither; a note is never answered)
    checked: bool = True


def _rule(sheets: Sheets, constraint: str, message: dict[str, str]) -> Row:
    """A type's own rule; for the author's workbook without a message, so the import reads it
    back as the field it came from (services/xlsform/reading.py: `bounds`)."""
    if sheets.exact:
        return {"constraint": constraint}
    return {"constraint": constraint, **sheets.texts("constraint_message", message)}


def _choice_columns(kind: str, question: Mapping[str, Any], sheets: Sheets) -> Row:
    """A select of its own options (a list named by its key), or of one of the questionnaire's
    choice lists, with its choice_filter (XLSForm's semantics, written as stored)."""
    if question.get("choices"):
        row = {"type": f"{kind} {sheets.named_list(question['choices'])}"}
    else:
        row = {"type": f"{kind} {sheets.choice_list(question['key'], question['options'])}"}
    if question.get("choice_filter"):
        row["choice_filter"] = question["choice_filter"]
    least, most = question.get("min_selected"), question.get("max_selected")
    if least is not None or most is not None:
        selected = sheets.word("selected", range=value_range(least, most))
        row |= _rule(sheets, bounds("count-selected(.)", least, most), selected)
    return row


def _number_columns(kind: str, question: Mapping[str, Any], sheets: Sheets) -> Row:
    row = {"type": kind}
    low, high = question.get("min"), question.get("max")
    if low is not None or high is not None:
        allowed = sheets.word("allowed", range=value_range(low, high))
        row |= _rule(sheets, bounds(".", low, high), allowed)
    return row


def _text_columns(question: Mapping[str, Any], sheets: Sheets) -> Row:
    """A text, or with `hidden` XLSForm's hidden: a string without a widget."""
    kind = "hidden" if question.get("hidden") else "text"
    limit = question.get("max_length", DEFAULT_MAX_LENGTH)
    if sheets.exact and limit == DEFAULT_MAX_LENGTH:
        return {"type": kind}
    characters = sheets.word("characters", n=limit)
    return {"type": kind, **_rule(sheets, f"string-length(.) <= {limit}", characters)}


def _geopoint_columns(question: Mapping[str, Any], sheets: Sheets) -> Row:
    """With `at_start`, XLSForm's start-geopoint: odk:setgeopoint when the form opens."""
    return {"type": "start-geopoint" if question.get("at_start") else "geopoint"}


def _audio_columns(question: Mapping[str, Any], sheets: Sheets) -> Row:
    """With `background`, XLSForm's background-audio: odk:recordaudio while it is filled."""
    row = {"type": "background-audio" if question.get("background") else "audio"}
    if question.get("quality"):
        row["parameters"] = f"quality={question['quality']}"
    return row


def _scale_columns(question: Mapping[str, Any], sheets: Sheets) -> Row:
    start, end, step = question["min"], question["max"], question.get("step") or 1
    return {"type": "range", "parameters": f"start={start} end={end} step={step}"}


def _boolean_columns(question: Mapping[str, Any], sheets: Sheets) -> Row:
    sheets.boolean_list()
    row = {"type": f"select_one {BOOLEAN_LIST}"}
    return row | {KENES_TYPE: "boolean"} if sheets.exact else row


def _same_type(question: Mapping[str, Any], sheets: Sheets) -> Row:
    """Types XLSForm spells as Kenes does (date, time, geopoint, image, ...)."""
    return {"type": question["type"]}


QUESTION_TYPES: dict[str, QuestionType] = {
    "single_choice": QuestionType(partial(_choice_columns, "select_one"), _as_text),
    "multiple_choice": QuestionType(partial(_choice_columns, "select_multiple"), _as_list),
    "text": QuestionType(_text_columns, _as_text),
    "integer": QuestionType(partial(_number_columns, "integer"), _as_int),
    "decimal": QuestionType(partial(_number_columns, "decimal"), _as_number),
    "scale": QuestionType(_scale_columns, _as_int),
    "boolean": QuestionType(_boolean_columns, _as_boolean),
    "date": QuestionType(_same_type, _as_text),
    "time": QuestionType(_same_type, _as_text),
    "datetime": QuestionType(_same_type, _as_text),
    "geopoint": QuestionType(_geopoint_columns, _as_geopoint),
    "geotrace": QuestionType(_same_type, _as_points),
    "geoshape": QuestionType(_same_type, _as_points),
    "barcode": QuestionType(_same_type, _as_text),
    "acknowledge": QuestionType(_same_type, _as_acknowledge),
    "rank": QuestionType(partial(_choice_columns, "rank"), _as_list),
    # the answer is the name of a file attached to the submission
    "image": QuestionType(_same_type, _as_text),
    "audio": QuestionType(_audio_columns, _as_text),
    "video": QuestionType(_same_type, _as_text),
    "file": QuestionType(_same_type, _as_text),
    # recorded by the device (start, end, deviceid, ...), stored as sent
    "meta": QuestionType(
        lambda question, sheets: {"type": question["meta"]}, _as_text, True, False
    ),
    "note": QuestionType(lambda question, sheets: {"type": "note"}, _as_text, False, False),
    # ODK sends a calculation's value as text; the server recomputes deterministic ones.
    "calculate": QuestionType(
        lambda question, sheets: {"type": "calculate", "calculation": question["calculation"]},
        _as_text,
        checked=False,
    ),
}
