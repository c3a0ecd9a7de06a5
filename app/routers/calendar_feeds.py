"""Calendar feeds: subscribe a phone's calendar to consultations by URL alone."""

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response, status

from app.deps import PageDep, RequireRoles, SessionDep
from app.models.auth import Principal, Role
from app.models.calendar_feeds import CalendarFeed, CalendarFeedCreate, CalendarFeedCreated
from app.models.calendar_feeds import CalendarFeedRead as FeedRead
from app.openapi import NOT_MODIFIED
from app.pagination import Page
from app.routers.problems import responses
from app.services import calendar_feeds as service
from app.services import consultations as consultations_service

router = APIRouter(prefix="/api/v1", tags=["calendar"])

Reader = Annotated[Principal, Depends(RequireRoles(Role.coordinator, Role.observer, Role.analyst))]

CALENDAR_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/calendar": {}}, "description": "RFC 5545 calendar"},
    **NOT_MODIFIED,
}


def calendar_answer(
    request: Request, body: bytes, filename: str, if_none_match: str | None
) -> Response:
    """The calendar with a strong ETag: 304 when If-None-Match holds it; HEAD without a body."""
    etag = service.entity_tag(body)
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "Vary": "Accept-Language",
    }
    if service.matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="{filename}"'
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        body = b""
    return Response(body, media_type="text/calendar; charset=utf-8", headers=headers)


def _read(feed: CalendarFeed) -> FeedRead:
    return FeedRead.model_validate(feed, from_attributes=True)


@router.post(
    "/calendar-feeds",
    response_model=CalendarFeedCreated,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 422),
)
async def create_feed(
    data: CalendarFeedCreate,
    owner: Reader,
    session: SessionDep,
    request: Request,
    response: Response,
) -> CalendarFeedCreated:
    """A feed of the consultations matching `filters`; its `url` (shown once) needs no header."""
    feed, token = await service.create_feed(session, owner, data)
    response.headers["Location"] = f"/api/v1/calendar-feeds/{feed.id}"
    url = str(request.url_for("feed_calendar", token=token))
    return CalendarFeedCreated(**_read(feed).model_dump(), url=url)


@router.get(
    "/calendar-feeds", response_model=Page[FeedRead], responses=responses(400, 401, 403, 422)
)
async def list_feeds(owner: Reader, session: SessionDep, page: PageDep) -> Page[FeedRead]:
    """The caller's own feeds (not revoked), in creation order; URLs are not shown again."""
    rows, next_cursor = await service.list_feeds(
        session, owner, limit=page.limit, cursor=page.cursor
    )
    return Page(items=[_read(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/calendar-feeds/{feed_id}", response_model=FeedRead, responses=responses(401, 403, 404)
)
async def get_feed(feed_id: uuid.UUID, owner: Reader, session: SessionDep) -> FeedRead:
    """One of the caller's own feeds."""
    return _read(await service.own_feed(session, owner, feed_id))


@router.delete(
    "/calendar-feeds/{feed_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404),
)
async def revoke_feed(feed_id: uuid.UUID, actor: Reader, session: SessionDep) -> Response:
    """Revokes the feed at once: its URL answers 404 from now on."""
    await service.revoke_feed(session, actor, feed_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/calendar/{token}.ics",
    response_class=Response,
    responses={**CALENDAR_ANSWERS, **responses(404, 422)},
)
@router.head("/calendar/{token}.ics", include_in_schema=False)
async def feed_calendar(
    token: str,
    session: SessionDep,
    request: Request,
    lang: Literal["kk", "ru", "en"] | None = None,
    accept_language: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The feed's consultations as RFC 5545, by URL alone (no Authorization); also HEAD.

    404 once the feed is revoked or its user deactivated. Poll with If-None-Match: 304 while
    nothing changed.
    """
    language = consultations_service.pick_language(lang, accept_language)
    body = await service.feed_calendar(session, token, language)
    return calendar_answer(request, body, "consultations.ics", if_none_match)
