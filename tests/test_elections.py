"""Elections and candidates: contested territories, status transitions, one winner per territory."""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from app.models.auth import AuditEvent, Role
from app.models.elections import Candidate
from tests.factories import headers_for
from tests.test_territories import import_tree

ELECTION = {
    "title": {"kk": "Ауыл әкімдерін сайлау", "ru": "Выборы акимов", "en": "Rural akim elections"},
    "kind": "rural_akim",
    "election_date": "2026-12-20",
    "territory_code": "11",
}


@pytest.fixture
async def coordinator(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    headers = await headers_for(app, Role.coordinator)
    await import_tree(client, headers)
    return headers


async def create_election(
    client: httpx.AsyncClient, headers: dict[str, str], **changes: Any
) -> dict[str, Any]:
    response = await client.post("/api/v1/elections", json=ELECTION | changes, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def add_candidate(
    client: httpx.AsyncClient, headers: dict[str, str], election_id: str, **changes: Any
) -> httpx.Response:
    body = {"full_name": "Айгүл Серікқызы", "gender": "female", "territory_code": "112010"}
    return await client.post(
        f"/api/v1/elections/{election_id}/candidates", json=body | changes, headers=headers
    )


async def set_status(
    client: httpx.AsyncClient, headers: dict[str, str], candidate_id: str, status: str
) -> httpx.Response:
    return await client.patch(
        f"/api/v1/candidates/{candidate_id}", json={"status": status}, headers=headers
    )


async def test_election_create_read_update_list(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    assert election["kind"] == "rural_akim"
    other = await create_election(client, coordinator, kind="maslikhat", territory_code=None)
    url = f"/api/v1/elections/{election['id']}"
    assert (await client.get(url, headers=coordinator)).json()["title"] == ELECTION["title"]

    patched = await client.patch(
        url, json={"election_date": "2026-12-27", "title": {"en": "Moved"}}, headers=coordinator
    )
    assert patched.status_code == 200
    assert patched.json()["election_date"] == "2026-12-27"
    assert patched.json()["title"] == {"en": "Moved"}
    for change in ({"kind": None}, {"kind": "president"}, {"territory_code": "nowhere"}):
        assert (await client.patch(url, json=change, headers=coordinator)).status_code == 422

    listed = await client.get("/api/v1/elections", headers=coordinator)
    assert [e["id"] for e in listed.json()["items"]] == [election["id"], other["id"]]
    by_kind = await client.get(
        "/api/v1/elections", params={"kind": "maslikhat"}, headers=coordinator
    )
    assert [e["id"] for e in by_kind.json()["items"]] == [other["id"]]
    # The territory filter includes elections held in a territory's descendants.
    in_1120 = await client.patch(url, json={"territory_code": "1120"}, headers=coordinator)
    assert in_1120.status_code == 200
    by_region = await client.get(
        "/api/v1/elections", params={"territory_code": "11"}, headers=coordinator
    )
    assert [e["id"] for e in by_region.json()["items"]] == [election["id"]]
    assert (
        await client.get(f"/api/v1/elections/{other['id']}x", headers=coordinator)
    ).status_code == 422
    unknown = await client.get(
        "/api/v1/elections/00000000-0000-0000-0000-000000000000", headers=coordinator
    )
    assert unknown.status_code == 404


async def test_candidates_stand_in_a_fitting_territory(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    created = await add_candidate(client, coordinator, election["id"], party="Amanat")
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/api/v1/candidates/{body['id']}"
    assert (body["status"], body["party"], body["election_id"]) == (
        "nominated",
        "Amanat",
        election["id"],
    )
    for territory in ("1120", "1101", "nowhere"):  # a district; outside region 11; unknown
        refused = await add_candidate(client, coordinator, election["id"], territory_code=territory)
        assert refused.status_code == 422, territory
        assert refused.json()["errors"][0]["loc"] == ["body", "territory_code"]
    assert (
        await add_candidate(client, coordinator, election["id"], territory_code="112010001")
    ).status_code == 201  # a village outside any rural district may elect its own akim
    assert (await add_candidate(client, coordinator, election["id"], gender="x")).status_code == 422
    # A narrower election territory must still hold every candidate's territory.
    narrowed = await client.patch(
        f"/api/v1/elections/{election['id']}", json={"territory_code": "1130"}, headers=coordinator
    )
    assert narrowed.status_code == 409


async def test_status_transitions(client: httpx.AsyncClient, coordinator: dict[str, str]) -> None:
    election = await create_election(client, coordinator)
    candidate = (await add_candidate(client, coordinator, election["id"])).json()["id"]
    assert (await set_status(client, coordinator, candidate, "elected")).status_code == 409
    for status in ("registered", "elected", "not_elected", "elected"):
        response = await set_status(client, coordinator, candidate, status)
        assert response.status_code == 200, (status, response.text)
        assert response.json()["status"] == status
    assert (await set_status(client, coordinator, candidate, "nominated")).status_code == 409
    assert (await set_status(client, coordinator, candidate, "withdrawn")).status_code == 409

    quitter = (await add_candidate(client, coordinator, election["id"])).json()["id"]
    assert (await set_status(client, coordinator, quitter, "withdrawn")).status_code == 200
    assert (await set_status(client, coordinator, quitter, "registered")).status_code == 409
    same = await set_status(client, coordinator, quitter, "withdrawn")
    assert same.status_code == 200  # no change is no transition


async def test_one_elected_candidate_per_territory(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    first = (await add_candidate(client, coordinator, election["id"], status="elected")).json()
    second = (await add_candidate(client, coordinator, election["id"], status="registered")).json()
    assert (await set_status(client, coordinator, second["id"], "elected")).status_code == 409
    assert (
        await add_candidate(client, coordinator, election["id"], status="elected")
    ).status_code == 409
    # Another territory, or another election, has its own winner.
    elsewhere = await add_candidate(
        client, coordinator, election["id"], status="elected", territory_code="112010001"
    )
    assert elsewhere.status_code == 201
    other_election = await create_election(client, coordinator)
    assert (
        await add_candidate(client, coordinator, other_election["id"], status="elected")
    ).status_code == 201
    # Moving the winner onto a territory that has one is refused as well.
    moved = await client.patch(
        f"/api/v1/candidates/{first['id']}",
        json={"territory_code": "112010001"},
        headers=coordinator,
    )
    assert moved.status_code == 409
    # A corrected result frees the place.
    assert (await set_status(client, coordinator, first["id"], "not_elected")).status_code == 200
    assert (await set_status(client, coordinator, second["id"], "elected")).status_code == 200


async def test_racing_winners_leave_one(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    ids = []
    for _ in range(4):
        ids.append(
            (await add_candidate(client, coordinator, election["id"], status="registered")).json()[
                "id"
            ]
        )
    responses = await asyncio.gather(
        *(set_status(client, coordinator, candidate, "elected") for candidate in ids)
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    async with app.state.sessionmaker() as session:
        winners = (await session.exec(select(Candidate).where(Candidate.status == "elected"))).all()
    assert len(winners) == 1


async def test_candidate_list_filters_pages_and_audit(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    url = f"/api/v1/elections/{election['id']}/candidates"
    made = [
        (await add_candidate(client, coordinator, election["id"], full_name=f"C{n}")).json()["id"]
        for n in range(3)
    ]
    await set_status(client, coordinator, made[1], "withdrawn")
    first = (await client.get(url, params={"limit": 2}, headers=coordinator)).json()
    rest = (
        await client.get(
            url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=coordinator
        )
    ).json()
    assert [c["id"] for c in first["items"] + rest["items"]] == made
    assert rest["next_cursor"] is None
    withdrawn = await client.get(url, params={"status": "withdrawn"}, headers=coordinator)
    assert [c["id"] for c in withdrawn.json()["items"]] == [made[1]]
    assert (await client.get(url, params={"cursor": "@@"}, headers=coordinator)).status_code == 400
    missing = "/api/v1/elections/00000000-0000-0000-0000-000000000000/candidates"
    assert (await client.get(missing, headers=coordinator)).status_code == 404

    async with app.state.sessionmaker() as session:
        actions = [e.action for e in (await session.exec(select(AuditEvent))).all()]
    assert actions.count("election.create") == 1
    assert actions.count("candidate.create") == 3
    assert actions.count("candidate.update") == 1


async def test_roles(app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]) -> None:
    election = await create_election(client, coordinator)
    candidate = (await add_candidate(client, coordinator, election["id"])).json()
    for role in (Role.observer, Role.analyst):
        headers = await headers_for(app, role)
        assert (
            await client.post("/api/v1/elections", json=ELECTION, headers=headers)
        ).status_code == 403
        assert (await set_status(client, headers, candidate["id"], "registered")).status_code == 403
        got = await client.get(f"/api/v1/candidates/{candidate['id']}", headers=headers)
        assert got.status_code == 200
        assert got.json()["full_name"] == "Айгүл Серікқызы"
