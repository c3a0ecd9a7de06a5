"""Cursor pagination: opaque keyset cursors over (created_at, id), stable while rows arrive."""

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Generic, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Mapped
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app.errors import BadRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def position(cursor: str | None, total: int) -> int:
    """A cursor that is a position in a short list known whole (a response's files, a form's
    media): where the page starts."""
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 6 or int(cursor) > total:
        raise BadRequest("The cursor is malformed; use next_cursor from a previous page")
    return int(cursor)


def encode_cursor(created_at: datetime, row_id: uuid.UUID | str) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_MALFORMED = "The cursor is malformed; use next_cursor from a previous page"


def decode_cursor_key(cursor: str) -> tuple[datetime, str]:
    """(time in UTC, key) of a cursor; 400 for anything a client could have made up.

    A cursor is client input: every part is checked (a number where the id belongs, a time
    that has no UTC equivalent such as 0001-01-01T00:00:00+14:00), never left to fail later
    as a 500 when it is bound into the query.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
        if not (isinstance(value, list) and len(value) == 2):
            raise ValueError("not a pair")
        created_at, key = value
        if not isinstance(created_at, str) or not isinstance(key, str):
            raise ValueError("not two strings")
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed.astimezone(UTC), key
    except (
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        binascii.Error,
        UnicodeDecodeError,
    ) as error:
        raise BadRequest(_MALFORMED) from error


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    created_at, row_id = decode_cursor_key(cursor)
    try:
        return created_at, uuid.UUID(row_id)
    except ValueError as error:
        raise BadRequest(_MALFORMED) from error


async def paginate(
    session: AsyncSession,
    statement: SelectOfScalar[T],
    *,
    created: Mapped[datetime],
    row_id: Mapped[uuid.UUID],
    limit: int,
    cursor: str | None,
    newest_first: bool = False,
) -> tuple[list[T], str | None]:
    """One page of rows of a single-entity select, ordered by (created, id)."""
    if cursor is not None:
        after_created, after_id = decode_cursor(cursor)
        if newest_first:
            statement = statement.where(
                or_(created < after_created, and_(created == after_created, row_id < after_id))
            )
        else:
            statement = statement.where(
                or_(created > after_created, and_(created == after_created, row_id > after_id))
            )
    order = (created.desc(), row_id.desc()) if newest_first else (created.asc(), row_id.asc())
    rows = list((await session.exec(statement.order_by(*order).limit(limit + 1))).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    created_key = cast(InstrumentedAttribute[datetime], created).key
    id_key = cast(InstrumentedAttribute[uuid.UUID], row_id).key
    return rows[:limit], encode_cursor(getattr(last, created_key), getattr(last, id_key))
