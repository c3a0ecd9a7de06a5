"""Consultation and candidate aggregates, each figure checked against plain Python over the data."""

import csv
import io
import statistics
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.models.auth import Role
from tests.factories import headers_for
from tests.test_elections import create_election
from tests.test_territories import HEADER, import_tree

CONSULTATIONS = "/api/v1/aggregates/consultations"
STATUSES = ("scheduled", "held", "not_held", "postponed", "cancelled")
# The territories of tests.test_territories (regions 11 and 110 with districts at depth), plus a
# city of republican significance (no district at all) and a city of regional significance.
EXTRA = HEADER + (
    "75,,city,Алматы,Алматы,Almaty\n"
    "1150,11,city,Қосшы,Косшы,Kosshy\n"
    "115010,1150,rural_district,Қосшы а.о.,Косшинский с.о.,Kosshy Rural District\n"
)


def candidates_url(election_id: str) -> str:
    return f"/api/v1/aggregates/elections/{election_id}/candidates"


@pytest.fixture
async def coordinator(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    headers = await headers_for(app, Role.coordinator)
    await import_tree(client, headers)
    await import_tree(client, headers, EXTRA)
    return headers


@pytest.fixture
async def analyst(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.analyst)


async def _parents(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """code -> (parent_code, level), read back through the API."""
    listed = await client.get("/api/v1/territories", params={"limit": 500}, headers=headers)
    return {t["code"]: (t["parent_code"], t["level"]) for t in listed.json()["items"]}


def _rollup(tree: dict[str, Any], code: str, dimension: str) -> str | None:
    """The territory's region (its root) or district (district-level ancestor or itself)."""
    chain = [code]
    while tree[chain[-1]][0] is not None:
        chain.append(tree[chain[-1]][0])
    if dimension == "region":
        return chain[-1]
    districts = [c for c in chain if tree[c][1] == "district"]
    return districts[0] if districts else None


# --- consultations -----------------------------------------------------------------------------


@dataclass
class Meeting:
    territory_code: str
    host: str
    starts_at: datetime
    announced_at: datetime | None
    election: bool = False
    # (seconds after "now", outcome, attendees_total, attendees_women), in submission order
    reports: list[tuple[int, str, int | None, int | None]] = field(default_factory=list)
    id: str = ""


START = datetime(2030, 5, 4, 6, 0, tzinfo=UTC)


def _meetings() -> list[Meeting]:
    day, hour = timedelta(days=1), timedelta(hours=1)
    return [
        # Only the latest report with both counts counts: a later one without counts changes
        # the status only, and one submitted last but describing an earlier moment is older.
        Meeting(
            "112010001",
            "Akim A",
            START,
            START - 10 * day - 2 * hour,
            election=True,
            reports=[
                (10, "held", 40, 22),
                (30, "held", 45, 25),
                (40, "not_held", None, None),
                (20, "held", 100, 90),
            ],
        ),
        Meeting(
            "112010002",
            "Akim A",
            START + day,
            START + day - timedelta(days=3, hours=12),
            election=True,
            reports=[(10, "not_held", None, None), (15, "held", 30, None)],
        ),
        Meeting("1120", "Akim B", START + 2 * day, START - 5 * day),  # never observed
        Meeting(
            "1130",
            "Akim B",
            START + 3 * day,
            START - day,
            reports=[(10, "postponed", 12, 3), (20, "cancelled", 0, 0)],
        ),
        Meeting("110", "Akim B", START + 7 * day, None),  # never announced nor observed
        Meeting("1101", "Akim C", START + 4 * day, START + 3 * day - 2 * hour, election=True),
        Meeting(
            "11",
            "Akim A",
            START + 5 * day,
            START + 3 * day,
            reports=[(5, "held", 60, 35)],
        ),
        Meeting(
            "115010",
            "Akim C",
            START + 6 * day,
            START + 6 * day - timedelta(minutes=90),
            reports=[(5, "held", 25, 14)],
        ),
        # Outside a `to` of 2031: the date filter must leave it out.
        Meeting("75", "Akim C", START + 400 * day, START + 393 * day, reports=[(5, "held", 9, 5)]),
    ]


async def _create_meetings(
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    observer: dict[str, str],
    election_id: str,
) -> list[Meeting]:
    meetings = _meetings()
    for meeting in meetings:
        body: dict[str, Any] = {
            "territory_code": meeting.territory_code,
            "host": meeting.host,
            "starts_at": meeting.starts_at.isoformat(),
            "location": "Дом культуры",
            "announced_at": meeting.announced_at.isoformat() if meeting.announced_at else None,
            "election_id": election_id if meeting.election else None,
        }
        made = await client.post("/api/v1/consultations", json=body, headers=coordinator)
        assert made.status_code == 201, made.text
        meeting.id = made.json()["id"]
    now = datetime.now(UTC)
    for meeting in meetings:
        for offset, outcome, total, women in meeting.reports:
            report = {
                "observed_at": (now + timedelta(seconds=offset)).isoformat(),
                "outcome": outcome,
                "attendees_total": total,
                "attendees_women": women,
            }
            sent = await client.post(
                f"/api/v1/consultations/{meeting.id}/observations", json=report, headers=observer
            )
            assert sent.status_code == 201, sent.text
    return meetings


def _expected_consultations(
    meetings: Iterable[Meeting], by: list[str], tree: dict[str, Any]
) -> list[dict[str, Any]]:
    """The contract's figures, by plain Python over what the test sent."""

    def value(meeting: Meeting, dimension: str) -> str | None:
        if dimension == "territory":
            return meeting.territory_code
        if dimension == "host":
            return meeting.host
        return _rollup(tree, meeting.territory_code, dimension)

    groups: dict[tuple[str | None, ...], list[Meeting]] = {}
    for meeting in meetings:
        groups.setdefault(tuple(value(meeting, d) for d in by), []).append(meeting)
    cells = []
    for key, members in groups.items():
        statuses = [max(m.reports)[1] if m.reports else "scheduled" for m in members]
        counted = [
            max(r for r in m.reports if r[2] is not None and r[3] is not None)
            for m in members
            if any(r[2] is not None and r[3] is not None for r in m.reports)
        ]
        total = sum(r[2] or 0 for r in counted)
        women = sum(r[3] or 0 for r in counted)
        notices = [
            (m.starts_at - m.announced_at).total_seconds() / 86400
            for m in members
            if m.announced_at is not None
        ]
        cells.append(
            {
                "group": dict(zip(by, key, strict=True)),
                "total": len(members),
                **{status: statuses.count(status) for status in STATUSES},
                "observed": sum(1 for m in members if m.reports),
                "attendees_reported": len(counted),
                "attendees_total": total,
                "attendees_women": women,
                "women_share": women / total if total else None,
                "announced": len(notices),
                "median_notice_days": statistics.median(notices) if notices else None,
            }
        )
    return sorted(cells, key=lambda c: tuple((v is None, v or "") for v in c["group"].values()))


def _assert_cells(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [c["group"] for c in got] == [c["group"] for c in expected]
    for cell, want in zip(got, expected, strict=True):
        for name, figure in want.items():
            if isinstance(figure, float):
                assert cell[name] == pytest.approx(figure, rel=1e-12), (want["group"], name)
            else:
                assert cell[name] == figure, (want["group"], name)


async def test_consultation_figures_by_every_dimension(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str], analyst: dict[str, str]
) -> None:
    observer = await headers_for(app, Role.observer)
    election = await create_election(client, coordinator)
    meetings = await _create_meetings(client, coordinator, observer, election["id"])
    tree = await _parents(client, coordinator)

    for by in (["region"], ["district"], ["territory"], ["host"], ["region", "host"], []):
        response = await client.get(CONSULTATIONS, params={"by": ",".join(by)}, headers=analyst)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["by"] == by
        _assert_cells(body["cells"], _expected_consultations(meetings, by, tree))

    # Spot checks of the expected figures themselves, so a shared misreading cannot hide.
    async def cells(by: str) -> dict[str | None, dict[str, Any]]:
        response = await client.get(CONSULTATIONS, params={"by": by}, headers=analyst)
        return {c["group"][by]: c for c in response.json()["cells"]}

    eleven = (await cells("region"))["11"]
    assert (eleven["total"], eleven["observed"], eleven["scheduled"]) == (6, 5, 1)
    assert (eleven["held"], eleven["not_held"], eleven["cancelled"]) == (3, 1, 1)
    # Latest reports with both counts: 45/25, 0/0, 60/35, 25/14 (not 100/90, not 30/None).
    assert (eleven["attendees_reported"], eleven["attendees_total"]) == (4, 130)
    assert eleven["attendees_women"] == 74
    # An even count, 6 announced (10 d 2 h, 3 d 12 h, 7 d, 4 d, 2 d, 1.5 h): the middle two.
    assert eleven["median_notice_days"] == pytest.approx((3.5 + 4) / 2)
    district = await cells("district")
    assert district["1120"]["median_notice_days"] == pytest.approx(7.0)  # odd: 10.08, 3.5, 7
    assert district["1130"]["women_share"] is None  # counts reported, but zero attendees
    assert district["1130"]["attendees_reported"] == 1
    # Region 11 itself, a city's rural district, Almaty, region 110 itself.
    assert district[None]["total"] == 4
    unannounced = (await cells("territory"))["110"]
    assert (unannounced["announced"], unannounced["median_notice_days"]) == (0, None)
    assert (unannounced["observed"], unannounced["women_share"]) == (0, None)
    host = await cells("host")
    assert host["Akim B"]["median_notice_days"] == pytest.approx((7 + 4) / 2)


async def test_even_median_and_filters(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str], analyst: dict[str, str]
) -> None:
    observer = await headers_for(app, Role.observer)
    election = await create_election(client, coordinator)
    meetings = await _create_meetings(client, coordinator, observer, election["id"])
    tree = await _parents(client, coordinator)

    cases: list[tuple[dict[str, str], Callable[[Meeting], bool]]] = [
        ({"election_id": election["id"]}, lambda m: m.election),
        ({"to": "2031-01-01T00:00:00+05:00"}, lambda m: m.starts_at.year < 2031),
        # `from` inclusive, `to` exclusive, on starts_at.
        (
            {"from": (START + timedelta(days=1)).isoformat(), "to": "2030-05-07T06:00:00Z"},
            lambda m: START + timedelta(days=1) <= m.starts_at < START + timedelta(days=3),
        ),
    ]
    for params, keep in cases:
        chosen = [m for m in meetings if keep(m)]
        assert chosen
        for by in (["region"], ["district", "host"]):
            response = await client.get(
                CONSULTATIONS, params={**params, "by": ",".join(by)}, headers=analyst
            )
            assert response.status_code == 200, (params, response.text)
            _assert_cells(response.json()["cells"], _expected_consultations(chosen, by, tree))

    # The election's three: 10 d 2 h, 3 d 12 h, 26 h -> an odd count; without the first, even.
    overall = await client.get(
        CONSULTATIONS, params={"election_id": election["id"]}, headers=analyst
    )
    assert overall.json()["cells"][0]["median_notice_days"] == pytest.approx(3.5)
    later = await client.get(
        CONSULTATIONS,
        params={"election_id": election["id"], "from": (START + timedelta(hours=1)).isoformat()},
        headers=analyst,
    )
    assert later.json()["cells"][0]["median_notice_days"] == pytest.approx((3.5 + 26 / 24) / 2)
    empty = await client.get(
        CONSULTATIONS, params={"from": "2040-01-01T00:00:00Z"}, headers=analyst
    )
    assert empty.json() == {"by": [], "cells": []}


async def test_consultation_csv_matches_json(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str], analyst: dict[str, str]
) -> None:
    observer = await headers_for(app, Role.observer)
    election = await create_election(client, coordinator)
    await _create_meetings(client, coordinator, observer, election["id"])
    params = {"by": "district,host"}
    cells = (await client.get(CONSULTATIONS, params=params, headers=analyst)).json()["cells"]
    response = await client.get(CONSULTATIONS, params={**params, "format": "csv"}, headers=analyst)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    figures = [name for name in cells[0] if name != "group"]
    assert rows[0] == ["district", "host", *figures]
    assert len(rows) == len(cells) + 1
    for row, cell in zip(rows[1:], cells, strict=True):
        assert row[:2] == [cell["group"]["district"] or "", cell["group"]["host"]]
        assert row[2:] == ["" if cell[f] is None else str(cell[f]) for f in figures]


# --- candidates --------------------------------------------------------------------------------

# (territory, gender, party, social_status, status); "withdrawn" ones are excluded.
CANDIDATES = [
    ("112010", "female", "Amanat", "teacher", "elected"),
    ("112010", "male", "Amanat", "farmer", "not_elected"),
    ("112010", "female", "Respublika", "teacher", "withdrawn"),
    ("112010001", "male", None, "farmer", "registered"),
    ("1130", "male", None, None, "elected"),
    ("1130", "female", "Respublika", "doctor", "not_elected"),
    ("1101", "female", "Respublika", "teacher", "elected"),
    ("1101", "male", "Amanat", None, "withdrawn"),
    ("75", "male", "Amanat", "teacher", "nominated"),
    ("115010", "female", None, "doctor", "elected"),
]


def _expected_candidates(by: list[str], tree: dict[str, Any]) -> list[dict[str, Any]]:
    def value(row: tuple[Any, ...], dimension: str) -> str | None:
        territory, _, party, social_status, _ = row
        if dimension == "party":
            return party  # type: ignore[no-any-return]
        if dimension == "social_status":
            return social_status  # type: ignore[no-any-return]
        return _rollup(tree, territory, dimension)

    groups: dict[tuple[str | None, ...], list[tuple[Any, ...]]] = {}
    for row in CANDIDATES:
        if row[4] != "withdrawn":
            groups.setdefault(tuple(value(row, d) for d in by), []).append(row)
    cells = []
    for key, rows in groups.items():
        women = sum(1 for r in rows if r[1] == "female")
        elected = sum(1 for r in rows if r[4] == "elected")
        elected_women = sum(1 for r in rows if r[4] == "elected" and r[1] == "female")
        cells.append(
            {
                "group": dict(zip(by, key, strict=True)),
                "candidates": len(rows),
                "candidates_women": women,
                "elected": elected,
                "elected_women": elected_women,
                "women_share_candidates": women / len(rows),
                "women_share_elected": elected_women / elected if elected else None,
            }
        )
    return sorted(cells, key=lambda c: tuple((v is None, v or "") for v in c["group"].values()))


async def _create_candidates(client: httpx.AsyncClient, coordinator: dict[str, str]) -> str:
    election = await create_election(client, coordinator, kind="maslikhat", territory_code=None)
    other = await create_election(client, coordinator, kind="maslikhat", territory_code=None)
    url = f"/api/v1/elections/{election['id']}/candidates"
    for territory, gender, party, social_status, status in CANDIDATES:
        body = {
            "full_name": "Кандидат",
            "gender": gender,
            "party": party,
            "social_status": social_status,
            "territory_code": territory,
            "status": "registered" if status == "withdrawn" else status,
        }
        made = await client.post(url, json=body, headers=coordinator)
        assert made.status_code == 201, made.text
        if status == "withdrawn":
            withdrawn = await client.patch(
                f"/api/v1/candidates/{made.json()['id']}",
                json={"status": "withdrawn"},
                headers=coordinator,
            )
            assert withdrawn.status_code == 200, withdrawn.text
    # Another election's candidate never counts.
    body = {"full_name": "X", "gender": "female", "territory_code": "1130", "status": "elected"}
    assert (
        await client.post(
            f"/api/v1/elections/{other['id']}/candidates", json=body, headers=coordinator
        )
    ).status_code == 201
    election_id: str = election["id"]
    return election_id


async def test_candidate_figures_by_every_dimension(
    client: httpx.AsyncClient, coordinator: dict[str, str], analyst: dict[str, str]
) -> None:
    election_id = await _create_candidates(client, coordinator)
    tree = await _parents(client, coordinator)
    for by in (
        ["region"],
        ["district"],
        ["party"],
        ["social_status"],
        ["region", "party", "social_status"],
        [],
    ):
        response = await client.get(
            candidates_url(election_id), params={"by": ",".join(by)}, headers=analyst
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["election_id"], body["by"]) == (election_id, by)
        _assert_cells(body["cells"], _expected_candidates(by, tree))

    overall = (await client.get(candidates_url(election_id), headers=analyst)).json()["cells"]
    assert overall == [
        {
            "group": {},
            "candidates": 8,
            "candidates_women": 4,
            "elected": 4,
            "elected_women": 3,
            "women_share_candidates": 0.5,
            "women_share_elected": 0.75,
        }
    ]
    by_region = (
        await client.get(candidates_url(election_id), params={"by": "region"}, headers=analyst)
    ).json()["cells"]
    almaty = next(c for c in by_region if c["group"] == {"region": "75"})
    assert (almaty["elected"], almaty["women_share_elected"]) == (0, None)

    csv_response = await client.get(
        candidates_url(election_id), params={"by": "party", "format": "csv"}, headers=analyst
    )
    assert csv_response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(csv_response.content.decode("utf-8-sig"))))
    by_party = (
        await client.get(candidates_url(election_id), params={"by": "party"}, headers=analyst)
    ).json()["cells"]
    figures = [name for name in by_party[0] if name != "group"]
    assert rows[0] == ["party", *figures]
    assert rows[1:] == [
        [c["group"]["party"] or "", *("" if c[f] is None else str(c[f]) for f in figures)]
        for c in by_party
    ]


async def test_an_election_without_candidates_has_no_cells(
    client: httpx.AsyncClient, coordinator: dict[str, str], analyst: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    for by in ("", "region"):
        response = await client.get(
            candidates_url(election["id"]), params={"by": by}, headers=analyst
        )
        assert response.json()["cells"] == []


# --- access and bad input ----------------------------------------------------------------------


async def test_readers_only(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    for url in (CONSULTATIONS, candidates_url(election["id"])):
        for role in (Role.analyst, Role.coordinator, Role.admin):
            assert (await client.get(url, headers=await headers_for(app, role))).status_code == 200
        observer = await client.get(url, headers=await headers_for(app, Role.observer))
        assert observer.status_code == 403
        anonymous = await client.get(url)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "gender"}, "by"),
        ({"by": "party"}, "by"),  # a candidate dimension
        ({"by": "region,region"}, "by"),
        ({"by": "region,district,territory,host"}, "by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2030-05-04T06:00:00"}, "to"),  # no offset
        ({"from": "2030-05-04T06:00:00Z", "to": "2030-05-04T06:00:00Z"}, "to"),
        ({"election_id": "not-a-uuid"}, "election_id"),
        ({"election_id": str(uuid.uuid4())}, "election_id"),
        ({"format": "xml"}, "format"),
    ],
)
async def test_consultation_bad_input_is_422(
    client: httpx.AsyncClient, analyst: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await client.get(CONSULTATIONS, params=params, headers=analyst)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["loc"] for e in response.json()["errors"]] == [["query", field]]


async def test_candidate_bad_input(
    client: httpx.AsyncClient, coordinator: dict[str, str], analyst: dict[str, str]
) -> None:
    election = await create_election(client, coordinator)
    for by in ("host", "territory", "party,party", "region,district,party,social_status"):
        response = await client.get(
            candidates_url(election["id"]), params={"by": by}, headers=analyst
        )
        assert response.status_code == 422, (by, response.text)
        assert response.json()["errors"][0]["loc"] == ["query", "by"]
    unknown = await client.get(candidates_url(str(uuid.uuid4())), headers=analyst)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    malformed = await client.get(candidates_url("nope"), headers=analyst)
    assert malformed.status_code == 422
