"""Consultations: filters, reschedules and their calendar, CSV import, observations exactly once."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from icalendar import Calendar
from sqlalchemy import func
from sqlmodel import col, select

from app.db import session_scope
from app.demo import load_demo_data
from app.models.auth import AuditEvent, Role
from app.models.consultations import Consultation, Observation
from app.services.territories import in_subtree
from tests.conftest import ON_POSTGRES
from tests.factories import headers_for
from tests.test_elections import add_candidate, create_election
from tests.test_territories import import_tree

SOON = datetime(2030, 5, 4, 6, 0, tzinfo=UTC)
COLUMNS = "election_id,territory_code,host,starts_at,ends_at,location,announced_at,agenda_kk,agenda_ru,agenda_en\n"  # noqa: E501


@pytest.fixture
async def coordinator(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    headers = await headers_for(app, Role.coordinator)
    await import_tree(client, headers)
    return headers


@pytest.fixture
async def observer(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.observer)


def consultation_body(**changes: Any) -> dict[str, Any]:
    body = {
        "territory_code": "112010001",
        "host": "Аким Целиноградского района",
        "starts_at": "2030-05-04T11:00:00+05:00",
        "ends_at": "2030-05-04T13:00:00+05:00",
        "location": "Дом культуры",
        "agenda": {"kk": "Кандидаттармен танысу", "ru": "Знакомство с кандидатами"},
        "announced_at": "2030-04-24T09:00:00+05:00",
    }
    return body | changes


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], **changes: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/consultations", json=consultation_body(**changes), headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def observation(**changes: Any) -> dict[str, Any]:
    body = {
        "id": str(uuid.uuid4()),
        "observed_at": datetime.now(UTC).isoformat(),
        "outcome": "held",
        "attendees_total": 40,
        "attendees_women": 22,
        "candidates_presented": True,
        "residents_spoke": True,
        "notes": "Жители задавали вопросы",
        "location": {"lat": 51.1, "lon": 71.4},
    }
    return body | changes


def observations_url(consultation: dict[str, Any]) -> str:
    return f"/api/v1/consultations/{consultation['id']}/observations"


async def count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(
            (await session.exec(select(func.count()).select_from(model).where(*where))).one()
        )


# --- consultations -----------------------------------------------------------------------------


async def test_create_read_and_validation(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    candidate = (await add_candidate(client, coordinator, election["id"])).json()
    made = await create(
        client, coordinator, election_id=election["id"], candidate_ids=[candidate["id"]]
    )
    assert made["starts_at"] == "2030-05-04T06:00:00Z"  # stored and returned in UTC
    assert (made["status"], made["history"], made["candidate_ids"]) == (
        "scheduled",
        [],
        [candidate["id"]],
    )
    got = await client.get(f"/api/v1/consultations/{made['id']}", headers=coordinator)
    assert got.json() == made

    other = await create_election(client, coordinator)
    for changes, field in [
        ({"ends_at": "2030-05-04T10:00:00+05:00"}, None),  # ends before it starts
        ({"announced_at": "2030-05-05T10:00:00+05:00"}, None),  # announced afterwards
        ({"starts_at": "2030-05-04T11:00:00"}, "starts_at"),  # no offset
        ({"territory_code": "nowhere"}, "territory_code"),
        ({"candidate_ids": [candidate["id"]]}, "candidate_ids"),  # no election
        ({"election_id": other["id"], "candidate_ids": [candidate["id"]]}, "candidate_ids"),
        ({"election_id": str(uuid.uuid4())}, "election_id"),
        ({"agenda": {"de": "Tagesordnung"}}, "agenda"),
        ({"host": ""}, "host"),
    ]:
        response = await client.post(
            "/api/v1/consultations", json=consultation_body(**changes), headers=coordinator
        )
        assert response.status_code == 422, (changes, response.text)
        if field:
            assert field in response.json()["errors"][0]["loc"], response.text


async def test_list_filters_include_the_territory_subtree(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    in_village = await create(client, coordinator, election_id=election["id"])
    in_district = await create(
        client,
        coordinator,
        territory_code="1130",
        starts_at="2030-05-10T11:00:00+05:00",
        ends_at=None,
    )
    elsewhere = await create(
        client,
        coordinator,
        territory_code="1101",
        starts_at="2030-06-01T11:00:00+05:00",
        ends_at=None,
    )

    async def ids(**params: Any) -> list[str]:
        response = await client.get("/api/v1/consultations", params=params, headers=coordinator)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids() == [in_village["id"], in_district["id"], elsewhere["id"]]
    # Region -> district -> rural district -> settlement: four levels down.
    assert await ids(territory_code="11") == [in_village["id"], in_district["id"]]
    assert await ids(territory_code="1120") == [in_village["id"]]
    assert await ids(territory_code="112010001") == [in_village["id"]]
    assert await ids(territory_code="110") == [elsewhere["id"]]  # "11" is not its prefix
    assert await ids(election_id=election["id"]) == [in_village["id"]]
    # from is inclusive, to exclusive, on starts_at.
    window = {"from": "2030-05-04T06:00:00Z", "to": "2030-06-01T06:00:00Z"}
    assert await ids(**window) == [in_village["id"], in_district["id"]]
    assert await ids(**{"from": "2030-05-04T11:00:01+05:00"}) == [
        in_district["id"],
        elsewhere["id"],
    ]
    assert await ids(status="held") == []

    bad = [
        {"from": "yesterday"},
        {"status": "maybe"},
        {"limit": 0},
        {"election_id": "x"},
        {"territory_code": "nowhere"},
    ]
    for params in bad:
        response = await client.get("/api/v1/consultations", params=params, headers=coordinator)
        assert response.status_code == 422, params
    cursor = await client.get(
        "/api/v1/consultations", params={"cursor": "bm9wZQ"}, headers=coordinator
    )
    assert cursor.status_code == 400


async def test_reschedule_keeps_history_and_raises_the_calendar_sequence(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    made = await create(client, coordinator)
    url = f"/api/v1/consultations/{made['id']}"
    first = await client.patch(
        url,
        json={"starts_at": "2030-05-06T11:00:00+05:00", "ends_at": "2030-05-06T13:00:00+05:00"},
        headers=coordinator,
    )
    assert first.status_code == 200, first.text
    same = await client.patch(url, json={"starts_at": "2030-05-06T06:00:00Z"}, headers=coordinator)
    assert same.json()["history"] == first.json()["history"]  # the same instant is no reschedule
    second = await client.patch(
        url,
        json={"starts_at": "2030-05-08T11:00:00+05:00", "ends_at": "2030-05-08T12:00:00+05:00"},
        headers=coordinator,
    )
    history = second.json()["history"]
    assert [entry["starts_at"] for entry in history] == [
        "2030-05-04T06:00:00Z",
        "2030-05-06T06:00:00Z",
    ]
    assert all(entry["changed_at"] >= made["created_at"] for entry in history)
    assert second.json()["starts_at"] == "2030-05-08T06:00:00Z"
    refused = await client.patch(
        url, json={"ends_at": "2030-05-08T10:00:00+05:00"}, headers=coordinator
    )
    assert refused.status_code == 422

    feed = await client.get("/api/v1/consultations.ics", params={"lang": "ru"}, headers=coordinator)
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    assert "DTSTART:20300508T060000Z" in feed.text  # UTC on the wire
    events = Calendar.from_ical(feed.content).walk("VEVENT")
    assert len(events) == 1
    event = events[0]
    assert str(event["uid"]) == f"{made['id']}@kenes"
    assert int(event["sequence"]) == 2
    assert event.decoded("dtstart") == datetime(2030, 5, 8, 6, 0, tzinfo=UTC)
    assert str(event["location"]) == "Дом культуры, Акмол"
    assert str(event["description"]).startswith("Знакомство с кандидатами")

    kazakh = await client.get(
        "/api/v1/consultations.ics",
        headers=coordinator | {"Accept-Language": "de;q=1, kk;q=0.8, ru;q=0.5"},
    )
    event = Calendar.from_ical(kazakh.content).walk("VEVENT")[0]
    assert str(event["location"]) == "Дом культуры, Ақмол"
    assert str(event["description"]).startswith("Кандидаттармен танысу")
    assert str(event["uid"]) == f"{made['id']}@kenes"  # stable
    # English was asked for but the agenda has none: the first language it has stands in.
    english = await client.get(
        "/api/v1/consultations.ics", params={"lang": "en"}, headers=coordinator
    )
    event = Calendar.from_ical(english.content).walk("VEVENT")[0]
    assert str(event["location"]) == "Дом культуры, Akmol"
    assert str(event["description"]).startswith("Кандидаттармен танысу")
    assert (
        await client.get("/api/v1/consultations.ics", params={"lang": "fr"}, headers=coordinator)
    ).status_code == 422


async def test_calendar_takes_the_list_filters(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    await create(client, coordinator)
    other = await create(client, coordinator, territory_code="1101")
    feed = await client.get(
        "/api/v1/consultations.ics", params={"territory_code": "110"}, headers=coordinator
    )
    uids = [str(event["uid"]) for event in Calendar.from_ical(feed.content).walk("VEVENT")]
    assert uids == [f"{other['id']}@kenes"]
    empty = await client.get(
        "/api/v1/consultations.ics", params={"status": "held"}, headers=coordinator
    )
    assert Calendar.from_ical(empty.content).walk("VEVENT") == []


async def test_import_is_all_or_nothing(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    good = (
        f"{election['id']},112010001,Аким района,2030-05-04T11:00:00+05:00,"
        "2030-05-04T13:00:00+05:00,Дом культуры,2030-04-24T09:00:00+05:00,Күн тәртібі,Повестка,\n"
        ",1130,Аким района,2030-05-05T11:00:00+05:00,,Школа,,,,\n"
    )
    bad = (
        good
        + ",nowhere,Аким,2030-05-06T11:00:00+05:00,,Школа,,,,\n"  # line 4
        + ",1130,Аким,2030-05-06 11:00,,Школа,,,,\n"  # line 5: no offset
        + ",1130,Аким района,2030-05-05T11:00:00+05:00,,Школа,,,,\n"  # line 6: repeats line 3
    )

    def upload(text: str) -> dict[str, Any]:
        return {"file": ("c.csv", (COLUMNS + text).encode(), "text/csv")}

    refused = await client.post(
        "/api/v1/consultations/import", files=upload(bad), headers=coordinator
    )
    assert refused.status_code == 422
    assert [e["loc"] for e in refused.json()["errors"]] == [["file", 4], ["file", 5], ["file", 6]]
    assert await count(app, Consultation) == 0

    imported = await client.post(
        "/api/v1/consultations/import", files=upload(good), headers=coordinator
    )
    assert imported.json() == {"imported": 2}
    listed = (await client.get("/api/v1/consultations", headers=coordinator)).json()["items"]
    assert listed[0]["agenda"] == {"kk": "Күн тәртібі", "ru": "Повестка"}
    assert listed[0]["election_id"] == election["id"]
    assert listed[1]["ends_at"] is None
    again = await client.post(
        "/api/v1/consultations/import", files=upload(good), headers=coordinator
    )
    assert again.status_code == 422  # the same meetings again
    assert await count(app, Consultation) == 2
    assert await count(app, AuditEvent, col(AuditEvent.action) == "consultation.import") == 1


# --- observations ------------------------------------------------------------------------------


async def test_observation_is_stored_exactly_once(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    made = await create(client, coordinator)
    body = observation()
    first = await client.post(observations_url(made), json=body, headers=observer)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"{observations_url(made)}/{body['id']}"
    replay = await client.post(observations_url(made), json=body, headers=observer)
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert "location" not in replay.headers
    # The same instant written with another offset is the same content.
    shifted = datetime.fromisoformat(body["observed_at"]).astimezone(
        datetime.now().astimezone().tzinfo
    )
    same = await client.post(
        observations_url(made), json=body | {"observed_at": shifted.isoformat()}, headers=observer
    )
    assert same.status_code == 200
    changed = await client.post(
        observations_url(made), json=body | {"attendees_total": 41}, headers=observer
    )
    assert changed.status_code == 409
    assert await count(app, Observation) == 1
    got = await client.get(first.headers["location"], headers=observer)
    assert got.json() == first.json()
    # Submissions record their submitter themselves; they are not audited.
    assert await count(app, AuditEvent, col(AuditEvent.target_type) == "observation") == 0
    # Without an id every submission is new.
    for _ in range(2):
        fresh = await client.post(
            observations_url(made), json=observation(id=None), headers=observer
        )
        assert fresh.status_code == 201
    assert await count(app, Observation) == 3


async def test_concurrent_duplicates_store_one_observation(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    made = await create(client, coordinator)
    body = observation()
    responses = await asyncio.gather(
        *(client.post(observations_url(made), json=body, headers=observer) for _ in range(6))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 200, 201]
    assert len({r.text for r in responses}) == 1
    assert await count(app, Observation) == 1

    # Same id, two contents at once: one wins, each copy of it replays, the other is 409.
    racing = observation()
    variants = [racing, racing | {"outcome": "postponed"}] * 3
    answers = await asyncio.gather(
        *(client.post(observations_url(made), json=v, headers=observer) for v in variants)
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 201, 409, 409, 409]
    stored = next(a.json() for a in answers if a.status_code == 201)
    assert all(a.json() == stored for a in answers if a.status_code == 200)
    assert await count(app, Observation) == 2
    if ON_POSTGRES:  # where the requests really ran in parallel transactions
        assert await count(app, Observation, col(Observation.id) == racing["id"]) == 1


async def test_observation_rules(
    client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    made = await create(client, coordinator)
    for changes, field in [
        ({"attendees_total": 10, "attendees_women": 11}, None),
        ({"observed_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "observed_at"),
        ({"observed_at": "2030-05-04T11:00:00"}, "observed_at"),  # no offset
        ({"outcome": "scheduled"}, "outcome"),
        ({"attendees_total": -1}, "attendees_total"),
        ({"location": {"lat": 95, "lon": 0}}, "location"),
        ({"id": "not-a-uuid"}, "id"),
    ]:
        response = await client.post(
            observations_url(made), json=observation(**changes), headers=observer
        )
        assert response.status_code == 422, (changes, response.text)
        if field:
            assert field in response.json()["errors"][0]["loc"]
    women_only = observation(attendees_total=None, attendees_women=5)
    assert (
        await client.post(observations_url(made), json=women_only, headers=observer)
    ).status_code == 201
    unknown = f"/api/v1/consultations/{uuid.uuid4()}/observations"
    assert (await client.post(unknown, json=observation(), headers=observer)).status_code == 404


async def test_status_follows_the_latest_observation(
    client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    made = await create(client, coordinator)
    url = f"/api/v1/consultations/{made['id']}"
    now = datetime.now(UTC)

    async def report(outcome: str, at: datetime) -> str:
        body = observation(outcome=outcome, observed_at=at.isoformat())
        response = await client.post(observations_url(made), json=body, headers=observer)
        assert response.status_code == 201, response.text
        status: str = (await client.get(url, headers=observer)).json()["status"]
        return status

    assert await report("postponed", now + timedelta(seconds=10)) == "postponed"
    # Rescheduling a postponed meeting puts it back on the calendar.
    moved = await client.patch(
        url, json={"starts_at": "2030-05-09T11:00:00+05:00", "ends_at": None}, headers=coordinator
    )
    assert moved.json()["status"] == "scheduled"
    assert await report("held", now + timedelta(seconds=30)) == "held"
    # A report that arrives late but describes an earlier moment does not override.
    assert await report("not_held", now + timedelta(seconds=20)) == "held"
    assert await report("cancelled", now + timedelta(seconds=40)) == "cancelled"

    listed = await client.get(observations_url(made), params={"limit": 3}, headers=observer)
    page = listed.json()
    assert [o["outcome"] for o in page["items"]] == ["postponed", "held", "not_held"]
    rest = await client.get(
        observations_url(made), params={"cursor": page["next_cursor"]}, headers=observer
    )
    assert [o["outcome"] for o in rest.json()["items"]] == ["cancelled"]
    held = await client.get(
        "/api/v1/consultations", params={"status": "cancelled"}, headers=observer
    )
    assert [c["id"] for c in held.json()["items"]] == [made["id"]]


async def test_roles(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    made = await create(client, coordinator)
    analyst = await headers_for(app, Role.analyst)
    assert (
        await client.post(observations_url(made), json=observation(), headers=analyst)
    ).status_code == 403
    assert (await client.get(observations_url(made), headers=analyst)).status_code == 200
    for headers in (observer, analyst):
        assert (
            await client.post("/api/v1/consultations", json=consultation_body(), headers=headers)
        ).status_code == 403
        assert (
            await client.patch(
                f"/api/v1/consultations/{made['id']}", json={"host": "x"}, headers=headers
            )
        ).status_code == 403
    assert (await client.get("/api/v1/consultations.ics")).status_code == 401
    audited = await count(app, AuditEvent, col(AuditEvent.action) == "consultation.create")
    assert audited == 1


# --- demo data ---------------------------------------------------------------------------------


async def test_demo_data_loads_once_with_every_kind_of_outcome(app: FastAPI) -> None:
    runs = []
    for _ in range(2):
        async for session in session_scope(app.state.sessionmaker):
            runs.append(await load_demo_data(session))
    assert runs[0]["elections"] == 1
    assert runs[0]["candidates"] > 10 and runs[0]["observations"] > 5
    assert all(value == 0 for value in runs[1].values())

    async with app.state.sessionmaker() as session:
        statuses = set((await session.exec(select(Consultation.status))).all())
        in_almaty_region = (
            await session.exec(
                select(func.count())
                .select_from(Consultation)
                .where(in_subtree(Consultation.territory_code, "190000000"))
            )
        ).one()
        rescheduled = (
            await session.exec(select(Consultation).where(col(Consultation.sequence) > 0))
        ).all()
    assert {"held", "postponed", "not_held", "scheduled"} <= statuses
    assert 0 < in_almaty_region < runs[0]["consultations"]
    assert rescheduled and all(len(c.history) == c.sequence for c in rescheduled)
