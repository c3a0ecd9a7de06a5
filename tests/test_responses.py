"""Responses: validation, exactly-once (also under concurrency), batch, listing, exports."""

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import func, select

from app.models.auth import AuditEvent, Role
from app.models.questionnaires import MAX_QUESTIONS, Questionnaire
from app.models.responses import ResponseRead, response_table
from app.routers.bodies import response_read_json
from tests.conftest import ON_POSTGRES, ROOT, TEST_SECRET, free_port
from tests.factories import (
    almaty_answers,
    almaty_definition,
    bearer,
    create_questionnaire,
    create_user,
    headers_for,
)


def answers(**changes: Any) -> dict[str, Any]:
    """A complete, valid set of answers to the Almaty survey (None drops one)."""
    base = almaty_answers(**changes)
    return {k: v for k, v in base.items() if v is not None}


def response(group: str = "student", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "respondent": {"group": group, "gender": "female", "age_band": "18-24"},
        "answers": answers(),
        "language": "ru",
        "channel": "mobile",
    }
    body.update(fields)
    return body


async def stored_count(app: FastAPI, **where: Any) -> int:
    statement = select(func.count()).select_from(response_table)
    for name, value in where.items():
        statement = statement.where(response_table.c[name] == value)
    async with app.state.engine.connect() as connection:
        return int((await connection.execute(statement)).scalar_one())


@pytest.fixture
async def survey(app: FastAPI) -> Questionnaire:
    return await create_questionnaire(app, publish=True)


@pytest.fixture
async def observer(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.observer)


@pytest.fixture
async def analyst(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.analyst)


def url(questionnaire: Questionnaire, suffix: str = "") -> str:
    return f"/api/v1/questionnaires/{questionnaire.id}/responses{suffix}"


# --- one submission ---------------------------------------------------------------------------


async def test_a_valid_response_is_stored_with_what_the_server_adds(
    client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    created = await client.post(url(survey), json=response("lawyer"), headers=observer)
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/api/v1/responses/{body['id']}"
    assert body["questionnaire_id"] == str(survey.id)
    assert body["questionnaire_version"] == 1
    assert body["respondent"] == {
        "group": "lawyer",
        "category": "expert",
        "gender": "female",
        "age_band": "18-24",
        "territory_code": None,
    }
    assert body["answers"] == answers()
    received = datetime.fromisoformat(body["received_at"])
    assert before <= received <= datetime.now(UTC)
    assert body["submitted_at"] == body["received_at"]


_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_UTC_TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    answers=st.dictionaries(st.text(min_size=1), _JSON_VALUES, max_size=6),
    times=st.tuples(st.none() | _UTC_TIMES, _UTC_TIMES, _UTC_TIMES),
    texts=st.tuples(st.none() | st.text(), st.none() | st.text(max_size=16)),
    as_asyncpg=st.booleans(),
)
def test_a_stored_response_is_written_as_its_model_writes_it(
    answers: dict[str, Any],
    times: tuple[datetime | None, datetime, datetime],
    texts: tuple[str | None, str | None],
    as_asyncpg: bool,
) -> None:
    """The submission route writes a stored response with orjson rather than through
    ResponseRead (bodies.response_read_json): the bytes must be the model's, for any answers
    (floats of every size, integers past 64 bits, any text), times and ids as either store
    hands them back (asyncpg's own UUID class on a replay)."""
    response_id, questionnaire_id = uuid.uuid4(), uuid.uuid4()
    if as_asyncpg:
        response_id = asyncpg.pgproto.pgproto.UUID(str(response_id))
    body = {
        "id": response_id,
        "questionnaire_id": questionnaire_id,
        "questionnaire_version": 3,
        "respondent": {
            "group": "student",
            "category": "citizen",
            "gender": "female",
            "age_band": None,
            "territory_code": texts[1],
        },
        "answers": answers,
        "language": "kk",
        "channel": None,
        "started_at": times[0],
        "submitted_at": times[1],
        "received_at": times[2],
        "instance_name": texts[0],
    }
    expected = ResponseRead.model_validate(body).model_dump_json().encode()
    assert response_read_json(body) == expected


async def test_a_replay_answers_200_with_the_stored_response(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    body = response(id=str(uuid.uuid4()), submitted_at="2025-06-01T10:00:00+05:00")
    first = await client.post(url(survey), json=body, headers=observer)
    again = await client.post(url(survey), json=body, headers=observer)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert first.json()["submitted_at"] == "2025-06-01T05:00:00Z"
    assert await stored_count(app) == 1

    changed = {**body, "answers": answers(trust_akimat=5)}
    conflict = await client.post(url(survey), json=changed, headers=observer)
    assert conflict.status_code == 409
    assert await stored_count(app) == 1


async def test_same_content_compares_values_not_spelling(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    """Hardening finding 14: 1 and 1.0 are one integer, a multiple choice is a set, key order
    and null answers do not count; a replay after the questionnaire closed is still 200."""
    body = response(id=str(uuid.uuid4()))
    assert (await client.post(url(survey), json=body, headers=observer)).status_code == 201
    respelled = {
        **body,
        "answers": dict(
            reversed(
                list(
                    answers(
                        times_participated=2.0,
                        channels_known=["petitions", "hearings"],
                        info_sources=["ngos", "social"],
                    ).items()
                )
            )
        ),
    }
    respelled["answers"]["influence"] = 2.0
    respelled["answers"]["unanswered_extra"] = None
    replay = await client.post(url(survey), json=respelled, headers=observer)
    assert replay.status_code == 200, replay.text
    coordinator = await headers_for(app, Role.coordinator)
    await client.post(f"/api/v1/questionnaires/{survey.id}/close", headers=coordinator)
    after_close = await client.post(url(survey), json=body, headers=observer)
    assert after_close.status_code == 200, after_close.text
    batch = await client.post(url(survey, "/batch"), json={"responses": [body]}, headers=observer)
    assert batch.status_code == 200
    assert batch.json()["results"][0]["status"] == "duplicate"
    changed = {**body, "answers": answers(times_participated=3)}
    assert (await client.post(url(survey), json=changed, headers=observer)).status_code == 409
    assert await stored_count(app) == 1


async def test_concurrent_copies_of_one_id_store_one_row(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    body = response(id=str(uuid.uuid4()))
    replies = await asyncio.gather(
        *(client.post(url(survey), json=body, headers=observer) for _ in range(25))
    )
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] * 24 + [201], statuses
    assert len({json.dumps(reply.json(), sort_keys=True) for reply in replies}) == 1
    assert await stored_count(app) == 1


@pytest.mark.parametrize(
    ("body_answers", "location"),
    [
        (answers(unknown_question=1), ["body", "answers", "unknown_question"]),
        (answers(aware="maybe"), ["body", "answers", "aware"]),
        (answers(aware=None), ["body", "answers", "aware"]),  # required
        (answers(participated="yes"), ["body", "answers", "participated"]),
        (answers(times_participated=None), ["body", "answers", "times_participated"]),
        (answers(times_participated=101), ["body", "answers", "times_participated"]),
        (answers(times_participated=2.5), ["body", "answers", "times_participated"]),
        (answers(participated=False, last_hearing=None), ["body", "answers", "times_participated"]),
        (answers(aware="no"), ["body", "answers", "channels_known"]),  # not relevant any more
        (answers(info_sources=["tv", "press", "people", "ngos"]), ["body", "answers", "info_sources"]),
        (answers(info_sources=["tv", "tv"]), ["body", "answers", "info_sources"]),
        (answers(info_sources=[]), ["body", "answers", "info_sources"]),
        (answers(channels_known="hearings"), ["body", "answers", "channels_known"]),
        (answers(trust_akimat=6), ["body", "answers", "trust_akimat"]),
        (answers(trust_akimat=True), ["body", "answers", "trust_akimat"]),
        (answers(last_hearing="14.05.2025"), ["body", "answers", "last_hearing"]),
        (answers(suggestions="x" * 1001), ["body", "answers", "suggestions"]),
        (answers(suggestions="   "), ["body", "answers", "suggestions"]),
    ],
)  # fmt: skip
async def test_answers_are_checked_against_the_questionnaire(
    app: FastAPI,
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    body_answers: dict[str, Any],
    location: list[Any],
) -> None:
    reply = await client.post(url(survey), json=response(answers=body_answers), headers=observer)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert location in [error["loc"] for error in reply.json()["errors"]]
    assert await stored_count(app) == 0


@pytest.mark.parametrize("written", ["20250514  ", "2025-W20-3", "20250514", "2025-5-14"])
async def test_date_answers_are_exactly_yyyy_mm_dd(
    app: FastAPI,
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    written: str,
) -> None:
    """Hardening finding 16: other spellings that Python reads as dates were stored as sent."""
    body = response(answers=answers(last_hearing=written))
    refused = await client.post(url(survey), json=body, headers=observer)
    assert refused.status_code == 422, refused.text
    assert ["body", "answers", "last_hearing"] in [e["loc"] for e in refused.json()["errors"]]
    assert await stored_count(app) == 0


async def test_decimals_beyond_a_double_are_422_not_500(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str]
) -> None:
    definition = almaty_definition(slug=f"decimals-{uuid.uuid4().hex[:8]}")
    label = {"kk": "Үлес", "ru": "Доля", "en": "Share"}
    definition["questions"].append({"key": "share", "type": "decimal", "label": label})
    survey = await create_questionnaire(app, publish=True, definition=definition)
    for too_large in (b"1" + b"0" * 30, b"1" + b"0" * 400, b"1e400"):
        body = json.dumps(response(answers=answers(share=0))).replace('"share": 0', '"share": X')
        reply = await client.post(
            url(survey),
            content=body.encode().replace(b"X", too_large),
            headers={**observer, "content-type": "application/json"},
        )
        assert reply.status_code == 422, (too_large, reply.text)
    fine = await client.post(
        url(survey), json=response(answers=answers(share=0.25)), headers=observer
    )
    assert fine.status_code == 201, fine.text
    assert await stored_count(app) == 1


async def test_bad_respondents_and_non_numbers_are_422(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    cases = [
        (response("astronaut"), ["body", "respondent", "group"]),
        (
            response(respondent={"group": "ngo", "territory_code": "999999999"}),
            ["body", "respondent", "territory_code"],
        ),
        (
            response(respondent={"group": "ngo", "gender": "unknown"}),
            ["body", "respondent", "gender"],
        ),
        (response(submitted_at="2025-01-01T10:00:00"), ["body", "submitted_at"]),
    ]
    for body, location in cases:
        reply = await client.post(url(survey), json=body, headers=observer)
        assert reply.status_code == 422, body
        assert location in [error["loc"] for error in reply.json()["errors"]]
    not_finite = b'{"respondent": {"group": "ngo"}, "answers": {"aware": "yes", "participated": false, "trust_akimat": NaN}}'
    reply = await client.post(
        url(survey), content=not_finite, headers={**observer, "content-type": "application/json"}
    )
    assert reply.status_code in (400, 422)
    assert await stored_count(app) == 0


async def test_only_published_questionnaires_take_responses(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str]
) -> None:
    coordinator = await headers_for(app, Role.coordinator)
    draft = await create_questionnaire(app)
    assert (await client.post(url(draft), json=response(), headers=observer)).status_code == 409
    published = await create_questionnaire(app, publish=True)
    assert (await client.post(url(published), json=response(), headers=observer)).status_code == 201
    await client.post(f"/api/v1/questionnaires/{published.id}/close", headers=coordinator)
    closed = await client.post(url(published), json=response(), headers=observer)
    assert closed.status_code == 409
    batch = await client.post(
        url(published, "/batch"), json={"responses": [response()]}, headers=observer
    )
    assert batch.status_code == 409
    assert await stored_count(app) == 1


async def test_who_may_submit_follows_the_access_level(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str]
) -> None:
    admin = await headers_for(app, Role.admin)
    public = await create_questionnaire(app, publish=True, access="public")
    token = await create_questionnaire(app, publish=True, access="token")
    staff = await create_questionnaire(app, publish=True, access="staff")

    async def collector_for(q: Questionnaire) -> dict[str, str]:
        made = await client.post(
            "/api/v1/collectors",
            json={"name": "phone", "questionnaire_ids": [str(q.id)]},
            headers=admin,
        )
        return {"Authorization": f"Bearer {made.json()['token']}"}

    bound_to_token = await collector_for(token)
    bound_to_staff = await collector_for(staff)
    expected = [
        (public, {}, 201),
        (token, {}, 401),
        (staff, {}, 401),
        (token, bound_to_token, 201),
        (public, bound_to_token, 201),
        (staff, bound_to_staff, 403),
        (token, bound_to_staff, 403),
        (token, analyst, 403),
        (staff, observer, 201),
    ]
    for questionnaire, headers, status in expected:
        reply = await client.post(url(questionnaire), json=response(), headers=headers)
        assert reply.status_code == status, (questionnaire.access, headers, reply.text)


async def test_a_revoked_collector_is_refused_from_its_next_submission(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # The submission path remembers collectors between requests; the revocation must still hold
    # at once, for valid, invalid (401 before 422) and batch submissions alike.
    admin = await headers_for(app, Role.admin)
    bound = await create_questionnaire(app, publish=True, access="token")
    made = (
        await client.post(
            "/api/v1/collectors",
            json={"name": "phone", "questionnaire_ids": [str(bound.id)]},
            headers=admin,
        )
    ).json()
    phone = {"Authorization": f"Bearer {made['token']}"}
    assert (await client.post(url(bound), json=response(), headers=phone)).status_code == 201
    revoked = await client.delete(f"/api/v1/collectors/{made['id']}", headers=admin)
    assert revoked.status_code == 204
    valid = await client.post(url(bound), json=response(), headers=phone)
    invalid = await client.post(url(bound), json=response(group="nobody"), headers=phone)
    batch = await client.post(url(bound, "/batch"), json={"responses": [response()]}, headers=phone)
    assert [valid.status_code, invalid.status_code, batch.status_code] == [401, 401, 401]
    assert await stored_count(app) == 1


async def test_a_changed_user_is_refused_from_the_next_submission(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # Users, too, are remembered between submissions: losing the role, or the account, holds at
    # once. (On PostgreSQL the first refusal after a change of roles is a 401 that makes the
    # next request resolve the token afresh; from then on it is the 403 SQLite gives at once.)
    admin = await headers_for(app, Role.admin)
    staff_only = await create_questionnaire(app, publish=True, access="staff")
    user = await create_user(app, Role.observer)
    observer = bearer(app, user)
    assert (
        await client.post(url(staff_only), json=response(), headers=observer)
    ).status_code == 201

    changed = await client.patch(
        f"/api/v1/users/{user.id}", json={"roles": ["analyst"]}, headers=admin
    )
    assert changed.status_code == 200
    first = await client.post(url(staff_only), json=response(), headers=observer)
    second = await client.post(url(staff_only), json=response(), headers=observer)
    assert first.status_code in (401, 403) and second.status_code == 403

    await client.patch(f"/api/v1/users/{user.id}", json={"roles": ["observer"]}, headers=admin)
    assert (
        await client.post(url(staff_only), json=response(), headers=observer)
    ).status_code == 201
    await client.patch(f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin)
    invalid = await client.post(url(staff_only), json=response(group="nobody"), headers=observer)
    valid = await client.post(url(staff_only), json=response(), headers=observer)
    assert [invalid.status_code, valid.status_code] == [401, 401]
    assert await stored_count(app) == 2


async def test_a_password_change_ends_the_submitting_token_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The token's user is remembered on the submission path; a password change (or a
    deactivation and reactivation) still ends the token from the next submission."""
    admin = await headers_for(app, Role.admin)
    staff_only = await create_questionnaire(app, publish=True, access="staff")
    user = await create_user(app, Role.observer)
    observer = bearer(app, user)
    assert (
        await client.post(url(staff_only), json=response(), headers=observer)
    ).status_code == 201
    changed = await client.patch(
        f"/api/v1/users/{user.id}", json={"password": "another long password"}, headers=admin
    )
    assert changed.status_code == 200
    assert (
        await client.post(url(staff_only), json=response(), headers=observer)
    ).status_code == 401
    login = await client.post(
        "/api/v1/auth/token", data={"username": user.email, "password": "another long password"}
    )
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.post(url(staff_only), json=response(), headers=fresh)).status_code == 201
    await client.patch(f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin)
    await client.patch(f"/api/v1/users/{user.id}", json={"is_active": True}, headers=admin)
    assert (await client.post(url(staff_only), json=response(), headers=fresh)).status_code == 401
    assert await stored_count(app, questionnaire_id=staff_only.id) == 2


async def test_anonymous_public_submissions_are_rate_limited(settings: Any, app: FastAPI) -> None:
    from app.main import create_app

    limited = create_app(settings.model_copy(update={"public_submit_limit": 3}))
    public = await create_questionnaire(app, publish=True, access="public")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=limited), base_url="http://t"
    ) as http:
        statuses = [(await http.post(url(public), json=response())).status_code for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
        refused = await http.post(url(public), json=response())
        assert int(refused.headers["retry-after"]) >= 1
    await limited.state.engine.dispose()
    assert await stored_count(app) == 3


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "", "Token x", "Bearer", "bearer  "]
)
async def test_the_anonymous_limit_holds_whatever_authorization_is_sent(
    settings: Any, app: FastAPI, authorization: str
) -> None:
    """Hardening finding 1: a header that carries no valid token counts as anonymous."""
    from app.main import create_app

    limited = create_app(settings.model_copy(update={"public_submit_limit": 3}))
    public = await create_questionnaire(app, publish=True, access="public")
    headers = {"Authorization": authorization}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=limited, client=(f"10.9.{len(authorization)}.1", 1)),
        base_url="http://t",
    ) as http:
        statuses = [
            (await http.post(url(public), json=response(), headers=headers)).status_code
            for _ in range(5)
        ]
    await limited.state.engine.dispose()
    if authorization.strip().lower() == "bearer":
        # An empty bearer token is bad credentials (hardening finding 16): refused outright.
        assert statuses == [401] * 5
        assert await stored_count(app, questionnaire_id=public.id) == 0
    else:
        assert statuses == [201, 201, 201, 429, 429], statuses
        assert await stored_count(app, questionnaire_id=public.id) == 3


async def test_the_anonymous_limit_counts_responses_not_requests(
    settings: Any, app: FastAPI
) -> None:
    """Hardening finding 2: a batch spends the limit by its number of responses."""
    from app.main import create_app

    limited = create_app(settings.model_copy(update={"public_submit_limit": 5}))
    public = await create_questionnaire(app, publish=True, access="public")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=limited, client=("10.8.0.1", 1)), base_url="http://t"
    ) as http:
        first = await http.post(
            url(public, "/batch"), json={"responses": [response() for _ in range(4)]}
        )
        second = await http.post(
            url(public, "/batch"), json={"responses": [response() for _ in range(4)]}
        )
    await limited.state.engine.dispose()
    assert (first.status_code, second.status_code) == (200, 429)
    assert await stored_count(app, questionnaire_id=public.id) == 4


async def test_submissions_are_not_copied_into_the_audit_log(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    async with app.state.sessionmaker() as session:
        before = (await session.exec(select(func.count()).select_from(AuditEvent))).one()
    await client.post(url(survey), json=response(), headers=observer)
    async with app.state.sessionmaker() as session:
        after = (await session.exec(select(func.count()).select_from(AuditEvent))).one()
    assert after == before
    async with app.state.engine.connect() as connection:
        who = (await connection.execute(select(response_table.c.submitted_by_user))).scalar_one()
    assert who is not None


# --- batches ----------------------------------------------------------------------------------


async def test_a_batch_handles_each_item_alone_and_in_order(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    stored_id, repeated_id = str(uuid.uuid4()), str(uuid.uuid4())
    await client.post(url(survey), json=response(id=stored_id), headers=observer)
    items: list[Any] = [
        response(),  # 0 created
        response(answers=answers(aware="maybe")),  # 1 invalid
        response(id=repeated_id),  # 2 created
        response(id=repeated_id),  # 3 duplicate within the batch
        response(id=repeated_id, answers=answers(influence=5)),  # 4 conflict within the batch
        response(id=stored_id),  # 5 duplicate of a stored one
        response(id=stored_id, language="kk"),  # 6 conflict with a stored one
        {"respondent": "nobody"},  # 7 invalid shape
        response("sme", respondent={"group": "sme", "gender": "male"}),  # 8 created
        response(respondent={"group": "sme", "territory_code": "999999999"}),  # 9 invalid
        "not an object",  # 10 invalid alone (hardening finding 14)
        [response()],  # 11 invalid alone
    ]
    reply = await client.post(url(survey, "/batch"), json={"responses": items}, headers=observer)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [
        "created", "invalid", "created", "duplicate", "conflict",
        "duplicate", "conflict", "invalid", "created", "invalid", "invalid", "invalid",
    ]  # fmt: skip
    assert results[10]["errors"][0]["loc"] == ["body", "responses", 10]
    assert ["body", "respondent", "territory_code"] in [e["loc"] for e in results[9]["errors"]]
    assert results[2]["id"] == results[3]["id"] == repeated_id
    assert ["body", "answers", "aware"] in [e["loc"] for e in results[1]["errors"]]
    assert results[7]["errors"]
    assert await stored_count(app) == 4
    created_ids = {r["id"] for r in results if r["status"] == "created"}
    for created_id in created_ids:
        fetched = await client.get(
            f"/api/v1/responses/{created_id}", headers=await headers_for(app, Role.analyst)
        )
        assert fetched.status_code == 200


async def test_a_batch_over_1000_items_is_422(
    client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    reply = await client.post(
        url(survey, "/batch"), json={"responses": [response()] * 1001}, headers=observer
    )
    assert reply.status_code == 422


async def test_racing_batches_and_singles_store_each_id_once(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(30)]
    bodies = {i: response(id=i) for i in ids}
    batch = {"responses": [bodies[i] for i in ids]}
    calls = [client.post(url(survey, "/batch"), json=batch, headers=observer) for _ in range(3)]
    calls += [client.post(url(survey), json=bodies[i], headers=observer) for i in ids[::3]]
    replies = await asyncio.gather(*calls)
    assert all(reply.status_code in (200, 201) for reply in replies)
    assert await stored_count(app) == len(ids)
    created = sum(
        r["status"] == "created" for reply in replies[:3] for r in reply.json()["results"]
    ) + sum(reply.status_code == 201 for reply in replies[3:])
    assert created == len(ids)


# --- reading ----------------------------------------------------------------------------------


async def make_territories(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    tree = [
        ("190000000", None, "region"),
        ("193000000", "190000000", "district"),
        ("193200000", "193000000", "rural_district"),
        ("193230100", "193200000", "settlement"),
        ("750000000", None, "city"),
    ]
    for code, parent, level in tree:
        reply = await client.post(
            "/api/v1/territories",
            json={"code": code, "parent_code": parent, "level": level, "name": {"ru": code}},
            headers=headers,
        )
        assert reply.status_code == 201, reply.text


async def test_listing_filters_and_pages_stably(
    app: FastAPI,
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    analyst: dict[str, str],
) -> None:
    await make_territories(client, await headers_for(app, Role.coordinator))
    start = datetime(2025, 3, 1, tzinfo=UTC)
    placed = ["193230100", "193000000", "750000000", None, "193230100", "190000000"]
    sent = []
    for n, code in enumerate(placed):
        body = response(
            "ngo" if n % 2 else "student",
            respondent={
                "group": "ngo" if n % 2 else "student",
                "gender": "male" if n % 3 == 0 else "female",
                **({"territory_code": code} if code else {}),
            },
            submitted_at=(start + timedelta(days=n)).isoformat(),
        )
        sent.append((await client.post(url(survey), json=body, headers=observer)).json())

    async def ids(**params: Any) -> list[str]:
        reply = await client.get(url(survey), params=params, headers=analyst)
        assert reply.status_code == 200, reply.text
        return [item["id"] for item in reply.json()["items"]]

    every = [item["id"] for item in sent]
    assert await ids() == every
    assert await ids(group="ngo") == every[1::2]
    assert await ids(gender="male") == [every[0], every[3]]
    assert await ids(territory_code="190000000") == [every[0], every[1], every[4], every[5]]
    assert await ids(territory_code="193200000") == [every[0], every[4]]
    assert await ids(territory_code="750000000") == [every[2]]
    window = {"submitted_from": "2025-03-02T00:00:00Z", "submitted_to": "2025-03-04T00:00:00Z"}
    assert await ids(**window) == every[1:3]
    assert (
        await client.get(url(survey), params={"group": "x"}, headers=analyst)
    ).status_code == 422

    # Pages stay in creation order while new responses arrive between them.
    first = (await client.get(url(survey), params={"limit": 4}, headers=analyst)).json()
    await client.post(url(survey), json=response(), headers=observer)
    second = (
        await client.get(
            url(survey), params={"limit": 4, "cursor": first["next_cursor"]}, headers=analyst
        )
    ).json()
    paged = [item["id"] for item in first["items"] + second["items"]]
    assert paged[:6] == every and len(paged) == 7 and second["next_cursor"] is None


async def test_reading_and_deleting_a_response(
    app: FastAPI,
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    analyst: dict[str, str],
) -> None:
    created = (await client.post(url(survey), json=response(), headers=observer)).json()
    one = f"/api/v1/responses/{created['id']}"
    assert (await client.get(one, headers=analyst)).json() == created
    assert (await client.get(one, headers=observer)).status_code == 403
    assert (await client.delete(one, headers=analyst)).status_code == 403
    admin = await headers_for(app, Role.admin)
    assert (await client.delete(one, headers=admin)).status_code == 204
    assert (await client.get(one, headers=analyst)).status_code == 404
    assert (await client.delete(one, headers=admin)).status_code == 404
    log = (await client.get("/api/v1/audit", headers=admin)).json()["items"]
    assert log[0]["action"] == "response.delete"
    assert log[0]["target_id"] == created["id"]


# --- exports ----------------------------------------------------------------------------------

EXPECTED_HEADER = [
    "id", "questionnaire_version", "submitted_at", "received_at", "group", "category", "gender",
    "age_band", "territory_code", "language", "channel", "instance_name", "aware",
    "channels_known/hearings", "channels_known/reception", "channels_known/maslikhat",
    "channels_known/petitions", "channels_known/public_councils",
    "channels_known/community_meetings", "participated", "times_participated",
    "info_sources/tv", "info_sources/social", "info_sources/akimat_site", "info_sources/press",
    "info_sources/people", "info_sources/ngos", "trust_akimat", "influence",
    "information_access", "last_hearing", "suggestions",
]  # fmt: skip


async def test_csv_export_has_the_contract_columns_and_neutralises_formulas(
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    analyst: dict[str, str],
) -> None:
    risky = answers(suggestions='=HYPERLINK("http://x")', aware="partly")
    first = (await client.post(url(survey), json=response(answers=risky), headers=observer)).json()
    minimal = answers(
        participated=False, times_participated=None, last_hearing=None, channels_known=None,
        info_sources=None, influence=None, information_access=None, suggestions="-1 хорошо",
    )  # fmt: skip
    second = (
        await client.post(url(survey), json=response("sme", answers=minimal), headers=observer)
    ).json()

    reply = await client.get(url(survey, "/export"), params={"format": "csv"}, headers=analyst)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")
    assert reply.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    assert rows[0] == EXPECTED_HEADER
    assert len(rows) == 3
    line = dict(zip(rows[0], rows[1], strict=True))
    assert line["id"] == first["id"]
    assert line["aware"] == "partly"
    assert line["channels_known/hearings"] == "1"
    assert line["channels_known/reception"] == "0"
    assert line["participated"] == "true"
    assert line["trust_akimat"] == "3"
    assert line["suggestions"] == '\'=HYPERLINK("http://x")'
    other = dict(zip(rows[0], rows[2], strict=True))
    assert other["id"] == second["id"] and other["group"] == "sme"
    assert other["category"] == "citizen"
    assert other["channels_known/hearings"] == "" and other["times_participated"] == ""
    assert other["suggestions"] == "'-1 хорошо"

    filtered = await client.get(
        url(survey, "/export"), params={"format": "csv", "group": "sme"}, headers=analyst
    )
    assert len(filtered.content.decode("utf-8-sig").strip().splitlines()) == 2


async def test_ndjson_and_xlsx_exports(
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    analyst: dict[str, str],
) -> None:
    sent = [
        (await client.post(url(survey), json=response(answers=answers(suggestions=s)), headers=observer)).json()
        for s in ("@SUM(1)", "обычный текст")
    ]  # fmt: skip
    ndjson = await client.get(url(survey, "/export"), params={"format": "ndjson"}, headers=analyst)
    lines = [json.loads(line) for line in ndjson.text.strip().splitlines()]
    assert lines == sent

    xlsx = await client.get(url(survey, "/export"), params={"format": "xlsx"}, headers=analyst)
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content), read_only=True)["responses"]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0] == EXPECTED_HEADER
    assert [row[0] for row in values[1:]] == [item["id"] for item in sent]
    suggestions = EXPECTED_HEADER.index("suggestions")
    assert values[1][suggestions] == "'@SUM(1)"
    assert values[2][suggestions] == "обычный текст"
    bad = await client.get(url(survey, "/export"), params={"format": "pdf"}, headers=analyst)
    assert bad.status_code == 422


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL: timing of real concurrent writers")
async def test_closing_waits_for_submissions_in_flight(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    coordinator = await headers_for(app, Role.coordinator)
    calls = [client.post(url(survey), json=response(), headers=observer) for _ in range(20)]
    calls.append(client.post(f"/api/v1/questionnaires/{survey.id}/close", headers=coordinator))
    replies = await asyncio.gather(*calls)
    accepted = sum(reply.status_code == 201 for reply in replies[:-1])
    assert replies[-1].status_code == 200
    assert all(reply.status_code in (201, 409) for reply in replies[:-1])
    assert await stored_count(app) == accepted


async def test_the_public_submission_limit_holds_across_workers(
    app: FastAPI, database_url: str
) -> None:
    """Two uvicorn workers share the database's counters: the limit is per client address,
    not per process."""
    public = await create_questionnaire(app, publish=True, access="public")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    env.update(
        KENES_DATABASE_URL=database_url,
        KENES_SECRET_KEY=TEST_SECRET,
        KENES_PUBLIC_SUBMIT_LIMIT="6",
        KENES_AUTO_MIGRATE="false",
        KENES_LOG_LEVEL="WARNING",
    )
    server = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        # A new connection each time, so the kernel spreads them over both workers.
        statuses = [
            httpx.post(
                f"{base}{url(public)}",
                json=response(),
                headers={"Connection": "close"},
                timeout=10,
            ).status_code
            for _ in range(10)
        ]
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert statuses == [201] * 6 + [429] * 4, statuses
    assert await stored_count(app) == 6


# --- groups and repeats -----------------------------------------------------------------------


def roster_definition() -> dict[str, Any]:
    """A household survey: a group with a condition, a roster of members (a repeat) with a
    nested repeat of each member's jobs."""

    def label(text: str) -> dict[str, str]:
        return {"ru": text, "kk": text}

    yes_no = [{"value": "yes", "label": label("да")}, {"value": "no", "label": label("нет")}]
    return {
        "slug": f"household-{uuid.uuid4().hex[:8]}",
        "title": label("Домохозяйство"),
        "default_language": "ru",
        "respondent_groups": [{"key": "household", "category": "citizen", "label": label("х")}],
        "questions": [
            {"key": "has_land", "type": "single_choice", "label": label("Земля?"),
             "options": yes_no, "required": True},
            {"key": "land", "type": "group", "label": label("Участок"),
             "relevant": {"question": "has_land", "op": "eq", "value": "yes"},
             "questions": [
                 {"key": "hectares", "type": "decimal", "label": label("Га"), "min": 0,
                  "required": True},
             ]},
            {"key": "members", "type": "repeat", "label": label("Члены семьи"), "min_count": 1,
             "max_count": 20,
             "questions": [
                 {"key": "age", "type": "integer", "label": label("Возраст"), "min": 0,
                  "max": 120, "required": True},
                 {"key": "works", "type": "boolean", "label": label("Работает?")},
                 {"key": "jobs", "type": "repeat", "label": label("Работы"),
                  "relevant": {"question": "works", "op": "eq", "value": True},
                  "questions": [
                      {"key": "sector", "type": "single_choice", "label": label("Сектор"),
                       "options": [{"value": s, "label": label(s)}
                                   for s in ("farm", "trade", "state")]},
                  ]},
             ]},
        ],
    }  # fmt: skip


async def test_groups_and_nested_repeats_are_checked_stored_and_read_back(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str]
) -> None:
    coordinator = await headers_for(app, Role.coordinator)
    created = await client.post(
        "/api/v1/questionnaires", json=roster_definition(), headers=coordinator
    )
    assert created.status_code == 201, created.text
    survey_id = created.json()["id"]
    await client.post(f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator)
    target = f"/api/v1/questionnaires/{survey_id}/responses"
    members = [
        {"age": 44, "works": True, "jobs": [{"sector": "farm"}, {"sector": "trade"}]},
        {"age": 12, "works": False},
        {"age": 71, "works": True, "jobs": [{"sector": "state"}]},
    ]
    body = {
        "id": str(uuid.uuid4()),
        "respondent": {"group": "household"},
        "answers": {"has_land": "yes", "hectares": 2.5, "members": members},
    }
    stored = await client.post(target, json=body, headers=observer)
    assert stored.status_code == 201, stored.text
    assert stored.json()["answers"]["members"] == members
    analyst = await headers_for(app, Role.analyst)
    read = await client.get(f"/api/v1/responses/{body['id']}", headers=analyst)
    assert read.json()["answers"] == body["answers"]
    assert (await client.post(target, json=body, headers=observer)).status_code == 200
    reordered = {**body, "answers": {**body["answers"], "members": members[::-1]}}
    assert (await client.post(target, json=reordered, headers=observer)).status_code == 409

    bad = {
        "no members": {"has_land": "no"},
        "not relevant group": {"has_land": "no", "hectares": 1, "members": members},
        "jobs of a non-worker": {
            "has_land": "no",
            "members": [{"age": 30, "works": False, "jobs": [{"sector": "farm"}]}],
        },
        "unknown key in an instance": {"has_land": "no", "members": [{"age": 3, "pet": "cat"}]},
        "missing required in an instance": {"has_land": "no", "members": [{"works": True}]},
        "not a list": {"has_land": "no", "members": {"age": 3}},
        "too many": {"has_land": "no", "members": [{"age": 3}] * 21},
        "a bad option deep down": {
            "has_land": "no",
            "members": [{"age": 30, "works": True, "jobs": [{"sector": "mining"}]}],
        },
    }
    for reason, answers_given in bad.items():
        refused = await client.post(
            target,
            json={"respondent": {"group": "household"}, "answers": answers_given},
            headers=observer,
        )
        assert refused.status_code == 422, (reason, refused.text)
    deep = await client.post(
        target,
        json={"respondent": {"group": "household"}, "answers": bad["a bad option deep down"]},
        headers=observer,
    )
    assert ["body", "answers", "members", 0, "jobs", 0, "sector"] in [
        e["loc"] for e in deep.json()["errors"]
    ]

    batch = await client.post(
        f"{target}/batch",
        json={
            "responses": [
                {"respondent": {"group": "household"}, "answers": {"has_land": "no",
                 "members": [{"age": 9}]}},
                {"respondent": {"group": "household"}, "answers": bad["too many"]},
            ]
        },
        headers=observer,
    )  # fmt: skip
    assert [r["status"] for r in batch.json()["results"]] == ["created", "invalid"]
    listed = await client.get(target, headers=analyst)
    assert sorted(len(item["answers"]["members"]) for item in listed.json()["items"]) == [1, 3]
    ndjson = await client.get(f"{target}/export", params={"format": "ndjson"}, headers=analyst)
    lines = [json.loads(line) for line in ndjson.text.splitlines()]
    assert sorted(len(line["answers"]["members"]) for line in lines) == [1, 3]
    csv_text = (await client.get(f"{target}/export", headers=analyst)).text
    assert "hectares" in csv_text.splitlines()[0] and "sector" not in csv_text.splitlines()[0]


# --- expressions enforced on submission -------------------------------------------------------


def en(text: str) -> dict[str, str]:
    return {"en": text}


def yes_no() -> list[dict[str, Any]]:
    return [{"value": "yes", "label": en("Yes")}, {"value": "no", "label": en("No")}]


def household_definition() -> dict[str, Any]:
    """A household survey written with XLSForm expressions: constraints with messages, a
    required expression, relevance, calculations (also in a roster repeat), a note."""
    return {
        "slug": f"household-{uuid.uuid4().hex[:8]}",
        "title": en("Household survey"),
        "default_language": "en",
        "respondent_groups": [{"key": "respondent", "category": "citizen", "label": en("R")}],
        "questions": [
            {"key": "intro", "type": "note", "label": en("Read this out first")},
            {"key": "head_name", "type": "text", "label": en("Name"), "required": True},
            {
                "key": "head_age",
                "type": "integer",
                "label": en("Age"),
                "required": True,
                "constraint": ". >= 18 and . <= 120",
                "constraint_message": {"en": "An adult: 18 to 120", "ru": "Взрослый: 18-120"},
            },
            {"key": "has_phone", "type": "single_choice", "label": en("Phone?"),
             "options": yes_no()},
            {
                "key": "phone",
                "type": "text",
                "label": en("Number"),
                "relevant": "${has_phone} = 'yes'",
                "constraint": "regex(., '^[+]7[0-9]{10}$')",
                "constraint_message": en("+7 and ten digits"),
            },
            {
                "key": "services",
                "type": "multiple_choice",
                "label": en("Services"),
                "options": [{"value": v, "label": en(v)} for v in ("water", "power", "gas")],
            },
            {
                "key": "outage_days",
                "type": "integer",
                "label": en("Days without power"),
                "relevant": "selected(${services}, 'power')",
                "required": "${head_age} >= 60",
                "required_message": en("Ask older heads about outages"),
            },
            {
                "key": "roster",
                "type": "repeat",
                "label": en("Members"),
                "questions": [
                    {"key": "member_name", "type": "text", "label": en("Name"), "required": True},
                    {
                        "key": "member_age",
                        "type": "integer",
                        "label": en("Age"),
                        "required": True,
                        "constraint": ". <= ${head_age}",
                        "constraint_message": en("Not older than the head"),
                    },
                    {"key": "child_flag", "type": "calculate",
                     "calculation": "if(${member_age} < 18, 1, 0)"},
                    {
                        "key": "school",
                        "type": "single_choice",
                        "label": en("In school?"),
                        "options": yes_no(),
                        "relevant": "${member_age} >= 6 and ${member_age} < 18",
                    },
                    {"key": "member_no", "type": "calculate", "calculation": "position(..)"},
                ],
            },
            {"key": "household_size", "type": "calculate", "calculation": "count(${roster}) + 1"},
            {"key": "children", "type": "calculate", "calculation": "sum(${child_flag})"},
            {"key": "interviewed_at", "type": "calculate", "calculation": "once(now())"},
            {
                "key": "housing",
                "type": "group",
                "relevant": "${household_size} > 1",
                "questions": [
                    {"key": "rooms", "type": "integer", "label": en("Rooms"),
                     "constraint": ". > 0", "appearance": "numbers"},
                    {"key": "rooms_each", "type": "calculate",
                     "calculation": "round(${rooms} div ${household_size}, 2)"},
                ],
            },
        ],
    }  # fmt: skip


async def publish_definition(app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    coordinator = await headers_for(app, Role.coordinator)
    created = await client.post("/api/v1/questionnaires", json=body, headers=coordinator)
    assert created.status_code == 201, created.text
    survey_id = str(created.json()["id"])
    published = await client.post(
        f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    return survey_id


async def test_expressions_are_enforced_and_calculations_computed_by_the_server(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str]
) -> None:
    survey_id = await publish_definition(app, client, household_definition())
    target = f"/api/v1/questionnaires/{survey_id}/responses"
    good = {
        "head_name": "Aigerim",
        "head_age": 45,
        "has_phone": "yes",
        "phone": "+77011234567",
        "services": ["water", "power"],
        "outage_days": 3,
        "roster": [
            {"member_name": "Nurlan", "member_age": 40, "child_flag": "7"},
            {"member_name": "Dana", "member_age": 10, "school": "yes"},
        ],
        "household_size": "99",  # wrong: the server's count replaces it
        "interviewed_at": "2026-12-07T10:00:00.000+06:00",  # now(): the client's value is kept
        "rooms": 4,
    }
    body = {"id": str(uuid.uuid4()), "respondent": {"group": "respondent"}, "answers": good}
    stored = await client.post(target, json=body, headers=observer)
    assert stored.status_code == 201, stored.text
    kept = stored.json()["answers"]
    # worked by hand: two members plus the head; one member under 18; 4 rooms / 3 people
    assert kept["household_size"] == "3"
    assert kept["children"] == "1"
    assert kept["rooms_each"] == "1.33"
    assert [m["child_flag"] for m in kept["roster"]] == ["0", "1"]
    assert [m["member_no"] for m in kept["roster"]] == ["1", "2"]
    assert kept["interviewed_at"] == "2026-12-07T10:00:00.000+06:00"
    read = await client.get(f"/api/v1/responses/{body['id']}", headers=analyst)
    assert read.json()["answers"] == kept
    # a replay with the client's original (wrong) calculations is the same content
    assert (await client.post(target, json=body, headers=observer)).status_code == 200

    def with_(**changes: Any) -> dict[str, Any]:
        answers_given = {**good, **changes}
        return {k: v for k, v in answers_given.items() if v is not None}

    async def refused(answers_given: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await client.post(
            target,
            json={"respondent": {"group": "respondent"}, "answers": answers_given},
            headers=observer,
        )
        assert answer.status_code == 422, answer.text
        errors: list[dict[str, Any]] = answer.json()["errors"]
        return errors

    young = await refused(with_(head_age=15))
    assert {"loc": ["body", "answers", "head_age"], "msg": "An adult: 18 to 120",
            "type": "constraint"} in young  # fmt: skip
    bad_phone = await refused(with_(phone="12345"))
    assert [e["msg"] for e in bad_phone] == ["+7 and ten digits"]
    hidden = await refused(with_(has_phone="no"))
    assert [(e["loc"][-1], e["type"]) for e in hidden] == [("phone", "not_relevant")]
    # required as an expression: only when the head is 60 or older
    older = await refused(with_(head_age=65, outage_days=None))
    assert [(e["loc"], e["msg"]) for e in older] == [
        (["body", "answers", "outage_days"], "Ask older heads about outages")
    ]
    younger = with_(outage_days=None, interviewed_at=None)
    taken = await client.post(target, json={"respondent": {"group": "respondent"},
                              "answers": younger}, headers=observer)  # fmt: skip
    assert taken.status_code == 201, taken.text
    # now() without the client's value stays empty: a replay must give the same content
    assert "interviewed_at" not in taken.json()["answers"]
    in_roster = await refused(
        with_(roster=[{"member_name": "Old", "member_age": 50}, {"member_name": "Ok",
              "member_age": 30, "school": "no"}])
    )  # fmt: skip
    assert [(e["loc"], e["type"]) for e in in_roster] == [
        (["body", "answers", "roster", 0, "member_age"], "constraint"),
        (["body", "answers", "roster", 1, "school"], "not_relevant"),
    ]
    # the group is relevant only when the household has more than one person
    alone = await refused(with_(roster=None))
    assert [(e["loc"][-1], e["type"]) for e in alone] == [("rooms", "not_relevant")]
    noted = await refused(with_(intro="read"))
    assert [e["loc"][-1] for e in noted] == ["intro"]

    batch = await client.post(
        f"{target}/batch",
        json={"responses": [
            {"respondent": {"group": "respondent"}, "answers": with_(head_age=50)},
            {"respondent": {"group": "respondent"}, "answers": with_(head_age=121)},
        ]},
        headers=observer,
    )  # fmt: skip
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["created", "invalid"]
    assert results[1]["errors"][0]["msg"] == "An adult: 18 to 120"

    exported = await client.get(f"{target}/export", headers=analyst)
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert sorted(row["household_size"] for row in rows) == ["3", "3", "3"]
    assert "intro" not in rows[0]
    figures = await client.get(f"/api/v1/questionnaires/{survey_id}/aggregates", headers=analyst)
    assert figures.status_code == 200, figures.text


# --- forms at the contract's size limit ---------------------------------------------------------


def widest_definition() -> dict[str, Any]:
    label = {"en": "n"}
    questions = [
        {"key": f"n{i}", "type": "integer", "label": label} for i in range(MAX_QUESTIONS - 1)
    ]
    questions.append({"key": "note_text", "type": "text", "label": label})
    return {
        "slug": "widest",
        "title": {"en": "Widest"},
        "default_language": "en",
        "respondent_groups": [{"key": "r", "category": "citizen", "label": label}],
        "questions": questions,
    }


async def test_a_response_to_a_form_of_2000_questions_reads_back_listed_and_exported(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    coordinator = await headers_for(app, Role.coordinator)
    created = await client.post(
        "/api/v1/questionnaires", json=widest_definition(), headers=coordinator
    )
    assert created.status_code == 201, created.text[:500]
    survey = created.json()["id"]
    assert (
        await client.post(f"/api/v1/questionnaires/{survey}/publish", headers=coordinator)
    ).status_code == 200
    answers = {f"n{i}": i * 7 % 1000 for i in range(MAX_QUESTIONS - 1)}
    answers["note_text"] = "последний"
    item = {"id": str(uuid.uuid4()), "respondent": {"group": "r"}, "answers": answers}
    observer = await headers_for(app, Role.observer)
    stored = await client.post(
        f"/api/v1/questionnaires/{survey}/responses", json=item, headers=observer
    )
    assert stored.status_code == 201, stored.text[:500]
    analyst = await headers_for(app, Role.analyst)
    one = await client.get(f"/api/v1/responses/{item['id']}", headers=analyst)
    assert one.status_code == 200, one.text[:300]
    assert one.json()["answers"] == answers
    listed = await client.get(f"/api/v1/questionnaires/{survey}/responses", headers=analyst)
    assert listed.status_code == 200, listed.text[:300]
    assert listed.json()["items"][0]["answers"] == answers
    # NDJSON reads responses as the API does; the tabular formats refuse such a form (422).
    exported = await client.get(
        f"/api/v1/questionnaires/{survey}/responses/export",
        params={"format": "ndjson"},
        headers=analyst,
    )
    assert exported.status_code == 200, exported.text[:300]
    [line] = exported.content.decode().splitlines()
    assert json.loads(line)["answers"] == answers
    for fmt in ("csv", "xlsx", "zip"):
        refused = await client.get(
            f"/api/v1/questionnaires/{survey}/responses/export",
            params={"format": fmt},
            headers=analyst,
        )
        assert refused.status_code == 422, (fmt, refused.text[:300])
        assert refused.json()["errors"][0]["type"] == "too_wide"
