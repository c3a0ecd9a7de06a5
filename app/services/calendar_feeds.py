"""Calendar feeds: per-user tokens (stored hashed) for the consultation calendar, revocable."""

import hashlib
import secrets
import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import NotFound
from app.models.auth import Principal, Role, User
from app.models.calendar_feeds import (
    FEED_TOKEN_PREFIX,
    CalendarFeed,
    CalendarFeedCreate,
    FeedFilters,
)
from app.pagination import paginate
from app.security import hash_token
from app.services import audit
from app.services import consultations as consultations_service

# Who may read consultations, and so hold a feed (admins always may).
READER_ROLES = frozenset({Role.admin, Role.coordinator, Role.observer, Role.analyst})


def _filters(feed_filters: FeedFilters) -> consultations_service.ConsultationFilters:
    return consultations_service.ConsultationFilters(
        territory_code=feed_filters.territory_code,
        election_id=feed_filters.election_id,
        status=feed_filters.status,
    )


async def create_feed(
    session: AsyncSession, owner: Principal, data: CalendarFeedCreate
) -> tuple[CalendarFeed, str]:
    """A new feed and its token (shown once); an unknown territory is 422, as in the list."""
    await _filters(data.filters).where(session)
    token = FEED_TOKEN_PREFIX + secrets.token_urlsafe(32)
    feed = CalendarFeed(
        user_id=owner.id,
        name=data.name,
        filters=data.filters.model_dump(mode="json", exclude_none=True),
        token_hash=hash_token(token),
    )
    session.add(feed)
    audit.record(session, owner, "calendar_feed.create", "calendar_feed", feed.id, name=feed.name)
    await session.flush()
    return feed, token


async def list_feeds(
    session: AsyncSession, owner: Principal, *, limit: int, cursor: str | None
) -> tuple[list[CalendarFeed], str | None]:
    """The caller's own feeds that are not revoked, in creation order."""
    statement = select(CalendarFeed).where(
        col(CalendarFeed.user_id) == owner.id, col(CalendarFeed.revoked_at).is_(None)
    )
    return await paginate(
        session,
        statement,
        created=col(CalendarFeed.created_at),
        row_id=col(CalendarFeed.id),
        limit=limit,
        cursor=cursor,
    )


async def own_feed(session: AsyncSession, owner: Principal, feed_id: uuid.UUID) -> CalendarFeed:
    """One of the owner's feeds that is not revoked; anyone else's is 404."""
    feed = await session.get(CalendarFeed, feed_id)
    if feed is None or feed.user_id != owner.id or feed.revoked_at is not None:
        raise NotFound("No such calendar feed")
    return feed


async def revoke_feed(session: AsyncSession, actor: Principal, feed_id: uuid.UUID) -> None:
    """Revoke at once. Someone else's feed is 404 (admins may revoke any); again is a no-op."""
    feed = await session.get(CalendarFeed, feed_id)
    if feed is None or (feed.user_id != actor.id and not actor.has_any(Role.admin)):
        raise NotFound("No such calendar feed")
    if feed.revoked_at is None:
        feed.revoked_at = utcnow()
        audit.record(session, actor, "calendar_feed.revoke", "calendar_feed", feed.id)
        await session.flush()


async def feed_calendar(session: AsyncSession, token: str, lang: str) -> bytes:
    """The feed's calendar, while the feed is not revoked and its user active and a reader.

    Anything else is 404: a feed URL tells nothing about feeds that do not answer.
    """
    row = (
        await session.exec(
            select(CalendarFeed, User)
            .join(User, col(User.id) == col(CalendarFeed.user_id))
            .where(
                col(CalendarFeed.token_hash) == hash_token(token),
                col(CalendarFeed.revoked_at).is_(None),
                col(User.is_active).is_(True),
            )
        )
    ).first()
    if row is None or not READER_ROLES.intersection(row[1].roles):
        raise NotFound("No such calendar feed")
    filters = FeedFilters.model_validate(row[0].filters)
    return await consultations_service.calendar(session, _filters(filters), lang)


def entity_tag(body: bytes) -> str:
    """A strong ETag for a calendar body (the same events in the same language, the same tag)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match holds this tag (weak comparison, RFC 9110 13.1.2), or is `*`."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False
