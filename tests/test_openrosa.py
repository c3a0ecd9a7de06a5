"""OpenRosa under a collector's server URL: form list, download, manifest, submissions.

Instances are made the way a client makes them from the served XForm: its primary instance is
the template, the repeat templates are copied per instance, values are written as XForm values
(space-separated selections, `true`/`false`), the instanceID is `uuid:<id>`. The last test runs
ODK's own XForms engine (@getodk/xforms-engine, clients/openrosa/engine.mjs) against a real
server.
"""

import asyncio
import copy
import csv
import hashlib
import io
import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI
from openpyxl import Workbook

from app.models.auth import Role
from app.models.questionnaires import Questionnaire
from app.services.openrosa import media
from tests.clients import odk_engine_fills
from tests.factories import (
    almaty_answers,
    almaty_definition,
    create_questionnaire,
    headers_for,
)
from tests.servers import running_server
from tests.test_territories import TREE, import_tree

XFORMS = "http://www.w3.org/2002/xforms"
JR = "http://openrosa.org/javarosa"
FORM_LIST = "http://openrosa.org/xforms/xformsList"
RESPONSE_NS = "http://openrosa.org/http/response"


# --- helpers ----------------------------------------------------------------------------------


async def _collector(client: httpx.AsyncClient, admin: dict[str, str], *ids: uuid.UUID) -> str:
    created = await client.post(
        "/api/v1/collectors",
        json={"name": "field phone", "questionnaire_ids": [str(i) for i in ids]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    return token


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _strip_namespaces(element: ET.Element) -> None:
    for node in element.iter():
        node.tag = _local(node.tag)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


def _fill(element: ET.Element, answers: dict[str, Any], templates: dict[str, ET.Element]) -> None:
    """Write the answers into an instance (sub)tree as a client does: repeats from their
    templates, groups left in place, unanswered elements left empty."""
    for position, child in enumerate(list(element)):
        name = child.tag
        if name in templates:
            element.remove(child)
            for offset, instance_answers in enumerate(answers.get(name, [])):
                instance = copy.deepcopy(templates[name])
                _fill(instance, instance_answers, templates)
                element.insert(position + offset, instance)
        elif len(child) and name not in ("meta", "_respondent"):
            _fill(child, answers, templates)
        elif name in answers:
            child.text = _value(answers[name])


def instance_xml(
    xform: bytes,
    answers: dict[str, Any],
    *,
    respondent: dict[str, str],
    instance_id: uuid.UUID,
    times: tuple[str, str] | None = (
        "2026-12-01T10:00:00.000+05:00",
        "2026-12-01T10:07:31.250+05:00",
    ),
    counts: dict[str, int] | None = None,
) -> bytes:
    """The instance a client submits for these answers, from the XForm's own template."""
    document = parse_xml(xform)
    model = document.find(f".//{{{XFORMS}}}model")
    assert model is not None
    root = copy.deepcopy(next(iter(model.find(f"{{{XFORMS}}}instance") or [])))
    templates: dict[str, ET.Element] = {}
    for node in list(root.iter()):
        if f"{{{JR}}}template" in node.attrib:
            del node.attrib[f"{{{JR}}}template"]
            templates[_local(node.tag)] = node
    _strip_namespaces(root)
    # pyxform writes one instance besides the template: a client starts from the template.
    for parent in list(root.iter()):
        seen: set[str] = set()
        for child in list(parent):
            if child.tag in templates and child.tag in seen:
                parent.remove(child)
            seen.add(child.tag)
    templates = {name: copy.deepcopy(node) for name, node in templates.items()}
    for node in templates.values():
        for leaf in node.iter():
            leaf.text = None
    _fill(root, {**answers, **{f"_count_{k}": v for k, v in (counts or {}).items()}}, templates)
    for name, value in respondent.items():
        found = root.find(f"_respondent/{name}")
        assert found is not None, name
        found.text = value
    if times is not None:
        root.find("_start").text, root.find("_end").text = times  # type: ignore[union-attr]
    found = root.find("meta/instanceID")
    assert found is not None
    found.text = f"uuid:{instance_id}"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _message(response: httpx.Response) -> str:
    body = parse_xml(response.content)
    assert body.tag == f"{{{RESPONSE_NS}}}OpenRosaResponse", response.text
    message = body.find(f"{{{RESPONSE_NS}}}message")
    assert message is not None
    return message.text or ""


def _openrosa_headers(response: httpx.Response) -> None:
    assert response.headers["x-openrosa-version"] == "1.0"
    assert response.headers["date"].endswith(" GMT")


async def _post(
    client: httpx.AsyncClient, token: str, xml: bytes, **files: tuple[str, bytes, str]
) -> httpx.Response:
    parts = {"xml_submission_file": ("submission.xml", xml, "text/xml"), **files}
    return await client.post(
        f"/openrosa/key/{token}/submission",
        files=parts,
        headers={"X-OpenRosa-Version": "1.0"},
    )


class Setup:
    def __init__(
        self, questionnaire: Questionnaire, token: str, admin: dict[str, str], xform: bytes
    ) -> None:
        self.questionnaire = questionnaire
        self.token = token
        self.admin = admin
        self.xform = xform

    def instance(self, instance_id: uuid.UUID | None = None, **changes: Any) -> bytes:
        return instance_xml(
            self.xform,
            almaty_answers(**changes),
            respondent={"group": "ngo", "gender": "female", "age_band": "25-34"},
            instance_id=instance_id or uuid.uuid4(),
        )


@pytest.fixture
async def almaty(app: FastAPI, client: httpx.AsyncClient) -> Setup:
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(app, publish=True)
    token = await _collector(client, admin, questionnaire.id)
    download = await client.get(f"/openrosa/key/{token}/forms/{questionnaire.id}.xml")
    assert download.status_code == 200
    return Setup(questionnaire, token, admin, download.content)


async def _stored(client: httpx.AsyncClient, setup: Setup) -> list[dict[str, Any]]:
    listed = await client.get(
        f"/api/v1/questionnaires/{setup.questionnaire.id}/responses", headers=setup.admin
    )
    assert listed.status_code == 200
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


# --- form list, download, manifest ------------------------------------------------------------


async def test_form_list_names_the_collectors_published_forms(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await headers_for(app, Role.admin)
    published = await create_questionnaire(app, publish=True)
    draft = await create_questionnaire(app)
    elsewhere = await create_questionnaire(app, publish=True)
    token = await _collector(client, admin, published.id, draft.id)
    other = await _collector(client, admin, elsewhere.id)

    listed = await client.get(f"/openrosa/key/{token}/formList")
    assert listed.status_code == 200
    _openrosa_headers(listed)
    assert listed.headers["content-type"].startswith("text/xml")
    forms = parse_xml(listed.content).findall(f"{{{FORM_LIST}}}xform")
    assert len(forms) == 1
    [entry] = forms

    def field(name: str) -> str:
        return entry.findtext(f"{{{FORM_LIST}}}{name}") or ""

    assert field("formID") == published.slug
    assert field("name") == almaty_definition()["title"]["ru"]
    assert field("version") == "1"
    download_url = field("downloadUrl")
    assert download_url.startswith(f"http://testserver/openrosa/key/{token}/forms/")
    download = await client.get(download_url)
    assert download.status_code == 200
    _openrosa_headers(download)
    assert field("hash") == "md5:" + hashlib.md5(download.content).hexdigest()  # noqa: S324
    manifest = await client.get(field("manifestUrl"))
    assert manifest.status_code == 200
    _openrosa_headers(manifest)
    root = parse_xml(manifest.content)
    assert root.tag == "{http://openrosa.org/xforms/xformsManifest}manifest"
    assert list(root) == []

    narrowed = await client.get(f"/openrosa/key/{token}/formList", params={"formID": "other"})
    assert parse_xml(narrowed.content).findall(f"{{{FORM_LIST}}}xform") == []

    # The other collector sees only its own; the draft and the other's form are 404 here.
    assert (
        b"<formID>" + elsewhere.slug.encode()
        in (await client.get(f"/openrosa/key/{other}/formList")).content
    )
    staff = await create_questionnaire(app, publish=True, access="staff")
    with_staff = await _collector(client, admin, staff.id)
    assert b"<xform>" not in (await client.get(f"/openrosa/key/{with_staff}/formList")).content
    assert (await client.get(f"/openrosa/key/{with_staff}/forms/{staff.id}.xml")).status_code == 404
    for form in (draft, elsewhere):
        refused = await client.get(f"/openrosa/key/{token}/forms/{form.id}.xml")
        assert refused.status_code == 404
        _openrosa_headers(refused)
        assert (
            await client.get(f"/openrosa/key/{token}/forms/{form.id}/manifest")
        ).status_code == 404


async def test_the_xform_asks_the_questionnaire_in_its_languages(
    client: httpx.AsyncClient, almaty: Setup
) -> None:
    document = parse_xml(almaty.xform)
    model = document.find(f".//{{{XFORMS}}}model")
    assert model is not None
    languages = [t.get("lang") for t in model.iter(f"{{{XFORMS}}}translation")]
    assert sorted(languages) == ["English (en)", "Русский (ru)", "Қазақша (kk)"]
    default = [t.get("lang") for t in model.iter(f"{{{XFORMS}}}translation") if t.get("default")]
    assert default == ["Русский (ru)"]  # the questionnaire's default language
    binds = {b.get("nodeset"): b.attrib for b in model.iter(f"{{{XFORMS}}}bind")}
    assert binds["/data/aware"]["required"] == "true()"
    assert binds["/data/times_participated"]["type"] == "int"
    assert binds["/data/times_participated"]["constraint"] == ". >= 1 and . <= 100"
    assert binds["/data/times_participated"]["relevant"].split() == [
        "/data/participated",
        "=",
        "'true'",
    ]
    assert binds["/data/last_hearing"]["type"] == "date"
    assert "selected( /data/channels_known , 'hearings')" in binds["/data/last_hearing"]["relevant"]
    assert binds["/data/info_sources"]["constraint"] == "count-selected(.) <= 3"
    assert binds["/data/_respondent/group"]["required"] == "true()"
    assert binds["/data/meta/instanceID"][f"{{{JR}}}preload"] == "uid"
    root = model.find(f"{{{XFORMS}}}instance/{{{XFORMS}}}data")
    assert root is not None
    assert root.get("id") == almaty.questionnaire.slug and root.get("version") == "1"
    # The same document from the JSON API, for the questionnaire's readers.
    xform = await client.get(
        f"/api/v1/questionnaires/{almaty.questionnaire.id}/xform", headers=almaty.admin
    )
    assert xform.status_code == 200
    assert xform.headers["content-type"].startswith("application/xml")
    assert xform.content == almaty.xform


async def test_xform_readers_are_the_questionnaires(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup
) -> None:
    draft = await create_questionnaire(app)
    url = f"/api/v1/questionnaires/{draft.id}/xform"
    assert (await client.get(url)).status_code == 401
    observer = await headers_for(app, Role.observer)
    assert (await client.get(url, headers=observer)).status_code == 404  # a draft
    analyst = await headers_for(app, Role.analyst)
    assert (await client.get(url, headers=analyst)).status_code == 200
    collector = {"Authorization": f"Bearer {almaty.token}"}
    assert (await client.get(url, headers=collector)).status_code == 404  # not its own
    own = f"/api/v1/questionnaires/{almaty.questionnaire.id}/xform"
    assert (await client.get(own, headers=collector)).status_code == 200
    assert (await client.get(own, headers=observer)).status_code == 200


async def test_head_submission_says_how_much_it_takes(
    client: httpx.AsyncClient, almaty: Setup
) -> None:
    probe = await client.head(f"/openrosa/key/{almaty.token}/submission")
    assert probe.status_code == 204
    _openrosa_headers(probe)
    assert probe.headers["x-openrosa-accept-content-length"] == str(10 * 1024 * 1024)


async def test_a_url_without_a_collector_token_is_not_found(client: httpx.AsyncClient) -> None:
    for path in ("formList", f"forms/{uuid.uuid4()}.xml", "submission"):
        response = await client.get(f"/openrosa/key/{uuid.uuid4()}/{path}")
        assert response.status_code in (404, 405)
        _openrosa_headers(response)
    unknown = await client.get("/openrosa/key/kc_unknown/formList")
    assert unknown.status_code == 401
    assert "revoked" in _message(unknown)


# --- submissions ------------------------------------------------------------------------------


async def test_a_submission_is_stored_once_and_replays_answer_202(
    client: httpx.AsyncClient, almaty: Setup
) -> None:
    instance_id = uuid.uuid4()
    xml = almaty.instance(instance_id)
    created = await _post(client, almaty.token, xml)
    assert created.status_code == 201, created.text
    _openrosa_headers(created)
    assert created.headers["x-openrosa-accept-content-length"]
    assert _message(created) == "Ответ принят"  # the form's default language, ru

    stored = await client.get(f"/api/v1/responses/{instance_id}", headers=almaty.admin)
    assert stored.status_code == 200
    body = stored.json()
    assert body["answers"] == almaty_answers()
    assert body["respondent"] == {
        "group": "ngo",
        "category": "citizen",
        "gender": "female",
        "age_band": "25-34",
        "territory_code": None,
    }
    assert body["channel"] == "mobile"
    assert body["started_at"] == "2026-12-01T05:00:00Z"
    assert body["submitted_at"] == "2026-12-01T05:07:31.250000Z"

    again = await _post(client, almaty.token, xml)
    assert again.status_code == 202
    assert _message(again) == "Этот ответ уже был принят"
    changed = await _post(client, almaty.token, almaty.instance(instance_id, trust_akimat=5))
    assert changed.status_code == 409
    assert "instanceID" in _message(changed)
    assert [item["id"] for item in await _stored(client, almaty)] == [str(instance_id)]


async def test_a_split_submission_counts_once(client: httpx.AsyncClient, almaty: Setup) -> None:
    """Clients split attachments over POSTs that repeat the same XML: the response is stored by
    the first, the others answer 202; the attachment parts are accepted (no question takes a
    file yet, so nothing refers to them)."""
    xml = almaty.instance()
    first = await _post(
        client, almaty.token, xml, photo1=("a.jpg", b"\xff\xd8" + b"1" * 500, "image/jpeg")
    )
    second = await _post(
        client, almaty.token, xml, photo2=("b.jpg", b"\xff\xd8" + b"2" * 500, "image/jpeg")
    )
    assert (first.status_code, second.status_code) == (201, 202)
    assert len(await _stored(client, almaty)) == 1


async def test_fifty_copies_at_once_are_stored_once(
    client: httpx.AsyncClient, almaty: Setup
) -> None:
    xml = almaty.instance()
    answers = await asyncio.gather(*(_post(client, almaty.token, xml) for _ in range(50)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] + [202] * 49, codes
    assert len(await _stored(client, almaty)) == 1


async def test_invalid_answers_are_refused_naming_the_question(
    client: httpx.AsyncClient, almaty: Setup
) -> None:
    out_of_range = await _post(client, almaty.token, almaty.instance(times_participated=500))
    assert out_of_range.status_code == 422
    _openrosa_headers(out_of_range)
    message = _message(out_of_range)
    assert message.startswith("Ответ не соответствует анкете")
    assert "«Сколько раз?» (times_participated)" in message

    # Not relevant (participated is false), and a required answer missing.
    not_relevant = await _post(
        client, almaty.token, almaty.instance(participated=False, trust_akimat="")
    )
    assert not_relevant.status_code == 422
    message = _message(not_relevant)
    assert "(times_participated): этот вопрос здесь не задаётся" in message
    assert "(trust_akimat): нужен ответ" in message

    wrong_option = await _post(client, almaty.token, almaty.instance(aware="maybe"))
    assert wrong_option.status_code == 422
    assert "(aware): недопустимый ответ" in _message(wrong_option)
    assert await _stored(client, almaty) == []


async def test_unknown_elements_and_groups_are_refused(
    client: httpx.AsyncClient, almaty: Setup
) -> None:
    xml = almaty.instance().replace(b"</aware>", b"</aware><bribe>yes</bribe>")
    refused = await _post(client, almaty.token, xml)
    assert refused.status_code == 422
    assert "bribe" in _message(refused)
    no_group = almaty.instance().replace(b"<group>ngo</group>", b"<group>aliens</group>")
    refused = await _post(client, almaty.token, no_group)
    assert refused.status_code == 422
    assert "group" in _message(refused)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<data id="x" version="1"><aware>&lol3;</aware></data>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<data id="x" version="1"><suggestions>&secret;</suggestions></data>"""


async def test_hostile_and_malformed_xml_is_refused(
    client: httpx.AsyncClient, almaty: Setup
) -> None:
    for xml in (BILLION_LAUGHS, EXTERNAL_ENTITY):
        refused = await _post(client, almaty.token, xml)
        assert refused.status_code == 400
        assert "DTD" in _message(refused)
    broken = await _post(client, almaty.token, almaty.instance()[:-20])
    assert broken.status_code == 400
    assert "not well-formed" in _message(broken)
    no_id = almaty.instance().replace(b"<instanceID>uuid:", b"<instanceID>")
    assert (await _post(client, almaty.token, no_id)).status_code == 400
    nameless = await client.post(
        f"/openrosa/key/{almaty.token}/submission",
        files={"other": ("x.xml", almaty.instance(), "text/xml")},
    )
    assert nameless.status_code == 400
    assert "xml_submission_file" in _message(nameless)
    assert await _stored(client, almaty) == []


async def test_oversized_submissions_are_refused(client: httpx.AsyncClient, almaty: Setup) -> None:
    padded = almaty.instance().replace(b"</meta>", b"</meta>" + b" " * (1024 * 1024 + 1))
    too_big = await _post(client, almaty.token, padded)
    assert too_big.status_code == 413
    assert "larger than" in _message(too_big)
    whole = await _post(
        client,
        almaty.token,
        almaty.instance(),
        big=("v.mp4", b"0" * (10 * 1024 * 1024), "video/mp4"),
    )
    assert whole.status_code == 413
    _openrosa_headers(whole)
    assert await _stored(client, almaty) == []


async def test_a_revoked_collector_is_refused_at_once(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup
) -> None:
    assert (await _post(client, almaty.token, almaty.instance())).status_code == 201
    collectors = await client.get("/api/v1/collectors", headers=almaty.admin)
    [collector] = collectors.json()["items"]
    revoked = await client.delete(f"/api/v1/collectors/{collector['id']}", headers=almaty.admin)
    assert revoked.status_code == 204
    refused = await _post(client, almaty.token, almaty.instance())
    assert refused.status_code == 401
    assert _message(refused) == "Ключ этого адреса сервера неизвестен или отозван"
    for path in ("formList", f"forms/{almaty.questionnaire.id}.xml"):
        assert (await client.get(f"/openrosa/key/{almaty.token}/{path}")).status_code == 401
    assert (await client.head(f"/openrosa/key/{almaty.token}/submission")).status_code == 401
    assert len(await _stored(client, almaty)) == 1


async def test_a_form_not_bound_to_the_collector_is_not_found(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup
) -> None:
    foreign = await create_questionnaire(app, publish=True)
    other_token = await _collector(client, almaty.admin, foreign.id)
    xform = (await client.get(f"/openrosa/key/{other_token}/forms/{foreign.id}.xml")).content
    xml = instance_xml(
        xform, almaty_answers(), respondent={"group": "ngo"}, instance_id=uuid.uuid4()
    )
    refused = await _post(client, almaty.token, xml)
    assert refused.status_code == 404
    unknown = xml.replace(foreign.slug.encode(), b"no-such-form")
    assert (await _post(client, almaty.token, unknown)).status_code == 404
    assert (await _post(client, other_token, xml)).status_code == 201


async def test_a_closed_questionnaire_takes_no_submissions_but_replays(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup
) -> None:
    xml = almaty.instance()
    assert (await _post(client, almaty.token, xml)).status_code == 201
    coordinator = await headers_for(app, Role.coordinator)
    closed = await client.post(
        f"/api/v1/questionnaires/{almaty.questionnaire.id}/close", headers=coordinator
    )
    assert closed.status_code == 200
    assert (await _post(client, almaty.token, xml)).status_code == 202
    refused = await _post(client, almaty.token, almaty.instance())
    assert refused.status_code == 409
    assert _message(refused) == "Анкета закрыта и больше не принимает ответов"
    listed = await client.get(f"/openrosa/key/{almaty.token}/formList")
    assert b"<xform>" not in listed.content


ROSTER = {
    "slug": "household-roster",
    "title": {"en": "Household roster", "kk": "Үй шаруашылығы"},
    "default_language": "en",
    "respondent_groups": [
        {"key": "household", "category": "citizen", "label": {"en": "Household"}}
    ],
    "questions": [
        {"key": "village", "type": "text", "label": {"en": "Village"}, "required": True},
        {
            "key": "about",
            "type": "group",
            "label": {"en": "About the home"},
            "questions": [
                {"key": "rooms", "type": "integer", "label": {"en": "Rooms"}, "min": 1, "max": 20},
                {"key": "heated", "type": "boolean", "label": {"en": "Heated?"}},
            ],
        },
        {
            "key": "members",
            "type": "repeat",
            "label": {"en": "Members"},
            "min_count": 1,
            "max_count": 4,
            "questions": [
                {"key": "age", "type": "integer", "label": {"en": "Age"}, "required": True},
                {
                    "key": "works",
                    "type": "single_choice",
                    "label": {"en": "Works?"},
                    "options": [
                        {"value": "yes", "label": {"en": "Yes"}},
                        {"value": "no", "label": {"en": "No"}},
                    ],
                    "relevant": {"question": "age", "op": "gte", "value": 16},
                },
            ],
        },
        {"key": "income", "type": "decimal", "label": {"en": "Income"}, "min": 0},
    ],
}


async def test_groups_and_repeats_map_to_the_responses_shape(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(app, definition=ROSTER, publish=True)
    token = await _collector(client, admin, questionnaire.id)
    xform = (await client.get(f"/openrosa/key/{token}/forms/{questionnaire.id}.xml")).content
    answers = {
        "village": "Қарасу",
        "rooms": 3,
        "heated": True,
        "members": [{"age": 41, "works": "yes"}, {"age": 9}],
        "income": 120000.5,
    }
    # One group only: the form fills it in itself (a calculate), as the client sends it.
    xml = instance_xml(
        xform,
        answers,
        respondent={"group": "household"},
        instance_id=uuid.uuid4(),
        counts={"members": 2},
    )
    created = await _post(client, token, xml)
    assert created.status_code == 201, created.text
    assert _message(created) == "Response received"
    [stored] = (
        await client.get(f"/api/v1/questionnaires/{questionnaire.id}/responses", headers=admin)
    ).json()["items"]
    assert stored["answers"] == answers
    too_many = {**answers, "members": [{"age": 30}] * 5}
    refused = await _post(
        client,
        token,
        instance_xml(xform, too_many, respondent={"group": "household"}, instance_id=uuid.uuid4()),
    )
    assert refused.status_code == 422
    assert "(members): too many: at most 4 instances" in _message(refused)


# --- a real client ----------------------------------------------------------------------------


async def test_odk_xforms_engine_fills_and_submits_a_form(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    """ODK's XForms engine (the engine of ODK Web Forms) under Node reads the form list, loads
    the form from its download URL, is filled, and POSTs the payload it makes, twice."""
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(app, publish=True)
    token = await _collector(client, admin, questionnaire.id)
    filled = {
        "group": "lawyer",
        "gender": "male",
        "age_band": "45-54",
        "aware": "partly",
        "channels_known": ["hearings", "reception"],
        "participated": "true",
        "times_participated": "4",
        "info_sources": ["tv", "press"],
        "trust_akimat": 2,
        "influence": 1,
        "information_access": "easy",
        "last_hearing": "2026-03-02",
        "suggestions": "Публиковать протоколы",
    }
    with running_server(database_url, tmp_path / "server.log", log_level="INFO") as server:
        seen = odk_engine_fills(
            f"{server.base}/openrosa/key/{token}", questionnaire.slug, filled, "ru"
        )
        # Under uvicorn too, one Date header: the app sends it, `kenes serve` turns uvicorn's off.
        listed = httpx.get(f"{server.base}/openrosa/key/{token}/formList")
        log = server.log.read_text(encoding="utf-8")
    assert len(listed.headers.get_list("date")) == 1
    assert listed.headers["x-openrosa-version"] == "1.0"
    print("xforms engine:", json.dumps({k: seen[k] for k in ("payload_status", "submissions")}))  # noqa: T201
    assert seen["payload_status"] == "ready" and seen["violations"] == []
    assert [s["status"] for s in seen["submissions"]] == [201, 202]
    assert seen["openrosa_version"] == "1.0"
    instance = parse_xml(seen["instance"])
    instance_id = (instance.findtext("meta/instanceID") or "").removeprefix("uuid:")
    stored = await client.get(f"/api/v1/responses/{instance_id}", headers=admin)
    assert stored.status_code == 200
    body = stored.json()
    assert body["respondent"]["group"] == "lawyer"
    assert body["respondent"]["gender"] == "male"
    assert body["respondent"]["age_band"] == "45-54"
    assert body["answers"] == {
        "aware": "partly",
        "channels_known": ["hearings", "reception"],
        "participated": True,
        "times_participated": 4,
        "info_sources": ["tv", "press"],
        "trust_akimat": 2,
        "influence": 1,
        "information_access": "easy",
        "last_hearing": "2026-03-02",
        "suggestions": "Публиковать протоколы",
    }
    assert body["started_at"] is not None and body["submitted_at"] is not None
    # The token is a credential: the access log shows the path with it masked.
    assert token not in log
    submissions = [
        json.loads(line)
        for line in log.splitlines()
        if '"/openrosa/key/***/submission"' in line and '"POST"' in line
    ]
    assert [line["status"] for line in submissions] == [201, 202]
    assert all(line["caller"].startswith("collector:") for line in submissions)


def _text_question(key: str, relevant: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        "type": "text",
        "label": {"en": key},
        "required": True,
        "relevant": relevant,
    }


OPTIONS = [{"value": v, "label": {"en": v.upper()}} for v in ("a", "b", "c")]
CONDITIONS: dict[str, Any] = {
    "slug": "conditions",
    "title": {"en": "Conditions"},
    "default_language": "en",
    "respondent_groups": [{"key": "all", "category": "citizen", "label": {"en": "All"}}],
    "questions": [
        {"key": "n", "type": "integer", "label": {"en": "n"}, "required": True},
        {"key": "d", "type": "date", "label": {"en": "d"}, "required": True},
        {"key": "c", "type": "single_choice", "label": {"en": "c"}, "options": OPTIONS},
        {"key": "m", "type": "multiple_choice", "label": {"en": "m"}, "options": OPTIONS},
        {"key": "b", "type": "boolean", "label": {"en": "b"}, "required": True},
        {"key": "t", "type": "text", "label": {"en": "t"}},
        _text_question("q_eq", {"question": "c", "op": "eq", "value": "a"}),
        _text_question("q_ne", {"question": "c", "op": "ne", "value": "b"}),
        _text_question("q_in", {"question": "c", "op": "in", "value": ["a", "c"]}),
        _text_question("q_not_in", {"question": "c", "op": "not_in", "value": ["a"]}),
        _text_question("q_gt", {"question": "n", "op": "gt", "value": 5}),
        _text_question("q_lte", {"question": "d", "op": "lte", "value": "2025-01-01"}),
        _text_question("q_answered", {"question": "t", "op": "answered"}),
        _text_question("q_contains", {"question": "m", "op": "contains", "value": "b"}),
        _text_question("q_false", {"question": "b", "op": "eq", "value": False}),
        _text_question(
            "q_nested",
            {
                "any": [
                    {"question": "n", "op": "lt", "value": 0},
                    {"not": {"question": "b", "op": "eq", "value": True}},
                ]
            },
        ),
    ],
}
DEPENDENT = [q["key"] for q in CONDITIONS["questions"] if q["key"].startswith("q_")]


async def test_the_engine_and_kenes_agree_on_every_kind_of_condition(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    """Relevance as ODK's engine evaluates the XForm's expressions and as Kenes evaluates the
    JSON conditions: the engine leaves out the questions it finds not relevant and requires the
    others; Kenes stores the response only if it finds the same (a question answered that it
    finds not relevant, or one missing that it requires, is 422). Two sets of answers flip every
    condition."""
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(app, definition=CONDITIONS, publish=True)
    token = await _collector(client, admin, questionnaire.id)
    every = dict.fromkeys(DEPENDENT, "x")
    answer_sets = [
        {"n": "7", "d": "2024-12-31", "c": "a", "m": ["b"], "b": "false", "t": "hi", **every},
        {"n": "3", "d": "2025-06-01", "c": "b", "m": ["a"], "b": "true", **every},
    ]
    relevant_seen = []
    with running_server(database_url, tmp_path / "server.log") as server:
        for answers in answer_sets:
            seen = odk_engine_fills(f"{server.base}/openrosa/key/{token}", "conditions", answers)
            assert [s["status"] for s in seen["submissions"]] == [201, 202], seen["submissions"]
            instance = parse_xml(seen["instance"])
            relevant_seen.append(sorted(k for k in DEPENDENT if instance.find(k) is not None))
    # Worked out by hand from the conditions: the first set makes these relevant...
    assert relevant_seen[0] == sorted(
        ["q_eq", "q_ne", "q_in", "q_gt", "q_lte", "q_answered", "q_contains", "q_false", "q_nested"]
    )
    # ...and the second these (c = b: not eq a, not ne b, not in [a, c], but not_in [a]).
    assert relevant_seen[1] == ["q_not_in"]


# --- the question model: expressions, rules, notes, calculations, counted repeats -------------

RULES: dict[str, Any] = {
    "slug": "household-rules",
    "title": {"en": "Household rules", "ru": "Правила"},
    "default_language": "en",
    "respondent_groups": [{"key": "all", "category": "citizen", "label": {"en": "All"}}],
    "questions": [
        {"key": "Intro.note", "type": "note", "label": {"en": "Adults only, please"}},
        {
            "key": "Age",
            "type": "integer",
            "label": {"en": "Your age"},
            "required": True,
            "max": 120,
            "constraint": ". >= 18",
            "constraint_message": {"en": "Adults only", "ru": "Только взрослые"},
        },
        {
            "key": "kids",
            "type": "integer",
            "label": {"en": "Children"},
            "required": "${Age} > 20",
            "required_message": {"en": "Say how many children"},
            "min": 0,
            "max": 5,
        },
        {"key": "why", "type": "text", "label": {"en": "Why none?"}, "relevant": "${kids} = 0"},
        {"key": "double.age", "type": "calculate", "calculation": "${Age} * 2"},
        {
            "key": "kid",
            "type": "repeat",
            "label": {"en": "Child"},
            "count": "${kids}",
            "questions": [
                {
                    "key": "kid.age",
                    "type": "integer",
                    "label": {"en": "Child's age"},
                    "required": True,
                    "constraint": ". < ${Age}",
                },
            ],
        },
        {
            "key": "mood",
            "type": "scale",
            "label": {"en": "Mood"},
            "min": 0,
            "max": 10,
            "step": 5,
            "default": 5,
            "help": {"en": "0 is worst"},
            "guidance_hint": {"en": "Read the ends out"},
            "appearance": "no-ticks",
        },
        {"key": "fixed", "type": "text", "label": {"en": "Fixed"}, "read_only": True},
    ],
}


def _binds(xform: bytes) -> dict[str, dict[str, str]]:
    """Each bind's attributes by its node's path under the root (`jr:` names as `jr:x`)."""
    document = parse_xml(xform)
    binds = {}
    for bind in document.iter(f"{{{XFORMS}}}bind"):
        path = bind.attrib["nodeset"].removeprefix("/data/")
        binds[path] = {
            name.replace(f"{{{JR}}}", "jr:"): " ".join(value.split())
            for name, value in bind.attrib.items()
        }
    return binds


def _itext(xform: bytes, reference: str, language: str, form: str | None = None) -> str:
    """The text a `jr:itext('<id>')` reference names in one language (its `form`: guidance)."""
    text_id = reference.removeprefix("jr:itext('").removesuffix("')")
    document = parse_xml(xform)
    for translation in document.iter(f"{{{XFORMS}}}translation"):
        if f"({language})" in translation.attrib["lang"]:
            for text in translation.iter(f"{{{XFORMS}}}text"):
                if text.attrib["id"] == text_id:
                    for value in text.iter(f"{{{XFORMS}}}value"):
                        if value.attrib.get("form") == form:
                            return "".join(value.itertext())
    raise AssertionError(f"no text {text_id} in {language}")


async def test_expressions_and_rules_are_served_and_enforced(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(app, definition=RULES, publish=True)
    token = await _collector(client, admin, questionnaire.id)
    xform = (await client.get(f"/openrosa/key/{token}/forms/{questionnaire.id}.xml")).content
    binds = _binds(xform)
    # The user's constraint and the type's bound both hold; the user's message is the one.
    age = binds["Age"]
    assert age["constraint"] == "(. <= 120) and (. >= 18)"
    assert age["required"] == "true()"
    assert _itext(xform, age["jr:constraintMsg"], "en") == "Adults only"
    assert _itext(xform, age["jr:constraintMsg"], "ru") == "Только взрослые"
    kids = binds["kids"]
    assert kids["required"] == "/data/Age > 20"
    assert _itext(xform, kids["jr:requiredMsg"], "en") == "Say how many children"
    assert binds["why"]["relevant"] == "/data/kids = 0"
    assert binds["double.age"]["calculate"] == "/data/Age * 2"
    # The repeat is made count times: jr:count names a calculate of the count expression.
    assert binds["_count_kid"]["calculate"] == "/data/kids"
    repeat = next(parse_xml(xform).iter(f"{{{XFORMS}}}repeat"))
    assert " ".join(repeat.attrib[f"{{{JR}}}count"].split()) == "/data/_count_kid"
    assert binds["kid/kid.age"]["constraint"] == ". < /data/Age"
    assert binds["Intro.note"]["readonly"] == "true()"
    assert binds["fixed"]["readonly"] == "true()"
    body = parse_xml(xform).find("{http://www.w3.org/1999/xhtml}body")
    assert body is not None
    [mood] = [node for node in body.iter() if node.attrib.get("ref") == "/data/mood"]
    assert (_local(mood.tag), mood.attrib["step"], mood.attrib["appearance"]) == (
        "range",
        "5",
        "no-ticks",
    )
    hint = mood.find(f"{{{XFORMS}}}hint")
    assert hint is not None
    assert _itext(xform, hint.attrib["ref"], "en") == "0 is worst"
    assert _itext(xform, hint.attrib["ref"], "en", "guidance") == "Read the ends out"
    instance = parse_xml(xform).find(f".//{{{XFORMS}}}instance/{{{XFORMS}}}data")
    assert instance is not None
    assert instance.findtext(f"{{{XFORMS}}}mood") == "5"  # the default

    def submission(answers: dict[str, Any], kids: int = 0) -> bytes:
        return instance_xml(
            xform,
            {"Intro.note": "a client's text in a note", **answers},
            respondent={"group": "all"},
            instance_id=uuid.uuid4(),
            counts={"kid": kids},
        )

    young = await _post(client, token, submission({"Age": 16, "kids": 0}))
    assert young.status_code == 422, young.text
    assert "«Your age» (Age): Adults only" in _message(young)
    silent = await _post(client, token, submission({"Age": 30}))
    assert silent.status_code == 422, silent.text
    assert "Say how many children" in _message(silent)
    older_kid = await _post(
        client, token, submission({"Age": 30, "kids": 1, "kid": [{"kid.age": 31}]}, kids=1)
    )
    assert older_kid.status_code == 422, older_kid.text
    assert "«Child's age» (kid/0/kid.age): the answer breaks the question's rule" in _message(
        older_kid
    )
    too_few = await _post(
        client, token, submission({"Age": 30, "kids": 2, "kid": [{"kid.age": 3}]}, kids=1)
    )
    assert too_few.status_code == 422, too_few.text
    assert "«Child» (kid): expected 2 instances (its count)" in _message(too_few)
    good = {"Age": 30, "kids": 2, "kid": [{"kid.age": 3}, {"kid.age": 7}], "mood": 5}
    # The client's calculation is wrong on purpose: the server computes its own.
    created = await _post(client, token, submission({**good, "double.age": "999"}, kids=2))
    assert created.status_code == 201, created.text
    [stored] = (
        await client.get(f"/api/v1/questionnaires/{questionnaire.id}/responses", headers=admin)
    ).json()["items"]
    # 30 * 2, kept as text (a calculation has no type); the note is no answer.
    assert stored["answers"] == {**good, "double.age": "60"}


# The same form as an XLSForm workbook, as its author writes it.
RULES_HEADER = [
    "type", "name", "label::English (en)", "hint::English (en)", "guidance_hint::English (en)",
    "required", "required_message::English (en)", "relevant", "constraint",
    "constraint_message::English (en)", "calculation", "repeat_count", "parameters", "default",
    "appearance", "read_only",
]  # fmt: skip
RULES_ROWS: list[dict[str, str]] = [
    {"type": "note", "name": "Intro.note", "label": "Adults only, please"},
    {
        "type": "integer",
        "name": "Age",
        "label": "Your age",
        "required": "yes",
        "constraint": ". >= 18 and . <= 120",
        "constraint_message": "Adults only",
    },
    {
        "type": "integer",
        "name": "kids",
        "label": "Children",
        "required": "${Age} > 20",
        "required_message": "Say how many children",
        "constraint": ". >= 0 and . <= 5",
        "constraint_message": "At most 5",
    },
    {"type": "text", "name": "why", "label": "Why none?", "relevant": "${kids} = 0"},
    {"type": "calculate", "name": "double.age", "calculation": "${Age} * 2"},
    {"type": "begin_repeat", "name": "kid", "label": "Child", "repeat_count": "${kids}"},
    {
        "type": "integer",
        "name": "kid.age",
        "label": "Child's age",
        "required": "yes",
        "constraint": ". < ${Age}",
        "constraint_message": "Younger than you",
    },
    {"type": "end_repeat"},
    {
        "type": "range",
        "name": "mood",
        "label": "Mood",
        "hint": "0 is worst",
        "guidance_hint": "Read the ends out",
        "parameters": "start=0 end=10 step=5",
        "default": "5",
        "appearance": "no-ticks",
    },
    {"type": "text", "name": "fixed", "label": "Fixed", "read_only": "yes"},
]


def rules_workbook() -> bytes:
    book = Workbook()
    survey = book.active
    assert survey is not None
    survey.title = "survey"
    survey.append(RULES_HEADER)
    short = [column.split("::")[0] for column in RULES_HEADER]
    for row in RULES_ROWS:
        survey.append([row.get(column) for column in short])
    book.create_sheet("choices").append(["list_name", "name", "label::English (en)"])
    settings = book.create_sheet("settings")
    settings.append(["form_id", "form_title", "default_language"])
    settings.append(["household-rules", "Household rules", "English (en)"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def test_an_imported_xlsform_round_trips_through_odks_engine(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    """An XLSForm with expressions, rules, a note, a calculation and a counted repeat, imported,
    published and served: ODK's engine loads it from Kenes, computes the calculation and the
    repeat's count itself, enforces the constraints (a violating filling is not ready, and
    Kenes refuses it too, with the author's message) and submits; Kenes stores the response
    with its own calculation."""
    coordinator = await headers_for(app, Role.coordinator)
    admin = await headers_for(app, Role.admin)
    imported = await client.post(
        "/api/v1/questionnaires/import",
        files={"file": ("household-rules.xlsx", rules_workbook(), "application/octet-stream")},
        headers=coordinator,
    )
    assert imported.status_code == 201, imported.text
    questionnaire_id = imported.json()["id"]
    # The draft's XForm already builds (pyxform accepts what the import made).
    draft = await client.get(f"/api/v1/questionnaires/{questionnaire_id}/xform", headers=admin)
    assert draft.status_code == 200, draft.text
    binds = _binds(draft.content)
    assert binds["Age"]["constraint"] == ". >= 18 and . <= 120"
    assert binds["kids"]["required"] == "/data/Age > 20"
    assert binds["double.age"]["calculate"] == "/data/Age * 2"
    assert binds["_count_kid"]["calculate"] == "/data/kids"
    assert binds["Intro.note"]["readonly"] == "true()"
    published = await client.post(
        f"/api/v1/questionnaires/{questionnaire_id}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    token = await _collector(client, admin, uuid.UUID(questionnaire_id))
    kids = [{"kid.age": "3"}, {"kid.age": "7"}]
    fillings = [
        {"Age": "16", "kids": "0", "why": "none"},  # breaks Age's constraint
        {"Age": "30", "kids": "2", "kid": [{"kid.age": "3"}, {"kid.age": "31"}]},  # kid.age's
        {"Age": "30", "kids": "2", "kid": kids, "mood": "10"},
    ]
    seen = []
    with running_server(database_url, tmp_path / "server.log") as server:
        for filling in fillings:
            seen.append(
                odk_engine_fills(f"{server.base}/openrosa/key/{token}", "household-rules", filling)
            )
    print("xforms engine:", json.dumps([(s["payload_status"], s["violations"]) for s in seen]))  # noqa: T201
    young, old_kid, good = seen
    # The engine itself finds the broken constraints...
    assert young["payload_status"] != "ready" and young["violations"] == ["/data/Age"]
    assert old_kid["payload_status"] != "ready"
    assert old_kid["violations"] == ["/data/kid[2]/kid.age"]
    # ...and Kenes, sent the same, refuses them with the author's messages.
    assert [s["status"] for s in young["submissions"]] == [422, 422]
    assert "«Your age» (Age): Adults only" in young["submissions"][0]["body"]
    assert [s["status"] for s in old_kid["submissions"]] == [422, 422]
    assert "(kid/1/kid.age): Younger than you" in old_kid["submissions"][0]["body"]
    assert good["payload_status"] == "ready" and good["violations"] == []
    assert [s["status"] for s in good["submissions"]] == [201, 202]
    instance = parse_xml(good["instance"])
    # What the engine computed: 30 * 2, and two instances from the count.
    assert instance.findtext("double.age") == "60"
    assert [kid.findtext("kid.age") for kid in instance.findall("kid")] == ["3", "7"]
    instance_id = (instance.findtext("meta/instanceID") or "").removeprefix("uuid:")
    stored = await client.get(f"/api/v1/responses/{instance_id}", headers=admin)
    assert stored.status_code == 200, stored.text
    assert stored.json()["answers"] == {
        "Age": 30,
        "kids": 2,
        "kid": [{"kid.age": 3}, {"kid.age": 7}],
        "mood": 10,
        "double.age": "60",
    }


TAKEN_NAMES: dict[str, Any] = {
    "slug": "taken-names",
    "title": {"en": "Taken names"},
    "default_language": "en",
    "respondent_groups": [{"key": "all", "category": "citizen", "label": {"en": "All"}}],
    "questions": [
        {"key": "_start", "type": "text", "label": {"en": "How did it start?"}},
        {"key": "_end", "type": "integer", "label": {"en": "Last page"}},
        {"key": "_count_kids", "type": "integer", "label": {"en": "Counted by you"}},
        {"key": "_boolean", "type": "single_choice", "label": {"en": "Pick"}, "options": OPTIONS},
        {"key": "ok", "type": "boolean", "label": {"en": "OK?"}},
        {
            "key": "kids",
            "type": "repeat",
            "label": {"en": "Kids"},
            "min_count": 1,
            "max_count": 3,
            "questions": [{"key": "name", "type": "text", "label": {"en": "Name"}}],
        },
    ],
}


async def test_keys_taking_the_forms_own_names_are_questions_still(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Keys may start with `_`: a question named like an element the form adds keeps its name,
    the form's element gets a numbered one, and both are read back as what they are."""
    admin = await headers_for(app, Role.admin)
    questionnaire = await create_questionnaire(app, definition=TAKEN_NAMES, publish=True)
    meta = copy.deepcopy(TAKEN_NAMES) | {"slug": "meta-key"}
    meta["questions"] = [{"key": "meta", "type": "text", "label": {"en": "Meta"}}]
    unwritable = await create_questionnaire(app, definition=meta, publish=True)
    token = await _collector(client, admin, questionnaire.id, unwritable.id)
    xform = (await client.get(f"/openrosa/key/{token}/forms/{questionnaire.id}.xml")).content
    binds = _binds(xform)
    assert binds["_start_2"]["jr:preload"] == "timestamp"
    assert binds["_end_2"]["jr:preloadParams"] == "end"
    assert binds["_start"]["type"] == "string" and binds["_end"]["type"] == "int"
    assert binds["_count_kids_2"]["constraint"] == ". >= 1 and . <= 3"
    answers = {
        "_start": "slowly",
        "_end": 4,
        "_count_kids": 9,
        "_boolean": "c",
        "ok": False,
        "kids": [{"name": "Aru"}],
    }
    # The choice list named by the key does not take the place of the yes/no list.
    body = parse_xml(xform).find("{http://www.w3.org/1999/xhtml}body")
    assert body is not None
    itemsets = {
        node.attrib["ref"]: node.find(f"{{{XFORMS}}}itemset").attrib["nodeset"]  # type: ignore[union-attr]
        for node in body.iter(f"{{{XFORMS}}}select1")
    }
    assert itemsets["/data/_boolean"] != itemsets["/data/ok"]
    xml = instance_xml(
        xform,
        {**answers, "_start_2": "2026-12-01T10:00:00.000+05:00", "_count_kids_2": 1},
        respondent={"group": "all"},
        instance_id=uuid.uuid4(),
        times=None,
    )
    created = await _post(client, token, xml)
    assert created.status_code == 201, created.text
    [stored] = await _stored(client, Setup(questionnaire, token, admin, xform))
    assert stored["answers"] == answers
    assert stored["started_at"].startswith("2026-12-01T05:00:00")
    # A key pyxform keeps for itself (`meta`): that form is left out of the list and its
    # download is refused, saying why; the others are served as ever.
    listed = parse_xml((await client.get(f"/openrosa/key/{token}/formList")).content)
    assert [node.text for node in listed.iter(f"{{{FORM_LIST}}}formID")] == ["taken-names"]
    refused = await client.get(f"/openrosa/key/{token}/forms/{unwritable.id}.xml")
    assert refused.status_code == 422
    assert "The name 'meta' is reserved for form metadata" in _message(refused)


# --- the territory as a cascade over form media -----------------------------------------------

MANIFEST_NS = "http://openrosa.org/xforms/xformsManifest"
TERRITORY_COLUMNS = {"kk": 3, "ru": 4, "en": 5}  # TREE's name columns


def _tree_rows() -> list[list[str]]:
    return [line.split(",") for line in TREE.splitlines()[1:]]


async def _media(client: httpx.AsyncClient, setup: Setup) -> dict[str, tuple[str, str]]:
    """The manifest's files: name -> (hash, download URL)."""
    manifest = await client.get(
        f"/openrosa/key/{setup.token}/forms/{setup.questionnaire.id}/manifest"
    )
    assert manifest.status_code == 200, manifest.text
    _openrosa_headers(manifest)
    root = parse_xml(manifest.content)
    assert root.tag == f"{{{MANIFEST_NS}}}manifest"
    return {
        node.findtext(f"{{{MANIFEST_NS}}}filename") or "": (
            node.findtext(f"{{{MANIFEST_NS}}}hash") or "",
            node.findtext(f"{{{MANIFEST_NS}}}downloadUrl") or "",
        )
        for node in root.findall(f"{{{MANIFEST_NS}}}mediaFile")
    }


async def _listed_hash(client: httpx.AsyncClient, setup: Setup) -> str:
    listed = await client.get(f"/openrosa/key/{setup.token}/formList")
    return parse_xml(listed.content).findtext(f".//{{{FORM_LIST}}}hash") or ""


async def _download_territories(client: httpx.AsyncClient, setup: Setup) -> tuple[str, bytes]:
    media = await _media(client, setup)
    assert set(media) == {"territories.csv"}
    listed_hash, url = media["territories.csv"]
    assert url == (
        f"{client.base_url}/openrosa/key/{setup.token}/forms/{setup.questionnaire.id}"
        "/media/territories.csv"
    )
    downloaded = await client.get(url)
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"].startswith("text/csv")
    assert listed_hash == "md5:" + hashlib.md5(downloaded.content).hexdigest()  # noqa: S324
    return listed_hash, downloaded.content


def _respondent_instance(setup: Setup, xform: bytes, **respondent: str) -> tuple[uuid.UUID, bytes]:
    instance_id = uuid.uuid4()
    xml = instance_xml(
        xform,
        almaty_answers(),
        respondent={"group": "ngo", **respondent},
        instance_id=instance_id,
    )
    return instance_id, xml


async def test_territories_are_asked_as_a_cascade_over_form_media(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup
) -> None:
    # No territories: the code is typed in, and the form has no media.
    assert await _media(client, almaty) == {}
    typed = parse_xml(almaty.xform)
    assert typed.find(f".//{{{XFORMS}}}input[@ref='/data/_respondent/territory_code']") is not None
    assert b"territories.csv" not in almaty.xform

    await import_tree(client, await headers_for(app, Role.coordinator))
    _, content = await _download_territories(client, almaty)
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    language = TERRITORY_COLUMNS[almaty.questionnaire.default_language]
    assert sorted((r["name"], r["label"], r["level"], r["parent"]) for r in rows) == sorted(
        (line[0], line[language], line[2], line[1]) for line in _tree_rows()
    )

    xform = (
        await client.get(f"/openrosa/key/{almaty.token}/forms/{almaty.questionnaire.id}.xml")
    ).content
    document = parse_xml(xform)
    assert document.find(f".//{{{XFORMS}}}input[@ref='/data/_respondent/territory_code']") is None
    [source] = [
        node.get("src")
        for node in document.iter(f"{{{XFORMS}}}instance")
        if node.get("id") == "territories"
    ]
    assert source == "jr://file-csv/territories.csv"
    itemsets = {
        select.get("ref"): " ".join(
            (select.find(f"{{{XFORMS}}}itemset").get("nodeset") or "").split()
        )  # type: ignore[union-attr]
        for select in document.iter(f"{{{XFORMS}}}select1")
        if (select.get("ref") or "").startswith("/data/_respondent/territory_")
    }
    assert itemsets == {
        "/data/_respondent/territory_1": "instance('territories')/root/item[parent='']",
        **{
            f"/data/_respondent/territory_{depth}": (
                f"instance('territories')/root/item[parent= /data/_respondent/territory_{depth - 1} ]"
            )
            for depth in range(2, 6)
        },
    }
    binds = _binds(xform)
    for depth in range(1, 6):
        assert "required" not in binds[f"_respondent/territory_{depth}"]  # stop at any depth
    assert binds["_respondent/territory_2"]["relevant"] == (
        "/data/_respondent/territory_1 != '' and count(instance('territories')/root/item[parent="
        " /data/_respondent/territory_1 ]) > 0"
    )

    # region -> district -> rural district -> settlement: the settlement is the territory.
    deep_id, deep = _respondent_instance(
        almaty,
        xform,
        territory_1="11",
        territory_2="1120",
        territory_3="112010",
        territory_4="112010002",
    )
    # A respondent who stops at the district.
    shallow_id, shallow = _respondent_instance(almaty, xform, territory_1="11", territory_2="1130")
    for xml in (deep, shallow):
        assert (await _post(client, almaty.token, xml)).status_code == 201
    for instance_id, code in ((deep_id, "112010002"), (shallow_id, "1130")):
        stored = await client.get(f"/api/v1/responses/{instance_id}", headers=almaty.admin)
        assert stored.json()["respondent"]["territory_code"] == code

    _, unknown = _respondent_instance(almaty, xform, territory_1="11", territory_2="1199")
    refused = await _post(client, almaty.token, unknown)
    assert refused.status_code == 422
    assert "1199" in _message(refused)
    assert len(await _stored(client, almaty)) == 2


async def test_a_new_territory_changes_the_media_not_the_xform(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup
) -> None:
    coordinator = await headers_for(app, Role.coordinator)
    await import_tree(client, coordinator)
    form_url = f"/openrosa/key/{almaty.token}/forms/{almaty.questionnaire.id}.xml"
    xform_before = (await client.get(form_url)).content
    listed_before = await _listed_hash(client, almaty)
    assert listed_before == "md5:" + hashlib.md5(xform_before).hexdigest()  # noqa: S324
    media_before, _ = await _download_territories(client, almaty)

    created = await client.post(
        "/api/v1/territories",
        json={
            "code": "112010003",
            "name": {"kk": "Үшінші ауыл", "ru": "Третье село", "en": "Third Village"},
            "level": "settlement",
            "parent_code": "112010",
        },
        headers=coordinator,
    )
    assert created.status_code == 201, created.text
    media_after, content = await _download_territories(client, almaty)
    assert media_after != media_before
    assert "112010003,Третье село,settlement,112010" in content.decode().splitlines()
    assert (await client.get(form_url)).content == xform_before
    assert await _listed_hash(client, almaty) == listed_before


async def test_form_media_are_the_bound_collectors_only(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup
) -> None:
    await import_tree(client, await headers_for(app, Role.coordinator))
    path = f"forms/{almaty.questionnaire.id}/media/territories.csv"
    assert (await client.get(f"/openrosa/key/{almaty.token}/{path}")).status_code == 200
    other = await create_questionnaire(app, publish=True)
    other_token = await _collector(client, almaty.admin, other.id)
    for refused_path in (path, f"forms/{almaty.questionnaire.id}/manifest"):
        refused = await client.get(f"/openrosa/key/{other_token}/{refused_path}")
        assert refused.status_code == 404
    missing = await client.get(
        f"/openrosa/key/{almaty.token}/forms/{almaty.questionnaire.id}/media/x.csv"
    )
    assert missing.status_code == 404
    # A staff token is no collector token: no OpenRosa server there.
    staff = (await headers_for(app, Role.admin))["Authorization"].removeprefix("Bearer ")
    assert (await client.get(f"/openrosa/key/{staff}/{path}")).status_code == 404
    collectors = await client.get("/api/v1/collectors", headers=almaty.admin)
    mine = [
        c
        for c in collectors.json()["items"]
        if str(almaty.questionnaire.id) in c["questionnaire_ids"]
    ]
    assert len(mine) == 1
    assert (
        await client.delete(f"/api/v1/collectors/{mine[0]['id']}", headers=almaty.admin)
    ).status_code == 204
    revoked = await client.get(f"/openrosa/key/{almaty.token}/{path}")
    assert revoked.status_code == 401


async def test_odk_xforms_engine_answers_the_territory_cascade(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    """The engine reads the manifest, loads territories.csv through fetchFormAttachment, picks
    region -> district -> rural district -> settlement, and the settlement is stored."""
    admin = await headers_for(app, Role.admin)
    await import_tree(client, await headers_for(app, Role.coordinator))
    questionnaire = await create_questionnaire(app, publish=True)
    token = await _collector(client, admin, questionnaire.id)
    filled = {
        "group": "lawyer",
        "territory_1": "11",
        "territory_2": "1120",
        "territory_3": "112010",
        "territory_4": "112010001",
        "aware": "partly",
        "channels_known": ["hearings"],
        "participated": "false",
        "info_sources": ["tv"],
        "trust_akimat": 2,
        "influence": 1,
        "information_access": "easy",
    }
    with running_server(database_url, tmp_path / "server.log") as server:
        seen = odk_engine_fills(
            f"{server.base}/openrosa/key/{token}", questionnaire.slug, filled, "ru"
        )
    assert seen["attachments"] == [{"name": "territories.csv", "status": 200}]
    assert seen["payload_status"] == "ready" and seen["violations"] == []
    assert [s["status"] for s in seen["submissions"]] == [201, 202]
    instance = parse_xml(seen["instance"])
    assert instance.findtext("_respondent/territory_4") == "112010001"
    assert instance.findtext("_respondent/territory_5") in (None, "")
    instance_id = (instance.findtext("meta/instanceID") or "").removeprefix("uuid:")
    stored = await client.get(f"/api/v1/responses/{instance_id}", headers=admin)
    assert stored.status_code == 200
    assert stored.json()["respondent"]["territory_code"] == "112010001"


async def test_a_table_past_the_bound_is_typed_in(
    app: FastAPI, client: httpx.AsyncClient, almaty: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_TERRITORIES (20,000; lowered here to below the tree's 8 rows) no list is
    offered: no media, and the code is typed in."""
    monkeypatch.setattr(media, "MAX_TERRITORIES", len(_tree_rows()) - 1)
    await import_tree(client, await headers_for(app, Role.coordinator))
    assert await _media(client, almaty) == {}
    path = f"/openrosa/key/{almaty.token}/forms/{almaty.questionnaire.id}"
    assert (await client.get(f"{path}/media/territories.csv")).status_code == 404
    xform = (await client.get(f"{path}.xml")).content
    assert xform == almaty.xform
    _, xml = _respondent_instance(almaty, xform, territory_code="1120")
    assert (await _post(client, almaty.token, xml)).status_code == 201
    [stored] = await _stored(client, almaty)
    assert stored["respondent"]["territory_code"] == "1120"
