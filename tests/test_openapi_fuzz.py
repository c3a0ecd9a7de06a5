"""Schemathesis against the app's own OpenAPI document: every operation, with a role that may call
it and once without credentials; no 5xx, every answer documented and shaped as documented.

The operations come from tests/access.py (which tests/test_auth.py keeps equal to the app's
routes), so a new endpoint is fuzzed as soon as it gets its access rule.

Schemathesis drives ASGI apps from an event loop of its own (one thread for the whole process),
and asyncpg connections belong to the loop that opened them, so the fuzzed app is a second app
on the suite's database whose engine lives in that loop; the suite's `app` only builds the data.
Generation is seeded (`derandomize`) and bounded, so a run is repeatable and takes ~a minute.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from app.config import Settings
from app.main import create_app
from app.models.auth import Role
from app.security import hash_password
from app.services.auth import users as user_service
from tests.access import ACCESS
from tests.factories import DEFAULT_PASSWORD, bearer, create_questionnaire, create_user
from tests.test_territories import import_tree

# Examples per operation and mode. Bounded so both databases finish in a few minutes.
POSITIVE_EXAMPLES = 30
NEGATIVE_EXAMPLES = 15
ANONYMOUS_EXAMPLES = 5

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
# The documentation pages are HTML, the OpenRosa API XML; they are not in the OpenAPI document.
NOT_IN_OPENAPI = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"} | {
    path for _, path in ACCESS if path.startswith("/openrosa/")
}
OPERATIONS = sorted(key for key in ACCESS if key[1] not in NOT_IN_OPENAPI)
# The least powerful role that may call an operation: admins pass every role check.
ROLE_PREFERENCE = ("observer", "analyst", "coordinator", "admin", "collector")


IDS = [f"{method} {path}" for method, path in OPERATIONS]
SENT: list[int] = []


def caller_for(method: str, path: str) -> str:
    allowed = ACCESS[(method, path)]
    return next(role for role in ROLE_PREFERENCE if role in allowed)


@dataclass
class World:
    """Real rows for path parameters, and a token per caller."""

    headers: dict[str, dict[str, str]]
    path_values: dict[str, list[str]]


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    asgi.shutdown_lifespans()
    print(f"\nschemathesis: {sum(SENT)} requests in {len(SENT)} searches")  # noqa: T201


@pytest.fixture(scope="module")
def schema(fuzz_app: FastAPI) -> OpenApiSchema:
    loaded: OpenApiSchema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    return loaded


# One real argon2 hash for every user made here: hashing is what tests/test_auth.py is about, and
# six hashes per operation would cost most of this module's time.
_HASH = hash_password(DEFAULT_PASSWORD)


@pytest.fixture
async def world(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(user_service, "hash_password", lambda _: _HASH)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        users = {role: await create_user(app, role) for role in Role}
        headers = {role.value: bearer(app, user) for role, user in users.items()}
        coordinator = headers["coordinator"]
        survey = await create_questionnaire(app, publish=True, access="token")
        draft = await create_questionnaire(app)
        collector = (
            await client.post(
                "/api/v1/collectors",
                json={"name": "fuzz", "questionnaire_ids": [str(survey.id)]},
                headers=headers["admin"],
            )
        ).json()
        headers["collector"] = {"Authorization": f"Bearer {collector['token']}"}
        await import_tree(client, coordinator)
        election = (
            await client.post(
                "/api/v1/elections",
                json={
                    "title": {"ru": "Выборы", "kk": "Сайлау"},
                    "kind": "rural_akim",
                    "election_date": "2025-06-01",
                    "territory_code": "112010",
                },
                headers=coordinator,
            )
        ).json()
        candidate = (
            await client.post(
                f"/api/v1/elections/{election['id']}/candidates",
                json={
                    "full_name": "Айгерим Сапарова",
                    "gender": "female",
                    "territory_code": "112010",
                    "status": "registered",
                },
                headers=coordinator,
            )
        ).json()
        consultation = (
            await client.post(
                "/api/v1/consultations",
                json={
                    "territory_code": "112010001",
                    "host": "Аким района",
                    "starts_at": "2025-05-04T11:00:00+05:00",
                    "location": "Дом культуры",
                    "election_id": election["id"],
                },
                headers=coordinator,
            )
        ).json()
        observation_id = str(uuid.uuid4())
        observed = await client.post(
            f"/api/v1/consultations/{consultation['id']}/observations",
            json={
                "id": observation_id,
                "observed_at": datetime.now(UTC).isoformat(),
                "outcome": "held",
            },
            headers=headers["observer"],
        )
        stored = await client.post(
            f"/api/v1/questionnaires/{survey.id}/responses",
            json={
                "respondent": {"group": "student"},
                "answers": {"aware": "no", "participated": False, "trust_akimat": 3},
            },
            headers=headers["observer"],
        )
        feed = await client.post(
            "/api/v1/calendar-feeds",
            json={"name": "fuzz", "filters": {"territory_code": "11"}},
            headers=headers["observer"],
        )
        view = await client.post(
            f"/api/v1/questionnaires/{survey.id}/aggregate-views",
            json={
                "name": "fuzz",
                "dimensions": ["gender"],
                "filters": ["gender"],
                "access": "public",
            },
            headers=coordinator,
        )
        for reply in (observed, stored, feed, view):
            assert reply.status_code == 201, reply.text
    return World(
        headers=headers,
        path_values={
            "questionnaire_id": [str(survey.id), str(draft.id)],
            "user_id": [str(users[Role.analyst].id)],
            "collector_id": [collector["id"]],
            "response_id": [stored.json()["id"]],
            "name": ["photo.jpg"],  # an attachment name (the world's response names none)
            "code": ["112010001", "11"],
            "election_id": [election["id"]],
            "candidate_id": [candidate["id"]],
            "consultation_id": [consultation["id"]],
            "observation_id": [observation_id],
            "feed_id": [feed.json()["id"]],
            "view_id": [view.json()["id"]],
            "token": [feed.json()["url"].rsplit("/", 1)[1].removesuffix(".ics")],
        },
    )


def _fuzz(
    schema: OpenApiSchema,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    world: World,
    mode: GenerationMode,
    examples: int,
) -> int:
    """Run one bounded, seeded Hypothesis search; returns how many requests it sent."""
    operation = schema[path][method]
    names = [p.name for p in operation.path_parameters]
    real = st.fixed_dictionaries({name: st.sampled_from(world.path_values[name]) for name in names})
    strategies = [operation.as_strategy(generation_mode=mode)]
    if names:
        # Real rows reach the code behind the 404s; generated ids keep testing the 404s.
        strategies.insert(0, real.flatmap(lambda values: operation.as_strategy(
            generation_mode=mode, path_parameters=values
        )))  # fmt: skip
    sent = 0

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        # Our credentials only: a generated Authorization header would test the token parser,
        # which tests/test_auth.py does on purpose.
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
        case.headers.update(headers)
        with asgi.get_client(schema.app) as client:
            response = case.call(session=client)
        sent += 1
        case.validate_response(response, checks=CHECKS)

    run()
    SENT.append(sent)
    return sent


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=IDS)
def test_operation_with_a_role_that_may_call_it(
    schema: OpenApiSchema, world: World, method: str, path: str
) -> None:
    headers = world.headers.get(caller_for(method, path), {})
    sent = _fuzz(
        schema,
        method,
        path,
        headers=headers,
        world=world,
        mode=GenerationMode.POSITIVE,
        examples=POSITIVE_EXAMPLES,
    )
    operation = schema[path][method]
    if operation.body or any(True for _ in operation.iter_parameters()):
        # Values that break the documented schema: 4xx, never 5xx.
        sent += _fuzz(
            schema,
            method,
            path,
            headers=headers,
            world=world,
            mode=GenerationMode.NEGATIVE,
            examples=NEGATIVE_EXAMPLES,
        )
    assert sent > 0


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=IDS)
def test_operation_without_credentials(
    schema: OpenApiSchema, world: World, method: str, path: str
) -> None:
    sent = _fuzz(
        schema,
        method,
        path,
        headers={},
        world=world,
        mode=GenerationMode.POSITIVE,
        examples=ANONYMOUS_EXAMPLES,
    )
    assert sent > 0


def test_the_document_describes_the_problem_answers(fuzz_app: FastAPI) -> None:
    """What the handlers send is what the document says: problem+json, also for FastAPI's 422."""
    document = fuzz_app.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "400" in answers, (method, path)
            if path.startswith("/api/"):
                assert "Retry-After" in answers["503"]["headers"], (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= answers.keys(), (method, path)
            for status, answer in answers.items():
                if status >= "400":
                    assert list(answer["content"]) == ["application/problem+json"], (path, status)
