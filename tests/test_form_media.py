"""Form media: images, audio and video a form shows, uploaded with its XLSForm, stored with the
version and served through the OpenRosa manifest; lists of select_one_from_file from XML and
GeoJSON files. (Forms, lists and files written for these tests.)"""

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.models.auth import Principal, Role
from app.services import form_media
from app.services.attachments import receive
from tests.clients import odk_engine_fills
from tests.factories import headers_for
from tests.servers import running_server
from tests.test_attachments import jpeg, mp3, png
from tests.test_openrosa import _collector
from tests.test_xlsform import XLSX_TYPE, workbook

IMAGE, AUDIO = "media::image::English (en)", "media::audio::English (en)"
SURVEY = [
    ["type", "name", "label::English (en)", IMAGE, AUDIO, "choice_filter"],
    ["note", "intro", "Welcome to the water point survey", "logo.png", "welcome.mp3"],
    ["select_one_from_file wells.geojson", "well", "Which well?"],
    ["select_multiple_from_file posts.xml", "posts", "Posts nearby", None, None,
     "district = 'talgar' or district = 'karasay'"],
    ["select_one yesno", "working", "Is it working?"],
]  # fmt: skip
CHOICES = [
    ["list_name", "name", "label::English (en)", IMAGE],
    ["yesno", "yes", "Yes", "yes.jpg"],
    ["yesno", "no", "No"],
]
SETTINGS = [["form_id", "form_title", "default_language"],
            ["wells", "Water wells", "English (en)"]]  # fmt: skip
WELLS = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "id": "w1",
         "geometry": {"type": "Point", "coordinates": [76.9, 43.25]},
         "properties": {"title": "Well by the school", "depth": 12, "district": "talgar"}},
        {"type": "Feature",
         "geometry": {"type": "LineString", "coordinates": [[77.0, 43.3], [77.1, 43.35, 900]]},
         "properties": {"id": "w2", "title": "Pipeline", "district": "karasay"}},
        {"type": "Feature",
         "geometry": {"type": "Polygon",
                      "coordinates": [[[77, 43], [77.1, 43], [77.1, 43.1], [77, 43]]]},
         "properties": {"id": 7, "title": "Reservoir", "seasonal": True}},
    ],
}  # fmt: skip
POSTS = (
    "<root>"
    "<item><name>p1</name><label>North post</label><district>talgar</district></item>"
    "<item><name>p2</name><label>South post</label><district>karasay</district></item>"
    "</root>"
)
LOGO, WELCOME, YES = png(3, 2, seed=1), mp3(4096), jpeg(3000)
MEDIA = {"logo.png": LOGO, "welcome.mp3": WELCOME, "yes.jpg": YES}
TYPES = {"logo.png": "image/png", "welcome.mp3": "audio/mpeg", "yes.jpg": "image/jpeg"}


def parts(**files: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    """`media` parts: the lists and the files of MEDIA, with `files` replacing or adding."""
    every = {
        "wells.geojson": json.dumps(WELLS).encode(),
        "posts.xml": POSTS.encode(),
        **MEDIA,
        **files,
    }
    return [
        ("media", (name, content, "application/octet-stream"))
        for name, content in every.items()
        if content
    ]


async def import_form(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    media: list[tuple[str, tuple[str, bytes, str]]],
    survey: list[list[Any]] | None = None,
) -> httpx.Response:
    content = workbook(survey or SURVEY, CHOICES, SETTINGS)
    return await client.post(
        "/api/v1/questionnaires/import",
        files=[("file", ("wells.xlsx", content, XLSX_TYPE)), *media],
        headers=headers,
    )


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


async def published(client: httpx.AsyncClient, coordinator: dict[str, str]) -> str:
    imported = await import_form(client, coordinator, parts())
    assert imported.status_code == 201, imported.text
    form_id: str = imported.json()["id"]
    done = await client.post(f"/api/v1/questionnaires/{form_id}/publish", headers=coordinator)
    assert done.status_code == 200, done.text
    return form_id


# --- lists from XML and GeoJSON ---------------------------------------------------------------


async def test_xml_and_geojson_files_become_choice_lists(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await import_form(client, coordinator, parts())
    assert imported.status_code == 201, imported.text
    form = imported.json()
    questions = {q["key"]: q for q in form["questions"]}
    assert questions["well"]["choices"] == "wells"
    assert questions["posts"]["choices"] == "posts"
    # ODK's notation: latitude first, altitude (0 when not given), accuracy 0; a polygon's
    # outer ring; the feature's own id, else properties.id; numbers and booleans as text
    assert form["choice_lists"]["wells"] == [
        {"value": "w1", "label": {"en": "Well by the school"}, "depth": "12",
         "district": "talgar", "geometry": "43.25 76.9 0 0"},
        {"value": "w2", "label": {"en": "Pipeline"}, "district": "karasay",
         "geometry": "43.3 77 0 0; 43.35 77.1 900 0"},
        {"value": "7", "label": {"en": "Reservoir"}, "seasonal": "true",
         "geometry": "43 77 0 0; 43 77.1 0 0; 43.1 77.1 0 0; 43 77 0 0"},
    ]  # fmt: skip
    assert form["choice_lists"]["posts"] == [
        {"value": "p1", "label": {"en": "North post"}, "district": "talgar"},
        {"value": "p2", "label": {"en": "South post"}, "district": "karasay"},
    ]
    assert questions["intro"]["media"] == {
        "image": {"en": "logo.png"}, "audio": {"en": "welcome.mp3"}, "video": None
    }  # fmt: skip

    await client.post(f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator)
    observer = await headers_for(app, Role.observer)
    target = f"/api/v1/questionnaires/{form['id']}/responses"
    body = {"respondent": {"group": "respondent"},
            "answers": {"well": "7", "posts": ["p2"], "working": "yes"}}  # fmt: skip
    assert (await client.post(target, json=body, headers=observer)).status_code == 201
    body["answers"]["well"] = "w3"
    assert (await client.post(target, json=body, headers=observer)).status_code == 422


async def test_problems_of_xml_and_geojson_lists_are_named_by_item(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    wells = json.loads(json.dumps(WELLS))
    wells["features"][1]["properties"]["id"] = "w1"  # feature 2: the same value again
    wells["features"][2]["geometry"] = {"type": "MultiPoint", "coordinates": [[1, 2]]}
    wells["features"][0]["properties"]["tags"] = ["a", "b"]  # feature 1: not text
    posts = "<root><item><name>p1</name></item><item><label>No name</label></item></root>"
    refused = await import_form(
        client, coordinator, parts(**{"wells.geojson": json.dumps(wells).encode(),
                                      "posts.xml": posts.encode()})
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert sorted(map(tuple, (e["loc"] for e in refused.json()["errors"]))) == [
        ("media", "posts.xml", 2, "name"),
        ("media", "wells.geojson", 1, "tags"),
        ("media", "wells.geojson", 3, "geometry"),
    ]
    # once readable, the repeated id is found (one pass per file, as for CSV lists)
    wells["features"][0]["properties"].pop("tags")
    wells["features"][2]["geometry"] = WELLS["features"][2]["geometry"]
    hostile = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><root>&a;</root>'
    refused = await import_form(
        client, coordinator, parts(**{"wells.geojson": json.dumps(wells).encode(),
                                      "posts.xml": hostile.encode()})
    )  # fmt: skip
    assert sorted(map(tuple, (e["loc"] for e in refused.json()["errors"]))) == [
        ("media", "posts.xml"),
        ("media", "wells.geojson", 2, "id"),
    ]
    assert "DTD" in " ".join(e["msg"] for e in refused.json()["errors"])


async def test_a_coordinate_too_large_for_a_number_is_a_problem_of_its_feature(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    # JSON holds integers of any length; one past a float's range once made the import a 500
    huge = "9" * 400
    text = json.dumps(WELLS).replace("[76.9, 43.25]", f"[76.9, 43.25, {huge}]")
    text = text.replace("[77.1, 43.35, 900]", f"[{huge}, 43.35]")
    refused = await import_form(client, coordinator, parts(**{"wells.geojson": text.encode()}))
    assert refused.status_code == 422, refused.text
    assert sorted(map(tuple, (e["loc"] for e in refused.json()["errors"]))) == [
        ("media", "wells.geojson", 1, "geometry"),
        ("media", "wells.geojson", 2, "geometry"),
    ]


# --- media stored and served ------------------------------------------------------------------


async def test_media_are_listed_in_the_manifest_and_served_as_uploaded(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    form_id = await published(client, coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form_id))
    base = f"/openrosa/key/{token}/forms/{form_id}"

    xform = (await client.get(f"{base}.xml")).text
    for reference in ("jr://images/logo.png", "jr://audio/welcome.mp3", "jr://images/yes.jpg"):
        assert reference in xform
    manifest = await client.get(f"{base}/manifest")
    assert manifest.status_code == 200, manifest.text
    root = parse_xml(manifest.content)
    space = "{http://openrosa.org/xforms/xformsManifest}"
    listed = {
        entry.findtext(f"{space}filename"): (
            entry.findtext(f"{space}hash"),
            entry.findtext(f"{space}downloadUrl"),
        )
        for entry in root.iter(f"{space}mediaFile")
    }
    assert {name: hashed for name, (hashed, _) in listed.items()} == {
        name: f"md5:{md5(content)}" for name, content in MEDIA.items()
    }
    for name, (_, url) in listed.items():
        got = await client.get(url)
        assert got.status_code == 200, got.text
        assert got.content == MEDIA[name]
        assert got.headers["content-type"] == TYPES[name]
        assert got.headers["etag"] == f'"{md5(MEDIA[name])}"'

    # the same through the JSON API, to the questionnaire's readers
    analyst = await headers_for(app, Role.analyst)
    listing = await client.get(f"/api/v1/questionnaires/{form_id}/media", headers=analyst)
    assert listing.status_code == 200, listing.text
    assert listing.json() == {
        "items": [
            {"name": name, "kind": TYPES[name].split("/")[0], "content_type": TYPES[name],
             "size": len(MEDIA[name]), "md5": md5(MEDIA[name]),
             "sha256": hashlib.sha256(MEDIA[name]).hexdigest(), "received": True}
            for name in ("logo.png", "welcome.mp3", "yes.jpg")  # the definition's order
        ],
        "next_cursor": None,
    }  # fmt: skip
    first = await client.get(
        f"/api/v1/questionnaires/{form_id}/media?limit=1&cursor=2", headers=analyst
    )
    assert [item["name"] for item in first.json()["items"]] == ["yes.jpg"]
    got = await client.get(f"/api/v1/questionnaires/{form_id}/media/welcome.mp3", headers=analyst)
    assert got.content == WELCOME
    collector = {"Authorization": f"Bearer {token}"}
    got = await client.get(f"/api/v1/questionnaires/{form_id}/media/yes.jpg", headers=collector)
    assert (got.status_code, got.content) == (200, YES)


async def test_who_gets_the_media(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    form_id = await published(client, coordinator)
    admin = await headers_for(app, Role.admin)
    other_form = await import_form(
        client,
        coordinator,
        [part for part in parts() if part[1][0] in ("logo.png", "welcome.mp3")],
        survey=[*SURVEY[:2], ["text", "other", "Other"]],
    )  # a draft of the same slug: made once the first is published
    assert other_form.status_code == 201, other_form.text
    stranger = await _collector(client, admin, uuid.UUID(other_form.json()["id"]))
    base = f"/openrosa/key/{stranger}/forms/{form_id}"
    for path in ("/manifest", "/media/logo.png"):
        refused = await client.get(base + path)
        assert refused.status_code == 404, refused.text
    bound = await _collector(client, admin, uuid.UUID(form_id))
    unknown = await client.get(f"/openrosa/key/{bound}/forms/{form_id}/media/nothing.png")
    assert unknown.status_code == 404
    headers = {"Authorization": f"Bearer {stranger}"}
    api = f"/api/v1/questionnaires/{form_id}/media"
    assert (await client.get(api, headers=headers)).status_code == 404
    assert (await client.get(f"{api}/logo.png", headers=headers)).status_code == 404
    assert (await client.get(f"{api}/logo.png")).status_code == 401
    # a draft's media: its readers only (an observer is told 404, as for the draft)
    observer = await headers_for(app, Role.observer)
    draft = f"/api/v1/questionnaires/{other_form.json()['id']}/media"
    assert (await client.get(draft, headers=observer)).status_code == 404
    assert (await client.get(draft, headers=coordinator)).status_code == 200
    analyst = await headers_for(app, Role.analyst)
    refused = await import_form(client, analyst, parts())
    assert refused.status_code == 403


# --- refusals and limits ----------------------------------------------------------------------


async def test_wrong_typed_and_unused_files_are_refused_together(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    refused = await import_form(
        client,
        coordinator,
        parts(**{"yes.jpg": b"just some text, not a picture", "welcome.mp3": LOGO,
                 "extra.png": png(), "spare.csv": b"name,label\na,A\n"}),
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    errors = {tuple(e["loc"]): e for e in refused.json()["errors"]}
    assert set(errors) == {
        ("media", "yes.jpg"),
        ("media", "welcome.mp3"),
        ("media", "extra.png"),
        ("media", "spare.csv"),
    }
    assert "does not use" in errors[("media", "extra.png")]["msg"]
    assert "image/png" in errors[("media", "welcome.mp3")]["msg"]
    assert (await client.get("/api/v1/questionnaires?slug=wells", headers=coordinator)).json()[
        "items"
    ] == []


async def test_bad_files_are_named_with_the_workbooks_and_lists_problems(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    # One 422 for everything: a row the form cannot map, a list item without a value and the
    # media parts that do not fit were once answered one kind at a time.
    survey = [*SURVEY, ["integer", "age", "A" * 2001]]  # row 6: a label past 2,000 characters
    refused = await import_form(
        client,
        coordinator,
        parts(**{"yes.jpg": b"just some text, not a picture", "extra.png": png(),
                 "posts.xml": b"<root><item><label>No name</label></item></root>"}),
        survey,
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert sorted(map(tuple, (e["loc"] for e in refused.json()["errors"]))) == [
        ("file", "survey", 6, "label"),
        ("media", "extra.png"),
        ("media", "posts.xml", 1, "name"),
        ("media", "yes.jpg"),
    ]


async def test_a_list_file_sent_twice_is_refused_as_other_files_are(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    # two different posts.xml: one of them was silently read, the other dropped
    media = [
        *parts(),
        ("media", ("posts.xml", b"<root><item><name>p9</name></item></root>", "text/xml")),
    ]
    refused = await import_form(client, coordinator, media)
    assert refused.status_code == 422, refused.text
    assert [e["loc"] for e in refused.json()["errors"]] == [["media", "posts.xml"]]
    assert "twice" in refused.json()["errors"][0]["msg"]


async def test_a_file_named_but_not_sent_leaves_the_form_without_it(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await import_form(client, coordinator, parts(**{"welcome.mp3": b""}))
    assert imported.status_code == 201, imported.text
    form_id = imported.json()["id"]
    listing = (
        await client.get(f"/api/v1/questionnaires/{form_id}/media", headers=coordinator)
    ).json()
    assert {item["name"]: item["received"] for item in listing["items"]} == {
        "logo.png": True, "welcome.mp3": False, "yes.jpg": True
    }  # fmt: skip
    await client.post(f"/api/v1/questionnaires/{form_id}/publish", headers=coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form_id))
    manifest = (await client.get(f"/openrosa/key/{token}/forms/{form_id}/manifest")).text
    assert "logo.png" in manifest and "welcome.mp3" not in manifest
    # deleting a draft deletes its media (a new draft of the slug has none of them)
    again = await import_form(client, coordinator, parts())
    assert again.status_code == 201
    deleted = await client.delete(
        f"/api/v1/questionnaires/{again.json()['id']}", headers=coordinator
    )
    assert deleted.status_code == 204


async def test_a_drafts_media_may_be_sent_later_and_replaced(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await import_form(client, coordinator, parts(**{"welcome.mp3": b""}))
    form_id = imported.json()["id"]
    url = f"/api/v1/questionnaires/{form_id}/media"
    sent = await client.put(f"{url}/welcome.mp3", content=WELCOME, headers=coordinator)
    assert sent.status_code == 201, sent.text
    assert sent.headers["Location"] == f"{url}/welcome.mp3"  # the contract's 201
    assert (sent.json()["md5"], sent.json()["content_type"]) == (md5(WELCOME), "audio/mpeg")
    other = png(4, 4, seed=9)
    again = await client.put(f"{url}/logo.png", content=other, headers=coordinator)
    assert again.status_code == 200, again.text
    got = await client.get(f"{url}/logo.png", headers=coordinator)
    assert got.content == other
    listing = (await client.get(url, headers=coordinator)).json()["items"]
    assert {item["name"]: item["md5"] for item in listing} == {
        "logo.png": md5(other), "welcome.mp3": md5(WELCOME), "yes.jpg": md5(YES)
    }  # fmt: skip
    for name, content, expected in (
        ("yes.jpg", b"plain text", 422),  # not an image
        ("extra.png", png(), 422),  # the definition does not name it
    ):
        refused = await client.put(f"{url}/{name}", content=content, headers=coordinator)
        assert refused.status_code == expected, refused.text
    for role in (Role.analyst, Role.observer):
        headers = await headers_for(app, role)
        refused = await client.put(f"{url}/logo.png", content=png(), headers=headers)
        assert refused.status_code == 403, refused.text
    await client.post(f"/api/v1/questionnaires/{form_id}/publish", headers=coordinator)
    frozen = await client.put(f"{url}/logo.png", content=png(), headers=coordinator)
    assert frozen.status_code == 409, frozen.text
    assert (await client.get(f"{url}/logo.png", headers=coordinator)).content == other


async def test_a_put_that_overlaps_a_publish_is_stored_before_it_or_refused(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    # The draft check and the insert are one transaction; without a lock on the questionnaire
    # a publish committed in between (PostgreSQL) left a file put into a published version.
    form_id = (await import_form(client, coordinator, parts())).json()["id"]
    url = f"/api/v1/questionnaires/{form_id}/media/logo.png"
    other = png(5, 5, seed=4)
    actor = Principal(kind="user", id=uuid.uuid4(), roles=frozenset({Role.coordinator}))
    received = await receive(_once(other), len(other), "logo.png")
    try:
        async with app.state.sessionmaker() as session, session.begin():
            await form_media.put_file(
                session, actor, uuid.UUID(form_id), "logo.png", received, app.state.settings
            )
            publish = asyncio.create_task(
                client.post(f"/api/v1/questionnaires/{form_id}/publish", headers=coordinator)
            )
            await asyncio.sleep(0.5)
            # the publish waits for the put, or it would publish media about to change
            assert not publish.done()
    finally:
        received.close()
    assert (await publish).status_code == 200
    assert (await client.get(url, headers=coordinator)).content == other


async def test_puts_of_one_new_name_at_once_store_it_once(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    # Each put deleted nothing and inserted: on PostgreSQL all but one hit the unique name (500)
    form_id = (await import_form(client, coordinator, parts(**{"logo.png": b""}))).json()["id"]
    url = f"/api/v1/questionnaires/{form_id}/media/logo.png"
    images = [png(4, 4, seed=seed) for seed in range(8)]
    sent = await asyncio.gather(
        *(client.put(url, content=image, headers=coordinator) for image in images)
    )
    assert sorted(answer.status_code for answer in sent) == [200] * 7 + [201]
    stored = (await client.get(url, headers=coordinator)).content
    assert stored in images


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def small_media(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The suite's database through an app with small form media bounds."""
    application = create_app(
        settings.model_copy(
            update={
                "form_media_max_file_bytes": 4000,
                "form_media_max_bytes": 7000,
                "form_media_max_files": 2,
            }
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://testserver"
    ) as http:
        yield http
    await application.state.engine.dispose()


async def test_size_and_count_bounds(
    client: httpx.AsyncClient, coordinator: dict[str, str], small_media: httpx.AsyncClient
) -> None:
    too_big = await import_form(
        small_media,
        coordinator,
        parts(**{"welcome.mp3": mp3(100), "yes.jpg": jpeg(5000), "logo.png": b""}),
    )
    assert too_big.status_code == 413, too_big.text
    assert "yes.jpg" in too_big.json()["detail"]
    together = await import_form(
        small_media,
        coordinator,
        parts(**{"welcome.mp3": mp3(3600), "yes.jpg": jpeg(3600), "logo.png": b""}),
    )
    assert together.status_code == 413, together.text
    assert "together" in together.json()["detail"]
    many = await import_form(
        small_media,
        coordinator,
        parts(**{"welcome.mp3": mp3(100), "yes.jpg": jpeg(100), "logo.png": png()}),
    )
    assert many.status_code == 422, many.text
    assert [e["loc"] for e in many.json()["errors"]] == [["media", "yes.jpg"]]
    listed = await client.get("/api/v1/questionnaires?slug=wells", headers=coordinator)
    assert listed.json()["items"] == []
    draft = await import_form(client, coordinator, parts(**{"yes.jpg": b""}))
    url = f"/api/v1/questionnaires/{draft.json()['id']}/media/yes.jpg"
    refused = await small_media.put(url, content=jpeg(5000), headers=coordinator)
    assert refused.status_code == 413, refused.text


# --- ODK's engine -----------------------------------------------------------------------------


async def test_odks_engine_loads_a_form_with_media_and_file_lists(
    app: FastAPI,
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    form_id = await published(client, coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form_id))
    filling = {"well": "w2", "posts": ["p1", "p2"], "working": "yes"}
    with running_server(database_url, tmp_path / "server.log") as server:
        result = odk_engine_fills(f"{server.base}/openrosa/key/{token}", "wells", filling)
    assert result["payload_status"] == "ready", result
    assert [s["status"] for s in result["submissions"]] == [201, 202]
    instance_id = parse_xml(result["instance"]).findtext("meta/instanceID")
    stored = await client.get(
        f"/api/v1/responses/{instance_id.removeprefix('uuid:')}", headers=admin
    )
    assert stored.json()["answers"] == filling
