"""Schema types shared by several domains."""

import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00:00+14:00 has no UTC time: bad input, not a server error.
        raise ValueError("the time is out of range once converted to UTC") from None


# A time with an offset, stored and returned in UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def is_iso_date(value: object) -> bool:
    """A calendar date written exactly YYYY-MM-DD. Python 3.11's date.fromisoformat also reads
    "20200101", "2020-W01-1" and others, which would be stored as sent and sort wrongly."""
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
