"""XLSForm rows without a widget that pyxform accepts: `hidden`, `start-geopoint`,
`background-audio` and `xml-external`, imported, served as ODK serves them (pyxform's actions
and secondary instance, the file in the manifest), answered over OpenRosa (with the background
recording attached), read back, exported and aggregated; and what the server cannot evaluate
(a calculation reading a secondary instance) refused naming its row. (Written for these
tests: a rural akim election observation with the observer's position and a recording.)"""

import csv
import hashlib
import io
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI
from pyxform.validators.odk_validate import check_xform

from app.models.auth import Role
from app.services.questionnaires import DEFINITION_FIELDS
from tests.clients import odk_engine_fills
from tests.factories import headers_for
from tests.servers import running_server
from tests.test_attachments import mp3
from tests.test_openrosa import _collector, _post, instance_xml
from tests.test_xlsform import XLSX_TYPE, definition_of, export, pyxform_json, workbook

XF = "{http://www.w3.org/2002/xforms}"
ODK = "{http://www.opendatakit.org/xforms}"
MANIFEST = "{http://openrosa.org/xforms/xformsManifest}"
HEADER = ["type", "name", "label::English (en)", "default", "calculation", "parameters",
          "required", "constraint", "relevant"]  # fmt: skip
POLLING = (
    b"<root>"
    b"<item><name>st_101</name><label>School No. 4</label><akimat>talgar</akimat></item>"
    b"<item><name>st_102</name><label>House of culture</label><akimat>talgar</akimat></item>"
    b"</root>"
)


LOOKUP = "instance('polling')/root/item[name = concat('st_', ${station})]/label"


def row(kind: str, name: str, label: str | None = None, **cells: str) -> list[Any]:
    values = {"type": kind, "name": name, "label::English (en)": label, **cells}
    return [values.get(column) for column in HEADER]


SURVEY = [
    HEADER,
    row("start-geopoint", "arrival"),
    row("background-audio", "recording", parameters="quality=low"),
    row("hidden", "form_series", default="akim-2026"),
    row("hidden", "observer_note"),
    row("xml-external", "polling"),
    row("text", "station", "Polling station number", required="yes"),
    row("hidden", "station_code", calculation="concat('KZ-', ${station})"),
    row("calculate", "station_name", calculation=LOOKUP),
    row("integer", "voters", "Voters on the list", constraint=". >= 0"),
]
SETTINGS = [["form_id", "form_title", "default_language"],
            ["akim_observation", "Akim election observation", "English (en)"]]  # fmt: skip
RECORDING = mp3(6000)


def observation_workbook(survey: list[list[Any]] | None = None) -> bytes:
    return workbook(survey or SURVEY, None, SETTINGS)


async def import_form(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    content: bytes,
    **media: bytes,
) -> httpx.Response:
    parts = [("media", (name, data, "application/octet-stream")) for name, data in media.items()]
    return await client.post(
        "/api/v1/questionnaires/import",
        files=[("file", ("observation.xlsx", content, XLSX_TYPE)), *parts],
        headers=headers,
    )


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


async def published(client: httpx.AsyncClient, coordinator: dict[str, str]) -> dict[str, Any]:
    imported = await import_form(
        client, coordinator, observation_workbook(), **{"polling.xml": POLLING}
    )
    assert imported.status_code == 201, imported.text
    form = imported.json()
    done = await client.post(f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator)
    assert done.status_code == 200, done.text
    return dict(form)


def _present(question: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in question.items() if v is not None}


async def test_the_rows_import_as_questions_of_kenes_types_and_a_form_instance(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    form = await published(client, coordinator)
    questions = {q["key"]: _present(q) for q in form["questions"]}
    assert questions["arrival"] == {
        "key": "arrival", "type": "geopoint", "at_start": True, "label": {"en": "arrival"},
        "required": False}  # fmt: skip
    assert questions["recording"] == {
        "key": "recording", "type": "audio", "background": True, "quality": "low",
        "label": {"en": "recording"}, "required": False}  # fmt: skip
    assert questions["form_series"] == {
        "key": "form_series", "type": "text", "hidden": True, "default": "akim-2026",
        "label": {"en": "form_series"}, "required": False, "max_length": 2000}  # fmt: skip
    assert questions["observer_note"]["hidden"] is True
    # a hidden with a calculation is what pyxform writes for a calculate: the server computes it
    assert questions["station_code"] == {
        "key": "station_code", "type": "calculate",
        "calculation": "concat('KZ-', ${station})"}  # fmt: skip
    assert "polling" not in questions
    # a lookup in the secondary instance: the client's value is kept (the server has none)
    assert questions["station_name"] == {
        "key": "station_name", "type": "calculate", "calculation": LOOKUP}  # fmt: skip
    assert form["settings"]["external_instances"] == ["polling"]
    # the visible questions are as before: no flags where none was set
    assert set(questions["station"]) == {"key", "type", "label", "required", "max_length"}
    listing = await client.get(f"/api/v1/questionnaires/{form['id']}/media", headers=coordinator)
    assert listing.status_code == 200, listing.text
    assert listing.json()["items"] == [
        {"name": "polling.xml", "kind": "xml", "content_type": "text/xml",
         "size": len(POLLING), "md5": hashlib.md5(POLLING, usedforsecurity=False).hexdigest(),
         "sha256": hashlib.sha256(POLLING).hexdigest(), "received": True}
    ]  # fmt: skip


async def test_the_xform_records_as_odk_does_and_the_manifest_gives_the_instance(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str], tmp_path: Path
) -> None:
    form = await published(client, coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form["id"]))
    base = f"/openrosa/key/{token}/forms/{form['id']}"
    xform = await client.get(f"{base}.xml")
    assert xform.status_code == 200, xform.text
    document = parse_xml(xform.content)
    model = document.find(f".//{XF}model")
    assert model is not None
    binds = {b.attrib["nodeset"].removeprefix("/data/"): b.attrib for b in model.iter(f"{XF}bind")}
    assert binds["arrival"]["type"] == "geopoint"
    assert binds["recording"]["type"] == "binary"
    assert binds["form_series"]["type"] == "string"
    assert binds["station_code"]["calculate"] == "concat('KZ-',  /data/station )"
    setgeopoint = model.find(f"{ODK}setgeopoint")
    assert setgeopoint is not None
    assert setgeopoint.attrib == {"ref": "/data/arrival", "event": "odk-instance-first-load"}
    recordaudio = model.find(f"{ODK}recordaudio")
    assert recordaudio is not None
    assert recordaudio.attrib == {
        "ref": "/data/recording", "event": "odk-instance-load", f"{ODK}quality": "low"}  # fmt: skip
    instances = {i.attrib.get("id"): i.attrib.get("src") for i in model.iter(f"{XF}instance")}
    assert instances["polling"] == "jr://file/polling.xml"
    primary = next(iter(model.find(f"{XF}instance") or []))
    assert primary.findtext(f"{XF}form_series") == "akim-2026"
    # no widget for any of them: the body asks the station and the voters only
    body = document.find("{http://www.w3.org/1999/xhtml}body")
    assert body is not None
    asked = {c.attrib["ref"].removeprefix("/data/") for c in body.iter() if "ref" in c.attrib}
    assert {"arrival", "recording", "form_series", "observer_note", "polling"} & asked == set()
    assert {"station", "voters"} <= asked

    manifest = await client.get(f"{base}/manifest")
    assert manifest.status_code == 200, manifest.text
    files = {
        entry.findtext(f"{MANIFEST}filename"): entry
        for entry in parse_xml(manifest.content).iter(f"{MANIFEST}mediaFile")
    }
    assert list(files) == ["polling.xml"]
    md5 = hashlib.md5(POLLING, usedforsecurity=False).hexdigest()
    assert files["polling.xml"].findtext(f"{MANIFEST}hash") == f"md5:{md5}"
    got = await client.get(files["polling.xml"].findtext(f"{MANIFEST}downloadUrl") or "")
    assert (got.status_code, got.content) == (200, POLLING)
    assert got.headers["content-type"].startswith("text/xml")

    if shutil.which("java") is not None:  # ODK Validate: JavaRosa, Collect's engine
        path = tmp_path / "observation.xml"
        path.write_bytes(xform.content)
        assert check_xform(str(path)) == []


async def test_an_openrosa_submission_stores_the_point_the_recording_and_hidden_values(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    form = await published(client, coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form["id"]))
    xform = (await client.get(f"/openrosa/key/{token}/forms/{form['id']}.xml")).content
    sent: list[uuid.UUID] = []
    # five points (a cell shows from five respondents on) and an instance without one
    points = ["43.2567 76.9286 812.5 4.8", "43.3051 77.2402 900 12", None,
              *(f"43.{n} 77.{n} 0 5" for n in (41, 42, 43))]  # fmt: skip
    for number, point in enumerate(points):
        instance_id = uuid.uuid4()
        values = {"station": f"10{number}", "voters": str(500 + number),
                  "form_series": "akim-2026", "station_code": f"KZ-10{number}"}  # fmt: skip
        if point is not None:
            values["arrival"] = point
        files = {}
        if number == 0:  # the recording comes with the instance, named in it
            values["recording"] = "1733040000000.mp3"
            values["station_name"] = "School No. 4"
            files["1733040000000.mp3"] = ("1733040000000.mp3", RECORDING, "audio/mpeg")
        xml = instance_xml(
            xform, values, respondent={"group": "respondent"}, instance_id=instance_id
        )
        answer = await _post(client, token, xml, **files)
        assert answer.status_code == 201, answer.text
        sent.append(instance_id)

    first = await client.get(f"/api/v1/responses/{sent[0]}", headers=admin)
    assert first.status_code == 200, first.text
    assert first.json()["answers"] == {
        "arrival": {"lat": 43.2567, "lon": 76.9286, "altitude": 812.5, "accuracy": 4.8},
        "recording": "1733040000000.mp3", "form_series": "akim-2026", "station": "100",
        "station_code": "KZ-100", "station_name": "School No. 4", "voters": 500}  # fmt: skip
    third = (await client.get(f"/api/v1/responses/{sent[2]}", headers=admin)).json()
    assert "arrival" not in third["answers"] and "recording" not in third["answers"]
    listed = await client.get(f"/api/v1/responses/{sent[0]}/attachments", headers=admin)
    assert [
        (a["name"], a["content_type"], a["size"], a["received"]) for a in listed.json()["items"]
    ] == [("1733040000000.mp3", "audio/mpeg", len(RECORDING), True)]
    got = await client.get(f"/api/v1/responses/{sent[0]}/attachments/1733040000000.mp3",
                           headers=admin)  # fmt: skip
    assert got.content == RECORDING

    # exports: the point as a geopoint's four columns, the hidden values and the file's name
    url = f"/api/v1/questionnaires/{form['id']}/responses/export"
    exported = await client.get(f"{url}?format=csv", headers=admin)
    assert exported.status_code == 200, exported.text
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff")))}
    row0, row2 = rows[str(sent[0])], rows[str(sent[2])]
    assert (row0["arrival/lat"], row0["arrival/lon"], row0["arrival/altitude"],
            row0["arrival/accuracy"]) == ("43.2567", "76.9286", "812.5", "4.8")  # fmt: skip
    assert (row0["recording"], row0["form_series"], row0["station_code"]) == (
        "1733040000000.mp3", "akim-2026", "KZ-100")  # fmt: skip
    assert (row2["arrival/lat"], row2["recording"], row2["observer_note"]) == ("", "", "")
    archive = await client.get(f"{url}?format=zip", headers=admin)
    assert archive.status_code == 200, archive.text
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        assert zipped.read(f"attachments/{sent[0]}/1733040000000.mp3") == RECORDING
    geojson = await client.get(f"{url}?format=geojson&geo=arrival", headers=admin)
    assert geojson.status_code == 200, geojson.text
    features = geojson.json()["features"]
    assert sorted(f["geometry"]["coordinates"][:2] for f in features)[:2] == [
        [76.9286, 43.2567], [77.2402, 43.3051]]  # fmt: skip
    assert len(features) == len([p for p in points if p])

    # aggregated as any geopoint: n counts those who have a point
    figures = await client.get(
        f"/api/v1/questionnaires/{form['id']}/aggregates?min_cell=1", headers=admin
    )
    assert figures.status_code == 200, figures.text
    by_key = {q["key"]: q for q in figures.json()["questions"]}
    assert by_key["arrival"]["type"] == "geopoint"
    assert [cell["n"] for cell in by_key["arrival"]["cells"]] == [len([p for p in points if p])]


async def test_the_rows_round_trip_through_the_exported_workbook(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    form = await published(client, coordinator)
    exported = await export(client, coordinator, form["id"])
    original = pyxform_json(observation_workbook())
    again_json = pyxform_json(exported)
    kinds = {c["name"]: c["type"] for c in again_json}
    assert {k: kinds[k] for k in ("arrival", "recording", "form_series", "polling")} == {
        "arrival": "start-geopoint", "recording": "background-audio",
        "form_series": "hidden", "polling": "xml-external"}  # fmt: skip
    assert kinds["station_code"] == "calculate"  # the hidden of a calculation: the same bind
    assert {c["name"] for c in again_json} == {c["name"] for c in original}
    again = await import_form(client, coordinator, exported, **{"polling.xml": POLLING})
    assert again.status_code == 201, again.text
    assert definition_of(again.json()) == definition_of(form)


async def test_what_cannot_be_taken_is_named_by_row_and_column(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    # only a calculation reads an instance (the server cannot: it keeps the client's value);
    # the instance is the form's; the path is element steps with predicates
    unusable = [
        row("text", "check", "Check", relevant=f"{LOOKUP} != ''"),  # row 11
        row("calculate", "elsewhere", calculation="instance('nowhere')/root/item/label"),
        row("calculate", "by_attribute", calculation="instance('polling')/root/item/@id"),
    ]
    refused = await import_form(
        client, coordinator, observation_workbook([*SURVEY, *unusable]), **{"polling.xml": POLLING}
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    errors = {tuple(e["loc"]): e["msg"] for e in refused.json()["errors"]}
    assert set(errors) == {
        ("file", "survey", 11, "relevant"),
        ("file", "survey", 12, "calculation"),
        ("file", "survey", 13, "calculation"),
    }
    assert "only a calculation may read a secondary instance" in errors[
        ("file", "survey", 11, "relevant")]  # fmt: skip
    assert "no instance 'nowhere'" in errors[("file", "survey", 12, "calculation")]
    assert "element steps" in errors[("file", "survey", 13, "calculation")]
    # an instance's name is an instance id in the XForm: not a question's or a list's too
    form = await import_form(
        client, coordinator, observation_workbook(), **{"polling.xml": POLLING}
    )
    definition = {k: v for k, v in form.json().items() if k in DEFINITION_FIELDS}
    body = {**definition, "slug": "clash", "default_language": "en"}
    body["settings"] = {"external_instances": ["polling", "station", "polling", "_gender"]}
    clash = await client.post("/api/v1/questionnaires", json=body, headers=coordinator)
    assert clash.status_code == 422, clash.text
    assert {tuple(e["loc"]) for e in clash.json()["errors"]} == {
        ("body", "settings", "external_instances", 1),
        ("body", "settings", "external_instances", 2, "name"),
        ("body", "settings", "external_instances", 3),
    }
    # the file of a secondary instance is XML without a DTD
    for bad in (b"<root><item>", b'<!DOCTYPE r [<!ENTITY e "x">]><root>&e;</root>'):
        refused = await import_form(
            client, coordinator, observation_workbook(), **{"polling.xml": bad}
        )
        assert refused.status_code == 422, refused.text
        assert [e["loc"] for e in refused.json()["errors"]] == [["media", "polling.xml"]]
    # a file named after no xml-external row is not taken
    refused = await import_form(
        client, coordinator, observation_workbook(), **{"other.xml": POLLING}
    )
    assert refused.status_code == 422, refused.text
    assert [e["loc"] for e in refused.json()["errors"]] == [["media", "other.xml"]]


async def test_odks_engine_fills_the_form_with_its_instance_fetched_from_the_manifest(
    app: FastAPI,
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    """ODK's engine loads the XForm, downloads polling.xml as the manifest lists it, keeps the
    hidden default, computes the calculation; what it submits is read back."""
    form = await published(client, coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form["id"]))
    filling = {"station": "101", "voters": "640"}
    with running_server(database_url, tmp_path / "server.log") as server:
        result = odk_engine_fills(
            f"{server.base}/openrosa/key/{token}", "akim-observation", filling
        )
    assert result["payload_status"] == "ready", result
    assert result["attachments"] == [{"name": "polling.xml", "status": 200}], result
    assert [s["status"] for s in result["submissions"]] == [201, 202], result["submissions"]
    instance_id = parse_xml(result["instance"]).findtext("meta/instanceID")
    stored = await client.get(
        f"/api/v1/responses/{instance_id.removeprefix('uuid:')}", headers=admin
    )
    assert stored.status_code == 200, stored.text
    answers = stored.json()["answers"]
    keys = ("station", "voters", "form_series", "station_code", "station_name")
    # the lookup: the engine read polling.xml, the server kept its value
    assert {k: answers.get(k) for k in keys} == {
        "station": "101", "voters": 640, "form_series": "akim-2026", "station_code": "KZ-101",
        "station_name": "School No. 4"}  # fmt: skip


async def test_an_instances_file_may_come_later_and_serve_a_list_too(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    """Sent later to the draft (PUT), refused when not XML; and one file both an xml-external
    and a select_one_from_file list: the list is read from it and the file is stored too."""
    imported = await import_form(client, coordinator, observation_workbook())
    assert imported.status_code == 201, imported.text
    url = f"/api/v1/questionnaires/{imported.json()['id']}/media"
    listing = (await client.get(url, headers=coordinator)).json()["items"]
    assert [(i["name"], i["kind"], i["received"]) for i in listing] == [
        ("polling.xml", "xml", False)
    ]
    refused = await client.put(f"{url}/polling.xml", content=b"<root>", headers=coordinator)
    assert refused.status_code == 422, refused.text
    sent = await client.put(f"{url}/polling.xml", content=POLLING, headers=coordinator)
    assert sent.status_code == 201, sent.text
    assert (sent.json()["kind"], sent.json()["content_type"]) == ("xml", "text/xml")
    assert (await client.get(f"{url}/polling.xml", headers=coordinator)).content == POLLING
    done = await client.post(url.replace("/media", "/publish"), headers=coordinator)
    assert done.status_code == 200, done.text

    both = [*SURVEY, row("select_one_from_file polling.xml", "station_list", "Station")]
    imported = await import_form(
        client, coordinator, observation_workbook(both), **{"polling.xml": POLLING}
    )
    assert imported.status_code == 201, imported.text
    form = imported.json()
    station_list = next(q for q in form["questions"] if q["key"] == "station_list")
    # the list is named apart from the instance (each is an instance id in the XForm)
    assert station_list["choices"] == "polling_file"
    assert [item["value"] for item in form["choice_lists"]["polling_file"]] == [
        "st_101", "st_102"]  # fmt: skip
    url = f"/api/v1/questionnaires/{form['id']}/media"
    listing = (await client.get(url, headers=coordinator)).json()["items"]
    assert [(i["name"], i["received"]) for i in listing] == [("polling.xml", True)]
    xform = await client.get(f"/api/v1/questionnaires/{form['id']}/xform", headers=coordinator)
    assert xform.status_code == 200, xform.text
    instances = {
        i.attrib.get("id"): i.attrib.get("src")
        for i in parse_xml(xform.content).iter(f"{XF}instance")
    }
    assert instances["polling"] == "jr://file/polling.xml"
    assert instances["polling_file"] is None  # the list inline, as Kenes serves every list
