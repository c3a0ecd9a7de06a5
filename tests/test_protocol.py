"""HTTP details: the full Allow of a 405, the bearer challenge of a 401, CORS exposed headers."""

import time
import uuid

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from app.main import CORS_EXPOSED_HEADERS, create_app
from app.models.auth import Role
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import create_questionnaire, create_user, headers_for

ANY_ID = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", f"/api/v1/questionnaires/{ANY_ID}", "GET, PATCH, DELETE"),
        ("POST", f"/api/v1/users/{ANY_ID}", "GET, PATCH"),
        ("DELETE", "/api/v1/questionnaires", "GET, POST"),
        ("POST", "/api/v1/consultations.ics", "GET, HEAD"),
        ("PATCH", "/api/v1/calendar/kf_x.ics", "GET, HEAD"),
        ("DELETE", "/healthz", "GET"),
    ],
)
async def test_405_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path, headers={"Content-Type": "application/json"})
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 405


def _expired(user_id: uuid.UUID) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now - 7200,
        "exp": now - 60,
        "iss": "kenes",
        "aud": "kenes-api",
        "jti": uuid.uuid4().hex,
    }
    token: str = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    return token


async def test_a_refused_token_is_told_invalid_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await create_user(app, Role.analyst)
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(app, publish=True)
    collector = await client.post(
        "/api/v1/collectors",
        json={"name": "phone", "questionnaire_ids": [str(questionnaire.id)]},
        headers=admin,
    )
    assert collector.status_code == 201, collector.text
    revoked = collector.json()["token"]
    await client.delete(f"/api/v1/collectors/{collector.json()['id']}", headers=admin)
    tokens = {
        "expired": _expired(user.id),
        "garbage": "not.a.token",
        "revoked collector": revoked,
        "unknown collector": "kc_" + "x" * 43,
    }
    for name, token in tokens.items():
        answer = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, name
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"', name
        assert answer.headers["content-type"] == "application/problem+json"
    # No credentials at all: a plain challenge (RFC 6750 3.1: no error code).
    anonymous = await client.get("/api/v1/auth/me")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"


async def test_cors_exposes_the_headers_web_apps_read(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    origin = "https://surveys.example.kz"
    cors_app = create_app(make_settings(database_url, cors_origins=[origin]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cors_app), base_url="http://testserver"
    ) as browser:
        answer = await browser.get("/healthz", headers={"Origin": origin})
        preflight = await browser.options(
            "/api/v1/consultations.ics",
            headers={"Origin": origin, "Access-Control-Request-Method": "HEAD"},
        )
    assert answer.headers["access-control-allow-origin"] == origin
    exposed = {
        h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")
    }
    assert exposed == {h.lower() for h in CORS_EXPOSED_HEADERS}
    assert {"content-disposition", "etag", "location", "x-request-id"} <= exposed
    assert preflight.status_code == 200
    assert "HEAD" in preflight.headers["access-control-allow-methods"]
