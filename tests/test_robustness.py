"""Bad input and races against the real app: a clear 4xx problem+json, nothing written, one row.

Most requests go through httpx's ASGI transport; what it cannot send (a body that outgrows its
Content-Length, raw bytes in the request line) goes to a real `kenes serve` on loopback, on the
suite's database.

Decisions recorded here:
- Duplicate JSON keys are accepted, last one wins, as Python's json module (and most parsers)
  do; refusing them would need a parser of our own on the hot path for no safety gain.
- NUL characters and unpaired UTF-16 surrogates (`\\u0000`, `\\ud800`) in JSON or form text are
  refused with 422 by the body guard (app/middleware.py) on both databases: PostgreSQL cannot
  store either. A NUL inside an uploaded CSV is refused with 422 naming its line.
"""

import asyncio
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlmodel import SQLModel

from app.errors import problem
from app.models.auth import Role
from app.models.questionnaires import Questionnaire
from tests.conftest import ROOT, TEST_SECRET, free_port
from tests.factories import create_questionnaire, headers_for
from tests.test_consultations import COLUMNS as CONSULTATION_COLUMNS
from tests.test_territories import HEADER as TERRITORY_HEADER
from tests.test_territories import import_tree

XLSFORM = ROOT / "examples" / "almaty_participation.xlsx"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Tables whose rows a refused request may legitimately add: the per-address counters of the rate
# limiter (anonymous submissions, logins) and the audit log (failed logins).
BOOKKEEPING = {"rate_limit_bucket", "audit_event"}


# --- helpers ----------------------------------------------------------------------------------


async def row_counts(app: FastAPI) -> dict[str, int]:
    counts = {}
    async with app.state.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name not in BOOKKEEPING:
                statement = select(func.count()).select_from(table)
                counts[table.name] = int((await connection.execute(statement)).scalar_one())
    return counts


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("urn:kenes:problem:")
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


class Refusals:
    """Sends one bad request after another and checks each is refused with nothing written."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def __call__(
        self, statuses: tuple[int, ...], method: str, url: str, **kwargs: Any
    ) -> dict[str, Any]:
        before = await row_counts(self.app)
        response = await self.client.request(method, url, **kwargs)
        body = assert_problem(response, *statuses)
        assert await row_counts(self.app) == before, f"{method} {url} wrote rows"
        return body


@pytest.fixture
def refused(app: FastAPI, client: httpx.AsyncClient) -> Refusals:
    return Refusals(app, client)


@pytest.fixture
async def observer(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.observer)


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


@pytest.fixture
async def survey(app: FastAPI) -> Questionnaire:
    return await create_questionnaire(app, publish=True)


def responses_url(survey: Questionnaire, suffix: str = "") -> str:
    return f"/api/v1/questionnaires/{survey.id}/responses{suffix}"


def answers(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "aware": "yes",
        "channels_known": ["hearings"],
        "participated": True,
        "times_participated": 2,
        "info_sources": ["tv"],
        "trust_akimat": 3,
        "suggestions": "Больше слушаний",
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def submission(**changes: Any) -> dict[str, Any]:
    body = {"respondent": {"group": "student", "gender": "female"}, "answers": answers()}
    return body | changes


def json_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "content-type": "application/json"}


@pytest.fixture
async def consultation(client: httpx.AsyncClient, coordinator: dict[str, str]) -> dict[str, Any]:
    await import_tree(client, coordinator)
    made = await client.post(
        "/api/v1/consultations",
        json={
            "territory_code": "112010001",
            "host": "Аким района",
            "starts_at": "2025-05-04T11:00:00+05:00",
            "location": "Дом культуры",
        },
        headers=coordinator,
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def observation(**changes: Any) -> dict[str, Any]:
    body = {
        "id": str(uuid.uuid4()),
        "observed_at": datetime.now(UTC).isoformat(),
        "outcome": "held",
        "attendees_total": 40,
        "attendees_women": 22,
        "location": {"lat": 51.1, "lon": 71.4},
    }
    return body | changes


# --- sizes --------------------------------------------------------------------------------------


async def test_bodies_over_the_limit_are_413_with_and_without_content_length(
    app: FastAPI, refused: Refusals, survey: Questionnaire, observer: dict[str, str]
) -> None:
    limit = app.state.settings.max_body_bytes
    padded = submission(answers=answers(suggestions="x" * (limit + 10)))
    content = json.dumps(padded).encode()
    await refused(
        (413,), "POST", responses_url(survey), content=content, headers=json_headers(observer)
    )

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    await refused(
        (413,), "POST", responses_url(survey), content=chunks(), headers=json_headers(observer)
    )
    # A declared length over the limit is refused before a byte is read.
    await refused(
        (413,),
        "POST",
        responses_url(survey),
        content=b"{}",
        headers={**json_headers(observer), "content-length": str(limit + 1)},
    )


async def test_a_chunked_body_under_the_limit_is_read_whole(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    """The guard reads JSON bodies itself; the route must still get every byte of them."""
    content = json.dumps(submission(answers=answers(suggestions="ж" * 900))).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 7):  # splits multi-byte characters too
            yield content[start : start + 7]

    created = await client.post(
        responses_url(survey), content=chunks(), headers=json_headers(observer)
    )
    assert created.status_code == 201, created.text
    assert created.json()["answers"]["suggestions"] == "ж" * 900
    assert (await row_counts(app))["response"] == 1


async def test_deep_nesting_and_huge_arrays_are_refused(
    refused: Refusals, survey: Questionnaire, observer: dict[str, str]
) -> None:
    headers = json_headers(observer)
    url = responses_url(survey)
    deep = "[" * 10_000 + "]" * 10_000
    await refused((400,), "POST", url, content=deep, headers=headers)
    nested_answer = json.dumps(submission())[:-2] + ', "deep": ' + deep + "}}"
    await refused((400,), "POST", url, content=nested_answer, headers=headers)
    deep_object = '{"a":' * 10_000 + "1" + "}" * 10_000
    await refused((400,), "POST", url, content=deep_object, headers=headers)

    many = submission(answers=answers(info_sources=["tv"] * 100_000))
    body = await refused((422,), "POST", url, json=many, headers=observer)
    assert ["body", "answers", "info_sources"] in [e["loc"] for e in body["errors"]]
    batch = {"responses": [{}] * 100_000}
    body = await refused(
        (422,), "POST", responses_url(survey, "/batch"), json=batch, headers=observer
    )
    assert body["errors"][0]["loc"] == ["body", "responses"]


async def test_batch_bodies_are_read_by_their_route_with_the_same_refusals(
    app: FastAPI,
    client: httpx.AsyncClient,
    refused: Refusals,
    survey: Questionnaire,
    observer: dict[str, str],
) -> None:
    """The batch route decodes its body itself (in a worker thread, a response at a time); bad
    JSON in it is refused as everywhere else, never a 500, and nothing is stored."""
    url = responses_url(survey, "/batch")
    headers = json_headers(observer)
    item = json.dumps(submission(), ensure_ascii=False)
    for bad in (
        "[" + item + "]",  # not an object
        '{"responses": [' + item + ",]}",  # a trailing comma
        '{"responses": [' + item + "] x",  # data after the object
        '{"responses": [' + item + ", " + "[" * 10_000 + "]" * 10_000 + "]}",  # too deep
        '{"responses": [' + item + "]",  # cut short
    ):
        await refused((400,), "POST", url, content=bad.encode(), headers=headers)
    lone = item.replace("Больше", "\\udc80")  # an escaped lone surrogate: decodes, cannot be stored
    problem = await refused(
        (422,), "POST", url, content=('{"responses": [' + lone + "]}").encode(), headers=headers
    )
    assert problem["errors"][0]["loc"][:4] == ["body", "responses", 0, "answers"]
    for raw in (b"\xff\xfe\xfd", b"\xed\xa0\x80"):  # not UTF-8; a surrogate encoded as UTF-8
        content = ('{"responses": [' + item + "]}").encode().replace("Больше".encode(), raw)
        await refused((400,), "POST", url, content=content, headers=headers)
    unknown = await refused(
        (422,), "POST", url, content=b'{"responses": [], "extra": 1}', headers=headers
    )
    assert {tuple(e["loc"]) for e in unknown["errors"]} == {
        ("body", "responses"),
        ("body", "extra"),
    }
    assert (await row_counts(app))["response"] == 0
    # The same body through the same route, once well formed, is stored.
    stored = await client.post(
        url, content=('{"responses": [' + item + "]}").encode(), headers=headers
    )
    assert stored.status_code == 200, stored.text
    assert [r["status"] for r in stored.json()["results"]] == ["created"]


async def test_batches_may_be_larger_than_other_bodies_for_callers_with_a_token(
    app: FastAPI, client: httpx.AsyncClient, refused: Refusals, coordinator: dict[str, str]
) -> None:
    """A batch of 1000 responses to a real form is megabytes, more than KENES_MAX_BODY_BYTES;
    it may be up to KENES_MAX_BATCH_BYTES, but not for callers without a token (public forms)."""
    public = await create_questionnaire(app, publish=True, access="public")
    url = responses_url(public, "/batch")
    limit = app.state.settings.max_body_bytes
    assert app.state.settings.max_batch_bytes > 2 * limit
    padded = answers(suggestions="x" * 900)
    items = [submission(answers=padded) for _ in range(1000)]
    content = json.dumps({"responses": items}).encode()
    assert limit < len(content) < app.state.settings.max_batch_bytes
    await refused(
        (413,), "POST", url, content=content, headers={"content-type": "application/json"}
    )
    assert (await row_counts(app))["response"] == 0
    stored = await client.post(url, content=content, headers=json_headers(coordinator))
    assert stored.status_code == 200, stored.text
    assert {r["status"] for r in stored.json()["results"]} == {"created"}
    assert (await row_counts(app))["response"] == len(items)
    over = b'{"responses": [' + b" " * app.state.settings.max_batch_bytes + b"]}"
    await refused((413,), "POST", url, content=over, headers=json_headers(coordinator))


# --- encodings and characters -----------------------------------------------------------------


async def test_invalid_utf8_and_raw_control_bytes_are_400(
    refused: Refusals, survey: Questionnaire, observer: dict[str, str]
) -> None:
    headers = json_headers(observer)
    url = responses_url(survey)
    valid = json.dumps(submission(), ensure_ascii=False).encode()
    for bad in (
        valid.replace("Больше".encode(), b"\xff\xfe\xfd"),  # not UTF-8 at all
        valid.replace("Больше".encode(), b"\xed\xa0\x80"),  # a surrogate encoded as UTF-8
        valid.replace("Больше".encode(), b"\xc0\xaf"),  # overlong encoding of "/"
        valid.replace("Больше".encode(), b"a\x00b"),  # a raw NUL inside a string
        b"\xef\xbb\xbf" + valid[:-1],  # truncated
    ):
        await refused((400,), "POST", url, content=bad, headers=headers)


@pytest.mark.parametrize(
    "escaped",
    [
        '"suggestions": "a\\u0000b"',
        '"suggestions": "\\ud800"',  # an unpaired high surrogate
        '"suggestions": "x\\udfffy"',  # an unpaired low surrogate
        '"a\\u0000": 1',  # in a key
        '"\\udbff": 1',
    ],
)
async def test_nul_and_lone_surrogates_in_json_text_are_422(
    refused: Refusals, survey: Questionnaire, observer: dict[str, str], escaped: str
) -> None:
    body = json.dumps(submission(answers=answers(suggestions=None)))
    content = body.replace('"answers": {', '"answers": {' + escaped + ", ")
    problem = await refused(
        (422,), "POST", responses_url(survey), content=content, headers=json_headers(observer)
    )
    assert problem["errors"][0]["loc"][:2] == ["body", "answers"]


async def test_nul_anywhere_in_a_body_is_found_and_named(
    refused: Refusals, survey: Questionnaire, observer: dict[str, str]
) -> None:
    body = json.dumps(submission())
    respondent = '{"group": "student", "territory_code": "75\\u00000"}'
    content = body.replace('{"group": "student", "gender": "female"}', respondent)
    problem = await refused(
        (422,), "POST", responses_url(survey), content=content, headers=json_headers(observer)
    )
    assert problem["errors"][0]["loc"] == ["body", "respondent", "territory_code"]
    batch = '{"responses": [' + body + ", " + content + "]}"
    problem = await refused(
        (422,),
        "POST",
        responses_url(survey, "/batch"),
        content=batch,
        headers=json_headers(observer),
    )
    assert problem["errors"][0]["loc"] == ["body", "responses", 1, "respondent", "territory_code"]


async def test_a_valid_surrogate_pair_is_text_like_any_other(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    """The guard parses only bodies with suspicious escapes, and lets real characters through."""
    body = json.dumps(submission(answers=answers(suggestions="Слушания 👍")), ensure_ascii=True)
    assert "\\ud83d\\udc4d" in body
    created = await client.post(responses_url(survey), content=body, headers=json_headers(observer))
    assert created.status_code == 201, created.text
    assert created.json()["answers"]["suggestions"] == "Слушания 👍"


async def test_nul_in_other_resources_and_in_urls(
    refused: Refusals, coordinator: dict[str, str], survey: Questionnaire
) -> None:
    definition = {"slug": "nul-test", "default_language": "ru", "title": {"ru": "a\u0000"}}
    await refused((422,), "POST", "/api/v1/questionnaires", json=definition, headers=coordinator)
    territory = {"code": "123456789", "name": {"ru": "x\u0000"}, "level": "region"}
    await refused((422,), "POST", "/api/v1/territories", json=territory, headers=coordinator)
    for url in (
        "/api/v1/territories/1%002",
        "/api/v1/questionnaires?slug=a%00",
        f"{responses_url(survey)}?territory_code=7%00",
        "/api/v1/consultations?territory_code=%00",
    ):
        await refused((400,), "GET", url, headers=coordinator)
    # A login form: the e-mail goes into a query, so it is refused before that.
    await refused(
        (422,), "POST", "/api/v1/auth/token", data={"username": "a\x00@x.org", "password": "x"}
    )
    await refused(
        (422,),
        "POST",
        "/api/v1/auth/token",
        files={"username": (None, "a\x00@x.org"), "password": (None, "x")},
    )


# --- types and numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"trust_akimat": "3"}, "trust_akimat"),  # a number as a string
        ({"times_participated": "2"}, "times_participated"),
        ({"participated": "true"}, "participated"),
        ({"times_participated": 10**30}, "times_participated"),  # beyond any column
        ({"times_participated": 2**63}, "times_participated"),
        ({"trust_akimat": 3.0000000001}, "trust_akimat"),
        ({"trust_akimat": 1e400}, "trust_akimat"),  # json.dumps writes Infinity
        ({"trust_akimat": float("nan")}, "trust_akimat"),
        ({"trust_akimat": float("-inf")}, "trust_akimat"),
    ],
)
async def test_wrong_types_huge_and_non_finite_numbers_in_answers_are_422(
    refused: Refusals,
    survey: Questionnaire,
    observer: dict[str, str],
    changes: dict[str, Any],
    key: str,
) -> None:
    content = json.dumps(submission(answers=answers(**changes)))  # NaN, Infinity as Python writes
    body = await refused(
        (422,), "POST", responses_url(survey), content=content, headers=json_headers(observer)
    )
    assert ["body", "answers", key] in [e["loc"] for e in body["errors"]]


async def test_an_integer_too_long_to_parse_is_400(
    refused: Refusals, survey: Questionnaire, observer: dict[str, str]
) -> None:
    """Python refuses integers over 4300 digits while parsing (CVE-2020-10735): malformed."""
    content = json.dumps(submission()).replace('"trust_akimat": 3', '"trust_akimat": ' + "9" * 5000)
    await refused(
        (400,), "POST", responses_url(survey), content=content, headers=json_headers(observer)
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"attendees_total": 10**30},
        {"attendees_total": 2**63},
        {"attendees_total": -1},
        {"attendees_women": 41},  # more women than attendees
        {"location": {"lat": float("nan"), "lon": 71.4}},
        {"location": {"lat": float("inf"), "lon": 71.4}},
        {"location": {"lat": 91, "lon": 71.4}},
        {"outcome": "exploded"},
        {"observed_at": "2025-13-01T00:00:00Z"},
        {"observed_at": "2025-05-04T10:00:00"},  # no offset
        pytest.param({"attendees_total": "40"}, id="number-as-string"),
        pytest.param({"observed_at": "0001-01-01T00:00:00+14:00"}, id="year-1"),
    ],
)  # fmt: skip
async def test_bad_observations_are_422(
    refused: Refusals,
    consultation: dict[str, Any],
    observer: dict[str, str],
    changes: dict[str, Any],
) -> None:
    url = f"/api/v1/consultations/{consultation['id']}/observations"
    content = json.dumps(observation(**changes))
    await refused((422,), "POST", url, content=content, headers=json_headers(observer))


@pytest.mark.parametrize(
    "field",
    [
        pytest.param("submitted_at"),
        pytest.param("started_at"),
    ],
)
async def test_times_outside_the_utc_range_are_422(
    refused: Refusals, survey: Questionnaire, observer: dict[str, str], field: str
) -> None:
    for value in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        body = submission(**{field: value})
        await refused((422,), "POST", responses_url(survey), json=body, headers=observer)


@pytest.mark.parametrize("suffix", ["/responses", "/responses/export", "/aggregates"])
async def test_malformed_time_filters_are_422(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, suffix: str
) -> None:
    analyst = await headers_for(app, Role.analyst)
    url = f"/api/v1/questionnaires/{survey.id}{suffix}"
    for params in ({"submitted_from": "yesterday"}, {"submitted_to": "2025-13-01T00:00:00Z"}):
        reply = await client.get(url, params=params, headers=analyst)
        assert_problem(reply, 422)


# --- media types and duplicate keys -------------------------------------------------------------


async def test_wrong_and_missing_content_types_are_415(
    refused: Refusals, survey: Questionnaire, observer: dict[str, str], coordinator: dict[str, str]
) -> None:
    content = json.dumps(submission()).encode()
    url = responses_url(survey)
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/xml",
        "application/jsonp",
        "",
    ):
        await refused(
            (415,), "POST", url, content=content, headers={**observer, "content-type": content_type}
        )
    # httpx adds no content type for raw bytes: the header is missing altogether.
    await refused((415,), "POST", url, content=content, headers=observer)
    # Uploads want multipart; JSON there is as wrong as multipart on a JSON route.
    await refused(
        (415,), "POST", "/api/v1/territories/import", json={"file": "x"}, headers=coordinator
    )
    await refused((415,), "POST", "/api/v1/auth/token", json={"username": "a", "password": "b"})


async def test_duplicate_keys_last_one_wins(
    client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    """Documented decision: duplicate keys are not refused; the last value counts (as json)."""
    answers_text = json.dumps(answers())
    content = (
        '{"respondent": {"group": "astronaut"}, "answers": ' + answers_text + ","
        ' "respondent": {"group": "lawyer", "group": "student"}}'
    )
    created = await client.post(
        responses_url(survey), content=content, headers=json_headers(observer)
    )
    assert created.status_code == 201, created.text
    assert created.json()["respondent"]["group"] == "student"


# --- uploads ------------------------------------------------------------------------------------


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def lying_zip() -> bytes:
    """The real workbook, one sheet padded with 20 MB its zip directory does not declare."""
    source = zipfile.ZipFile(io.BytesIO(XLSFORM.read_bytes()))
    parts = {name: source.read(name) for name in source.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"]
    parts["xl/worksheets/sheet1.xml"] = sheet + b" " * (20 * 1024 * 1024)
    data = zip_bytes(parts)
    padded = len(parts["xl/worksheets/sheet1.xml"]).to_bytes(4, "little")
    assert data.count(padded) == 2  # the local header and the central directory
    return data.replace(padded, len(sheet).to_bytes(4, "little"))


def xlsx_upload(content: bytes, name: str = "form.xlsx") -> dict[str, Any]:
    return {"file": (name, content, XLSX_TYPE)}


async def test_oversized_xlsform_and_csv_uploads_are_413(
    app: FastAPI, refused: Refusals, coordinator: dict[str, str]
) -> None:
    limit = app.state.settings.max_upload_bytes
    big = b"x" * (limit + 1)
    await refused(
        (413,), "POST", "/api/v1/questionnaires/import", files=xlsx_upload(big), headers=coordinator
    )
    for url in ("/api/v1/territories/import", "/api/v1/consultations/import"):
        await refused(
            (413,), "POST", url, files={"file": ("a.csv", big, "text/csv")}, headers=coordinator
        )

    # The same without a Content-Length: a chunked multipart body.
    multipart = httpx.Request(
        "POST", "http://testserver/", files={"file": ("a.csv", big, "text/csv")}
    )
    payload = multipart.read()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 256 * 1024):
            yield payload[start : start + 256 * 1024]

    await refused(
        (413,),
        "POST",
        "/api/v1/territories/import",
        content=chunks(),
        headers={**coordinator, "content-type": multipart.headers["content-type"]},
    )


def _workbook_with_broken_xml() -> bytes:
    """The real workbook with its content-types part cut short."""
    source = zipfile.ZipFile(io.BytesIO(XLSFORM.read_bytes()))
    parts = {name: source.read(name) for name in source.namelist()}
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"][:40]
    return zip_bytes(parts)


XLSFORM_CASES = {
    "empty": lambda: b"",
    "not-a-zip": lambda: b"PK\x03\x04 and then nothing",
    "csv-text": lambda: b"type,name,label\ntext,q1,Question\n",
    "zip-without-a-workbook": lambda: zip_bytes({"hello.txt": b"hi"}),
    "truncated-workbook": lambda: XLSFORM.read_bytes()[: len(XLSFORM.read_bytes()) // 2],
    "zip-bomb": lambda: zip_bytes({"xl/worksheets/sheet1.xml": b"\0" * (60 * 1024 * 1024)}),
    "too-many-parts": lambda: zip_bytes({f"xl/part{n}.xml": b"<a/>" for n in range(500)}),
    "lying-zip-bomb": lying_zip,
    "broken-xml": _workbook_with_broken_xml,
}


@pytest.mark.parametrize(
    "label",
    [pytest.param(label) if label == "broken-xml" else label for label in XLSFORM_CASES],
)
async def test_malformed_xlsforms_are_422(
    refused: Refusals, coordinator: dict[str, str], label: str
) -> None:
    content = XLSFORM_CASES[label]()
    assert len(content) < 1024 * 1024  # the bombs are small on the wire
    url = "/api/v1/questionnaires/import"
    body = await refused((422,), "POST", url, files=xlsx_upload(content), headers=coordinator)
    assert body["errors"][0]["loc"][0] == "file"


async def test_xlsform_uploads_that_are_not_files_are_refused(
    refused: Refusals, coordinator: dict[str, str]
) -> None:
    url = "/api/v1/questionnaires/import"
    workbook = XLSFORM.read_bytes()
    # A workbook under another name is refused by its name.
    await refused((422,), "POST", url, files=xlsx_upload(workbook, "form.exe"), headers=coordinator)
    # A multipart body that is not multipart, or lacks the field.
    await refused(
        (400,),
        "POST",
        url,
        content=b"garbage",
        headers={**coordinator, "content-type": "multipart/form-data; boundary=zz"},
    )
    await refused(
        (400,),
        "POST",
        url,
        content=b"--x\r\n",
        headers={**coordinator, "content-type": "multipart/form-data"},
    )
    await refused(
        (422,), "POST", url, files={"other": ("f.xlsx", workbook, XLSX_TYPE)}, headers=coordinator
    )
    await refused(
        (422,),
        "POST",
        url,
        data={"file": "not a file"},
        files={"x": ("a", b"b")},
        headers=coordinator,
    )


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe" + "code,parent_code".encode("utf-16-le"), id="utf-16"),
        pytest.param(b"code;parent_code;level\n1;;region\n", id="wrong-separator"),
        pytest.param((TERRITORY_HEADER + "123,,region,a,b\n").encode(), id="short-line"),
        pytest.param((TERRITORY_HEADER + '123,,region,"unclosed,b,c\n').encode(), id="open-quote"),
        pytest.param((TERRITORY_HEADER + "1" * 200_000 + ",,region,a,b,c\n").encode(), id="huge-field"),
        pytest.param((TERRITORY_HEADER + "123456789,,region,a\x00,b,c\n").encode(), id="nul"),
        pytest.param(
            (TERRITORY_HEADER + "".join(f"9{n:08d},,nowhere,a,b,c\n" for n in range(20_000))).encode(),
            id="20000-bad-lines",
        ),
        pytest.param(
            (TERRITORY_HEADER + "".join(f"9{n:08d},,region,a,b,c\n" for n in range(5_000)) + "bad\n").encode(),
            id="one-bad-line-after-5000",
        ),
    ],
)  # fmt: skip
async def test_malformed_territory_csv_is_422(
    refused: Refusals, coordinator: dict[str, str], content: bytes
) -> None:
    body = await refused(
        (422,),
        "POST",
        "/api/v1/territories/import",
        files={"file": ("t.csv", content, "text/csv")},
        headers=coordinator,
    )
    assert body["errors"] and len(body["errors"]) <= 100


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(",112010001,h,not a time,,loc,,,,", id="bad-time"),
        pytest.param(",112010001,h,2030-01-01T10:00:00,,loc,,,,", id="no-offset"),
        pytest.param(",112010001,h,99999-01-01T10:00:00+05:00,,loc,,,,", id="year-99999"),
        pytest.param("nope,112010001,h,2030-01-01T10:00:00+05:00,,loc,,,,", id="bad-election"),
        pytest.param(",nowhere,h,2030-01-01T10:00:00+05:00,,loc,,,,", id="unknown-territory"),
        pytest.param(",112010001,,2030-01-01T10:00:00+05:00,,loc,,,,", id="no-host"),
        pytest.param(",112010001,h,2030-01-01T10:00:00+05:00,,loc,,,", id="missing-field"),
        pytest.param(",112010001,h\x00,2030-01-01T10:00:00+05:00,,loc,,,,", id="nul"),
        pytest.param(",112010001,h,0001-01-01T00:00:00+14:00,,loc,,,,", id="year-1"),
    ],
)  # fmt: skip
async def test_malformed_consultation_csv_is_422(
    client: httpx.AsyncClient, refused: Refusals, coordinator: dict[str, str], line: str
) -> None:
    await import_tree(client, coordinator)
    content = (CONSULTATION_COLUMNS + line + "\n").encode()
    body = await refused(
        (422,),
        "POST",
        "/api/v1/consultations/import",
        files={"file": ("c.csv", content, "text/csv")},
        headers=coordinator,
    )
    assert body["errors"][0]["loc"][0] == "file"


@pytest.mark.parametrize(
    "name",
    [
        "../../../../tmp/kenes-evil.csv",
        f"{tempfile.gettempdir()}/kenes-evil.csv",
        "..\\..\\kenes-evil.csv",
        "kenes\x00evil.csv",
        "%2e%2e%2fkenes-evil.csv",
    ],
)
async def test_path_like_file_names_are_never_used_as_paths(
    client: httpx.AsyncClient, refused: Refusals, coordinator: dict[str, str], name: str
) -> None:
    evil = [Path(tempfile.gettempdir(), "kenes-evil.csv"), ROOT.parent / "kenes-evil.csv"]
    evil += [ROOT / "kenes-evil.csv", Path("/kenes-evil.csv")]
    bad = (TERRITORY_HEADER + "1,,nowhere,a,b,c\n").encode()
    await refused(
        (422,),
        "POST",
        "/api/v1/territories/import",
        files={"file": (name, bad, "text/csv")},
        headers=coordinator,
    )
    good = (TERRITORY_HEADER + "77,,region,a,b,c\n").encode()
    imported = await client.post(
        "/api/v1/territories/import", files={"file": (name, good, "text/csv")}, headers=coordinator
    )
    assert imported.status_code == 200, imported.text
    xlsx_name = name.replace(".csv", ".xlsx")
    form = await client.post(
        "/api/v1/questionnaires/import",
        files=xlsx_upload(b"not a workbook", xlsx_name),
        headers=coordinator,
    )
    assert_problem(form, 422)
    assert not any(path.exists() for path in evil)


# --- a real server, for what the ASGI transport cannot send -------------------------------------


@pytest.fixture(scope="module")
def server(app: FastAPI, database_url: str) -> Iterator[str]:
    """`kenes serve` on loopback, on the suite's database (tokens from the suite's app work)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    env.update(
        KENES_DATABASE_URL=database_url,
        KENES_SECRET_KEY=TEST_SECRET,
        KENES_AUTO_MIGRATE="false",
        KENES_LOG_LEVEL="WARNING",
        KENES_DB_POOL_SIZE="5",
    )
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def raw_request(base: str, request: bytes, *, body_chunks: Iterable[bytes] = ()) -> bytes:
    """Send bytes as they are; returns what came back before the server closed or went quiet."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed early: that is the point
        sock.settimeout(5)
        received = b""
        try:
            while b"\r\n\r\n" not in received or not _complete(received):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


async def test_over_a_real_socket(
    app: FastAPI, server: str, survey: Questionnaire, observer: dict[str, str]
) -> None:
    before = await row_counts(app)
    limit = app.state.settings.max_body_bytes
    path = responses_url(survey)
    auth = observer["Authorization"]

    def chunked() -> Iterator[bytes]:
        piece = b'{"x": "' + b"a" * 65_536
        for _ in range(limit // 65_536 + 4):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        yield b"0\r\n\r\n"

    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer = await asyncio.to_thread(raw_request, server, head, body_chunks=chunked())
    assert status_of(answer) == 413, answer[:300]
    assert b"application/problem+json" in answer

    # More bytes than the Content-Length says: the server reads only what was declared.
    body = json.dumps(submission()).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = await asyncio.to_thread(raw_request, server, head + body)
    assert status_of(answer) == 400, answer[:300]

    # Raw bytes the URL may not hold; uvicorn answers the malformed ones itself (400).
    for target in (
        b"/api/v1/territories/%ff%fe",
        b"/api/v1/territories/\xff",
        b"/api/v1/territories/1%002",
    ):
        request = (
            b"GET "
            + target
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
            + auth.encode()
            + b"\r\n\r\n"
        )
        answer = await asyncio.to_thread(raw_request, server, request)
        assert status_of(answer) in (400, 404), answer[:300]
    assert await row_counts(app) == before


# --- races --------------------------------------------------------------------------------------


async def test_fifty_concurrent_copies_of_one_response_store_one_row(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    body = submission(id=str(uuid.uuid4()))
    replies = await asyncio.gather(
        *(client.post(responses_url(survey), json=body, headers=observer) for _ in range(50))
    )
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] * 49 + [201], statuses
    # The same body each time (JSONB keeps its own key order, hence sort_keys).
    assert len({json.dumps(reply.json(), sort_keys=True) for reply in replies}) == 1
    assert (await row_counts(app))["response"] == 1


async def test_fifty_concurrent_copies_of_one_observation_store_one_row(
    app: FastAPI,
    client: httpx.AsyncClient,
    consultation: dict[str, Any],
    observer: dict[str, str],
) -> None:
    url = f"/api/v1/consultations/{consultation['id']}/observations"
    body = observation()
    replies = await asyncio.gather(
        *(client.post(url, json=body, headers=observer) for _ in range(50))
    )
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] * 49 + [201], statuses
    # The same body each time (JSONB keeps its own key order, hence sort_keys).
    assert len({json.dumps(reply.json(), sort_keys=True) for reply in replies}) == 1
    assert (await row_counts(app))["consultation_observation"] == 1


async def test_batches_and_singles_with_overlapping_ids_store_each_id_once(
    app: FastAPI, client: httpx.AsyncClient, survey: Questionnaire, observer: dict[str, str]
) -> None:
    rng = random.Random(7)
    items = [
        submission(id=str(uuid.uuid4()), answers=answers(trust_akimat=n % 5 + 1)) for n in range(30)
    ]
    requests = []
    for _ in range(6):  # batches of overlapping random subsets, repeats inside included
        chosen = rng.sample(items, 20) + rng.sample(items, 3)
        requests.append(
            (
                "batch",
                client.post(
                    responses_url(survey, "/batch"), json={"responses": chosen}, headers=observer
                ),
            )
        )
    for item in items + rng.sample(items, 15):
        requests.append(("single", client.post(responses_url(survey), json=item, headers=observer)))
    rng.shuffle(requests)
    replies = await asyncio.gather(*(request for _, request in requests))

    created: dict[str, int] = {item["id"]: 0 for item in items}
    for (kind, _), reply in zip(requests, replies, strict=True):
        assert reply.status_code in (200, 201), reply.text
        if kind == "single":
            created[reply.json()["id"]] += reply.status_code == 201
            continue
        for result in reply.json()["results"]:
            assert result["status"] in ("created", "duplicate"), result
            created[result["id"]] += result["status"] == "created"
    # Each id acknowledged as created exactly once, and stored exactly once.
    assert set(created.values()) == {1}, created
    assert (await row_counts(app))["response"] == len(items)


def test_a_problem_that_echoes_a_lone_surrogate_still_renders() -> None:
    """An error location may quote the client's key; a lone surrogate there is no 500."""
    response = problem(422, "bad", errors=[{"loc": ["body", "\ud800"], "msg": "x", "type": "t"}])
    assert json.loads(response.body)["errors"][0]["loc"] == ["body", "?"]
