"""settings.instance_name names each response: evaluated by the server on the answers it stored
(single, batch, multipart, OpenRosa), kept in `response.instance_name`, given back in the
response's detail and listing and exported after the fixed columns. Each expected name is made
here from what the test sent."""

import csv
import io
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openpyxl import load_workbook

from app.models.auth import Role
from app.models.questionnaires import Questionnaire
from tests.factories import almaty_answers, create_questionnaire, headers_for
from tests.test_openrosa import _collector, _post, instance_xml

NAME = "concat(${suggestions}, ' / ', ${aware}, '-', ${times_participated})"


def name_of(answers: dict[str, Any]) -> str:
    """The instance_name NAME of these answers, as XPath's concat() writes them."""
    return f"{answers['suggestions']} / {answers['aware']}-{answers['times_participated']}"


def item(suggestions: str, times: int, **fields: Any) -> tuple[dict[str, Any], str]:
    answers = almaty_answers(suggestions=suggestions, times_participated=times)
    body = {
        "id": str(uuid.uuid4()),
        "respondent": {"group": "student", "gender": "female", "age_band": "18-24"},
        "answers": answers,
        **fields,
    }
    return body, name_of(answers)


@pytest.fixture
async def named(app: FastAPI) -> Questionnaire:
    return await create_questionnaire(app, publish=True, settings={"instance_name": NAME})


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


async def listing(client: httpx.AsyncClient, survey: Questionnaire, headers: dict[str, str]) -> Any:
    listed = await client.get(f"/api/v1/questionnaires/{survey.id}/responses", headers=headers)
    assert listed.status_code == 200, listed.text
    return {row["id"]: row["instance_name"] for row in listed.json()["items"]}


async def test_each_response_is_named_and_a_replay_keeps_its_name(
    client: httpx.AsyncClient, named: Questionnaire, coordinator: dict[str, str]
) -> None:
    target = f"/api/v1/questionnaires/{named.id}/responses"
    body, expected = item("Больше слушаний", 4)
    created = await client.post(target, json=body, headers=coordinator)
    assert created.status_code == 201, created.text
    assert created.json()["instance_name"] == expected
    replay = await client.post(target, json=body, headers=coordinator)
    assert replay.status_code == 200, replay.text
    assert replay.json()["instance_name"] == expected
    detail = await client.get(f"/api/v1/responses/{body['id']}", headers=coordinator)
    assert detail.json()["instance_name"] == expected

    # a batch: each item named from its own answers (a replay among them keeps its name)
    batch = [item("Парки", 1), item("More buses", 12), (body, expected)]
    sent = await client.post(
        f"{target}/batch", json={"responses": [b for b, _ in batch]}, headers=coordinator
    )
    assert sent.status_code == 200, sent.text
    statuses = [r["status"] for r in sent.json()["results"]]
    assert statuses == ["created", "created", "duplicate"]
    assert await listing(client, named, coordinator) == {b["id"]: name for b, name in batch}

    # multipart: the response in part `response`
    body, expected = item("Фонтаны", 2)
    parts = {"response": ("response.json", json.dumps(body).encode(), "application/json")}
    stored = await client.post(target, files=parts, headers=coordinator)
    assert stored.status_code == 201, stored.text
    assert stored.json()["instance_name"] == expected


async def test_a_long_name_is_cut_and_a_form_without_one_names_none(
    app: FastAPI, client: httpx.AsyncClient, named: Questionnaire, coordinator: dict[str, str]
) -> None:
    body, expected = item("ы" * 700, 3)
    created = await client.post(
        f"/api/v1/questionnaires/{named.id}/responses", json=body, headers=coordinator
    )
    assert created.status_code == 201, created.text
    assert created.json()["instance_name"] == expected[:500]
    assert len(expected) > 500
    unnamed = await create_questionnaire(app, publish=True)
    body, _ = item("Без имени", 1)
    created = await client.post(
        f"/api/v1/questionnaires/{unnamed.id}/responses", json=body, headers=coordinator
    )
    assert created.status_code == 201, created.text
    assert created.json()["instance_name"] is None


async def test_openrosa_stores_the_servers_name_not_the_devices(
    app: FastAPI, client: httpx.AsyncClient, named: Questionnaire
) -> None:
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, named.id)
    xform = (await client.get(f"/openrosa/key/{token}/forms/{named.id}.xml")).content
    assert b"instanceName" in xform  # pyxform gives the device the expression too
    answers = almaty_answers(suggestions="Скамейки", times_participated=5)
    xml = instance_xml(
        xform,
        answers,
        respondent={"group": "ngo", "gender": "female", "age_band": "25-34"},
        instance_id=uuid.uuid4(),
    )
    xml = xml.replace(b"<instanceName />", b"<instanceName>device name</instanceName>")
    xml = xml.replace(b"<instanceName/>", b"<instanceName>device name</instanceName>")
    assert b"device name" in xml
    sent = await _post(client, token, xml)
    assert sent.status_code == 201, sent.text
    assert list((await listing(client, named, admin)).values()) == [name_of(answers)]


async def test_exports_carry_the_name_after_the_fixed_columns(
    client: httpx.AsyncClient, named: Questionnaire, coordinator: dict[str, str]
) -> None:
    sent = [item("=SUM(A1)", 1), item("Тротуары", 7)]
    target = f"/api/v1/questionnaires/{named.id}/responses"
    for body, _ in sent:
        assert (await client.post(target, json=body, headers=coordinator)).status_code == 201
    export = f"{target}/export"
    reply = await client.get(export, params={"format": "csv"}, headers=coordinator)
    rows = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    at = rows[0].index("instance_name")
    assert rows[0][at - 1] == "channel" and rows[0][at + 1] == "aware"
    # a name that would run as a formula gets its leading ', as any text
    names = {row[0]: row[at] for row in rows[1:]}
    assert names == {b["id"]: ("'" + n if n.startswith("=") else n) for b, n in sent}
    reply = await client.get(export, params={"format": "xlsx"}, headers=coordinator)
    sheet = load_workbook(io.BytesIO(reply.content), read_only=True).worksheets[0]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert cells[0][at] == "instance_name"
    assert {row[0]: row[at] for row in cells[1:]} == names
