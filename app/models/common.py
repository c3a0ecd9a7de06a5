"""Schema types shared by several domains."""

from datetime import UTC, datetime
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
