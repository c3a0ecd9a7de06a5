"""The first question types' codecs: choices, numbers, text, boolean, date, calculate."""

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from app.models.common import is_iso_date

# Integers are stored in DOUBLE columns; beyond 2**53 they would silently lose digits.
MAX_SAFE_INTEGER = 2**53
MASK_BITS = 63  # options per BIGINT bit mask (the sign bit stays clear)
NUMBER_TYPES = ("integer", "decimal", "scale")
COLUMN_KIND = {
    "single_choice": "smallint",
    "boolean": "smallint",
    "multiple_choice": "bigint",
    "integer": "float",
    "decimal": "float",
    "scale": "float",
    "text": "text",
    "date": "date",
    # A calculation's value has no declared type (XLSForm's calculate has none; ODK sends it
    # as text): kept as the text the expression gives, so nothing is lost or reinterpreted.
    "calculate": "text",
}

Encoded = tuple[Any, ...]
Check = Callable[[Any], tuple[str | None, Encoded]]
Decode = Callable[[Sequence[Any]], Any]


def column_kinds(question: Mapping[str, Any]) -> list[str]:
    kind = COLUMN_KIND[question["type"]]
    if question["type"] == "multiple_choice":
        return [kind] * max(1, math.ceil(len(question["options"]) / MASK_BITS))
    return [kind]


def decoder(question: Mapping[str, Any]) -> Decode:
    qtype = question["type"]
    if qtype == "single_choice":
        values = tuple(o["value"] for o in question["options"])
        return lambda columns: values[columns[0]]
    if qtype == "multiple_choice":
        values = tuple(o["value"] for o in question["options"])

        def chosen(columns: Sequence[Any]) -> list[str]:
            return [
                value
                for n, value in enumerate(values)
                if (columns[n // MASK_BITS] or 0) >> (n % MASK_BITS) & 1
            ]

        return chosen
    if qtype == "boolean":
        return lambda columns: bool(columns[0])
    if qtype in ("integer", "scale"):
        return lambda columns: int(columns[0])
    if qtype == "decimal":
        return lambda columns: float(columns[0])
    if qtype == "date":
        return lambda columns: _iso_date(columns[0])
    return lambda columns: columns[0]


def _iso_date(value: Any) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(value: float, low: float | None, high: float | None) -> str | None:
    if low is not None and value < low:
        return f"must be at least {low}"
    if high is not None and value > high:
        return f"must be at most {high}"
    return None


def _multiple_problem(value: list[Any], index: Mapping[str, int]) -> str:
    if not all(isinstance(v, str) for v in value):
        return "expected a list of option values"
    unknown = [v for v in value if v not in index]
    return f"not options: {', '.join(unknown[:10])}"


def _chosen_problem(bits: int, count: int, least: int, most: int | None) -> str | None:
    """What is wrong with a multiple choice of `count` values that set `bits` options."""
    if bits != count:  # fewer bits than values: an option was chosen twice
        return "an option is chosen twice"
    if count < least:
        return f"choose at least {least}"
    if most is not None and count > most:
        return f"choose at most {most}"
    return None


def checker(question: Mapping[str, Any]) -> Check:
    qtype = question["type"]
    low, high = question.get("min"), question.get("max")

    if qtype == "single_choice":
        encoded = {o["value"]: (n,) for n, o in enumerate(question["options"])}

        def single(value: Any) -> tuple[str | None, Encoded]:
            found = encoded.get(value) if type(value) is str else None
            if found is None:
                return "not one of the options", ()
            return None, found

        return single

    if qtype == "multiple_choice":
        index = {o["value"]: n for n, o in enumerate(question["options"])}
        least, most = question.get("min_selected") or 1, question.get("max_selected")
        chunks = len(column_kinds(question))

        bits = {value: (n // MASK_BITS, 1 << (n % MASK_BITS)) for value, n in index.items()}
        if chunks == 1:  # up to 63 options, most lists: one mask, no chunk per value
            single_bits = {value: 1 << n for value, n in index.items()}

            def multiple_one(value: Any) -> tuple[str | None, Encoded]:
                if type(value) is not list:
                    return "expected a list of option values", ()
                mask = 0
                try:
                    for v in value:
                        mask |= single_bits[v]
                except (KeyError, TypeError):
                    return _multiple_problem(value, index), ()
                problem = _chosen_problem(mask.bit_count(), len(value), least, most)
                return (problem, ()) if problem else (None, (mask,))

            return multiple_one

        def multiple(value: Any) -> tuple[str | None, Encoded]:
            if type(value) is not list:
                return "expected a list of option values", ()
            masks = [0] * chunks
            try:
                for v in value:
                    chunk, bit = bits[v]
                    masks[chunk] |= bit
            except (KeyError, TypeError):
                return _multiple_problem(value, index), ()
            chosen = sum(mask.bit_count() for mask in masks)
            problem = _chosen_problem(chosen, len(value), least, most)
            return (problem, ()) if problem else (None, tuple(masks))

        return multiple

    if qtype == "text":
        limit = question.get("max_length", 2000)

        def text(value: Any) -> tuple[str | None, Encoded]:
            if not isinstance(value, str) or not value.strip():
                return "expected non-empty text", ()
            if len(value) > limit:
                return f"at most {limit} characters", ()
            if "\x00" in value:
                return "text may not contain NUL characters", ()
            return None, (value,)

        return text

    if qtype in ("integer", "scale"):
        step = question.get("step") or 1

        def integer(value: Any) -> tuple[str | None, Encoded]:
            # 1.0 is the integer 1 ("same content compares values", contract: Responses).
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not _is_int(value) or abs(value) > MAX_SAFE_INTEGER:
                return "expected an integer", ()
            if step != 1 and (value - (low or 0)) % step:
                return f"must be {low} plus a multiple of {step}", ()
            return _in_range(value, low, high), (float(value),)

        return integer

    if qtype == "decimal":

        def decimal(value: Any) -> tuple[str | None, Encoded]:
            ok = isinstance(value, float) or _is_int(value)
            # A JSON integer may have any number of digits; past 2**53 a double cannot hold it.
            if not ok or (_is_int(value) and abs(value) > MAX_SAFE_INTEGER):
                return "expected a finite number of at most 2**53", ()
            if not math.isfinite(value):
                return "expected a finite number of at most 2**53", ()
            return _in_range(value, low, high), (float(value),)

        return decimal

    if qtype == "boolean":

        def boolean(value: Any) -> tuple[str | None, Encoded]:
            if not isinstance(value, bool):
                return "expected true or false", ()
            return None, (int(value),)

        return boolean

    if qtype == "date":

        def iso_date(value: Any) -> tuple[str | None, Encoded]:
            # Exactly YYYY-MM-DD: fromisoformat alone takes "20200101", "2020-W01-1" and more.
            if not is_iso_date(value):
                return "expected a date as YYYY-MM-DD", ()
            return None, (date.fromisoformat(value),)

        return iso_date

    if qtype == "calculate":
        # Never called for a submission (services/answers/ computes calculations); kept so
        # that every column type has its check.
        return lambda value: (None, (str(value),))

    raise ValueError(f"unknown question type {qtype}")
