"""XPath values as ODK reads them: the environment an expression sees (answers, `.`, the step
budget), node-sets, and the conversions between strings, numbers, booleans and dates (XPath
1.0; dates as days since 1970 like JavaRosa). evaluate.py compiles expressions over these."""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

MAX_STEPS = 200_000  # per response: expression nodes evaluated plus node-set items visited
MAX_STRING = 65_536  # characters in any value an expression builds
EPOCH = date(1970, 1, 1)
_NUMBER = re.compile(r"^\s*-?(\d+(\.\d*)?|\.\d+)\s*$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class EvaluationError(Exception):
    """A response makes an expression exceed its bounds."""


class NodeSet(tuple[Any, ...]):
    """Several values (a question inside a repeat, seen from outside it; a repeat's instances)."""

    __slots__ = ()


@dataclass
class Env:
    """What an expression sees: `lookup(key)` gives an answer (None when unanswered), `current`
    is `.`, `position` the repeat instance's number (1-based), `steps` the budget spent."""

    lookup: Callable[[str], Any]
    current: Any = None
    position: int = 0
    steps: list[int] = field(default_factory=lambda: [0])
    now: datetime | None = None
    option: Mapping[str, str] | None = None  # a choice_filter's option: its properties

    def charge(self, steps: int) -> None:
        self.steps[0] += steps
        if self.steps[0] > MAX_STEPS:
            raise EvaluationError(
                f"the form's rules take more than {MAX_STEPS} steps to check for this response"
            )


# --- conversions (XPath 1.0; dates as days since 1970 like JavaRosa) --------------------------


def string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(float(value))
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, NodeSet):
        return string(value[0]) if value else ""
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return ";".join(_point_text(item) for item in value if isinstance(item, dict))
        return " ".join(item for item in value if isinstance(item, str))
    if isinstance(value, dict):
        return _point_text(value)
    return ""


def _point_text(point: Mapping[str, Any]) -> str:
    """A geopoint as ODK writes it: "lat lon altitude accuracy"."""
    parts = (point.get(name) for name in ("lat", "lon", "altitude", "accuracy"))
    return " ".join(string(part if isinstance(part, int | float) else 0) for part in parts)


def _number_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    # XPath 1.0 writes numbers without an exponent (-0.00005055..., not -5.055...e-05), as
    # ODK's web engine and Enketo do (tests/test_expression_oracle.py); repr gives the
    # shortest digits that read back as the same number.
    return format(Decimal(repr(value)), "f")


def number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if _NUMBER.match(value):
            return float(value)
        as_date = _date_of(value)
        return number(as_date) if as_date is not None else math.nan
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() / 86400
    if isinstance(value, date):
        return float((value - EPOCH).days)
    if isinstance(value, NodeSet):
        return number(value[0]) if value else math.nan
    if isinstance(value, list):
        return number(string(value))
    return math.nan


def boolean(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    if isinstance(value, NodeSet | list):
        return len(value) > 0
    return True


def _date_of(value: Any) -> date | datetime | None:
    """A date or date-time from an ISO string (None if it is not one)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if _ISO_DATE.match(text):
            return date.fromisoformat(text)
        if _ISO_DATETIME.match(text):
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return None


def members(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, NodeSet) else (value,)


def equal(operator: str, left: Any, right: Any) -> bool:
    if isinstance(left, NodeSet) or isinstance(right, NodeSet):
        return any(equal(operator, a, b) for a in members(left) for b in members(right))
    if isinstance(left, bool) or isinstance(right, bool):
        same = boolean(left) == boolean(right)
    elif isinstance(left, int | float | date) or isinstance(right, int | float | date):
        same = number(left) == number(right)
    else:
        same = string(left) == string(right)
    return same if operator == "=" else not same


def compare(operator: str, left: Any, right: Any) -> bool:
    if isinstance(left, NodeSet) or isinstance(right, NodeSet):
        return any(compare(operator, a, b) for a in members(left) for b in members(right))
    a, b = number(left), number(right)
    if operator == "<":
        return a < b
    if operator == "<=":
        return a <= b
    if operator == ">":
        return a > b
    return a >= b


def arithmetic(operator: str, left: Any, right: Any) -> float:
    a, b = number(left), number(right)
    if operator == "+":
        return a + b
    if operator == "-":
        return a - b
    if operator == "*":
        return a * b
    if operator == "div":
        if b == 0:
            return (
                math.nan
                if a == 0 or math.isnan(a)
                else math.copysign(math.inf, a) * (math.copysign(1, b))
            )
        return a / b
    if b == 0 or math.isnan(a) or math.isnan(b) or math.isinf(a):
        return math.nan
    return math.fmod(a, b)  # XPath's mod keeps the dividend's sign


def bounded(text: str) -> str:
    if len(text) > MAX_STRING:
        raise EvaluationError(f"an expression built a text longer than {MAX_STRING} characters")
    return text


def round_half_away(value: float, digits: float = 0) -> float:
    # Half away from zero on the double's exact value, as JavaRosa's BigDecimal does.
    if math.isnan(value) or math.isinf(value) or math.isnan(digits) or math.isinf(digits):
        return value  # (infinite digits: as for a count past what Decimal quantizes to)
    try:
        places = Decimal(1).scaleb(-int(digits))
        return float(Decimal(value).quantize(places, rounding=ROUND_HALF_UP))
    except InvalidOperation:
        return value


_FORMATS: dict[str, Callable[[Any], str]] = {
    "%Y": lambda d: f"{d.year:04d}",
    "%y": lambda d: f"{d.year % 100:02d}",
    "%m": lambda d: f"{d.month:02d}",
    "%n": lambda d: str(d.month),
    "%b": lambda d: d.strftime("%b"),
    "%d": lambda d: f"{d.day:02d}",
    "%e": lambda d: str(d.day),
    "%a": lambda d: d.strftime("%a"),
    "%H": lambda d: f"{getattr(d, 'hour', 0):02d}",
    "%h": lambda d: str(getattr(d, "hour", 0)),
    "%M": lambda d: f"{getattr(d, 'minute', 0):02d}",
    "%S": lambda d: f"{getattr(d, 'second', 0):02d}",
}


def format_date(value: Any, pattern: str) -> str:
    moment = to_date(value)
    if moment is None:
        return ""

    def field(match: re.Match[str]) -> str:
        part = _FORMATS.get(match.group(0))
        return part(moment) if part is not None else ""

    return re.sub(r"%[A-Za-z]", field, pattern)


def to_date(value: Any) -> date | datetime | None:
    if isinstance(value, NodeSet):
        value = value[0] if value else None
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isnan(value) or abs(value) > 3_000_000:
            return None
        try:
            return EPOCH + timedelta(days=math.floor(value))
        except OverflowError:  # before 0001-01-01 or after 9999-12-31
            return None
    return _date_of(value)


def selected_values(value: Any) -> list[str]:
    return string(value).split()
