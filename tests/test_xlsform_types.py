"""Every XLSForm question type through the API: a settlement infrastructure visit written as a
field team writes it (two languages, a region -> district -> settlement cascade by choice_filter,
geodata, time, barcode, acknowledge, rank, photos and other media, every metadata type, media
columns, instance_name), imported, answered through the API and through OpenRosa (values as ODK
writes them), and exported back: the same definition, and the same form for pyxform.
(Written for these tests.)"""

import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI
from pyxform.validators.odk_validate import check_xform

from app.models.auth import Role
from tests.clients import odk_engine_fills
from tests.factories import headers_for
from tests.servers import running_server
from tests.test_openrosa import _collector, _post, instance_xml
from tests.test_xlsform import (
    definition_of,
    export,
    pyxform_json,
    pyxform_xform,
    structure,
    upload,
    workbook,
)

HEADER = [
    "type", "name", "label::English (en)", "label::Russian (ru)", "hint::English (en)",
    "required", "relevant", "constraint", "constraint_message::English (en)", "choice_filter",
    "appearance", "read_only", "media::image::English (en)", "image::Russian (ru)",
]  # fmt: skip


def row(kind: str, name: str | None, en: str | None = None, ru: str | None = None,
        **cells: str) -> list[Any]:  # fmt: skip
    values = {"type": kind, "name": name, "label::English (en)": en, "label::Russian (ru)": ru}
    names = {"hint": "hint::English (en)", "message": "constraint_message::English (en)",
             "image_en": "media::image::English (en)", "image_ru": "image::Russian (ru)"}  # fmt: skip
    values |= {names.get(cell, cell): value for cell, value in cells.items()}
    return [values.get(column) for column in HEADER]


VISIT_SURVEY = [
    HEADER,
    row("start", "start"),
    row("end", "end"),
    row("today", "today"),
    row("deviceid", "deviceid"),
    row("imei", "imei"),  # pyxform's old name of deviceid
    row("phonenumber", "phonenumber"),
    row("username", "username"),
    row("email", "email"),
    row("simserial", "simserial"),
    row("subscriberid", "subscriberid"),
    row("audit", None),
    row("note", "intro", "Walk the settlement with the akim's office", "Обход с акиматом",
        image_en="route.png", image_ru="route_ru.png"),
    row("select_one region", "region", "Region", "Область", required="yes"),
    row("select_one district", "district", "District", "Район", required="yes",
        choice_filter="region = ${region}"),
    row("select_one settlement", "settlement", "Settlement", "Населённый пункт",
        choice_filter="district = ${district}"),
    row("time", "visit_time", "Time of the visit", "Время визита"),
    row("datetime", "water_cut", "Last water cut", "Последнее отключение воды"),
    row("gps", "well", "The well", "Колодец", hint="Stand next to it", appearance="maps"),
    row("geotrace", "pipe", "Water pipe", "Водопровод"),
    row("geoshape", "school_plot", "School plot", "Участок школы"),
    row("barcode", "meter", "Water meter", "Счётчик", read_only="${region} = ''"),
    row("trigger", "consent", "The akim agrees to photos", "Аким согласен на фото",
        required="yes"),
    row("rank needs", "priorities", "Rank the needs", "Ранжируйте нужды"),
    row("photo", "facade", "School facade", "Фасад школы", relevant="${consent} = 'OK'"),
    row("audio", "interview", "Interview", "Интервью"),
    row("video", "walk", "Walk along the pipe", "Проход вдоль трубы"),
    row("file", "report", "Akimat report", "Отчёт акимата"),
]  # fmt: skip
VISIT_CHOICES = [
    ["list_name", "name", "label::English (en)", "label::Russian (ru)", "region", "district",
     "media::image::English (en)"],
    ["region", "almaty_reg", "Almaty Region", "Алматинская область"],
    ["region", "zhetysu", "Zhetysu Region", "Область Жетысу"],
    ["district", "talgar", "Talgar", "Талгарский", "almaty_reg"],
    ["district", "karasay", "Karasay", "Карасайский", "almaty_reg"],
    ["district", "sarkand", "Sarkand", "Саркандский", "zhetysu"],
    ["settlement", "talgar_town", "Talgar town", "г. Талгар", None, "talgar"],
    ["settlement", "panfilovo", "Panfilovo", "Панфилово", None, "talgar"],
    ["settlement", "kaskelen", "Kaskelen", "Каскелен", None, "karasay"],
    ["settlement", "sarkand_town", "Sarkand town", "г. Сарканд", None, "sarkand"],
    ["needs", "water", "Water", "Вода", None, None, "water.png"],
    ["needs", "roads", "Roads", "Дороги"],
    ["needs", "school", "School", "Школа"],
]  # fmt: skip
VISIT_SETTINGS = [
    ["form_id", "form_title", "default_language", "instance_name"],
    ["settlement_visit", "Settlement visit", "English (en)",
     "concat(${settlement}, ' ', ${visit_time})"],
]  # fmt: skip


def visit_workbook() -> bytes:
    return workbook(VISIT_SURVEY, VISIT_CHOICES, VISIT_SETTINGS)


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


def _present(value: Any) -> Any:
    """The value without its None fields (the API gives every field of a question)."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_present(item) for item in value]
    return value


def by_key(questions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {q["key"]: _present(q) for q in questions}


async def test_every_type_imports_as_the_contract_says(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await upload(client, coordinator, visit_workbook())
    assert imported.status_code == 201, imported.text
    form = imported.json()
    questions = by_key(form["questions"])
    metas = {"start", "end", "today", "deviceid", "phonenumber", "username", "email",
             "simserial", "subscriberid"}  # fmt: skip
    for kind in metas:
        assert questions[kind] == {"key": kind, "type": "meta", "meta": kind}
    assert (questions["imei"]["type"], questions["imei"]["meta"]) == ("meta", "deviceid")
    assert (questions["audit"]["type"], questions["audit"]["meta"]) == ("meta", "audit")
    assert questions["intro"]["media"] == {"image": {"en": "route.png", "ru": "route_ru.png"}}
    plain = {"visit_time": "time", "water_cut": "datetime", "well": "geopoint",
             "pipe": "geotrace", "school_plot": "geoshape", "meter": "barcode",
             "consent": "acknowledge", "priorities": "rank", "facade": "image",
             "interview": "audio", "walk": "video", "report": "file"}  # fmt: skip
    assert {key: questions[key]["type"] for key in plain} == plain
    assert questions["well"]["help"] == {"en": "Stand next to it"}
    assert questions["well"]["appearance"] == "maps"
    assert questions["meter"]["read_only"] == "${region} = ''"
    assert questions["consent"]["required"] is True
    # the cascade: lists by name with their extra columns; the first select keeps its options
    assert [o["value"] for o in questions["region"]["options"]] == ["almaty_reg", "zhetysu"]
    assert (questions["district"]["choices"], questions["district"]["choice_filter"]) == (
        "district", "region = ${region}")  # fmt: skip
    assert questions["settlement"]["choices"] == "settlement"
    lists = form["choice_lists"]
    assert lists["district"][0] == {
        "value": "talgar", "label": {"en": "Talgar", "ru": "Талгарский"}, "region": "almaty_reg"
    }  # fmt: skip
    assert [item["district"] for item in lists["settlement"]] == [
        "talgar", "talgar", "karasay", "sarkand"]  # fmt: skip
    needs = questions["priorities"]["options"]
    assert needs[0] == {"value": "water", "label": {"en": "Water", "ru": "Вода"},
                        "media": {"image": {"en": "water.png"}}}  # fmt: skip
    assert _present(form["settings"]) == {
        "instance_name": "concat(${settlement}, ' ', ${visit_time})"
    }


GOOD = {
    "region": "almaty_reg",
    "district": "talgar",
    "settlement": "panfilovo",
    "visit_time": "10:15:00.000+06:00",
    "water_cut": "2026-11-30T06:00:00.000+06:00",
    "well": {"lat": 43.3051, "lon": 77.2402, "altitude": 912.5, "accuracy": 4.0},
    "pipe": [{"lat": 43.3051, "lon": 77.2402, "altitude": 0.0, "accuracy": 0.0},
             {"lat": 43.3062, "lon": 77.2421, "altitude": 0.0, "accuracy": 0.0}],
    "school_plot": [{"lat": 43.30, "lon": 77.24, "altitude": 0.0, "accuracy": 0.0},
                    {"lat": 43.31, "lon": 77.24, "altitude": 0.0, "accuracy": 0.0},
                    {"lat": 43.31, "lon": 77.25, "altitude": 0.0, "accuracy": 0.0},
                    {"lat": 43.30, "lon": 77.24, "altitude": 0.0, "accuracy": 0.0}],
    "meter": "4870012345678",
    "consent": True,
    "priorities": ["school", "water", "roads"],
    "start": "2026-12-01T10:00:00.000+06:00",
    "deviceid": "collect:Xy12Ab34Cd56Ef78",
    "username": "field-team-3",
}  # fmt: skip


async def test_answers_of_every_type_through_the_api_and_openrosa(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await upload(client, coordinator, visit_workbook())
    assert imported.status_code == 201, imported.text
    questionnaire_id = imported.json()["id"]
    published = await client.post(
        f"/api/v1/questionnaires/{questionnaire_id}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    observer = await headers_for(app, Role.observer)
    target = f"/api/v1/questionnaires/{questionnaire_id}/responses"

    async def submit(**changes: Any) -> httpx.Response:
        answers = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
        body = {"respondent": {"group": "respondent"}, "answers": answers}
        return await client.post(target, json=body, headers=observer)

    stored = await submit()
    assert stored.status_code == 201, stored.text
    assert stored.json()["answers"] == GOOD
    # the cascade is enforced: a settlement of another district, a district of another region
    for changes in ({"settlement": "kaskelen"}, {"district": "sarkand", "settlement": None}):
        refused = await submit(**changes)
        assert refused.status_code == 422, refused.text
        assert [e["loc"][-1] for e in refused.json()["errors"]] == [next(iter(changes))]
    assert (await submit(consent=None)).status_code == 422  # required acknowledge

    # OpenRosa: the values as ODK writes them, read back into the same answers
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(questionnaire_id))
    xform = await client.get(f"/openrosa/key/{token}/forms/{questionnaire_id}.xml")
    assert xform.status_code == 200, xform.text
    odk = {
        **{k: v for k, v in GOOD.items() if not isinstance(v, dict | list | bool)},
        "well": "43.3051 77.2402 912.5 4.0",
        "pipe": "43.3051 77.2402 0.0 0.0;43.3062 77.2421 0.0 0.0",
        "school_plot": "43.30 77.24 0.0 0.0;43.31 77.24 0.0 0.0;43.31 77.25 0.0 0.0;"
        "43.30 77.24 0.0 0.0",
        "consent": "OK",
        "priorities": "school water roads",
    }
    instance_id = uuid.uuid4()
    xml = instance_xml(
        xform.content, odk, respondent={"group": "respondent"}, instance_id=instance_id
    )
    sent = await _post(client, token, xml)
    assert sent.status_code == 201, sent.text
    response = await client.get(f"/api/v1/responses/{instance_id}", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["answers"] == GOOD


async def test_the_xform_asks_every_type_as_odk_does(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await upload(client, coordinator, visit_workbook())
    assert imported.status_code == 201, imported.text
    xform = await client.get(
        f"/api/v1/questionnaires/{imported.json()['id']}/xform", headers=coordinator
    )
    assert xform.status_code == 200, xform.text
    document = parse_xml(xform.content)
    binds = {
        bind.attrib["nodeset"].removeprefix("/data/"): bind.attrib
        for bind in document.iter("{http://www.w3.org/2002/xforms}bind")
    }
    expected = {"visit_time": "time", "water_cut": "dateTime", "well": "geopoint",
                "pipe": "geotrace", "school_plot": "geoshape", "meter": "barcode",
                "facade": "binary", "interview": "binary", "walk": "binary",
                "report": "binary", "priorities": "odk:rank"}  # fmt: skip
    assert {key: binds[key]["type"] for key in expected} == expected
    assert binds["meta/audit"]["type"] == "binary"
    assert binds["meta/instanceName"]["calculate"] == (
        "concat( /data/settlement , ' ',  /data/visit_time )"
    )
    body = xform.text
    # the cascade's lists with their properties, filtered by the answers
    assert "instance('district')/root/item[region =  /data/region ]" in body
    assert "<region>almaty_reg</region>" in body
    assert "jr://images/route.png" in body and "jr://images/water.png" in body


async def test_every_type_round_trips_through_the_exported_workbook(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    original = visit_workbook()
    imported = await upload(client, coordinator, original)
    assert imported.status_code == 201, imported.text
    form = imported.json()
    exported = await export(client, coordinator, form["id"])
    assert pyxform_json(exported) == pyxform_json(original)
    assert structure(pyxform_xform(exported), set()) == structure(pyxform_xform(original), set())
    published = await client.post(
        f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    again = await upload(client, coordinator, exported)
    assert again.status_code == 201, again.text
    assert definition_of(again.json()) == definition_of(form)
    assert again.json()["choice_lists"] == form["choice_lists"]
    assert again.json()["settings"] == form["settings"]


async def test_odks_engine_fills_the_visit_form_as_kenes_serves_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    """ODK's engine loads the XForm of every type, fills the cascade, time, geodata, barcode
    and the acknowledgement, and what it submits is read back into the contract's answers."""
    imported = await upload(client, coordinator, visit_workbook())
    assert imported.status_code == 201, imported.text
    form_id = imported.json()["id"]
    published = await client.post(f"/api/v1/questionnaires/{form_id}/publish", headers=coordinator)
    assert published.status_code == 200, published.text
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form_id))
    filling = {
        "region": "almaty_reg", "district": "talgar", "settlement": "panfilovo",
        "visit_time": "10:15:00.000+06:00", "well": "43.3051 77.2402 912.5 4",
        "pipe": "43.3051 77.2402 0 0;43.3062 77.2421 0 0", "meter": "4870012345678",
        "consent": True,
    }  # fmt: skip
    with running_server(database_url, tmp_path / "server.log") as server:
        result = odk_engine_fills(
            f"{server.base}/openrosa/key/{token}", "settlement-visit", filling
        )
    assert result["payload_status"] == "ready", result
    assert [s["status"] for s in result["submissions"]] == [201, 202], result["submissions"]
    instance_id = parse_xml(result["instance"]).findtext("meta/instanceID")
    response = await client.get(
        f"/api/v1/responses/{instance_id.removeprefix('uuid:')}", headers=admin
    )
    assert response.status_code == 200, response.text
    answers = response.json()["answers"]
    assert {k: answers[k] for k in ("region", "district", "settlement", "meter")} == {
        "region": "almaty_reg", "district": "talgar", "settlement": "panfilovo",
        "meter": "4870012345678"}  # fmt: skip
    assert answers["consent"] is True
    assert answers["well"] == {"lat": 43.3051, "lon": 77.2402, "altitude": 912.5, "accuracy": 4.0}
    assert [(p["lat"], p["lon"]) for p in answers["pipe"]] == [
        (43.3051, 77.2402),
        (43.3062, 77.2421),
    ]
    assert answers["visit_time"].startswith("10:15")
    # the device's own values: start and end times, the instance's name from instance_name
    assert answers["start"] and answers["end"]


async def test_odk_validate_accepts_the_xform_of_every_type(
    client: httpx.AsyncClient, coordinator: dict[str, str], tmp_path: Path
) -> None:
    """ODK Validate (JavaRosa, the engine of ODK Collect; shipped with pyxform) accepts the
    XForm Kenes serves for the every-type form."""
    if shutil.which("java") is None:
        pytest.skip("needs java for ODK Validate")
    imported = await upload(client, coordinator, visit_workbook())
    assert imported.status_code == 201, imported.text
    xform = await client.get(
        f"/api/v1/questionnaires/{imported.json()['id']}/xform", headers=coordinator
    )
    assert xform.status_code == 200, xform.text
    path = tmp_path / "visit.xml"
    path.write_bytes(xform.content)
    assert check_xform(str(path)) == []  # raises ODKValidateError when invalid
