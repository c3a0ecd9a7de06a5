"""Authentication, roles, collectors, throttling and the audit log."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jose import jwt
from pydantic import SecretStr
from sqlalchemy import func
from sqlmodel import col, select
from starlette.routing import Route

from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.models.auth import AuditEvent, Collector, Role, User, UserCreate
from app.services import audit
from app.services.auth import create_user as create_user_service
from tests.access import ACCESS
from tests.conftest import ROOT, TEST_SECRET
from tests.factories import (
    DEFAULT_PASSWORD,
    bearer,
    create_questionnaire,
    create_user,
    headers_for,
)

CALLERS = ("anonymous", "admin", "coordinator", "observer", "analyst", "collector")
# Further path parameters, filled with random UUIDs too (a territory code then is simply unknown).
PATH_PARAMS = (
    "{code}",
    "{election_id}",
    "{candidate_id}",
    "{consultation_id}",
    "{observation_id}",
    "{response_id}",
    "{view_id}",
)


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": email, "password": password})


async def count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.sessionmaker() as session:
        statement = select(func.count()).select_from(model)
        for condition in where:
            statement = statement.where(condition)
        return int((await session.exec(statement)).one())


@pytest.fixture
async def admin_headers(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.admin)


@pytest.fixture
async def app_with(settings: Settings) -> AsyncIterator[Any]:
    """Build apps with changed settings on the suite's database; engines disposed afterwards."""
    made: list[FastAPI] = []

    def build(**changes: Any) -> httpx.AsyncClient:
        application = create_app(settings.model_copy(update=changes))
        made.append(application)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver"
        )

    yield build
    for application in made:
        await application.state.engine.dispose()


# --- the authorization table ------------------------------------------------------------------


def _registered(app: FastAPI) -> set[tuple[str, str]]:
    """Every operation: the OpenAPI document (all API routes) plus the docs' own routes."""
    pairs = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    for route in app.routes:
        if isinstance(route, Route):
            pairs |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
        # Routes of included routers kept out of the document (OpenRosa's XML API).
        for hidden in getattr(getattr(route, "original_router", None), "routes", ()):
            if isinstance(hidden, Route) and not getattr(hidden, "include_in_schema", True):
                pairs |= {(m, hidden.path) for m in hidden.methods or () if m != "HEAD"}
    return pairs


async def test_every_route_has_an_access_rule(app: FastAPI) -> None:
    registered = _registered(app)
    missing = registered - ACCESS.keys()
    assert not missing, f"routes without an entry in tests/access.py: {sorted(missing)}"
    stale = ACCESS.keys() - registered
    assert not stale, f"entries for routes that no longer exist: {sorted(stale)}"


async def test_each_caller_gets_exactly_the_access_in_the_table(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    headers: dict[str, dict[str, str]] = {"anonymous": {}, "admin": admin_headers}
    for role in ("coordinator", "observer", "analyst"):
        headers[role] = await headers_for(app, role)
    questionnaire = await create_questionnaire(app, access="token", publish=True)
    created = await client.post(
        "/api/v1/collectors",
        json={"name": "walker", "questionnaire_ids": [str(questionnaire.id)]},
        headers=admin_headers,
    )
    headers["collector"] = {"Authorization": f"Bearer {created.json()['token']}"}

    failures = []
    for (method, path), allowed in sorted(ACCESS.items()):
        url = path.replace("{user_id}", str(uuid.uuid4())).replace(
            "{collector_id}", str(uuid.uuid4())
        )
        url = url.replace("{questionnaire_id}", str(questionnaire.id))
        for param in PATH_PARAMS:
            url = url.replace(param, str(uuid.uuid4()))
        for caller in CALLERS:
            response = await client.request(method, url, headers=headers[caller])
            if caller in allowed:
                ok = response.status_code not in (401, 403)
            elif caller == "anonymous":
                ok = (
                    response.status_code == 401
                    and response.headers.get("www-authenticate") == "Bearer"
                )
            else:
                ok = response.status_code == 403
            if not ok:
                failures.append(f"{caller} {method} {path}: {response.status_code}")
    assert not failures, "\n".join(failures)


# --- logins and tokens ------------------------------------------------------------------------


async def test_login_issues_a_bearer_token_for_me(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await create_user(app, Role.analyst, Role.observer, email="Aigerim@Example.org")
    response = await login(client, "aigerim@example.org", DEFAULT_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == {
        "id": str(user.id),
        "email": "aigerim@example.org",
        "full_name": "Test User",
        "roles": ["analyst", "observer"],
        "is_active": True,
        "created_at": me.json()["created_at"],
    }
    claims = jwt.get_unverified_claims(body["access_token"])
    assert set(claims) == {"sub", "iat", "exp", "iss", "aud", "jti", "ver"}
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize(
    ("email", "password"),
    [("known@example.org", "wrong password!!"), ("nobody@example.org", DEFAULT_PASSWORD)],
)
async def test_wrong_credentials_are_401(
    app: FastAPI, client: httpx.AsyncClient, email: str, password: str
) -> None:
    await create_user(app, email="known@example.org")
    response = await login(client, email, password)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert "access_token" not in response.text


def _forge(claims: dict[str, Any], key: str, algorithm: str = "HS256") -> str:
    token: str = jwt.encode(claims, key, algorithm=algorithm)
    return token


def _claims(user: User, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + 600,
        "iss": "kenes",
        "aud": "kenes-api",
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def _status_with(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_forged_and_stale_hs256_tokens_are_401(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await create_user(app, Role.admin)
    other = await create_user(app, Role.analyst)
    assert await _status_with(client, _forge(_claims(user), TEST_SECRET)) == 200  # control

    valid = app.state.tokens.issue(other.id)
    header, _, signature = valid.split(".")
    tampered = f"{header}.{_b64(_claims(user))}.{signature}"
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}."
    attacks = {
        "alg none": unsigned,
        "other secret": _forge(_claims(user), "another-secret-" + "y" * 40),
        "expired": _forge(
            _claims(user, iat=int(time.time()) - 7200, exp=int(time.time()) - 60), TEST_SECRET
        ),
        "wrong audience": _forge(_claims(user, aud="someone-else"), TEST_SECRET),
        "wrong issuer": _forge(_claims(user, iss="evil"), TEST_SECRET),
        "no jti": _forge(_claims(user, jti=None), TEST_SECRET),
        "tampered payload": tampered,
        "unknown user": _forge(_claims(user, sub=str(uuid.uuid4())), TEST_SECRET),
        "garbage": "not.a.token",
    }
    for name, token in attacks.items():
        assert await _status_with(client, token) == 401, name


async def test_rs256_accepts_its_own_tokens_and_refuses_hs256_signed_with_the_public_key(
    app: FastAPI, app_with: Any
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    user = await create_user(app, Role.analyst)
    async with app_with(jwt_private_key=SecretStr(private_pem), jwt_public_key=public_pem) as http:
        good = _forge(_claims(user), private_pem, "RS256")
        assert await _status_with(http, good) == 200
        assert jwt.get_unverified_header(good)["alg"] == "RS256"
        # The classic confusion attack: the public key used as an HMAC secret (signed by hand,
        # since python-jose itself refuses to use a PEM key as an HMAC secret).
        header = _b64({"alg": "HS256", "typ": "JWT"})
        payload = _b64(_claims(user))
        signature = hmac.new(
            public_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256
        ).digest()
        confused = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
        assert await _status_with(http, confused) == 401
        assert await _status_with(http, _forge(_claims(user), TEST_SECRET)) == 401


async def test_a_deactivated_users_token_stops_at_once(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    user = await create_user(app, Role.observer)
    headers = bearer(app, user)
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    patched = await client.patch(
        f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )
    assert patched.status_code == 200
    assert patched.json()["is_active"] is False
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 401


# --- throttling -------------------------------------------------------------------------------


async def test_repeated_failures_for_one_email_are_429(app: FastAPI, app_with: Any) -> None:
    user = await create_user(app, email="target@example.org")
    async with app_with(login_max_failures=3) as http:
        for _ in range(3):
            assert (await login(http, user.email, "wrong password 1")).status_code == 401
        refused = await login(http, user.email, DEFAULT_PASSWORD)
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 900
        assert refused.headers["content-type"] == "application/problem+json"
    assert await count(app, AuditEvent, col(AuditEvent.action) == "auth.login_failed") == 3


async def test_repeated_failures_from_one_address_are_429(app: FastAPI, app_with: Any) -> None:
    user = await create_user(app)
    async with app_with(login_max_failures_per_address=4) as http:
        for n in range(4):
            response = await login(http, f"guess{n}@example.org", "wrong password 1")
            assert response.status_code == 401
        assert (await login(http, user.email, DEFAULT_PASSWORD)).status_code == 429


async def test_a_success_clears_the_email_counter(app: FastAPI, app_with: Any) -> None:
    user = await create_user(app)
    async with app_with(login_max_failures=3) as http:
        for _ in range(2):
            await login(http, user.email, "wrong password 1")
        assert (await login(http, user.email, DEFAULT_PASSWORD)).status_code == 200
        for _ in range(2):
            assert (await login(http, user.email, "wrong password 1")).status_code == 401
        assert (await login(http, user.email, DEFAULT_PASSWORD)).status_code == 200


# --- users ------------------------------------------------------------------------------------


async def test_password_rules_and_duplicate_email(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = {"email": "Dana@Example.org", "full_name": "Dana", "roles": ["analyst"]}
    short = await client.post(
        "/api/v1/users", json={**body, "password": "x" * 11}, headers=admin_headers
    )
    assert short.status_code == 422
    assert ["body", "password"] in [error["loc"] for error in short.json()["errors"]]

    created = await client.post(
        "/api/v1/users", json={**body, "password": "x" * 12}, headers=admin_headers
    )
    assert created.status_code == 201
    assert created.headers["location"] == f"/api/v1/users/{created.json()['id']}"
    assert created.json()["email"] == "dana@example.org"
    assert "password" not in created.text

    again = await client.post(
        "/api/v1/users",
        json={**body, "email": "DANA@example.org", "password": "y" * 12},
        headers=admin_headers,
    )
    assert again.status_code == 409

    bad_role = await client.post(
        "/api/v1/users",
        json={**body, "email": "x@example.org", "password": "y" * 12, "roles": ["king"]},
        headers=admin_headers,
    )
    assert bad_role.status_code == 422


async def test_passwords_are_stored_as_argon2_hashes(app: FastAPI) -> None:
    user = await create_user(app, password="plain text secret")
    assert user.password_hash.startswith("$argon2id$")
    assert "plain text secret" not in user.password_hash


async def test_the_last_active_admin_cannot_be_removed(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await create_user(app, Role.admin)
    headers = bearer(app, admin)
    for change in ({"is_active": False}, {"roles": ["analyst"]}):
        response = await client.patch(f"/api/v1/users/{admin.id}", json=change, headers=headers)
        assert response.status_code == 409, change
    second = await create_user(app, Role.admin)
    demoted = await client.patch(
        f"/api/v1/users/{second.id}", json={"roles": ["analyst"]}, headers=headers
    )
    assert demoted.status_code == 200
    assert demoted.json()["roles"] == ["analyst"]


async def test_password_change_lets_the_new_one_in(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    user = await create_user(app)
    response = await client.patch(
        f"/api/v1/users/{user.id}",
        json={"password": "a brand new passphrase"},
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 401
    assert (await login(client, user.email, "a brand new passphrase")).status_code == 200


async def test_user_list_pages_in_creation_order(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for n in range(5):
        await create_user(app, email=f"user{n}@example.org")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/users", params=params, headers=admin_headers)).json()
        assert len(page["items"]) <= 2
        seen += [item["email"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The admin from the fixture came first, then the five in order.
    assert seen[1:] == [f"user{n}@example.org" for n in range(5)]
    assert len(seen) == len(set(seen)) == 6

    bad = await client.get("/api/v1/users", params={"cursor": "%%%"}, headers=admin_headers)
    assert bad.status_code == 400
    too_many = await client.get("/api/v1/users", params={"limit": 501}, headers=admin_headers)
    assert too_many.status_code == 422


async def test_bootstrap_admin_is_created_once_when_no_user_exists(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "bootstrap_admin_email": "root@example.org",
            "bootstrap_admin_password": SecretStr("bootstrap password 1"),
        }
    )
    for _ in range(2):
        application = create_app(configured)
        async with application.router.lifespan_context(application):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application), base_url="http://t"
            ) as http:
                assert (
                    await login(http, "root@example.org", "bootstrap password 1")
                ).status_code == 200
    assert await count(application, User) == 1


def test_create_user_command_reads_the_password_from_stdin(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    env.update({"KENES_DATABASE_URL": database_url, "KENES_SECRET_KEY": TEST_SECRET})
    command = [sys.executable, "-m", "app.cli", "create-user", "--email", "Cli@Example.org"]
    command += ["--roles", "coordinator,analyst", "--password-stdin"]
    result = subprocess.run(  # noqa: S603 - our own command
        command,
        input="from the command line\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["email"] == "cli@example.org"
    assert created["roles"] == ["analyst", "coordinator"]
    short = subprocess.run(  # noqa: S603
        command[:4] + ["other@example.org", "--password-stdin"],
        input="short\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert short.returncode == 2
    assert "password" in short.stderr


# --- collectors -------------------------------------------------------------------------------


async def test_collector_token_is_shown_once_stored_hashed_and_revocable(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    questionnaire_id = str(uuid.uuid4())
    created = await client.post(
        "/api/v1/collectors",
        json={"name": "Almaty tablets", "questionnaire_ids": [questionnaire_id]},
        headers=admin_headers,
    )
    assert created.status_code == 201
    body = created.json()
    token = body["token"]
    assert token.startswith("kc_") and len(token) > 40
    assert body["questionnaire_ids"] == [questionnaire_id]

    listed = await client.get("/api/v1/collectors", headers=admin_headers)
    assert token not in listed.text
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]
    async with app.state.sessionmaker() as session:
        stored = (await session.exec(select(Collector))).one()
    assert token not in stored.token_hash

    collector_headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/auth/me", headers=collector_headers)).status_code == 403
    revoked = await client.delete(f"/api/v1/collectors/{body['id']}", headers=admin_headers)
    assert revoked.status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=collector_headers)).status_code == 401
    wrong = {"Authorization": "Bearer kc_" + "A" * 43}
    assert (await client.get("/api/v1/auth/me", headers=wrong)).status_code == 401


# --- audit ------------------------------------------------------------------------------------


async def test_writes_and_logins_are_audited_without_secrets(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await create_user(app, Role.admin, email="boss@example.org")
    headers = bearer(app, admin)
    created = await client.post(
        "/api/v1/users",
        json={
            "email": "new@example.org",
            "password": "very secret words",
            "full_name": "New",
            "roles": ["observer"],
        },
        headers=headers,
    )
    user_id = created.json()["id"]
    await client.patch(
        f"/api/v1/users/{user_id}", json={"password": "other secret words"}, headers=headers
    )
    await login(client, "new@example.org", "wrong password!")
    await login(client, "new@example.org", "other secret words")
    collector = await client.post(
        "/api/v1/collectors",
        json={"name": "c", "questionnaire_ids": [str(uuid.uuid4())]},
        headers=headers,
    )
    await client.delete(f"/api/v1/collectors/{collector.json()['id']}", headers=headers)

    log = await client.get("/api/v1/audit", headers=headers)
    assert log.status_code == 200
    events = log.json()["items"]
    actions = [event["action"] for event in events]
    # Newest first; the factory's own user.create (by the system) is the oldest.
    assert actions == [
        "collector.revoke",
        "collector.create",
        "auth.login",
        "auth.login_failed",
        "user.update",
        "user.create",
        "user.create",
    ]
    by_action = {event["action"]: event for event in events}
    assert by_action["user.update"]["actor"]["id"] == str(admin.id)
    assert by_action["user.update"]["target_id"] == user_id
    assert by_action["user.update"]["detail"]["changes"] == {"password": "changed"}
    assert by_action["auth.login_failed"]["actor"]["type"] == "anonymous"
    for secret in ("very secret words", "other secret words", "wrong password!"):
        assert secret not in log.text
    assert collector.json()["token"] not in log.text


async def test_audit_rows_roll_back_with_their_write(app: FastAPI) -> None:
    data = UserCreate(
        email="rolled@example.org", password="p" * 12, full_name="R", roles=[Role.analyst]
    )
    with pytest.raises(RuntimeError):
        async for session in session_scope(app.state.sessionmaker):
            await create_user_service(session, audit.SYSTEM, data)
            await session.flush()
            raise RuntimeError("the request failed after the write")
    assert await count(app, User) == 0
    assert await count(app, AuditEvent) == 0

    async for session in session_scope(app.state.sessionmaker):
        await create_user_service(session, audit.SYSTEM, data)
    assert await count(app, User) == 1
    assert await count(app, AuditEvent, col(AuditEvent.action) == "user.create") == 1


async def test_racing_duplicate_creations_store_one_user_and_one_audit_row(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = {
        "email": "race@example.org",
        "password": "p" * 12,
        "full_name": "R",
        "roles": ["analyst"],
    }
    responses = await asyncio.gather(
        *(client.post("/api/v1/users", json=body, headers=admin_headers) for _ in range(5))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409, 409]
    assert await count(app, User, col(User.email) == "race@example.org") == 1
    creations = await count(app, AuditEvent, col(AuditEvent.action) == "user.create")
    assert creations == 2  # the fixture's admin and the one winner


async def test_security_headers(client: httpx.AsyncClient) -> None:
    api = await client.get("/healthz")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in api.headers["content-security-policy"]
    docs = await client.get("/docs")
    assert "content-security-policy" not in docs.headers
    assert docs.headers["x-content-type-options"] == "nosniff"
