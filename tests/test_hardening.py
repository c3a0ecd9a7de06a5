"""Issue #15 (hardening): regression tests for the findings of the attack review.

Each test reproduces one finding through the real app (httpx ASGITransport, or a real uvicorn on
loopback where the finding is about the server or the event loop) and fails without its fix.
"""

import base64
import json
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from app.models.auth import Role
from tests.factories import almaty_definition, create_questionnaire, headers_for
from tests.test_consultations import create, observation, observations_url
from tests.test_elections import create_election
from tests.test_territories import import_tree


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Made-up cursors a client can send: each must be a 400 problem, never a 500.
TAMPERED = [
    _cursor(["2020-01-01T00:00:00+00:00", 5]),
    _cursor(["2020-01-01T00:00:00+00:00", None]),
    _cursor(["2020-01-01T00:00:00+00:00", [1]]),
    _cursor([5, str(uuid.uuid4())]),
    _cursor(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
    _cursor(["9999-12-31T23:59:59-14:00", str(uuid.uuid4())]),
    _cursor(["2020-01-01T00:00:00+00:00", str(uuid.uuid4()), 3]),
    _cursor({"a": 1}),
    _cursor([[[[[[[[]]]]]]]]),
    _cursor("2020"),
]


async def test_tampered_cursors_are_400_on_every_list(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 13: a cursor holding a number for the id, or a time with no UTC equivalent, was
    a 500 on every paginated list."""
    admin = await headers_for(app, Role.admin)
    await import_tree(client, admin)
    questionnaire = await create_questionnaire(app, publish=True)
    consultation = await create(client, admin)
    posted = await client.post(observations_url(consultation), json=observation(), headers=admin)
    assert posted.status_code == 201, posted.text
    election = await create_election(client, admin)
    lists = [
        "/api/v1/users",
        "/api/v1/collectors",
        "/api/v1/audit",
        "/api/v1/questionnaires",
        f"/api/v1/questionnaires/{questionnaire.id}/responses",
        "/api/v1/territories",
        "/api/v1/elections",
        f"/api/v1/elections/{election['id']}/candidates",
        "/api/v1/consultations",
        observations_url(consultation),
    ]
    for url in lists:
        assert (await client.get(url, headers=admin)).status_code == 200, url
        for cursor in TAMPERED:
            answer = await client.get(url, params={"cursor": cursor}, headers=admin)
            assert answer.status_code == 400, (url, cursor, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"


async def test_non_finite_numbers_in_a_definition_are_422(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 13: a decimal `min` of NaN, Infinity or 1e400 was stored (SQLite; every later
    read of the questionnaire was a 500) or a 500 on create (PostgreSQL); so was a condition
    comparing with one."""
    coordinator = await headers_for(app, Role.coordinator)
    label = {"kk": "Үлес", "ru": "Доля", "en": "Share"}
    decimal = {"key": "share", "type": "decimal", "label": label}
    for number in ("NaN", "Infinity", "-Infinity", "1e400"):
        for question, field in (
            ({**decimal, "min": "__N__"}, "min"),
            ({**decimal, "max": "__N__"}, "max"),
            (
                {
                    **decimal,
                    "relevant": {"question": "times_participated", "op": "gt", "value": "__N__"},
                },
                "relevant",
            ),
        ):
            definition = almaty_definition(slug=f"nan-{uuid.uuid4().hex[:8]}")
            definition["questions"].append(question)
            text = json.dumps(definition).replace('"__N__"', number)
            answer = await client.post(
                "/api/v1/questionnaires",
                content=text,
                headers={**coordinator, "Content-Type": "application/json"},
            )
            assert answer.status_code == 422, (number, question, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert field in json.dumps(answer.json()["errors"]), answer.text
    listed = await client.get("/api/v1/questionnaires", headers=coordinator)
    assert listed.status_code == 200 and listed.json()["items"] == []
