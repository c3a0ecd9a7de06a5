"""Files sent with their response: multipart submissions (every file checked before anything
is stored, retries safe, anonymous callers bounded) and OpenRosa submissions split over POSTs.
Digests are computed here with hashlib from the bytes sent."""

import json
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from app.models.auth import Role
from tests.factories import headers_for
from tests.test_attachments import (
    digest,
    jpeg,
    listing,
    make_survey,
    mp3,
    png,
    response_body,
    small_limits,
    stored_files,
    url,
)

__all__ = ["small_limits"]  # a fixture this module's tests use


# --- with the response: multipart -------------------------------------------------------------


def multipart(body: dict[str, Any], **files: bytes) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "response": ("response.json", json.dumps(body).encode(), "application/json")
    }
    for name, data in files.items():
        parts[name] = (name, data, "application/octet-stream")
    return {"files": parts}


def named(**files: bytes) -> dict[str, bytes]:
    return {name.replace("_", "."): data for name, data in files.items()}


async def test_multipart_checks_every_file_before_storing_anything(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    survey = await make_survey(app, client)
    analyst = await headers_for(app, Role.analyst)
    body = response_body()
    photo, sound = png(), mp3()
    # One bad file (a picture where sound belongs): nothing at all is stored.
    bad = await client.post(
        survey.target,
        **multipart(body, **named(front_png=photo, note_mp3=png(seed=3))),
        headers=survey.collector,
    )
    assert bad.status_code == 422, bad.text
    assert (await client.get(f"/api/v1/responses/{body['id']}", headers=analyst)).status_code == 404
    assert await stored_files(app) == 0
    # A file the answers do not name: the same.
    stray = await client.post(
        survey.target,
        **multipart(body, **named(front_png=photo, stray_png=photo)),
        headers=survey.collector,
    )
    assert stray.status_code == 422, stray.text
    assert (await client.get(f"/api/v1/responses/{body['id']}", headers=analyst)).status_code == 404
    # Invalid answers: nothing either.
    wrong = {**body, "answers": {**body["answers"], "floors": 0}}
    invalid = await client.post(
        survey.target, **multipart(wrong, **named(front_png=photo)), headers=survey.collector
    )
    assert invalid.status_code == 422
    assert await stored_files(app) == 0

    good = await client.post(
        survey.target,
        **multipart(body, **named(front_png=photo, note_mp3=sound)),
        headers=survey.collector,
    )
    assert good.status_code == 201, good.text
    assert good.json()["answers"]["front"] == "front.png"
    files = await listing(client, str(body["id"]), analyst)
    assert files["front.png"]["sha256"] == digest(photo)
    assert files["note.mp3"]["sha256"] == digest(sound)
    assert files["plan.txt"]["received"] is False
    # The same request again (a retry): a replay, nothing new.
    retry = await client.post(
        survey.target,
        **multipart(body, **named(front_png=photo, note_mp3=sound)),
        headers=survey.collector,
    )
    assert retry.status_code == 200, retry.text
    assert await stored_files(app) == 2
    # The rest of the files later, in a retry with one more: stored; other bytes: 409.
    plan = b"plan"
    more = await client.post(
        survey.target,
        **multipart(body, **named(front_png=photo, plan_txt=plan)),
        headers=survey.collector,
    )
    assert more.status_code == 200, more.text
    assert (await listing(client, str(body["id"]), analyst))["plan.txt"]["sha256"] == digest(plan)
    changed = await client.post(
        survey.target, **multipart(body, **named(front_png=png(seed=9))), headers=survey.collector
    )
    assert changed.status_code == 409, changed.text
    # Plain JSON still works as before.
    plain = await client.post(survey.target, json=response_body(), headers=survey.collector)
    assert plain.status_code == 201, plain.text


async def test_multipart_refusals_are_problems(app: FastAPI, client: httpx.AsyncClient) -> None:
    survey = await make_survey(app, client)
    no_response = await client.post(
        survey.target,
        files={"front.png": ("front.png", png(), "image/png")},
        headers=survey.collector,
    )
    assert no_response.status_code == 400
    assert no_response.headers["content-type"] == "application/problem+json"
    not_json = await client.post(
        survey.target,
        files={"response": ("r.json", b"{not json", "application/json")},
        headers=survey.collector,
    )
    assert not_json.status_code == 400
    assert await stored_files(app) == 0


async def test_anonymous_multipart_stays_under_the_public_limit(
    app: FastAPI, client: httpx.AsyncClient, small_limits: httpx.AsyncClient
) -> None:
    survey = await make_survey(app, client, access="public")
    body = response_body()
    too_big = await small_limits.post(
        survey.target, **multipart(body, **named(kitchen_jpg=jpeg(9000)))
    )
    assert too_big.status_code == 413, too_big.text
    analyst = await headers_for(app, Role.analyst)
    assert (await client.get(f"/api/v1/responses/{body['id']}", headers=analyst)).status_code == 404
    fits = await small_limits.post(survey.target, **multipart(body, **named(front_png=png())))
    assert fits.status_code == 201, fits.text
    # Anonymous callers send files with the response only, never later.
    later = await client.put(url(str(body["id"]), "note.mp3"), content=mp3())
    assert later.status_code == 401


# --- OpenRosa ---------------------------------------------------------------------------------


async def test_openrosa_submission_with_a_photo_split_over_two_posts(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    survey = await make_survey(app, client)
    instance_id = uuid.uuid4()
    coordinator = await headers_for(app, Role.coordinator)
    form = (await client.get(f"/api/v1/questionnaires/{survey.id}", headers=coordinator)).json()
    # The instance as ODK Collect writes it for this form (its root names the form).
    xml = (
        f'<?xml version="1.0"?><data id="{form["slug"]}" version="{form["version"]}">'
        "<_respondent><group>surveyor</group></_respondent>"
        "<_start>2026-12-01T10:00:00.000+05:00</_start><_end>2026-12-01T10:05:00.000+05:00</_end>"
        "<front>front.png</front><voice>note.mp3</voice><document/><floors>2</floors>"
        f"<meta><instanceID>uuid:{instance_id}</instanceID></meta></data>"
    ).encode()
    photo, sound = png(), mp3()
    target = f"/openrosa/key/{survey.token}/submission"
    headers = {"X-OpenRosa-Version": "1.0"}

    def parts(**files: tuple[str, bytes, str]) -> dict[str, Any]:
        return {"xml_submission_file": ("submission.xml", xml, "text/xml"), **files}

    bad = await client.post(
        target, files=parts(**{"front.png": ("front.png", b"words", "image/png")}), headers=headers
    )
    assert bad.status_code == 422, bad.text
    analyst = await headers_for(app, Role.analyst)
    assert (
        await client.get(f"/api/v1/responses/{instance_id}", headers=analyst)
    ).status_code == 404

    first = await client.post(
        target, files=parts(**{"front.png": ("front.png", photo, "image/png")}), headers=headers
    )
    assert first.status_code == 201, first.text
    second = await client.post(
        target,
        data={"*isIncomplete*": "yes"},
        files=parts(**{"note.mp3": ("note.mp3", sound, "audio/mpeg")}),
        headers=headers,
    )
    assert second.status_code == 202, second.text
    again = await client.post(
        target, files=parts(**{"front.png": ("front.png", photo, "image/png")}), headers=headers
    )
    assert again.status_code == 202, again.text
    files = await listing(client, str(instance_id), analyst)
    assert files["front.png"]["sha256"] == digest(photo)
    assert files["note.mp3"]["sha256"] == digest(sound)
    got = await client.get(url(str(instance_id), "front.png"), headers=analyst)
    assert got.content == photo
    other = await client.post(
        target,
        files=parts(**{"front.png": ("front.png", png(seed=5), "image/png")}),
        headers=headers,
    )
    assert other.status_code == 409, other.text
