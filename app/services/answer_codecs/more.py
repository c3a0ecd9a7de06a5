"""Codecs of the question types of real field forms (see interfaces in the package docstring).

Stored as (column kinds):
- time, datetime: text, as sent (the answer keeps its spelling; CANONICAL gives "same content"
  one spelling: "10:00" = "10:00:00.000", "Z" = "+00:00");
- geopoint: four floats (lat, lon, altitude, accuracy), so exports and queries read numbers;
- geotrace, geoshape: text, JSON `[[lat, lon, altitude|null, accuracy|null], ...]` (floats);
- barcode, meta, image/audio/video/file (the file's name): text;
- acknowledge: smallint 1;
- rank: text, the JSON list of option values in the order given.
"""

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import orjson

from app.services.answer_codecs.basic import MAX_SAFE_INTEGER, Check, Decode, Encoded

Canonical = Callable[[Encoded], Encoded]

MEDIA_TYPES = ("image", "audio", "video", "file")
GEO_TYPES = ("geopoint", "geotrace", "geoshape")
COLUMN_KIND: dict[str, tuple[str, ...]] = {
    "time": ("text",),
    "datetime": ("text",),
    "geopoint": ("float", "float", "float", "float"),
    "geotrace": ("text",),
    "geoshape": ("text",),
    "barcode": ("text",),
    "acknowledge": ("smallint",),
    "rank": ("text",),
    "image": ("text",),
    "audio": ("text",),
    "video": ("text",),
    "file": ("text",),
    "meta": ("text",),
}
MAX_POINTS = 10_000  # of a geotrace or geoshape
MAX_TEXT = 2000  # characters of a barcode or a meta value
MAX_FILE_NAME = 255

_CLOCK = r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.(\d{1,9}))?)?"
_OFFSET = r"(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
_TIME = re.compile(_CLOCK + _OFFSET + "?")
_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2})T" + _CLOCK + _OFFSET)
_GEO_FIELDS = frozenset({"lat", "lon", "altitude", "accuracy"})
_FILE_NAME_BAD = re.compile(r"[/\\\x00-\x1f\x7f]")


# --- time and datetime --------------------------------------------------------------------------


def _clock(match: re.Match[str], first: int) -> str:
    """HH:MM:SS.fffffffff+HH:MM (no offset when none was given) from a match of _CLOCK + offset."""
    hour, minute, second, fraction, offset = match.groups()[first : first + 5]
    if offset in ("Z", "-00:00"):
        offset = "+00:00"
    return f"{hour}:{minute}:{second or '00'}.{(fraction or '').ljust(9, '0')}{offset or ''}"


def _check_time(value: Any) -> tuple[str | None, Encoded]:
    if type(value) is not str or _TIME.fullmatch(value) is None:
        return "expected a time as HH:MM or HH:MM:SS[.fff], optionally with Z or +HH:MM", ()
    return None, (value,)


def _check_datetime(value: Any) -> tuple[str | None, Encoded]:
    match = _DATETIME.fullmatch(value) if type(value) is str else None
    if match is None:
        return "expected a date-time as YYYY-MM-DDTHH:MM[:SS[.fff]] with Z or +HH:MM", ()
    try:
        date.fromisoformat(match.group(1))
    except ValueError:
        return "no such date", ()
    return None, (value,)


def _canonical_time(columns: Encoded) -> Encoded:
    match = _TIME.fullmatch(columns[0]) if columns[0] is not None else None
    return (None,) if match is None else (_clock(match, 0),)


def _canonical_datetime(columns: Encoded) -> Encoded:
    match = _DATETIME.fullmatch(columns[0]) if columns[0] is not None else None
    return (None,) if match is None else (f"{match.group(1)}T{_clock(match, 1)}",)


CANONICAL: dict[str, Canonical] = {"time": _canonical_time, "datetime": _canonical_datetime}


# --- geodata ------------------------------------------------------------------------------------

Point = tuple[float, float, float | None, float | None]


def _number(value: Any) -> float | None:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int and abs(value) <= MAX_SAFE_INTEGER:
        return float(value)
    return None


def _point(value: Any) -> tuple[str | None, Point | None]:
    if type(value) is not dict:
        return "expected a point {lat, lon, altitude?, accuracy?}", None
    unknown = value.keys() - _GEO_FIELDS
    if unknown:
        return f"unknown fields of a point: {', '.join(sorted(map(str, unknown))[:5])}", None
    found: dict[str, float | None] = {}
    for name in ("lat", "lon", "altitude", "accuracy"):
        raw = value.get(name)
        if raw is None:
            if name in ("lat", "lon"):
                return f"a point needs '{name}'", None
            found[name] = None
            continue
        number = _number(raw)
        if number is None:
            return f"'{name}' must be a finite number", None
        found[name] = number
    lat, lon, accuracy = found["lat"], found["lon"], found["accuracy"]
    assert lat is not None and lon is not None  # noqa: S101 - required just above
    if not -90 <= lat <= 90:
        return "'lat' must be between -90 and 90", None
    if not -180 <= lon <= 180:
        return "'lon' must be between -180 and 180", None
    if accuracy is not None and accuracy < 0:
        return "'accuracy' must be at least 0", None
    return None, (lat, lon, found["altitude"], accuracy)


def _check_geopoint(value: Any) -> tuple[str | None, Encoded]:
    problem, point = _point(value)
    return (problem, ()) if point is None else (None, point)


def _points_checker(least: int, closed: bool) -> Check:
    noun = "a closed shape" if closed else "a line"

    def check(value: Any) -> tuple[str | None, Encoded]:
        if type(value) is not list:
            return f"expected {noun}: a list of points", ()
        if not least <= len(value) <= MAX_POINTS:
            return f"{noun} has {least} to {MAX_POINTS} points", ()
        points: list[Point] = []
        for index, item in enumerate(value):
            problem, point = _point(item)
            if point is None:
                return f"point {index}: {problem}", ()
            points.append(point)
        if closed and points[0] != points[-1]:
            return "a shape is closed: its last point is its first", ()
        return None, (orjson.dumps(points).decode(),)

    return check


def _geo_object(point: Sequence[Any]) -> dict[str, float]:
    found = {"lat": point[0], "lon": point[1]}
    if point[2] is not None:
        found["altitude"] = point[2]
    if point[3] is not None:
        found["accuracy"] = point[3]
    return found


def _decode_points(columns: Sequence[Any]) -> list[dict[str, float]]:
    return [_geo_object(point) for point in orjson.loads(columns[0])]


# --- the others ---------------------------------------------------------------------------------


def _check_short_text(value: Any) -> tuple[str | None, Encoded]:
    if type(value) is not str or not value.strip():
        return "expected non-empty text", ()
    if len(value) > MAX_TEXT:
        return f"at most {MAX_TEXT} characters", ()
    if "\x00" in value:
        return "text may not contain NUL characters", ()
    return None, (value,)


def _check_file_name(value: Any) -> tuple[str | None, Encoded]:
    if type(value) is not str or not value or value in (".", ".."):
        return "expected the name of a file attached to the response", ()
    if len(value) > MAX_FILE_NAME:
        return f"a file name has at most {MAX_FILE_NAME} characters", ()
    if _FILE_NAME_BAD.search(value):
        return "a file name has no '/', '\\' or control characters", ()
    return None, (value,)


def _check_acknowledge(value: Any) -> tuple[str | None, Encoded]:
    if value is not True:
        return "expected true (an acknowledgement is only ever true)", ()
    return None, (1,)


def _rank_checker(question: Mapping[str, Any]) -> Check:
    values = frozenset(option["value"] for option in question["options"])

    def rank(value: Any) -> tuple[str | None, Encoded]:
        if type(value) is not list or not value:
            return "expected a list of option values, in order", ()
        for item in value:
            if type(item) is not str:
                return "expected a list of option values, in order", ()
        unknown = [item for item in value if item not in values]
        if unknown:
            return f"not options: {', '.join(unknown[:10])}", ()
        if len(set(value)) != len(value):
            return "an option is ranked twice", ()
        return None, (orjson.dumps(value).decode(),)

    return rank


_CHECKS: dict[str, Check] = {
    "time": _check_time,
    "datetime": _check_datetime,
    "geopoint": _check_geopoint,
    "geotrace": _points_checker(2, closed=False),
    "geoshape": _points_checker(4, closed=True),
    "barcode": _check_short_text,
    "meta": _check_short_text,
    "acknowledge": _check_acknowledge,
    **dict.fromkeys(MEDIA_TYPES, _check_file_name),
}


def checker(question: Mapping[str, Any]) -> Check:
    if question["type"] == "rank":
        return _rank_checker(question)
    return _CHECKS[question["type"]]


def decoder(question: Mapping[str, Any]) -> Decode:
    qtype = question["type"]
    if qtype == "geopoint":
        return _geo_object
    if qtype in ("geotrace", "geoshape"):
        return _decode_points
    if qtype == "acknowledge":
        return lambda columns: True
    if qtype == "rank":
        return lambda columns: orjson.loads(columns[0])
    return lambda columns: columns[0]
