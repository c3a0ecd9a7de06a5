"""Exports: XLSX (typed cells, frozen header, a sheet per repeat), ZIP (a CSV per repeat,
attachments), GeoJSON; expected cells computed here from what each test submitted."""

import csv
import io
import json
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openpyxl import load_workbook

from app.models.auth import Role
from app.models.questionnaires import Questionnaire
from app.services.exports import xlsx as xlsx_module
from tests.factories import almaty_answers, almaty_definition, create_questionnaire, headers_for
from tests.servers import running_server
from tests.test_attachments import make_survey, png
from tests.test_responses import roster_definition


@pytest.fixture
async def survey(app: FastAPI) -> Questionnaire:
    return await create_questionnaire(app, publish=True)


@pytest.fixture
async def observer(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.observer)


@pytest.fixture
async def analyst(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.analyst)


def submission(**answers: Any) -> dict[str, Any]:
    return {
        "respondent": {"group": "student", "gender": "female", "age_band": "18-24"},
        "answers": {k: v for k, v in almaty_answers(**answers).items() if v is not None},
        "language": "ru",
        "channel": "mobile",
    }


async def test_a_text_answer_with_an_escape_character_does_not_break_the_xlsx(
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    analyst: dict[str, str],
) -> None:
    """ "\\x1b" cannot be written in XML: it once cut the XLSX mid-stream. It is removed."""
    target = f"/api/v1/questionnaires/{survey.id}/responses"
    texts = ["colour \x1b[31mred\x1b[0m", "tab\tand\x0bvertical\x0c feed\x7f kept"]
    for text in texts:
        reply = await client.post(target, json=submission(suggestions=text), headers=observer)
        assert reply.status_code == 201, reply.text
    xlsx = await client.get(f"{target}/export", params={"format": "xlsx"}, headers=analyst)
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content))["responses"]
    rows = list(sheet.iter_rows(values_only=True))
    column = rows[0].index("suggestions")
    allowed = {"\t", "\n", "\r"}
    expected = ["".join(c for c in t if c >= " " or c in allowed) for t in texts]
    assert [row[column] for row in rows[1:]] == expected


STREAMED = ("csv", "xlsx", "zip")


def url(questionnaire_id: Any, suffix: str = "") -> str:
    return f"/api/v1/questionnaires/{questionnaire_id}/responses{suffix}"


async def export(
    client: httpx.AsyncClient, questionnaire_id: Any, headers: dict[str, str], **params: str
) -> httpx.Response:
    reply = await client.get(url(questionnaire_id, "/export"), params=params, headers=headers)
    assert reply.status_code == 200, reply.text[:500]
    return reply


def same_moment(cell: Any, text: str) -> bool:
    """A stored time as a spreadsheet holds it: UTC without a zone, to about a millisecond."""
    moment = datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
    return isinstance(cell, datetime) and abs(cell - moment) <= timedelta(milliseconds=1)


async def test_xlsx_cells_are_typed_and_the_header_is_frozen(
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    analyst: dict[str, str],
) -> None:
    sent = []
    for changes in (
        {},
        {"participated": False, "times_participated": None, "last_hearing": None,
         "channels_known": ["reception"], "suggestions": "=1+1"},
    ):  # fmt: skip
        reply = await client.post(url(survey.id), json=submission(**changes), headers=observer)
        assert reply.status_code == 201, reply.text
        sent.append(reply.json())
    xlsx = await export(client, survey.id, analyst, format="xlsx")
    workbook = load_workbook(io.BytesIO(xlsx.content))
    assert workbook.sheetnames == ["responses"]
    sheet = workbook["responses"]
    assert sheet.freeze_panes == "A2"
    rows = list(sheet.iter_rows(values_only=True))
    names = list(rows[0])
    options = [o["value"] for o in almaty_definition()["questions"][1]["options"]]
    assert len(rows) == 1 + len(sent)
    for row, stored in zip(rows[1:], sent, strict=True):
        cells = dict(zip(names, row, strict=True))
        given = stored["answers"]
        assert cells["id"] == stored["id"]
        assert cells["questionnaire_version"] == 1
        assert same_moment(cells["submitted_at"], stored["submitted_at"])
        assert same_moment(cells["received_at"], stored["received_at"])
        assert cells["group"] == "student" and cells["gender"] == "female"
        assert cells["territory_code"] is None
        assert cells["aware"] == given["aware"]
        for option in options:
            assert cells[f"channels_known/{option}"] == int(option in given["channels_known"])
            assert type(cells[f"channels_known/{option}"]) is int
        assert cells["participated"] is given["participated"]
        assert cells["times_participated"] == given.get("times_participated")
        assert cells["trust_akimat"] == given["trust_akimat"]
        hearing = given.get("last_hearing")
        expected = None if hearing is None else datetime.fromisoformat(hearing)
        assert cells["last_hearing"] == expected  # a date cell (openpyxl reads it as a datetime)
        text = given["suggestions"]
        assert cells["suggestions"] == ("'" + text if text.startswith("=") else text)
    # The cells' own types, as Excel stores them: n(umber), b(oolean), d(ate), s(tring).
    second = {name: cell for name, cell in zip(names, list(sheet.iter_rows())[2], strict=True)}
    assert second["trust_akimat"].data_type == "n"
    assert second["participated"].data_type == "b"
    assert second["submitted_at"].is_date and second["submitted_at"].number_format.startswith(
        "yyyy"
    )
    assert second["suggestions"].data_type == "s"  # never a formula


async def roster_survey(app: FastAPI, client: httpx.AsyncClient, **changes: Any) -> str:
    """The household roster (members, each with a nested repeat of jobs), published."""
    coordinator = await headers_for(app, Role.coordinator)
    definition = {**roster_definition(), **changes}
    created = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    assert created.status_code == 201, created.text
    survey_id = created.json()["id"]
    published = await client.post(
        f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    return str(survey_id)


HOUSEHOLDS = [
    ("female", {"has_land": "yes", "hectares": 2.5, "members": [
        {"age": 44, "works": True, "jobs": [{"sector": "farm"}, {"sector": "trade"}]},
        {"age": 12, "works": False},
        {"age": 71, "works": True, "jobs": [{"sector": "state"}]},
    ]}),
    ("male", {"has_land": "no", "members": [{"age": 30, "works": True,
                                            "jobs": [{"sector": "trade"}]}]}),
    ("female", {"has_land": "no", "members": [{"age": 9}, {"age": 35, "works": True,
                                                          "jobs": [{"sector": "state"}]}]}),
]  # fmt: skip


async def submit_households(
    client: httpx.AsyncClient, survey_id: str, observer: dict[str, str]
) -> list[dict[str, Any]]:
    stored = []
    for gender, answers in HOUSEHOLDS:
        body = {"respondent": {"group": "household", "gender": gender}, "answers": answers}
        reply = await client.post(url(survey_id), json=body, headers=observer)
        assert reply.status_code == 201, reply.text
        stored.append(reply.json())
    return stored


def expected_tables(
    stored: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The members' and jobs' rows as the export should give them, in order, with the links
    given as (response index, member position) rather than ids: the test resolves the ids."""
    members, jobs = [], []
    for number, response in enumerate(stored):
        for index, member in enumerate(response["answers"]["members"], start=1):
            members.append({"response": number, "index": index, "age": member["age"],
                            "works": member.get("works")})  # fmt: skip
            for place, job in enumerate(member.get("jobs", []), start=1):
                jobs.append({"member": len(members) - 1, "index": place, "sector": job["sector"]})
    return members, jobs


def check_tables(
    stored: list[dict[str, Any]],
    member_rows: list[dict[str, Any]],
    job_rows: list[dict[str, Any]],
    as_text: bool,
) -> None:
    """The repeat tables against what was submitted: every row's parent_id names its response
    (members) or its member's row (jobs)."""
    members, jobs = expected_tables(stored)
    assert len(member_rows) == len(members) and len(job_rows) == len(jobs)
    ids = [row["id"] for row in member_rows + job_rows]
    assert len(set(ids)) == len(ids)

    def value(x: Any) -> Any:
        if not as_text or x is None:
            return "" if as_text else x
        return ("true" if x else "false") if isinstance(x, bool) else str(x)

    for row, want in zip(member_rows, members, strict=True):
        assert row["parent_id"] == stored[want["response"]]["id"]
        assert row["index"] == value(want["index"])
        assert row["age"] == value(want["age"]) and row["works"] == value(want["works"])
    for row, want in zip(job_rows, jobs, strict=True):
        assert row["parent_id"] == member_rows[want["member"]]["id"]
        assert row["index"] == value(want["index"]) and row["sector"] == want["sector"]


def sheet_rows(workbook: Any, name: str) -> list[dict[str, Any]]:
    rows = list(workbook[name].iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


async def test_xlsx_has_a_sheet_per_repeat_linked_by_parent_id(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str]
) -> None:
    survey_id = await roster_survey(app, client)
    stored = await submit_households(client, survey_id, observer)
    xlsx = await export(client, survey_id, analyst, format="xlsx")
    workbook = load_workbook(io.BytesIO(xlsx.content))
    assert workbook.sheetnames == ["responses", "members", "jobs"]
    for name in workbook.sheetnames:
        assert workbook[name].freeze_panes == "A2"
    header = [c.value for c in next(workbook["members"].iter_rows(max_row=1))]
    assert header == ["parent_id", "index", "age", "works", "id"]
    main = sheet_rows(workbook, "responses")
    assert [row["id"] for row in main] == [item["id"] for item in stored]
    assert [row["hectares"] for row in main] == [a.get("hectares") for _, a in HOUSEHOLDS]
    assert "age" not in main[0]
    check_tables(stored, sheet_rows(workbook, "members"), sheet_rows(workbook, "jobs"), False)

    # The filters hold for the repeats' sheets too.
    women = [item for item in stored if item["respondent"]["gender"] == "female"]
    filtered = await export(client, survey_id, analyst, format="xlsx", gender="female")
    workbook = load_workbook(io.BytesIO(filtered.content))
    check_tables(women, sheet_rows(workbook, "members"), sheet_rows(workbook, "jobs"), False)


def zipped_csv(archive: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    text = archive.read(name).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


async def test_zip_holds_the_csv_and_a_csv_per_repeat(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str]
) -> None:
    survey_id = await roster_survey(app, client)
    stored = await submit_households(client, survey_id, observer)
    reply = await export(client, survey_id, analyst, format="zip")
    assert reply.headers["content-type"] == "application/zip"
    assert reply.headers["content-disposition"].endswith('.zip"')
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    assert archive.testzip() is None
    assert archive.namelist() == ["responses.csv", "responses-members.csv", "responses-jobs.csv"]
    plain = await export(client, survey_id, analyst, format="csv")
    assert archive.read("responses.csv") == plain.content
    members = zipped_csv(archive, "responses-members.csv")
    assert list(members[0]) == ["parent_id", "index", "age", "works", "id"]
    check_tables(stored, members, zipped_csv(archive, "responses-jobs.csv"), as_text=True)

    women = [item for item in stored if item["respondent"]["gender"] == "female"]
    filtered = await export(client, survey_id, analyst, format="zip", gender="female")
    archive = zipfile.ZipFile(io.BytesIO(filtered.content))
    assert [row["id"] for row in zipped_csv(archive, "responses.csv")] == [w["id"] for w in women]
    check_tables(
        women,
        zipped_csv(archive, "responses-members.csv"),
        zipped_csv(archive, "responses-jobs.csv"),
        as_text=True,
    )
    refused = await client.get(
        url(survey_id, "/export"), params={"format": "zip"}, headers=observer
    )
    assert refused.status_code == 403


async def test_repeat_sheet_names_are_valid_and_unique_in_excel(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str]
) -> None:
    """Sheet names: at most 31 characters, unique ignoring case, not the main sheet's."""
    keys = ["responses", "h" * 40 + "_a", "h" * 40 + "_b", "History"]
    questions = [
        {"key": key, "type": "repeat", "label": {"ru": key},
         "questions": [{"key": f"q{n}", "type": "integer", "label": {"ru": "n"}}]}
        for n, key in enumerate(keys)
    ]  # fmt: skip
    survey_id = await roster_survey(app, client, questions=questions)
    answers = {key: [{f"q{n}": n}] for n, key in enumerate(keys)}
    body = {"respondent": {"group": "household"}, "answers": answers}
    assert (await client.post(url(survey_id), json=body, headers=observer)).status_code == 201
    workbook = load_workbook(
        io.BytesIO((await export(client, survey_id, analyst, format="xlsx")).content)
    )
    names = workbook.sheetnames
    assert len(names) == 5 and len({name.lower() for name in names}) == 5
    assert all(len(name) <= 31 for name in names)
    assert names[0] == "responses" and "history" not in [name.lower() for name in names]
    for n, name in enumerate(names[1:]):
        assert sheet_rows(workbook, name)[0][f"q{n}"] == n


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        / 1024
    )


def stream_export(
    base: str, survey_id: Any, headers: dict[str, str], fmt: str, pid: int
) -> tuple[int, float]:
    """Read a whole export from a real server, dropping it as it comes: (its size, the
    server's highest resident memory meanwhile, sampled every 10 ms, in MB)."""
    size, peak, done = 0, [resident_mb(pid)], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak.append(resident_mb(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        path = f"{base}{url(survey_id, '/export')}"
        with httpx.stream(
            "GET", path, params={"format": fmt}, headers=headers, timeout=120
        ) as reply:
            assert reply.status_code == 200
            for chunk in reply.iter_raw():
                size += len(chunk)
    finally:
        done.set()
        sampler.join()
    return size, max(peak)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_export_memory_does_not_grow_with_the_responses(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real server's peak resident memory while exporting 1,000 responses of 1 kB each as CSV,
    XLSX and ZIP (a full chunk of rows), then 16,000: about the same, where a buffer of the
    whole export would add its 15 MB or more."""
    survey = await create_questionnaire(app, publish=True)
    observer = await headers_for(app, Role.observer)
    item = submission(suggestions="more public hearings online please " * 28)

    async def add(count: int) -> None:
        batch = {"responses": [item] * count}
        reply = await client.post(url(survey.id, "/batch"), json=batch, headers=observer)
        assert {r["status"] for r in reply.json()["results"]} == {"created"}

    await add(1000)
    analyst = await headers_for(app, Role.analyst)
    # Fewer malloc arenas: the worker threads' own arenas made the resident size vary by
    # several MB from one export to the next.
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    with running_server(database_url, tmp_path / "server.log") as server:
        # Each format twice first: what the first export of a kind allocates for good
        # (imports, caches) is not the export's growth.
        small = [
            stream_export(server.base, survey.id, analyst, f, server.pid) for f in STREAMED * 2
        ]
        for _ in range(15):
            await add(1000)
        large = [stream_export(server.base, survey.id, analyst, f, server.pid) for f in STREAMED]
    print("exports (bytes, peak MB):", small, large)  # noqa: T201
    assert large[0][0] > 16 * small[0][0] - 200_000  # the CSV: 16 times the responses
    for fmt, before, after in zip(STREAMED, small[len(STREAMED) :], large, strict=True):
        # 10 MB: the resident size varies by a few MB from one export to the next; a buffer
        # of the whole CSV would add its 19 MB and more.
        assert after[1] - before[1] < 10, (fmt, before, after)


# --- the field question types: geodata, time, rank, media, metadata --------------------------


def field_question(key: str, qtype: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": qtype, "label": {"ru": key}, **extra}


FIELD_FORM = [
    {"key": "device", "type": "meta", "meta": "deviceid"},
    field_question("visit_time", "time"),
    field_question("visit_at", "datetime"),
    field_question("home", "geopoint"),
    field_question("well", "geopoint"),
    field_question("route", "geotrace"),
    field_question("field", "geoshape"),
    field_question("code", "barcode"),
    field_question("consent", "acknowledge"),
    field_question(
        "needs", "rank", options=[{"value": v, "label": {"ru": v}} for v in ("water", "road", "school")]
    ),
    field_question("photo", "image"),
    {"key": "plots", "type": "repeat", "label": {"ru": "plots"},
     "questions": [field_question("corner", "geopoint"), field_question("seen", "time")]},
]  # fmt: skip

A = {"lat": 43.238, "lon": 76.945, "altitude": 850.5, "accuracy": 4.5}
B = {"lat": -10.5, "lon": 179.25}
C = {"lat": 43.3, "lon": 76.9, "accuracy": 3}
FIELD_ANSWERS = [
    {"device": "collect:abc", "visit_time": "10:15", "visit_at": "2026-12-07T10:15:30.5+06:00",
     "home": A, "well": B, "route": [A, B], "field": [A, B, C, A], "code": "=48700",
     "consent": True, "needs": ["school", "water"], "photo": "house.jpg",
     "plots": [{"corner": C, "seen": "09:00:00Z"}, {"seen": "09:30:15.25"}]},
    {"visit_time": "23:59:59+05:00", "well": C},
    {"device": "collect:def", "home": B, "visit_at": "2026-12-31T23:00:00Z"},
]  # fmt: skip


def odk_points(points: list[dict[str, Any]]) -> str:
    """ODK's text of a trace or shape, written independently: "lat lon alt acc;..."."""

    def number(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    return ";".join(
        " ".join(number(p.get(part, 0)) for part in ("lat", "lon", "altitude", "accuracy"))
        for p in points
    )


async def field_survey(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    survey_id = await roster_survey(app, client, questions=FIELD_FORM)
    stored = []
    for answers in FIELD_ANSWERS:
        body = {"respondent": {"group": "household"}, "answers": answers}
        reply = await client.post(url(survey_id), json=body, headers=observer)
        assert reply.status_code == 201, reply.text
        stored.append(reply.json())
    return survey_id, stored


async def test_field_types_have_their_columns_in_csv_and_xlsx(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str]
) -> None:
    survey_id, stored = await field_survey(app, client, observer)
    reply = await export(client, survey_id, analyst, format="csv")
    rows = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8-sig"))))
    parts = ("lat", "lon", "altitude", "accuracy")
    expected_columns = [
        "device", "visit_time", "visit_at", *(f"home/{p}" for p in parts),
        *(f"well/{p}" for p in parts), "route", "field", "code", "consent", "needs", "photo",
    ]  # fmt: skip
    assert list(rows[0])[12:] == expected_columns
    for row, answers in zip(rows, FIELD_ANSWERS, strict=True):
        for key in ("home", "well"):
            point = answers.get(key, {})
            for part in parts:
                want = point.get(part)
                assert row[f"{key}/{part}"] == ("" if want is None else str(float(want)))
        assert row["device"] == answers.get("device", "")
        assert row["visit_time"] == answers.get("visit_time", "")
        assert row["visit_at"] == answers.get("visit_at", "")
        assert row["route"] == (odk_points(answers["route"]) if "route" in answers else "")
        assert row["field"] == (odk_points(answers["field"]) if "field" in answers else "")
        assert row["code"] == ("'" + answers["code"] if "code" in answers else "")
        assert row["consent"] == ("true" if answers.get("consent") else "")
        assert row["needs"] == " ".join(answers.get("needs", []))
        assert row["photo"] == answers.get("photo", "")
    assert rows[0]["route"] == "43.238 76.945 850.5 4.5;-10.5 179.25 0 0"  # by hand

    workbook = load_workbook(
        io.BytesIO((await export(client, survey_id, analyst, format="xlsx")).content)
    )
    assert workbook.sheetnames == ["responses", "plots"]
    cells = sheet_rows(workbook, "responses")
    first, second, third = cells
    assert first["home/lat"] == A["lat"] and first["home/altitude"] == A["altitude"]
    assert first["well/altitude"] is None and second["home/lat"] is None
    assert first["visit_time"] == dt_time(10, 15)  # typed: no offset
    assert second["visit_time"] == "23:59:59+05:00"  # an offset needs a date: kept as text
    assert first["visit_at"] == datetime(2026, 12, 7, 4, 15, 30, 500000)  # in UTC
    assert third["visit_at"] == datetime(2026, 12, 31, 23, 0)
    assert first["consent"] is True and second["consent"] is None
    plots = sheet_rows(workbook, "plots")
    assert [(p["parent_id"], p["index"]) for p in plots] == [
        (stored[0]["id"], 1),
        (stored[0]["id"], 2),
    ]
    assert plots[0]["corner/lat"] == C["lat"] and plots[0]["corner/accuracy"] == C["accuracy"]
    assert plots[1]["corner/lat"] is None
    assert plots[0]["seen"] == "09:00:00Z" and plots[1]["seen"] == dt_time(9, 30, 15, 250000)


async def test_geojson_places_responses_by_a_geopoint(
    app: FastAPI, client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str]
) -> None:
    survey_id, stored = await field_survey(app, client, observer)
    reply = await export(client, survey_id, analyst, format="geojson")
    assert reply.headers["content-type"].startswith("application/geo+json")
    collection = json.loads(reply.content)
    assert collection["type"] == "FeatureCollection"
    # The first geopoint (home): the responses that answered it, [lon, lat(, altitude)].
    placed = [
        (item, a["home"]) for item, a in zip(stored, FIELD_ANSWERS, strict=True) if "home" in a
    ]
    assert len(collection["features"]) == len(placed) == 2
    for feature, (item, point) in zip(collection["features"], placed, strict=True):
        assert feature["type"] == "Feature" and feature["id"] == item["id"]
        expected = [point["lon"], point["lat"]] + (
            [point["altitude"]] if "altitude" in point else []
        )
        assert feature["geometry"] == {"type": "Point", "coordinates": expected}
        properties = feature["properties"]
        assert properties["id"] == item["id"] and properties["group"] == "household"
        assert properties["home/lat"] == point["lat"]
        assert properties["code"] == item["answers"].get("code")  # JSON: no formula prefix
        assert properties["consent"] == item["answers"].get("consent")
    well = json.loads(
        (await export(client, survey_id, analyst, format="geojson", geo="well")).content
    )
    assert [f["geometry"]["coordinates"] for f in well["features"]] == [
        [B["lon"], B["lat"]],
        [C["lon"], C["lat"]],
    ]
    none = await export(client, survey_id, analyst, format="geojson", gender="male")
    assert json.loads(none.content) == {"type": "FeatureCollection", "features": []}

    for geo in ("code", "corner", "nothing"):  # not a geopoint; in a repeat; no such question
        refused = await client.get(
            url(survey_id, "/export"), params={"format": "geojson", "geo": geo}, headers=analyst
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["loc"] == ["query", "geo"]
    plain = await roster_survey(app, client)
    refused = await client.get(url(plain, "/export"), params={"format": "geojson"}, headers=analyst)
    assert refused.status_code == 422


async def test_a_sheet_past_excels_row_limit_goes_on_in_another(
    client: httpx.AsyncClient,
    survey: Questionnaire,
    observer: dict[str, str],
    analyst: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Excel holds 1,048,576 rows a sheet; the limit is lowered here to 3 (a header and two
    responses) so that seven responses need four sheets."""
    monkeypatch.setattr(xlsx_module, "MAX_ROWS", 3)
    sent = []
    for n in range(1, 8):
        reply = await client.post(
            url(survey.id), json=submission(times_participated=n), headers=observer
        )
        assert reply.status_code == 201, reply.text
        sent.append(reply.json()["id"])
    workbook = load_workbook(
        io.BytesIO((await export(client, survey.id, analyst, format="xlsx")).content)
    )
    assert workbook.sheetnames == ["responses", "responses (2)", "responses (3)", "responses (4)"]
    rows = [row for name in workbook.sheetnames for row in sheet_rows(workbook, name)]
    assert [row["id"] for row in rows] == sent
    assert [row["times_participated"] for row in rows] == list(range(1, 8))
    assert all(workbook[name].freeze_panes == "A2" for name in workbook.sheetnames)


async def test_zip_holds_the_received_attachments(
    app: FastAPI, client: httpx.AsyncClient, analyst: dict[str, str]
) -> None:
    """Files of the exported responses under attachments/<response id>/<name>; a file still
    expected is not there, nor the files of responses the filters leave out."""
    survey = await make_survey(app, client)
    photo, room, deed = png(), png(seed=9), "план участка\n".encode() * 5000
    sent = {
        "female": {"front": "front.png", "document": "deed.txt", "floors": 2,
                   "rooms": [{"room_photo": "room1.png"}, {"room_photo": "room2.png"}]},
        "male": {"front": "front.png", "floors": 1},
    }  # fmt: skip
    ids = {}
    for gender, answers in sent.items():
        body = {"respondent": {"group": "surveyor", "gender": gender}, "answers": answers}
        reply = await client.post(survey.target, json=body, headers=survey.collector)
        assert reply.status_code == 201, reply.text
        ids[gender] = reply.json()["id"]
    uploads = [
        ("female", "front.png", photo),
        ("female", "deed.txt", deed),
        ("female", "room1.png", room),
        ("male", "front.png", png(seed=3)),
    ]  # fmt: skip  (room2.png is never sent)
    for gender, name, data in uploads:
        put = await client.put(
            f"/api/v1/responses/{ids[gender]}/attachments/{name}",
            content=data,
            headers=survey.collector,
        )
        assert put.status_code == 201, put.text

    reply = await export(client, survey.id, analyst, format="zip")
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    assert archive.testzip() is None
    files = {n: archive.read(n) for n in archive.namelist() if n.startswith("attachments/")}
    assert files == {f"attachments/{ids[g]}/{name}": data for g, name, data in uploads}
    assert (
        archive.getinfo(f"attachments/{ids['female']}/front.png").compress_type
        == zipfile.ZIP_STORED
    )
    rooms = zipped_csv(archive, "responses-rooms.csv")
    assert [(r["parent_id"], r["index"], r["room_photo"]) for r in rooms] == [
        (ids["female"], "1", "room1.png"), (ids["female"], "2", "room2.png")
    ]  # fmt: skip

    women = await export(client, survey.id, analyst, format="zip", gender="female")
    names = zipfile.ZipFile(io.BytesIO(women.content)).namelist()
    assert sorted(n for n in names if n.startswith("attachments/")) == sorted(
        f"attachments/{ids['female']}/{name}" for g, name, _ in uploads if g == "female"
    )


async def test_an_xlsx_wider_than_excel_is_refused_before_anything_is_sent(
    app: FastAPI, client: httpx.AsyncClient, analyst: dict[str, str]
) -> None:
    """17 multiple choices over one list of 1,000 options: 17,000 columns and more, past
    Excel's 16,384 (the writer would drop the rest silently). 422; CSV has them all."""
    questions = [
        {"key": f"m{n}", "type": "multiple_choice", "label": {"ru": "m"}, "choices": "many"}
        for n in range(17)
    ]
    many = [{"value": f"v{n}", "label": {"ru": f"v{n}"}} for n in range(1000)]
    survey_id = await roster_survey(app, client, questions=questions, choice_lists={"many": many})
    refused = await client.get(
        url(survey_id, "/export"), params={"format": "xlsx"}, headers=analyst
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["loc"] == ["query", "format"]
    plain = await export(client, survey_id, analyst, format="csv")
    assert len(plain.content.decode("utf-8-sig").splitlines()[0].split(",")) == 12 + 17 * 1000
