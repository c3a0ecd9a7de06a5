"""Calendar feeds: a phone subscribes by URL alone; tokens hashed, revocable, ETag and HEAD."""

import hashlib
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from icalendar import Calendar
from sqlmodel import select

from app.models.auth import Role
from app.models.calendar_feeds import CalendarFeed
from tests.factories import bearer, create_user, headers_for
from tests.test_consultations import create
from tests.test_territories import import_tree


@pytest.fixture
async def coordinator(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    headers = await headers_for(app, Role.coordinator)
    await import_tree(client, headers)
    return headers


def uids(body: bytes) -> list[str]:
    return sorted(str(event["uid"]) for event in Calendar.from_ical(body).walk("VEVENT"))


async def make_feed(
    client: httpx.AsyncClient, headers: dict[str, str], **filters: Any
) -> dict[str, Any]:
    made = await client.post(
        "/api/v1/calendar-feeds", json={"name": "My district", "filters": filters}, headers=headers
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def feed_path(feed: dict[str, Any]) -> str:
    return urlsplit(feed["url"]).path


async def test_a_feed_serves_its_filtered_calendar_without_a_header(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    here = await create(client, coordinator)
    elsewhere = await create(client, coordinator, territory_code="1101")
    observer = await headers_for(app, Role.observer)

    made = await client.post(
        "/api/v1/calendar-feeds",
        json={"name": "  Akmola  ", "filters": {"territory_code": "11"}},
        headers=observer,
    )
    assert made.status_code == 201, made.text
    feed = made.json()
    assert set(feed) == {"id", "name", "filters", "url", "created_at"}
    assert feed["name"] == "Akmola"
    assert feed["filters"] == {"territory_code": "11", "election_id": None, "status": None}
    assert made.headers["location"] == f"/api/v1/calendar-feeds/{feed['id']}"
    path = feed_path(feed)
    assert path.startswith("/api/v1/calendar/kf_") and path.endswith(".ics")
    assert feed["url"].startswith("http://testserver/")

    calendar = await client.get(path)  # no Authorization at all
    assert calendar.status_code == 200
    assert calendar.headers["content-type"].startswith("text/calendar")
    assert uids(calendar.content) == [f"{here['id']}@kenes"]
    assert f"{elsewhere['id']}@kenes" not in calendar.text
    # Language as for /consultations.ics.
    russian = await client.get(path, params={"lang": "ru"})
    assert "Знакомство с кандидатами" in russian.text

    # Only the hash is stored.
    token = path.removeprefix("/api/v1/calendar/").removesuffix(".ics")
    async with app.state.sessionmaker() as session:
        stored = (await session.exec(select(CalendarFeed))).one()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(stored.model_dump())

    # The owner's list and the feed itself, without the URL; others do not see it.
    listed = await client.get("/api/v1/calendar-feeds", headers=observer)
    assert [item["id"] for item in listed.json()["items"]] == [feed["id"]]
    assert "url" not in listed.json()["items"][0]
    one = await client.get(f"/api/v1/calendar-feeds/{feed['id']}", headers=observer)
    assert one.status_code == 200 and one.json()["name"] == "Akmola"
    other = await headers_for(app, Role.analyst)
    assert (await client.get("/api/v1/calendar-feeds", headers=other)).json()["items"] == []
    stranger = await client.get(f"/api/v1/calendar-feeds/{feed['id']}", headers=other)
    assert stranger.status_code == 404
    refused = await client.delete(f"/api/v1/calendar-feeds/{feed['id']}", headers=other)
    assert refused.status_code == 404
    assert (await client.get(path)).status_code == 200


async def test_filters_are_checked_and_a_collector_holds_no_feed(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    unknown = await client.post(
        "/api/v1/calendar-feeds",
        json={"name": "x", "filters": {"territory_code": "999"}},
        headers=coordinator,
    )
    assert unknown.status_code == 422
    extra = await client.post(
        "/api/v1/calendar-feeds",
        json={"name": "x", "filters": {"from": "2030"}},
        headers=coordinator,
    )
    assert extra.status_code == 422
    by_status = await make_feed(client, coordinator, status="held")
    await create(client, coordinator)
    assert uids((await client.get(feed_path(by_status))).content) == []
    guessed = await client.get("/api/v1/calendar/kf_not-a-real-token.ics")
    assert guessed.status_code == 404
    assert guessed.headers["content-type"] == "application/problem+json"


async def test_revoking_stops_the_feed_at_once(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await create(client, coordinator)
    feed = await make_feed(client, coordinator)
    kept = await make_feed(client, coordinator)
    assert (await client.get(feed_path(feed))).status_code == 200

    revoked = await client.delete(f"/api/v1/calendar-feeds/{feed['id']}", headers=coordinator)
    assert revoked.status_code == 204
    assert (await client.get(feed_path(feed))).status_code == 404
    assert (await client.head(feed_path(feed))).status_code == 404
    assert (await client.get(feed_path(kept))).status_code == 200
    again = await client.delete(f"/api/v1/calendar-feeds/{feed['id']}", headers=coordinator)
    assert again.status_code == 204
    listed = await client.get("/api/v1/calendar-feeds", headers=coordinator)
    assert [item["id"] for item in listed.json()["items"]] == [kept["id"]]


async def test_a_feed_stops_when_its_user_is_deactivated(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await create(client, coordinator)
    user = await create_user(app, Role.observer)
    feed = await make_feed(client, bearer(app, user))
    assert (await client.get(feed_path(feed))).status_code == 200

    admin = await headers_for(app, Role.admin)
    off = await client.patch(f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin)
    assert off.status_code == 200
    assert (await client.get(feed_path(feed))).status_code == 404


@pytest.mark.parametrize("kind", ["feed", "consultations.ics"])
async def test_both_calendars_answer_head_etag_and_304(
    client: httpx.AsyncClient, coordinator: dict[str, str], kind: str
) -> None:
    await create(client, coordinator)
    if kind == "feed":
        path, headers = feed_path(await make_feed(client, coordinator)), {}
    else:
        path, headers = "/api/v1/consultations.ics", coordinator

    full = await client.get(path, headers=headers)
    assert full.status_code == 200
    etag = full.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert full.headers["cache-control"] == "private, no-cache"

    head = await client.head(path, headers=headers)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == etag
    assert head.headers["content-length"] == str(len(full.content))
    assert head.headers["content-type"].startswith("text/calendar")

    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        same = await client.get(path, headers=headers | {"If-None-Match": sent})
        assert same.status_code == 304, sent
        assert same.content == b""
        assert same.headers["etag"] == etag
    stale = await client.get(path, headers=headers | {"If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.content == full.content

    # A change to the calendar is a new tag; another language is another representation.
    await create(client, coordinator, starts_at="2030-06-01T11:00:00+05:00", ends_at=None)
    changed = await client.get(path, headers=headers | {"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    russian = await client.get(path, params={"lang": "ru"}, headers=headers)
    assert russian.headers["etag"] != changed.headers["etag"]
