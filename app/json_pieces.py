"""Large JSON bodies decoded a piece at a time, so that decoding them in a worker thread lets the
event loop run meanwhile.

`json.loads` is one C call that holds the GIL from start to end: in a worker thread it still
stopped the event loop for 0.44 s on an 8 MB batch. Here the top-level object is walked in
Python and every member of a top-level array is decoded by its own call to the standard
library's decoder (the same scanner `json.loads` uses, so the same JSON is accepted, NaN
included, and the same values come out). Between two members the thread can give up the GIL,
so the loop never waits longer than one member takes (a response: well under a millisecond).

ijson would stream too, but returns `Decimal` for every number and reports errors its own way;
the stdlib scanner keeps exactly the semantics FastAPI's own body decoding has.
"""

import json
import re
from typing import Any

_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


class JsonBodyError(ValueError):
    """Not JSON, or not a JSON object; `position` is the character offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def decode_object(body: bytes, max_items: int) -> dict[str, Any]:
    """The JSON object in `body`, its top-level arrays decoded member by member.

    An array longer than `max_items` stops being decoded there: it comes back with
    `max_items + 1` members, enough for the caller's length check to refuse it without
    spending the work of decoding the rest.
    """
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError as error:
        raise JsonBodyError("body is not valid UTF-8", error.start) from None
    try:
        return _object(text, max_items)
    except json.JSONDecodeError as error:
        raise JsonBodyError(error.msg, error.pos) from None
    except RecursionError:
        raise JsonBodyError("nested too deeply", 0) from None


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _expect(text: str, at: int, char: str, what: str) -> int:
    if at >= len(text) or text[at] != char:
        raise json.JSONDecodeError(f"Expecting {what}", text, at)
    return at + 1


def _object(text: str, max_items: int) -> dict[str, Any]:
    at = _expect(text, _skip(text, 0), "{", "a JSON object")
    members: dict[str, Any] = {}
    at = _skip(text, at)
    if at < len(text) and text[at] == "}":
        return _end(text, at + 1, members)
    while True:
        at = _skip(text, at)
        if at >= len(text) or text[at] != '"':
            raise json.JSONDecodeError("Expecting a property name in double quotes", text, at)
        name, at = _DECODER.raw_decode(text, at)
        at = _expect(text, _skip(text, at), ":", "':' delimiter")
        at = _skip(text, at)
        if at < len(text) and text[at] == "[":
            members[name], at = _array(text, at + 1, max_items)
            if at < 0:  # too long: the rest is not worth decoding
                return members
        else:
            members[name], at = _DECODER.raw_decode(text, at)
        at = _skip(text, at)
        if at < len(text) and text[at] == "}":
            return _end(text, at + 1, members)
        at = _expect(text, at, ",", "',' delimiter")


def _array(text: str, at: int, max_items: int) -> tuple[list[Any], int]:
    """The members and the offset after the array; -1 once it is longer than `max_items`."""
    items: list[Any] = []
    at = _skip(text, at)
    if at < len(text) and text[at] == "]":
        return items, at + 1
    while True:
        item, at = _DECODER.raw_decode(text, _skip(text, at))
        items.append(item)
        if len(items) > max_items:
            return items, -1
        at = _skip(text, at)
        if at < len(text) and text[at] == "]":
            return items, at + 1
        at = _expect(text, at, ",", "',' delimiter")


def _end(text: str, at: int, members: dict[str, Any]) -> dict[str, Any]:
    if _skip(text, at) != len(text):
        raise json.JSONDecodeError("Extra data", text, _skip(text, at))
    return members


# JSON escapes that may decode to text PostgreSQL cannot store: NUL, and surrogates (a valid
# pair is one character after decoding; a lone one cannot be encoded as UTF-8).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
# A surrogate encoded as if it were a character (CESU-8): ED A0..BF xx.
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def has_encoded_surrogate(body: bytes) -> bool:
    """Python's json reads these ("surrogatepass"), but they are not UTF-8."""
    return _ENCODED_SURROGATE.search(body) is not None


def may_hold_unstorable_text(body: bytes) -> bool:
    """Whether decoding `body` could give text with NUL or a lone surrogate (a cheap scan)."""
    return _SUSPECT_ESCAPE.search(body) is not None


def unstorable_text_at(document: Any) -> list[str | int] | None:
    """The location of the first string (or key) holding NUL or a lone surrogate, if any."""
    stack: list[tuple[list[str | int], object]] = [(["body"], document)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            if _unstorable(value):
                return loc
        elif isinstance(value, dict):
            for key, item in value.items():
                if _unstorable(key):
                    return [*loc, key.encode("utf-8", "replace").decode()]
                stack.append(([*loc, key], item))
        elif isinstance(value, list):
            stack.extend(([*loc, index], item) for index, item in enumerate(value))
    return None


def _unstorable(value: str) -> bool:
    return "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value)
