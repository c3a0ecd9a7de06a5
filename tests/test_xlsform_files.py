"""select_one_from_file / select_multiple_from_file: the CSV lists uploaded with the form as
`media` parts become choice lists; a cascade over them is enforced by the server and by ODK's
engine, which loads the form as Kenes serves it. Every problem of a file is named by file, line
and column. (Forms and lists written for these tests.)"""

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI

from app.models.auth import Role
from tests.clients import odk_engine_fills
from tests.factories import headers_for
from tests.servers import running_server
from tests.test_openrosa import _collector
from tests.test_xlsform import XLSX_TYPE, definition_of, export, upload, workbook

SURVEY = [
    ["type", "name", "label::English (en)", "label::Russian (ru)", "choice_filter",
     "parameters", "required"],
    ["select_one region", "region", "Region", "Область", None, None, "yes"],
    ["select_one_from_file districts.csv", "district", "District", "Район",
     "region = ${region}", None, "yes"],
    ["select_multiple_from_file settlements.csv", "settlements", "Settlements visited",
     "Посещённые населённые пункты", "district = ${district}", "value=kato label=title"],
    ["geopoint", "water_point", "Water point", "Водоразборная точка"],
    ["integer", "taps", "Working taps", "Работающие краны"],
]  # fmt: skip
CHOICES = [
    ["list_name", "name", "label::English (en)", "label::Russian (ru)"],
    ["region", "almaty_reg", "Almaty Region", "Алматинская область"],
    ["region", "zhetysu", "Zhetysu Region", "Область Жетысу"],
]
SETTINGS = [["form_id", "form_title", "default_language"],
            ["water_points", "Water points", "English (en)"]]  # fmt: skip
DISTRICTS = (
    "name,label::English (en),label::Russian (ru),region\n"
    "talgar,Talgar,Талгарский,almaty_reg\n"
    "karasay,Karasay,Карасайский,almaty_reg\n"
    "sarkand,Sarkand,Саркандский,zhetysu\n"
)
SETTLEMENTS = (
    "kato,title::English (en),title::Russian (ru),district,population\n"
    "195220100,Talgar,Талгар,talgar,47000\n"
    "195247100,Panfilovo,Панфилово,talgar,5200\n"
    "194030100,Kaskelen,Каскелен,karasay,70000\n"
    "196430100,Sarkand,Сарканд,sarkand,13000\n"
)


async def import_with(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    parts: list[tuple[str, tuple[str, bytes, str]]],
    survey: list[list[Any]] | None = None,
) -> httpx.Response:
    content = workbook(survey or SURVEY, CHOICES, SETTINGS)
    return await client.post(
        "/api/v1/questionnaires/import",
        files=[("file", ("water.xlsx", content, XLSX_TYPE)), *parts],
        headers=headers,
    )


FILES = [
    ("media", ("districts.csv", DISTRICTS.encode(), "text/csv")),
    ("media", ("settlements.csv", SETTLEMENTS.encode(), "text/csv")),
]


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


async def test_csv_lists_become_choice_lists_and_their_cascade_is_enforced(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await import_with(client, coordinator, FILES)
    assert imported.status_code == 201, imported.text
    form = imported.json()
    questions = {q["key"]: q for q in form["questions"]}
    assert (questions["district"]["choices"], questions["district"]["choice_filter"]) == (
        "districts", "region = ${region}")  # fmt: skip
    assert questions["settlements"]["type"] == "multiple_choice"
    assert questions["settlements"]["choices"] == "settlements"
    lists = form["choice_lists"]
    assert lists["districts"][2] == {
        "value": "sarkand", "label": {"en": "Sarkand", "ru": "Саркандский"}, "region": "zhetysu"
    }  # fmt: skip
    assert lists["settlements"][1] == {
        "value": "195247100", "label": {"en": "Panfilovo", "ru": "Панфилово"},
        "district": "talgar", "population": "5200",
    }  # fmt: skip

    published = await client.post(
        f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    observer = await headers_for(app, Role.observer)
    target = f"/api/v1/questionnaires/{form['id']}/responses"
    good = {"region": "almaty_reg", "district": "talgar",
            "settlements": ["195220100", "195247100"], "taps": 3}  # fmt: skip

    async def submit(**changes: Any) -> httpx.Response:
        answers = {**good, **changes}
        body = {"respondent": {"group": "respondent"}, "answers": answers}
        return await client.post(target, json=body, headers=observer)

    assert (await submit()).status_code == 201
    for changes in ({"settlements": ["195220100", "194030100"]}, {"district": "sarkand"}):
        refused = await submit(**changes)
        assert refused.status_code == 422, refused.text

    # the exported workbook holds the lists itself: it imports without the files
    exported = await export(client, coordinator, form["id"])
    again = await upload(client, coordinator, exported)
    assert again.status_code == 201, again.text
    assert definition_of(again.json()) == definition_of(form)


async def test_every_problem_of_the_files_is_named_by_file_line_and_column(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    bad_districts = (
        "name,label::English (en),label::Russian (ru),region\n"
        "talgar,Talgar,Талгарский,almaty_reg\n"
        "talgar,Talgar again,Талгарский,almaty_reg\n"  # line 3: the same value
        ",No value,Без значения,almaty_reg\n"  # line 4
        "sarkand,Sarkand,zhetysu\n"  # line 5: a cell missing
    )
    survey = [*SURVEY, ["select_one_from_file wells.xml", "well", "Well", "Колодец"]]  # row 7
    refused = await import_with(
        client, coordinator, [("media", ("districts.csv", bad_districts.encode(), "text/csv"))],
        survey,
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert sorted(map(tuple, (e["loc"] for e in refused.json()["errors"]))) == [
        ("file", "survey", 4, "type"),  # settlements.csv not uploaded
        ("file", "survey", 7, "type"),  # wells.xml not uploaded
        ("media", "districts.csv", 3, "name"),
        ("media", "districts.csv", 4, "name"),
        ("media", "districts.csv", 5),
    ]
    messages = " ".join(e["msg"] for e in refused.json()["errors"])
    assert "settlements.csv was not uploaded" in messages
    not_utf8 = [("media", ("districts.csv", "name\nтест\n".encode("cp1251"), "text/csv"))]
    refused = await import_with(client, coordinator, not_utf8 + FILES[1:])
    # (the settlements' filter names the district, which could not be read)
    assert [e["loc"] for e in refused.json()["errors"]][:1] == [["media", "districts.csv"]]
    no_column = [("media", ("districts.csv", b"code,label\nx,X\n", "text/csv"))]
    refused = await import_with(client, coordinator, no_column + FILES[1:])
    assert [e["loc"] for e in refused.json()["errors"]][:1] == [
        ["media", "districts.csv", 1, "name"]
    ]


async def test_odks_engine_loads_the_served_form_and_fills_the_cascade(
    app: FastAPI,
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    """The lists come back inline in the XForm: ODK's engine loads the form Kenes serves,
    applies the choice filters, and what it submits is stored with the geopoint read back."""
    imported = await import_with(client, coordinator, FILES)
    assert imported.status_code == 201, imported.text
    form_id = imported.json()["id"]
    published = await client.post(f"/api/v1/questionnaires/{form_id}/publish", headers=coordinator)
    assert published.status_code == 200, published.text
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form_id))
    fillings = [
        {"region": "almaty_reg", "district": "talgar", "settlements": ["195247100"],
         "water_point": "43.3051 77.2402 912.5 4", "taps": "2"},
        # a settlement of another district: the engine's filter leaves it out
        {"region": "almaty_reg", "district": "talgar", "settlements": ["194030100", "195220100"],
         "taps": "1"},
    ]  # fmt: skip
    seen = []
    with running_server(database_url, tmp_path / "server.log") as server:
        for filling in fillings:
            seen.append(
                odk_engine_fills(f"{server.base}/openrosa/key/{token}", "water-points", filling)
            )
    for result in seen:
        assert result["payload_status"] == "ready", result
        assert [s["status"] for s in result["submissions"]] == [201, 202]
    stored = []
    for result in seen:
        instance_id = parse_xml(result["instance"]).findtext("meta/instanceID")
        response = await client.get(
            f"/api/v1/responses/{instance_id.removeprefix('uuid:')}", headers=admin
        )
        assert response.status_code == 200, response.text
        stored.append(response.json()["answers"])
    assert stored[0] == {
        "region": "almaty_reg", "district": "talgar", "settlements": ["195247100"], "taps": 2,
        "water_point": {"lat": 43.3051, "lon": 77.2402, "altitude": 912.5, "accuracy": 4.0},
    }  # fmt: skip
    assert stored[1]["settlements"] == ["195220100"]


async def test_rules_broken_by_a_choice_name_its_sheet_row_or_file_line(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    """A label missing in the default language: the choices sheet's row, or the file's line."""
    districts = (
        "name,label::English (en),label::Russian (ru),region\n"
        "talgar,Talgar,Талгарский,almaty_reg\n"
        "karasay,,Карасайский,almaty_reg\n"  # line 3: no English label
    )
    survey = [*SURVEY[:3], ["select_one town", "town", "Town", "Город", "region = ${region}"]]
    choices = [
        [*CHOICES[0], "region"],
        *CHOICES[1:],
        ["town", "talgar_town", "Talgar", "Талгар", "almaty_reg"],
        ["town", "kaskelen", None, "Каскелен", "almaty_reg"],  # row 5: no English label
    ]
    refused = await client.post(
        "/api/v1/questionnaires/import",
        files=[
            ("file", ("water.xlsx", workbook(survey, choices, SETTINGS), XLSX_TYPE)),
            ("media", ("districts.csv", districts.encode(), "text/csv")),
        ],
        headers=coordinator,
    )
    assert refused.status_code == 422, refused.text
    assert sorted(map(tuple, (e["loc"] for e in refused.json()["errors"]))) == [
        ("file", "choices", 5, "label"),
        ("media", "districts.csv", 3, "label"),
    ]
