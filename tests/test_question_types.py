"""The question types of real field forms (time, datetime, geodata, barcode, acknowledge, rank,
media files, metadata), choice lists with choice_filter, and settings: defined, checked on
submission, stored, read back, compared for exactly-once and counted in aggregates.

Every expected result is written by hand from the contract ("Questionnaires: structure and
expressions") and the agreed answer shapes, never taken from the service's output.
"""

import copy
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import Invalid
from app.models.auth import Role
from app.services.answer_codecs import checker, decoder
from app.services.answers import compile_questionnaire, media_names
from app.services.definitions import check_definition
from tests.factories import headers_for


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


@pytest.fixture
async def observer(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.observer)


@pytest.fixture
async def analyst(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.analyst)


def q(key: str, qtype: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": qtype, "label": {"en": key.replace("_", " ")}, **extra}


def options(*values: str) -> list[dict[str, Any]]:
    return [{"value": value, "label": {"en": value.title()}} for value in values]


def definition(questions: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "slug": f"field-{uuid.uuid4().hex[:8]}",
        "title": {"en": "Field form"},
        "default_language": "en",
        "respondent_groups": [
            {"key": "household", "category": "citizen", "label": {"en": "Household"}}
        ],
        "questions": questions,
        **extra,
    }


FIELD_QUESTIONS = [
    {"key": "start", "type": "meta", "meta": "start"},
    {"key": "deviceid", "type": "meta", "meta": "deviceid"},
    q("visit_time", "time"),
    q("visit_at", "datetime"),
    q(
        "location",
        "geopoint",
        media={"image": {"en": "map.png"}},
        # ODK sees a point as "lat lon altitude accuracy": the accuracy is the 4th (index 3)
        constraint="selected-at(., 3) <= 10",
        constraint_message={"en": "Wait for a better fix (10 m)"},
    ),
    q("path", "geotrace"),
    q("plot", "geoshape"),
    q("code", "barcode"),
    q("consent", "acknowledge"),
    q("priorities", "rank", options=options("water", "roads", "schools")),
    q("photo", "image"),
    q("voice", "audio"),
    q("clip", "video"),
    q("document", "file"),
    {
        "key": "members",
        "type": "repeat",
        "label": {"en": "Members"},
        "questions": [
            q("member_seen", "time", required=True),
            q("member_point", "geopoint"),
            q("member_photo", "image"),
            q("member_rank", "rank", options=options("a", "b", "c")),
        ],
    },
]

P1 = {"lat": 43.25, "lon": 76.9}
P2 = {"lat": 43.26, "lon": 76.9, "altitude": 800}
P3 = {"lat": 43.26, "lon": 76.95, "accuracy": 2.5}

VALID = {
    "start": "2026-12-07T10:00:00.000+06:00",
    "deviceid": "collect:3f2a9c",
    "visit_time": "10:15",
    "visit_at": "2026-12-07T10:15:30.5+06:00",
    "location": {"lat": 43.238, "lon": 76.945, "altitude": 850, "accuracy": 4.5},
    "path": [P1, P2],
    "plot": [P1, P2, P3, P1],
    "code": "4870001234567",
    "consent": True,
    "priorities": ["schools", "water"],
    "photo": "house.jpg",
    "voice": "note.m4a",
    "clip": "walk.mp4",
    "document": "deed.pdf",
    "members": [
        {
            "member_seen": "09:00:00Z",
            "member_point": {"lat": -10, "lon": 179.5},
            "member_photo": "m1.jpg",
            "member_rank": ["b", "a"],
        },
        {"member_seen": "09:30"},
    ],
}


def body(answers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"respondent": {"group": "household"}, "answers": answers, **extra}


async def publish(client: httpx.AsyncClient, headers: dict[str, str], data: dict[str, Any]) -> str:
    created = await client.post("/api/v1/questionnaires", json=data, headers=headers)
    assert created.status_code == 201, created.text
    questionnaire_id = created.json()["id"]
    published = await client.post(
        f"/api/v1/questionnaires/{questionnaire_id}/publish", headers=headers
    )
    assert published.status_code == 200, published.text
    return str(questionnaire_id)


def responses_url(questionnaire_id: str, suffix: str = "") -> str:
    return f"/api/v1/questionnaires/{questionnaire_id}/responses{suffix}"


@pytest.fixture
async def field_form(client: httpx.AsyncClient, coordinator: dict[str, str]) -> str:
    return await publish(client, coordinator, definition(copy.deepcopy(FIELD_QUESTIONS)))


# --- the definition ---------------------------------------------------------------------------


async def test_every_new_type_is_kept_and_given_back(
    client: httpx.AsyncClient, coordinator: dict[str, str], field_form: str
) -> None:
    read = await client.get(f"/api/v1/questionnaires/{field_form}", headers=coordinator)
    assert read.status_code == 200
    questions = read.json()["questions"]
    assert [question["type"] for question in questions] == [
        "meta",
        "meta",
        "time",
        "datetime",
        "geopoint",
        "geotrace",
        "geoshape",
        "barcode",
        "acknowledge",
        "rank",
        "image",
        "audio",
        "video",
        "file",
        "repeat",
    ]
    assert questions[0]["meta"] == "start"
    assert questions[4]["media"] == {"image": {"en": "map.png"}, "audio": None, "video": None}


async def test_definition_problems_are_all_named_at_once(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    big = [{"value": f"o{n}", "label": {"en": f"Option {n}"}} for n in range(1001)]
    data = definition(
        [
            q("region", "single_choice", choices="regions"),
            q("nowhere", "single_choice", choices="no_such_list"),
            q("both", "single_choice", choices="regions", options=options("x")),
            q("neither", "rank"),
            q("many", "multiple_choice", choices="big"),
            q("district", "single_choice", choices="regions", choice_filter="colour = 'red'"),
        ],
        choice_lists={
            "regions": [
                {"value": "almaty", "label": {"en": "Almaty"}, "zone": "south"},
                {"value": "almaty", "label": {"en": "Almaty again"}},
            ],
            "big": big,
        },
        settings={"instance_name": "concat(${region}, ${missing})", "public_key": "MIIBIjAN"},
    )
    reply = await client.post("/api/v1/questionnaires", json=data, headers=coordinator)
    assert reply.status_code == 422, reply.text
    found = {tuple(error["loc"]): error["msg"] for error in reply.json()["errors"]}
    assert "'almaty' is used twice" in found[("body", "choice_lists", "regions", 1, "value")]
    assert "no choice list 'no_such_list'" in found[("body", "questions", 1, "choices")]
    assert "not both" in found[("body", "questions", 2, "choices")]
    assert "needs options or a choice list" in found[("body", "questions", 3, "options")]
    assert "at most 1000 options" in found[("body", "questions", 4, "choices")]
    assert "'colour' is not a property" in found[("body", "questions", 5, "choice_filter")]
    assert "'${missing}' names no question" in found[("body", "settings", "instance_name")]
    assert "not a DER public key" in found[("body", "settings", "public_key")]
    assert len(found) == 8


async def test_a_meta_question_needs_a_known_kind(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    data = definition([{"key": "device", "type": "meta", "meta": "imei"}])
    reply = await client.post("/api/v1/questionnaires", json=data, headers=coordinator)
    assert reply.status_code == 422


# --- answers ----------------------------------------------------------------------------------


async def test_valid_answers_are_stored_and_read_back_as_sent(
    client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str], field_form: str
) -> None:
    created = await client.post(responses_url(field_form), json=body(VALID), headers=observer)
    assert created.status_code == 201, created.text
    assert created.json()["answers"] == VALID
    stored = await client.get(f"/api/v1/responses/{created.json()['id']}", headers=analyst)
    assert stored.status_code == 200
    assert stored.json()["answers"] == VALID
    listed = await client.get(responses_url(field_form), headers=analyst)
    assert listed.status_code == 200
    assert [item["answers"] for item in listed.json()["items"]] == [VALID]


def with_answer(key: str, value: Any) -> dict[str, Any]:
    answers = copy.deepcopy(VALID)
    answers[key] = value
    return answers


INVALID = [
    ("visit_time", "25:00", "expected a time"),
    ("visit_time", "10:15:00+6", "expected a time"),
    ("visit_time", 1015, "expected a time"),
    ("visit_at", "2026-12-07T10:15", "expected a date-time"),  # no offset
    ("visit_at", "2026-12-07", "expected a date-time"),
    ("visit_at", "2026-02-30T10:00Z", "no such date"),
    ("location", {"lat": 91, "lon": 0}, "'lat' must be between -90 and 90"),
    ("location", {"lat": 1, "lon": -180.5}, "'lon' must be between -180 and 180"),
    ("location", {"lat": 1}, "a point needs 'lon'"),
    ("location", {"lat": 1, "lon": 2, "accuracy": -1}, "'accuracy' must be at least 0"),
    ("location", {"lat": 1, "lon": 2, "speed": 3}, "unknown fields of a point: speed"),
    ("location", {"lat": True, "lon": 2}, "'lat' must be a finite number"),
    ("location", "43.2 76.9", "expected a point"),
    ("location", {"lat": 1, "lon": 2, "accuracy": 25}, "Wait for a better fix (10 m)"),
    ("path", [P1], "a line has 2 to 10000 points"),
    ("path", [P1, {"lat": 1}], "point 1: a point needs 'lon'"),
    ("plot", [P1, P2, P3, P2], "a shape is closed"),
    ("plot", [P1, P2, P1], "a closed shape has 4 to 10000 points"),
    ("plot", {"lat": 1, "lon": 2}, "expected a closed shape"),
    ("code", "", "expected non-empty text"),
    ("code", 4870001234567, "expected non-empty text"),
    ("consent", False, "expected true"),
    ("consent", "OK", "expected true"),
    ("priorities", ["water", "water"], "an option is ranked twice"),
    ("priorities", ["fire"], "not options: fire"),
    ("priorities", [], "expected a list of option values"),
    ("priorities", "water", "expected a list of option values"),
    ("photo", "../house.jpg", "no '/'"),
    ("photo", "a\\b.jpg", "no '/'"),
    ("photo", "..", "expected the name of a file"),
    ("photo", "x" * 256 + ".jpg", "at most 255 characters"),
    ("document", 7, "expected the name of a file"),
    ("deviceid", 5, "expected non-empty text"),
]


@pytest.mark.parametrize(("key", "value", "message"), INVALID)
async def test_invalid_answers_are_refused_with_a_reason(
    client: httpx.AsyncClient,
    observer: dict[str, str],
    field_form: str,
    key: str,
    value: Any,
    message: str,
) -> None:
    reply = await client.post(
        responses_url(field_form), json=body(with_answer(key, value)), headers=observer
    )
    assert reply.status_code == 422, reply.text
    errors = reply.json()["errors"]
    assert [error["loc"] for error in errors] == [["body", "answers", key]]
    assert message in errors[0]["msg"]


async def test_answers_inside_a_repeat_are_checked_per_instance(
    client: httpx.AsyncClient, observer: dict[str, str], field_form: str
) -> None:
    members = [
        {"member_seen": "9:00", "member_point": {"lat": 0, "lon": 181}},
        {"member_seen": "09:30", "member_rank": ["a", "a"], "member_photo": "ok.jpg"},
        {"member_point": P1},
    ]
    reply = await client.post(
        responses_url(field_form), json=body(with_answer("members", members)), headers=observer
    )
    assert reply.status_code == 422
    found = {tuple(error["loc"]): error["msg"] for error in reply.json()["errors"]}
    prefix = ("body", "answers", "members")
    assert set(found) == {
        (*prefix, 0, "member_seen"),
        (*prefix, 0, "member_point"),
        (*prefix, 1, "member_rank"),
        (*prefix, 2, "member_seen"),
    }
    assert "expected a time" in found[(*prefix, 0, "member_seen")]  # hours have two digits
    assert "'lon' must be between" in found[(*prefix, 0, "member_point")]
    assert "ranked twice" in found[(*prefix, 1, "member_rank")]
    assert "required" in found[(*prefix, 2, "member_seen")]


async def test_a_batch_checks_each_item(
    client: httpx.AsyncClient, observer: dict[str, str], field_form: str
) -> None:
    items = [body(VALID), body(with_answer("plot", [P1, P2, P3])), "not an object"]
    reply = await client.post(
        responses_url(field_form, "/batch"), json={"responses": items}, headers=observer
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [result["status"] for result in results] == ["created", "invalid", "invalid"]
    assert results[1]["errors"][0]["loc"][-1] == "plot"


async def test_same_content_in_another_spelling_is_a_duplicate(
    client: httpx.AsyncClient, observer: dict[str, str], field_form: str
) -> None:
    response_id = str(uuid.uuid4())
    first = await client.post(
        responses_url(field_form), json=body(VALID, id=response_id), headers=observer
    )
    assert first.status_code == 201, first.text
    respelled = copy.deepcopy(VALID)
    respelled["visit_time"] = "10:15:00.000"  # = 10:15
    respelled["visit_at"] = "2026-12-07T10:15:30.500+06:00"
    respelled["location"] = {"accuracy": 4.5, "altitude": 850.0, "lon": 76.945, "lat": 43.238}
    respelled["path"] = [{"lon": 76.9, "lat": 43.25}, {"lat": 43.26, "lon": 76.9, "altitude": 8e2}]
    respelled["members"][0]["member_seen"] = "09:00:00.0+00:00"  # Z is +00:00
    respelled["members"][0]["member_point"] = {"lat": -10.0, "lon": 179.5}
    respelled = dict(reversed(list(respelled.items())))
    again = await client.post(
        responses_url(field_form), json=body(respelled, id=response_id), headers=observer
    )
    assert again.status_code == 200, again.text
    assert again.json() == first.json()  # the stored response, as first spelled

    changed = copy.deepcopy(VALID)
    changed["priorities"] = ["water", "schools"]  # a rank's order is its content
    other = await client.post(
        responses_url(field_form), json=body(changed, id=response_id), headers=observer
    )
    assert other.status_code == 409
    shifted = with_answer("visit_at", "2026-12-07T04:15:30.5Z")  # the same instant, other zone
    other = await client.post(
        responses_url(field_form), json=body(shifted, id=response_id), headers=observer
    )
    assert other.status_code == 409


def test_media_names_lists_the_files_the_answers_name() -> None:
    data = definition(copy.deepcopy(FIELD_QUESTIONS))
    compiled = compile_questionnaire(
        id="x", version=1, status="published", access="token", definition=data
    )
    assert media_names(compiled, VALID) == [
        "house.jpg",
        "note.m4a",
        "walk.mp4",
        "deed.pdf",
        "m1.jpg",
    ]
    assert media_names(compiled, {"photo": "a.jpg", "members": [{"member_photo": "a.jpg"}]}) == [
        "a.jpg"
    ]


# --- aggregates -------------------------------------------------------------------------------

NEW_TYPE_KEYS = [
    "start",
    "deviceid",
    "visit_time",
    "visit_at",
    "location",
    "path",
    "plot",
    "code",
    "consent",
    "priorities",
    "photo",
    "voice",
    "clip",
    "document",
]


async def test_aggregates_give_the_number_answered_for_new_types(
    client: httpx.AsyncClient, observer: dict[str, str], analyst: dict[str, str], field_form: str
) -> None:
    submitted = []
    for n in range(7):
        answers = copy.deepcopy(VALID)
        # leave out a different pair of questions in each response
        for key in (NEW_TYPE_KEYS[n], NEW_TYPE_KEYS[(n + 3) % len(NEW_TYPE_KEYS)]):
            answers.pop(key)
        answers["members"] = answers["members"][: 1 + n % 2]
        reply = await client.post(responses_url(field_form), json=body(answers), headers=observer)
        assert reply.status_code == 201, reply.text
        submitted.append(answers)

    reply = await client.get(f"/api/v1/questionnaires/{field_form}/aggregates", headers=analyst)
    assert reply.status_code == 200, reply.text
    figures = {question["key"]: question for question in reply.json()["questions"]}
    for key in NEW_TYPE_KEYS:
        answered = sum(1 for answers in submitted if key in answers)
        (only,) = figures[key]["cells"]
        assert only["n"] == answered, key
        figures_given = {k for k, v in only.items() if v is not None}
        assert figures_given == {"group", "n", "suppressed"}, key
    for key in ("member_seen", "member_point", "member_photo", "member_rank"):
        instances = sum(
            1 for answers in submitted for member in answers["members"] if key in member
        )
        cells = figures[key]["cells"]
        if instances < 5:  # below the default floor: suppressed
            assert cells == [] or cells[0]["suppressed"], key
        else:
            assert cells[0]["n"] == instances, key

    # broken down by a dimension (every respondent here has no gender: one cell, null)
    reply = await client.get(
        f"/api/v1/questionnaires/{field_form}/aggregates",
        params={"by": "gender,region", "format": "csv"},
        headers=analyst,
    )
    assert reply.status_code == 200, reply.text
    reply = await client.get(
        f"/api/v1/questionnaires/{field_form}/aggregates",
        params={"by": "gender"},
        headers=analyst,
    )
    assert reply.status_code == 200, reply.text
    by_gender = {question["key"]: question["cells"] for question in reply.json()["questions"]}
    answered = sum(1 for answers in submitted if "photo" in answers)
    assert [(c["group"], c["n"]) for c in by_gender["photo"]] == [({"gender": None}, answered)]

    refused = await client.get(
        f"/api/v1/questionnaires/{field_form}/aggregates",
        params={"by": "answer:location"},
        headers=analyst,
    )
    assert refused.status_code == 422


# --- choice lists -----------------------------------------------------------------------------

PLACES = {
    "regions": [
        {"value": "almaty_region", "label": {"en": "Almaty Region"}},
        {"value": "turkestan", "label": {"en": "Turkestan"}},
    ],
    "districts": [
        {"value": "talgar", "label": {"en": "Talgar"}, "region": "almaty_region"},
        {"value": "karasai", "label": {"en": "Karasai"}, "region": "almaty_region"},
        {"value": "sairam", "label": {"en": "Sairam"}, "region": "turkestan"},
    ],
    "settlements": [
        {"value": "talgar_town", "label": {"en": "Talgar"}, "district": "talgar", "kind": "town"},
        {"value": "panfilovo", "label": {"en": "Panfilovo"}, "district": "talgar", "kind": "vil"},
        {"value": "kaskelen", "label": {"en": "Kaskelen"}, "district": "karasai", "kind": "town"},
        {"value": "aksukent", "label": {"en": "Aksukent"}, "district": "sairam", "kind": "vil"},
    ],
}


@pytest.fixture
async def cascade(client: httpx.AsyncClient, coordinator: dict[str, str]) -> str:
    data = definition(
        [
            q("region", "single_choice", choices="regions", required=True),
            q("district", "single_choice", choices="districts", choice_filter="region=${region}"),
            q(
                "settlement",
                "single_choice",
                choices="settlements",
                choice_filter="district = ${district}",
            ),
            q(
                "visited",
                "multiple_choice",
                choices="settlements",
                choice_filter="district = ${district} and kind = 'vil'",
            ),
            q("order", "rank", choices="settlements", choice_filter="name != 'aksukent'"),
        ],
        choice_lists=copy.deepcopy(PLACES),
        settings={"instance_name": "concat(${region}, '-', ${settlement})"},
    )
    return await publish(client, coordinator, data)


async def test_choice_lists_are_given_back_with_their_properties(
    client: httpx.AsyncClient, coordinator: dict[str, str], cascade: str
) -> None:
    read = await client.get(f"/api/v1/questionnaires/{cascade}", headers=coordinator)
    assert read.json()["choice_lists"] == PLACES
    assert read.json()["settings"] == {
        "instance_name": "concat(${region}, '-', ${settlement})",
        "public_key": None,
        "external_instances": None,
    }


async def test_a_cascade_refuses_a_settlement_outside_the_chosen_district(
    client: httpx.AsyncClient, observer: dict[str, str], cascade: str
) -> None:
    good = {
        "region": "almaty_region",
        "district": "talgar",
        "settlement": "talgar_town",
        "visited": ["panfilovo"],
        "order": ["kaskelen", "talgar_town"],
    }
    reply = await client.post(responses_url(cascade), json=body(good), headers=observer)
    assert reply.status_code == 201, reply.text
    assert reply.json()["answers"] == good

    wrong = {**good, "settlement": "aksukent"}  # in Sairam, not Talgar
    reply = await client.post(responses_url(cascade), json=body(wrong), headers=observer)
    assert reply.status_code == 422
    (error,) = reply.json()["errors"]
    assert error["loc"] == ["body", "answers", "settlement"]
    assert "aksukent" in error["msg"] and "choice_filter" in error["msg"]

    wrong = {"region": "turkestan", "district": "talgar"}
    reply = await client.post(responses_url(cascade), json=body(wrong), headers=observer)
    assert [e["loc"] for e in reply.json()["errors"]] == [["body", "answers", "district"]]

    # a town among villages, and a filtered-out option in a rank
    wrong = {**good, "visited": ["panfilovo", "talgar_town"], "order": ["aksukent"]}
    reply = await client.post(responses_url(cascade), json=body(wrong), headers=observer)
    found = {e["loc"][-1]: e["msg"] for e in reply.json()["errors"]}
    assert set(found) == {"visited", "order"}
    assert found["visited"].endswith(": talgar_town")
    assert found["order"].endswith(": aksukent")


async def test_a_ten_thousand_option_list_costs_nothing_per_response(
    client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    big = [
        {"value": f"s{n}", "label": {"en": f"Settlement {n}"}, "district": f"d{n % 100}"}
        for n in range(10_000)
    ]
    data = definition(
        [
            q("district", "single_choice", options=options(*(f"d{n}" for n in range(100)))),
            q("settlement", "single_choice", choices="big", choice_filter="district=${district}"),
        ],
        choice_lists={"big": big},
    )
    form = await publish(client, coordinator, data)
    # s4217 is in district d17 (4217 mod 100), s4218 in d18
    items = [body({"district": "d17", "settlement": "s4217"}) for _ in range(200)]
    items.append(body({"district": "d17", "settlement": "s4218"}))
    started = time.perf_counter()
    reply = await client.post(
        responses_url(form, "/batch"), json={"responses": items}, headers=observer
    )
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200
    statuses = [result["status"] for result in reply.json()["results"]]
    assert statuses == ["created"] * 200 + ["invalid"]
    assert elapsed < 10  # a filter over all 10,000 options per response would take far longer

    compiled = compile_questionnaire(
        id="x", version=1, status="published", access="token", definition=data
    )
    question = compiled.by_key["settlement"][0]
    assert len(question.option_values) == 10_000  # resolved from the list
    started = time.perf_counter()
    for _ in range(1000):
        errors, _pages = compiled.check_answers({"district": "d17", "settlement": "s4217"})
        assert errors == []
    assert time.perf_counter() - started < 1.0


async def test_options_of_a_list_are_limited_per_type(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    items = [{"value": f"o{n}", "label": {"en": str(n)}} for n in range(10_001)]
    data = definition([q("x", "single_choice", choices="huge")], choice_lists={"huge": items})
    reply = await client.post("/api/v1/questionnaires", json=data, headers=coordinator)
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["loc"][:3] == ["body", "choice_lists", "huge"]

    # 6 lists of 9,000: each within its limit, 54,000 together past the 50,000 of a form.
    # Checked on the service: as JSON that is past the request body limit (an XLSForm upload
    # may hold it).
    lists = {f"list{n}": items[:9000] for n in range(6)}
    data = definition([q("x", "single_choice", choices="list0")], choice_lists=lists)
    with pytest.raises(Invalid) as refused:
        check_definition(data)
    assert [error["loc"] for error in refused.value.errors or []] == [["body", "choice_lists"]]


async def test_settings_read_only_and_conditions_on_choice_lists(
    client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    questions = [
        q("region", "single_choice", choices="regions"),
        # a JSON condition compares with the list's option values
        q(
            "note_south",
            "text",
            relevant={"question": "region", "op": "eq", "value": "south"},
            read_only="${region} = 'north'",
        ),
        q("seen", "time", read_only=True),
    ]
    lists = {
        "regions": [
            {"value": "south", "label": {"en": "South"}},
            {"value": "north", "label": {"en": "North"}},
        ]
    }
    data = definition(
        questions, choice_lists=lists, settings={"instance_name": "concat('visit-', ${seen})"}
    )
    form = await publish(client, coordinator, copy.deepcopy(data))
    reply = await client.post(
        responses_url(form), json=body({"region": "north", "note_south": "x"}), headers=observer
    )
    assert [e["loc"] for e in reply.json()["errors"]] == [["body", "answers", "note_south"]]
    reply = await client.post(
        responses_url(form), json=body({"region": "south", "note_south": "x"}), headers=observer
    )
    assert reply.status_code == 201, reply.text

    bad = copy.deepcopy(data)
    bad["slug"] = "other-form"
    bad["questions"][1]["relevant"]["value"] = "west"
    bad["questions"][1]["read_only"] = "${nowhere} = 1"
    bad["settings"] = {"instance_name": "concat(${seen}"}
    reply = await client.post("/api/v1/questionnaires", json=bad, headers=coordinator)
    assert reply.status_code == 422
    found = {tuple(error["loc"]): error["msg"] for error in reply.json()["errors"]}
    assert (
        "'west' is not an option of 'region'"
        in found[("body", "questions", 1, "relevant", "value")]
    )
    assert "names no question" in found[("body", "questions", 1, "read_only")]
    assert ("body", "settings", "instance_name") in found
    assert len(found) == 3

    # PATCH of a draft clears settings and choice lists with null
    draft = copy.deepcopy(data)
    draft["slug"] = "draft-form"
    draft["questions"] = [q("seen", "time")]
    created = await client.post("/api/v1/questionnaires", json=draft, headers=coordinator)
    assert created.status_code == 201, created.text
    patched = await client.patch(
        f"/api/v1/questionnaires/{created.json()['id']}",
        json={"settings": None, "choice_lists": None},
        headers=coordinator,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["settings"] is None and patched.json()["choice_lists"] is None


async def test_labels_and_the_default_language_take_any_bcp47_tag(
    client: httpx.AsyncClient, coordinator: dict[str, str], observer: dict[str, str]
) -> None:
    data = definition(
        [
            {
                "key": "seen",
                "type": "time",
                "label": {"en-GB": "Time seen", "uz-Cyrl": "Кўрилган вақт", "fr": "Heure"},
                "media": {"audio": {"en-GB": "time.mp3"}},
            }
        ],
        default_language="en-GB",
        title={"en-GB": "Visit", "es-419": "Visita"},
    )
    data["respondent_groups"][0]["label"] = {"en-GB": "Household"}
    form = await publish(client, coordinator, data)
    read = await client.get(f"/api/v1/questionnaires/{form}", headers=coordinator)
    assert read.json()["default_language"] == "en-GB"
    assert read.json()["questions"][0]["label"]["uz-Cyrl"] == "Кўрилган вақт"
    reply = await client.post(
        responses_url(form), json=body({"seen": "10:00"}, language="en"), headers=observer
    )
    assert reply.status_code == 201, reply.text
    # a response's own language stays one of the service's (kk, ru, en)
    reply = await client.post(
        responses_url(form), json=body({"seen": "10:00"}, language="en-GB"), headers=observer
    )
    assert reply.status_code == 422

    for tag in ("english!", "e", "en_GB", "en--GB", "x" * 36):
        bad = definition([q("seen", "time")], default_language=tag)
        reply = await client.post("/api/v1/questionnaires", json=bad, headers=coordinator)
        assert reply.status_code == 422, tag
    # the default language must label everything
    bad = definition([q("seen", "time")], default_language="fr")
    reply = await client.post("/api/v1/questionnaires", json=bad, headers=coordinator)
    assert reply.status_code == 422
    assert "must include the default language 'fr'" in reply.json()["errors"][0]["msg"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from(["lat", "lon", "altitude", "accuracy", "x"]) | st.text(max_size=3),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)
NEW_TYPES = ["time", "datetime", "geopoint", "geotrace", "geoshape", "barcode", "acknowledge"]
NEW_TYPES += ["image", "audio", "video", "file", "meta", "rank"]


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_is_refused_with_a_reason_or_round_trips(value: Any) -> None:
    """No value makes a check raise; what a check accepts decodes to an answer it accepts."""
    for qtype in NEW_TYPES:
        question = {"type": qtype, "options": [{"value": "a"}, {"value": "b"}]}
        check, decode = checker(question), decoder(question)
        problem, encoded = check(value)
        if problem is None:
            assert check(decode(encoded))[0] is None, (qtype, value)
        else:
            assert isinstance(problem, str) and problem
