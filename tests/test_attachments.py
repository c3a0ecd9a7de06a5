"""Attachments: the files responses name, sent once each (PUT, multipart, OpenRosa), listed and
streamed back; types read from the bytes, sizes limited, roles enforced. Every digest here is
computed by the test with hashlib from the bytes it sent."""

import asyncio
import hashlib
import math
import os
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.config import Settings
from app.main import create_app
from app.models.attachments import CHUNK_BYTES, attachment_chunk_table, attachment_table
from app.models.auth import Role
from app.services import attachments
from tests.factories import headers_for

# --- files made here --------------------------------------------------------------------------


def png(width: int = 2, height: int = 2, seed: int = 0) -> bytes:
    """A real PNG (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes([seed % 256, 0, 0]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg(size: int = 2048) -> bytes:
    """JFIF start of image and APP0 marker, then filler bytes (a type is read from the start)."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(
        size
    )


def mp3(size: int = 2048) -> bytes:
    """An ID3v2 tag header followed by MPEG audio frame headers."""
    return b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + b"\xff\xfb\x90\x64" * (size // 4)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- a survey with files ----------------------------------------------------------------------


def _label(text: str) -> dict[str, str]:
    return {"ru": text, "kk": text}


def media_definition(access: str = "token") -> dict[str, Any]:
    """A building survey: a photo of the front, a voice note, any document, and a room roster
    (a repeat) with a photo of each room."""
    return {
        "slug": f"building-{uuid.uuid4().hex[:8]}",
        "title": _label("Здание"),
        "default_language": "ru",
        "access": access,
        "respondent_groups": [{"key": "surveyor", "category": "citizen", "label": _label("с")}],
        "questions": [
            {"key": "front", "type": "image", "label": _label("Фасад")},
            {"key": "voice", "type": "audio", "label": _label("Заметка")},
            {"key": "document", "type": "file", "label": _label("Документ")},
            {"key": "floors", "type": "integer", "label": _label("Этажи"), "min": 1},
            {
                "key": "rooms",
                "type": "repeat",
                "label": _label("Комнаты"),
                "questions": [{"key": "room_photo", "type": "image", "label": _label("Фото")}],
            },
        ],
    }


class Survey:
    def __init__(
        self, client: httpx.AsyncClient, survey_id: str, collector: dict[str, str], token: str
    ) -> None:
        self.client = client
        self.id = survey_id
        self.collector = collector
        self.token = token

    @property
    def target(self) -> str:
        return f"/api/v1/questionnaires/{self.id}/responses"


async def make_survey(app: FastAPI, client: httpx.AsyncClient, access: str = "token") -> Survey:
    coordinator = await headers_for(app, Role.coordinator)
    created = await client.post(
        "/api/v1/questionnaires", json=media_definition(access), headers=coordinator
    )
    assert created.status_code == 201, created.text
    survey_id = created.json()["id"]
    published = await client.post(
        f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    token = await new_collector(app, client, survey_id)
    return Survey(client, survey_id, {"Authorization": f"Bearer {token}"}, token)


async def new_collector(app: FastAPI, client: httpx.AsyncClient, survey_id: str) -> str:
    admin = await headers_for(app, Role.admin)
    made = await client.post(
        "/api/v1/collectors",
        json={"name": "phone", "questionnaire_ids": [survey_id]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


ANSWERS = {
    "front": "front.png",
    "voice": "note.mp3",
    "document": "plan.txt",
    "floors": 3,
    "rooms": [{"room_photo": "kitchen.jpg"}, {"room_photo": "hall.jpg"}],
}
EXPECTED = ["front.png", "note.mp3", "plan.txt", "kitchen.jpg", "hall.jpg"]


def response_body(**answers: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "respondent": {"group": "surveyor"},
        "answers": {**ANSWERS, **answers},
    }


async def submitted(survey: Survey, headers: dict[str, str] | None = None) -> str:
    body = response_body()
    stored = await survey.client.post(survey.target, json=body, headers=headers or survey.collector)
    assert stored.status_code == 201, stored.text
    return str(body["id"])


def url(response_id: str, name: str | None = None) -> str:
    base = f"/api/v1/responses/{response_id}/attachments"
    return base if name is None else f"{base}/{name}"


async def listing(client: httpx.AsyncClient, response_id: str, headers: dict[str, str]) -> dict:
    listed = await client.get(url(response_id), headers=headers)
    assert listed.status_code == 200, listed.text
    return {item["name"]: item for item in listed.json()["items"]}


async def count_rows(app: FastAPI, table: Any) -> int:
    async with app.state.engine.connect() as connection:
        found = await connection.execute(select(func.count()).select_from(table))
        return int(found.scalar_one())


async def stored_chunks(app: FastAPI) -> int:
    return await count_rows(app, attachment_chunk_table)


async def stored_files(app: FastAPI) -> int:
    return await count_rows(app, attachment_table)


# --- PUT, list, GET ---------------------------------------------------------------------------


async def test_put_list_and_get_exactly_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    analyst = await headers_for(app, Role.analyst)

    before = await listing(client, response_id, analyst)
    assert list(before) == EXPECTED
    assert all(item["received"] is False and item["sha256"] is None for item in before.values())

    photo = png()
    first = await client.put(url(response_id, "front.png"), content=photo, headers=survey.collector)
    assert first.status_code == 201, first.text
    assert first.json()["sha256"] == digest(photo)
    assert first.json()["size"] == len(photo)
    assert first.json()["content_type"] == "image/png"
    assert first.headers["location"] == url(response_id, "front.png")

    again = await client.put(url(response_id, "front.png"), content=photo, headers=survey.collector)
    assert again.status_code == 200, again.text
    assert again.json()["sha256"] == digest(photo)
    other = await client.put(
        url(response_id, "front.png"), content=png(seed=7), headers=survey.collector
    )
    assert other.status_code == 409, other.text
    assert other.headers["content-type"] == "application/problem+json"

    # In a repeat too; a `file` question takes any bytes.
    kitchen = jpeg()
    put = await client.put(url(response_id, "kitchen.jpg"), content=kitchen, headers=analyst)
    assert put.status_code == 201, put.text
    assert put.json()["content_type"] == "image/jpeg"
    plan = "Этаж 1: кухня, зал\n".encode()
    put = await client.put(url(response_id, "plan.txt"), content=plan, headers=survey.collector)
    assert put.status_code == 201, put.text

    after = await listing(client, response_id, analyst)
    assert after["front.png"] == {
        "name": "front.png",
        "content_type": "image/png",
        "size": len(photo),
        "sha256": digest(photo),
        "received": True,
    }
    assert after["kitchen.jpg"]["sha256"] == digest(kitchen)
    assert after["plan.txt"]["sha256"] == digest(plan)
    assert after["note.mp3"]["received"] is False and after["hall.jpg"]["received"] is False

    got = await client.get(url(response_id, "front.png"), headers=analyst)
    assert got.status_code == 200
    assert got.content == photo
    assert hashlib.sha256(got.content).hexdigest() == digest(photo)
    assert got.headers["content-type"] == "image/png"
    assert got.headers["etag"] == f'"{digest(photo)}"'
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "front.png" in got.headers["content-disposition"]
    cached = await client.get(
        url(response_id, "front.png"), headers={**analyst, "If-None-Match": got.headers["etag"]}
    )
    assert cached.status_code == 304
    missing = await client.get(url(response_id, "note.mp3"), headers=analyst)
    assert missing.status_code == 404

    # Pages: two at a time, in answer order.
    names: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get(url(response_id), params=params, headers=analyst)
        assert page.status_code == 200, page.text
        names += [item["name"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert names == EXPECTED
    bad_cursor = await client.get(url(response_id), params={"cursor": "x!"}, headers=analyst)
    assert bad_cursor.status_code == 400


async def test_the_same_file_sent_at_once_is_stored_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    photo = jpeg(CHUNK_BYTES * 2)
    answers = await asyncio.gather(
        *(
            client.put(url(response_id, "kitchen.jpg"), content=photo, headers=survey.collector)
            for _ in range(6)
        )
    )
    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [201]
    assert await stored_files(app) == 1
    assert await stored_chunks(app) == 3


async def test_types_are_read_from_the_bytes(app: FastAPI, client: httpx.AsyncClient) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    # A PNG named .mp3 for an audio question, text for an image, sent with lying headers.
    refused = await client.put(
        url(response_id, "note.mp3"),
        content=png(),
        headers={**survey.collector, "Content-Type": "audio/mpeg"},
    )
    assert refused.status_code == 422, refused.text
    text = await client.put(
        url(response_id, "front.png"),
        content=b"just some words, not a picture",
        headers={**survey.collector, "Content-Type": "image/png"},
    )
    assert text.status_code == 422, text.text
    empty = await client.put(url(response_id, "front.png"), content=b"", headers=survey.collector)
    assert empty.status_code == 422, empty.text
    assert await stored_files(app) == 0
    sound = mp3()
    accepted = await client.put(
        url(response_id, "note.mp3"), content=sound, headers=survey.collector
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["content_type"] == "audio/mpeg"


async def test_unknown_names_and_responses(app: FastAPI, client: httpx.AsyncClient) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    analyst = await headers_for(app, Role.analyst)
    # (".." itself never reaches the route: clients resolve it in the path.)
    for name in ("other.png", "front.jpg", "%2e%2e", "a%5Cb.png"):
        put = await client.put(url(response_id, name), content=png(), headers=survey.collector)
        assert put.status_code in (400, 404), (name, put.status_code)
    assert (await client.get(url(response_id, "other.png"), headers=analyst)).status_code == 404
    unknown = str(uuid.uuid4())
    assert (
        await client.put(url(unknown, "a.png"), content=png(), headers=analyst)
    ).status_code == 404
    assert (await client.get(url(unknown), headers=analyst)).status_code == 404
    assert await stored_files(app) == 0


async def test_who_may_send_and_read(app: FastAPI, client: httpx.AsyncClient) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    photo = png()
    # Another collector of the same questionnaire, an observer, nobody: refused, nothing told.
    other = {"Authorization": f"Bearer {await new_collector(app, client, survey.id)}"}
    observer = await headers_for(app, Role.observer)
    assert (
        await client.put(url(response_id, "front.png"), content=photo, headers=other)
    ).status_code == 404
    assert (
        await client.put(url(response_id, "front.png"), content=photo, headers=observer)
    ).status_code == 404
    anonymous = await client.put(url(response_id, "front.png"), content=photo)
    assert anonymous.status_code == 401
    assert await stored_files(app) == 0
    # The submitting collector sends, but does not read; analysts read.
    own = await client.put(url(response_id, "front.png"), content=photo, headers=survey.collector)
    assert own.status_code == 201
    for path in (url(response_id), url(response_id, "front.png")):
        assert (await client.get(path, headers=survey.collector)).status_code == 403
        assert (await client.get(path, headers=observer)).status_code == 403
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=await headers_for(app, Role.analyst))).is_success
    # An observer's own response: the observer may send its files.
    own_response = await submitted(survey, observer)
    mine = await client.put(url(own_response, "front.png"), content=photo, headers=observer)
    assert mine.status_code == 201, mine.text


async def test_deleting_the_response_deletes_its_files(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    put = await client.put(url(response_id, "front.png"), content=png(), headers=survey.collector)
    assert put.status_code == 201
    admin = await headers_for(app, Role.admin)
    assert (
        await client.delete(f"/api/v1/responses/{response_id}", headers=admin)
    ).status_code == 204
    assert await stored_files(app) == 0
    assert await stored_chunks(app) == 0


# --- limits and streaming ---------------------------------------------------------------------


@pytest.fixture
async def small_limits(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The suite's database through an app whose files may be 4 KiB at most."""
    application = create_app(
        settings.model_copy(
            update={"max_attachment_bytes": 4096, "max_public_submission_bytes": 8192}
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://testserver"
    ) as http:
        yield http
    await application.state.engine.dispose()


async def test_a_file_over_the_limit_is_413_and_nothing_is_stored(
    app: FastAPI, client: httpx.AsyncClient, small_limits: httpx.AsyncClient
) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    big = jpeg(6000)
    declared = await small_limits.put(
        url(response_id, "kitchen.jpg"), content=big, headers=survey.collector
    )
    assert declared.status_code == 413, declared.text

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    chunked = await small_limits.put(
        url(response_id, "kitchen.jpg"), content=pieces(), headers=survey.collector
    )
    assert chunked.status_code == 413, chunked.text
    assert chunked.headers["content-type"] == "application/problem+json"
    assert await stored_files(app) == 0
    fits = jpeg(3000)
    ok = await small_limits.put(
        url(response_id, "kitchen.jpg"), content=fits, headers=survey.collector
    )
    assert ok.status_code == 201, ok.text


async def test_a_large_file_is_streamed_in_chunks(app: FastAPI, client: httpx.AsyncClient) -> None:
    survey = await make_survey(app, client)
    response_id = await submitted(survey)
    video_size = 5 * 1024 * 1024 + 12345
    document = b"%PDF-1.7\n" + os.urandom(video_size)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(document), 64 * 1024):
            yield document[start : start + 64 * 1024]

    put = await client.put(url(response_id, "plan.txt"), content=pieces(), headers=survey.collector)
    assert put.status_code == 201, put.text
    assert put.json()["sha256"] == digest(document)
    assert await stored_chunks(app) == math.ceil(len(document) / CHUNK_BYTES)

    analyst = await headers_for(app, Role.analyst)
    got = await client.get(url(response_id, "plan.txt"), headers=analyst)
    assert got.status_code == 200
    assert got.headers["content-length"] == str(len(document))
    assert hashlib.sha256(got.content).hexdigest() == digest(document)
    # What the route streams: one stored chunk at a time, never the whole file.
    sizes = [
        len(piece)
        async for piece in attachments.open_chunks(
            app.state.sessionmaker, uuid.UUID(response_id), "plan.txt"
        )
    ]
    assert max(sizes) == CHUNK_BYTES
    assert sum(sizes) == len(document)
    assert len(sizes) == math.ceil(len(document) / CHUNK_BYTES)


async def test_export_files_gives_the_received_files_in_chunks(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    survey = await make_survey(app, client)
    first, second = await submitted(survey), await submitted(survey)
    photo, kitchen = png(), jpeg(CHUNK_BYTES + 10)
    for response_id, name, data in ((first, "front.png", photo), (second, "kitchen.jpg", kitchen)):
        put = await client.put(url(response_id, name), content=data, headers=survey.collector)
        assert put.status_code == 201
    found: dict[tuple[str, str], bytes] = {}
    async with app.state.sessionmaker() as session:
        async for response_id, name, chunks in attachments.export_files(
            session, uuid.UUID(survey.id), [uuid.UUID(first), uuid.UUID(second)]
        ):
            found[(str(response_id), name)] = b"".join([piece async for piece in chunks])
        only_first = [
            name
            async for _, name, _ in attachments.export_files(
                session, uuid.UUID(survey.id), [uuid.UUID(first)]
            )
        ]
    assert found == {(first, "front.png"): photo, (second, "kitchen.jpg"): kitchen}
    assert only_first == ["front.png"]
