"""Questionnaire definitions: rules, versions, states, access and ETags (XLSForm: test_xlsform*.py)."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.models.auth import Principal, Role
from app.models.questionnaires import Status
from app.services import questionnaires as questionnaire_service
from app.services.conditions import evaluate
from tests.conftest import ROOT
from tests.factories import almaty_definition, create_questionnaire, headers_for

XLSFORM = ROOT / "examples" / "almaty_participation.xlsx"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


async def create(client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any) -> Any:
    body = almaty_definition(**overrides)
    return await client.post("/api/v1/questionnaires", json=body, headers=headers)


def error_locations(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["loc"] for error in response.json()["errors"]]


# --- creating and reading ---------------------------------------------------------------------


async def test_create_returns_a_draft_with_location_and_etag(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    created = await create(client, coordinator)
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/api/v1/questionnaires/{body['id']}"
    assert (body["slug"], body["version"], body["status"]) == ("almaty-participation", 1, "draft")
    assert body["published_at"] is None and body["closed_at"] is None
    expected = almaty_definition()
    assert [q["key"] for q in body["questions"]] == [q["key"] for q in expected["questions"]]
    assert body["title"] == expected["title"]
    assert body["respondent_groups"][3] == expected["respondent_groups"][3]

    fetched = await client.get(created.headers["location"], headers=coordinator)
    assert fetched.json() == body
    etag = fetched.headers["etag"]
    assert etag == created.headers["etag"]
    cached = await client.get(
        created.headers["location"], headers={**coordinator, "If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    other = await client.get(
        created.headers["location"], headers={**coordinator, "If-None-Match": '"other"'}
    )
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("mutate", "location"),
    [
        (lambda d: d["questions"][2]["label"].pop("ru"), ["body", "questions", 2, "label"]),
        (lambda d: d["title"].pop("ru"), ["body", "title"]),
        (
            lambda d: d["questions"][0]["options"][1].update(value="yes"),
            ["body", "questions", 0, "options", 1, "value"],
        ),
        (lambda d: d["questions"][4].update(key="aware"), ["body", "questions", 4, "key"]),
        (
            lambda d: d["questions"][1]["relevant"].update(question="suggestions"),
            ["body", "questions", 1, "relevant", "question"],
        ),
        (
            lambda d: d["questions"][1]["relevant"].update(op="contains"),
            ["body", "questions", 1, "relevant", "op"],
        ),
        (
            lambda d: d["questions"][3]["relevant"].update(value="maybe"),
            ["body", "questions", 3, "relevant", "value"],
        ),
        (
            lambda d: d["questions"][8]["relevant"]["all"][1].update(value="nowhere"),
            ["body", "questions", 8, "relevant", "all", 1, "value"],
        ),
        (
            lambda d: d["questions"][1].update(min_selected=7),
            ["body", "questions", 1, "min_selected"],
        ),
        (lambda d: d["questions"][5].update(min=5, max=5), ["body", "questions", 5, "max"]),
        (lambda d: d["questions"][3].update(min=10, max=1), ["body", "questions", 3, "min"]),
        (
            lambda d: d["respondent_groups"][1].update(key="student"),
            ["body", "respondent_groups", 1, "key"],
        ),
    ],
)
async def test_a_broken_definition_is_422_naming_the_place(
    client: httpx.AsyncClient, coordinator: dict[str, str], mutate: Any, location: list[Any]
) -> None:
    definition = almaty_definition()
    mutate(definition)
    response = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    assert location in error_locations(response)


@pytest.mark.parametrize(
    ("mutate", "prefix"),
    [
        (lambda d: d["questions"][0].update(key="Bad Key"), ["body", "questions", 0]),
        (lambda d: d["questions"][0].update(type="essay"), ["body", "questions", 0]),
        (lambda d: d["questions"][1]["relevant"].update(op="like"), ["body", "questions", 1]),
        (lambda d: d["questions"][1].update(relevant={"either": []}), ["body", "questions", 1]),
        (lambda d: d.update(respondent_groups=[]), ["body", "respondent_groups"]),
        # any BCP 47 tag labels a text ("de" too), but not a language's name
        (lambda d: d["title"].update({"Deutsch (de)": "Umfrage"}), ["body", "title"]),
        (lambda d: d.update(slug="Not a slug"), ["body", "slug"]),
    ],
)
async def test_a_malformed_definition_is_422(
    client: httpx.AsyncClient, coordinator: dict[str, str], mutate: Any, prefix: list[Any]
) -> None:
    definition = almaty_definition()
    mutate(definition)
    response = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    assert any(loc[: len(prefix)] == prefix for loc in error_locations(response))


async def test_versions_follow_the_slug(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    first = (await create(client, coordinator)).json()
    assert (await create(client, coordinator)).status_code == 409  # a draft exists
    await client.post(f"/api/v1/questionnaires/{first['id']}/publish", headers=coordinator)
    second = (await create(client, coordinator)).json()
    assert second["version"] == 2
    deleted = await client.delete(f"/api/v1/questionnaires/{second['id']}", headers=coordinator)
    assert deleted.status_code == 204
    again = (await create(client, coordinator)).json()
    assert again["version"] == 2  # the deleted draft's number is reused
    listed = await client.get(
        "/api/v1/questionnaires", params={"slug": "almaty-participation"}, headers=coordinator
    )
    assert [(q["version"], q["status"]) for q in listed.json()["items"]] == [
        (1, "published"),
        (2, "draft"),
    ]
    drafts = await client.get(
        "/api/v1/questionnaires", params={"status": "draft"}, headers=coordinator
    )
    assert [q["id"] for q in drafts.json()["items"]] == [again["id"]]


async def test_states_publish_close_and_frozen_definitions(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    draft = (await create(client, coordinator)).json()
    url = f"/api/v1/questionnaires/{draft['id']}"
    edited = await client.patch(
        url, json={"title": {"ru": "Новое", "en": "New"}}, headers=coordinator
    )
    assert edited.status_code == 200
    assert edited.json()["title"] == {"ru": "Новое", "en": "New"}
    lost_default = await client.patch(url, json={"title": {"en": "New"}}, headers=coordinator)
    assert ["body", "title"] in error_locations(lost_default)
    assert (await client.post(f"{url}/close", headers=coordinator)).status_code == 409

    published = await client.post(f"{url}/publish", headers=coordinator)
    assert published.status_code == 200
    assert published.json()["status"] == "published"
    assert published.json()["published_at"] is not None
    assert (await client.post(f"{url}/publish", headers=coordinator)).status_code == 409
    assert (
        await client.patch(url, json={"title": {"ru": "x"}}, headers=coordinator)
    ).status_code == 409
    assert (await client.delete(url, headers=coordinator)).status_code == 409

    closed = await client.post(f"{url}/close", headers=coordinator)
    assert closed.json()["status"] == "closed"
    assert closed.json()["closed_at"] is not None
    assert closed.json()["questions"] == published.json()["questions"]
    assert (await client.post(f"{url}/close", headers=coordinator)).status_code == 409


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE questionnaire SET definition = '{}' WHERE id = :id",
        "UPDATE questionnaire SET status = 'draft' WHERE id = :id",
        "UPDATE questionnaire SET slug = 'renamed' WHERE id = :id",
        "DELETE FROM questionnaire WHERE id = :id",
    ],
)
async def test_the_database_refuses_to_change_a_published_definition(
    app: FastAPI, statement: str
) -> None:
    questionnaire = await create_questionnaire(app, publish=True)
    key = questionnaire.id.hex if app.state.engine.dialect.name == "sqlite" else questionnaire.id
    with pytest.raises(DBAPIError):
        async with app.state.engine.begin() as connection:
            await connection.execute(text(statement), {"id": key})
    async with app.state.engine.begin() as connection:
        status = await connection.execute(
            text("UPDATE questionnaire SET status = 'closed' WHERE id = :id"), {"id": key}
        )
    assert status.rowcount == 1  # closing is the one change allowed


# --- who reads what ---------------------------------------------------------------------------


async def test_read_access_by_role_and_access_level(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    draft = await create_questionnaire(app)
    public = await create_questionnaire(app, publish=True, access="public")
    token = await create_questionnaire(app, publish=True, access="token")
    observer = await headers_for(app, Role.observer)
    analyst = await headers_for(app, Role.analyst)
    admin = await headers_for(app, Role.admin)
    collector_token = (
        await client.post(
            "/api/v1/collectors",
            json={"name": "tablet", "questionnaire_ids": [str(token.id)]},
            headers=admin,
        )
    ).json()["token"]
    collector = {"Authorization": f"Bearer {collector_token}"}

    def get(q: Any, headers: dict[str, str]) -> Any:
        return client.get(f"/api/v1/questionnaires/{q.id}", headers=headers)

    expected = {
        ("anonymous", "draft"): 401, ("anonymous", "public"): 200, ("anonymous", "token"): 401,
        ("observer", "draft"): 404, ("observer", "public"): 200, ("observer", "token"): 200,
        ("analyst", "draft"): 200, ("analyst", "public"): 200, ("analyst", "token"): 200,
        ("collector", "draft"): 404, ("collector", "public"): 404, ("collector", "token"): 200,
    }  # fmt: skip
    callers = {"anonymous": {}, "observer": observer, "analyst": analyst, "collector": collector}
    questionnaires = {"draft": draft, "public": public, "token": token}
    for (caller, kind), status in expected.items():
        response = await get(questionnaires[kind], callers[caller])
        assert response.status_code == status, (caller, kind, response.text)

    seen = await client.get("/api/v1/questionnaires", headers=observer)
    assert {q["id"] for q in seen.json()["items"]} == {str(public.id), str(token.id)}
    everything = await client.get("/api/v1/questionnaires", headers=analyst)
    assert len(everything.json()["items"]) == 3
    assert (await client.get("/api/v1/questionnaires", headers=collector)).status_code == 403


# --- the condition interpreter ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "answers", "holds"),
    [
        ({"question": "a", "op": "eq", "value": "x"}, {"a": "x"}, True),
        ({"question": "a", "op": "eq", "value": "x"}, {}, False),
        ({"question": "a", "op": "ne", "value": "x"}, {}, True),
        ({"question": "a", "op": "ne", "value": "x"}, {"a": "x"}, False),
        ({"question": "a", "op": "in", "value": ["x", "y"]}, {"a": "y"}, True),
        ({"question": "a", "op": "not_in", "value": ["x"]}, {}, True),
        ({"question": "n", "op": "gt", "value": 3}, {"n": 4}, True),
        ({"question": "n", "op": "gte", "value": 3}, {"n": 3}, True),
        ({"question": "n", "op": "lt", "value": 3}, {"n": 3}, False),
        ({"question": "n", "op": "lte", "value": 3}, {}, False),
        ({"question": "d", "op": "lt", "value": "2024-02-01"}, {"d": "2024-01-31"}, True),
        ({"question": "m", "op": "contains", "value": "x"}, {"m": ["y", "x"]}, True),
        ({"question": "m", "op": "contains", "value": "x"}, {"m": ["y"]}, False),
        ({"question": "a", "op": "answered"}, {"a": 0}, True),
        ({"question": "a", "op": "answered"}, {"b": 1}, False),
        ({"all": [{"question": "a", "op": "answered"}, {"not": {"question": "b", "op": "answered"}}]}, {"a": 1}, True),
        ({"any": [{"question": "a", "op": "eq", "value": 1}, {"question": "b", "op": "eq", "value": 2}]}, {"b": 2}, True),
        ({"any": [{"question": "a", "op": "eq", "value": 1}, {"question": "b", "op": "eq", "value": 2}]}, {"b": 3}, False),
    ],
)  # fmt: skip
def test_conditions_evaluate(condition: Any, answers: Any, holds: bool) -> None:
    assert evaluate(condition, answers) is holds


# --- expressions in definitions ---------------------------------------------------------------


def with_expressions(**fields: Any) -> dict[str, Any]:
    """The Almaty survey with fields set on its question 'times_participated' (index 3)."""
    body = almaty_definition(slug=f"expr-{uuid.uuid4().hex[:8]}")
    body["questions"][3].update(fields)
    return body


@pytest.mark.parametrize(
    ("fields", "place", "message"),
    [
        ({"relevant": "${nope} = 1"}, "relevant", "names no question"),
        ({"relevant": "${suggestions} = 'x'"}, "relevant", "later question"),
        ({"relevant": "${times_participated} > 1"}, "relevant", "itself"),
        ({"relevant": "(" * 330 + "1" + ")" * 330}, "relevant", "64 deep"),
        ({"relevant": "${aware} = "}, "relevant", "ends too early"),
        ({"relevant": "bogus(${aware})"}, "relevant", "unknown function"),
        ({"constraint": ". >"}, "constraint", "ends too early"),
        ({"required": "${aware} = 'yes' and"}, "required", "ends too early"),
        ({"relevant": ". > 1"}, "relevant", "only used in constraint"),
    ],
)
async def test_bad_expressions_are_422_naming_their_place(
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    fields: dict[str, Any],
    place: str,
    message: str,
) -> None:
    response = await client.post(
        "/api/v1/questionnaires", json=with_expressions(**fields), headers=coordinator
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["loc"] for e in errors] == [["body", "questions", 3, place]]
    assert message in errors[0]["msg"]


async def test_every_expression_problem_is_listed_and_calculations_checked(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    body = with_expressions(relevant="${nope} = 1", constraint=". <")
    body["questions"].append({"key": "total", "type": "calculate", "calculation": "${later} + 1"})
    body["questions"].append({"key": "later", "type": "integer", "label": {"ru": "x"}})
    response = await client.post("/api/v1/questionnaires", json=body, headers=coordinator)
    places = sorted(tuple(loc) for loc in error_locations(response))
    assert places == [
        ("body", "questions", 3, "constraint"),
        ("body", "questions", 3, "relevant"),
        ("body", "questions", 10, "calculation"),
    ]


async def test_the_question_model_is_kept_and_given_back(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    fields = {
        "relevant": "${participated} = true()",
        "required": "${aware} = 'yes'",
        "required_message": {"ru": "Обязательно", "en": "Required"},
        "constraint": ". >= 1 and . <= 100",
        "constraint_message": {"ru": "От 1 до 100"},
        "default": "1",
        "appearance": "numbers",
        "read_only": False,
        "guidance_hint": {"ru": "Спросите о прошлом годе"},
    }
    body = with_expressions(**fields)
    body["questions"].insert(0, {"key": "welcome", "type": "note", "label": {"ru": "Здравствуйте"}})
    body["questions"].append({"key": "Twice.Count", "type": "calculate",
                              "calculation": "${times_participated} * 2"})  # fmt: skip
    created = await client.post("/api/v1/questionnaires", json=body, headers=coordinator)
    assert created.status_code == 201, created.text
    question = created.json()["questions"][4]
    assert {k: question[k] for k in fields} == fields
    assert created.json()["questions"][0]["type"] == "note"
    assert created.json()["questions"][-1]["calculation"] == "${times_participated} * 2"
    missing_language = with_expressions(constraint=". > 0", constraint_message={"en": "x"})
    refused = await client.post(
        "/api/v1/questionnaires", json=missing_language, headers=coordinator
    )
    assert error_locations(refused) == [["body", "questions", 3, "constraint_message"]]


async def test_a_patch_that_overlaps_a_publish_waits_for_it_and_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Without a lock, the PATCH checked "draft" while a publish was under way and then met
    the trigger that freezes published questionnaires (PostgreSQL: a 500)."""
    coordinator = await headers_for(app, Role.coordinator)
    draft = await create_questionnaire(app)
    actor = Principal(kind="user", id=uuid.uuid4(), roles=frozenset({Role.coordinator}))
    async with app.state.sessionmaker() as session, session.begin():
        await questionnaire_service.change_status(session, actor, draft.id, Status.published)
        patch = asyncio.create_task(
            client.patch(
                f"/api/v1/questionnaires/{draft.id}",
                json={"title": {"ru": "Другое", "en": "Other", "kk": "Басқа"}},
                headers=coordinator,
            )
        )
        await asyncio.sleep(0.5)
        assert not patch.done()  # it waits for the publish
    answer = await patch
    assert answer.status_code == 409, answer.text
    stored = await client.get(f"/api/v1/questionnaires/{draft.id}", headers=coordinator)
    assert stored.json()["status"] == "published"
    assert stored.json()["title"] == draft.definition["title"]
