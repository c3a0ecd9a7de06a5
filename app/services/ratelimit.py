"""Fixed-window counters in the database, so a limit holds across every worker process."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import TooManyRequests
from app.models.auth import RateLimitBucket


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def current(session: AsyncSession, key: str, window_seconds: int) -> tuple[int, datetime]:
    """Hits so far in the running window, and when that window ends."""
    now = utcnow()
    bucket = await session.get(RateLimitBucket, key)
    if bucket is None or bucket.window_start <= now - timedelta(seconds=window_seconds):
        return 0, now + timedelta(seconds=window_seconds)
    return bucket.count, bucket.window_start + timedelta(seconds=window_seconds)


async def hit(
    session: AsyncSession, key: str, window_seconds: int, hits: int = 1
) -> tuple[int, datetime]:
    """Count hits with one atomic upsert; returns (count, window end)."""
    now = utcnow()
    expired = col(RateLimitBucket.window_start) <= now - timedelta(seconds=window_seconds)
    insert = (postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert)(
        RateLimitBucket
    )
    table = RateLimitBucket.__table__.c  # type: ignore[attr-defined]
    statement = (
        insert.values(key=key, window_start=now, count=hits)
        .on_conflict_do_update(
            index_elements=[table.key],
            set_={
                "count": case((expired, hits), else_=table.count + hits),
                "window_start": case((expired, now), else_=table.window_start),
            },
        )
        .returning(table.count, table.window_start)
    )
    count, window_start = (await session.exec(statement)).one()
    if window_start.tzinfo is None:  # SQLite's RETURNING bypasses the column type
        window_start = window_start.replace(tzinfo=now.tzinfo)
    return count, window_start + timedelta(seconds=window_seconds)


async def locked(session: AsyncSession, key: str) -> RateLimitBucket:
    """The bucket of `key`, created empty if missing, locked until the transaction ends
    (PostgreSQL: FOR UPDATE; SQLite: the caller's write transaction already excludes others)."""
    insert = (postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert)(
        RateLimitBucket
    )
    await session.exec(
        insert.values(key=key, window_start=utcnow(), count=0).on_conflict_do_nothing()
    )
    statement = (
        select(RateLimitBucket)
        .where(col(RateLimitBucket.key) == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(statement)).one()


async def give_back(session: AsyncSession, key: str) -> None:
    """Undo one hit (a login that succeeded does not use up its address's budget)."""
    await session.exec(
        update(RateLimitBucket)
        .where(col(RateLimitBucket.key) == key, col(RateLimitBucket.count) > 0)
        .values(count=col(RateLimitBucket.count) - 1)
    )


async def reset(session: AsyncSession, key: str) -> None:
    await session.exec(delete(RateLimitBucket).where(col(RateLimitBucket.key) == key))


async def enforce_in_own_transaction(
    sessionmaker: async_sessionmaker[Any],
    key: str,
    *,
    limit: int,
    window_seconds: int,
    hits: int = 1,
    detail: str = "Too many submissions from this address; slow down",
) -> None:
    """Count hits in a transaction of its own (they must stick even if the request fails);
    TooManyRequests once the window's limit is passed."""
    async with sessionmaker() as session:
        count, window_end = await hit(session, key, window_seconds, hits)
        await session.commit()
    if count > limit:
        retry = int((window_end - utcnow()).total_seconds()) + 1
        raise TooManyRequests(detail, retry_after=retry)
