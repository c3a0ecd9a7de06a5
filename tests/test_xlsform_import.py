"""XLSForm import: pyxform's spellings, every question type, choice lists, and every problem of
a bad workbook named by sheet, row and column in one answer. The workbooks are written here cell
by cell, the way authors type them (and the repository's example form)."""

import copy
import io
import uuid
import zipfile
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openpyxl import Workbook, load_workbook

from app.models.auth import Role
from tests.conftest import ROOT
from tests.factories import almaty_definition, headers_for
from tests.test_xlsform import workbook

XLSFORM = ROOT / "examples" / "almaty_participation.xlsx"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


def error_locations(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["loc"] for error in response.json()["errors"]]


# --- XLSForm import ---------------------------------------------------------------------------


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], content: bytes, name: str = "form.xlsx"
) -> httpx.Response:
    return await client.post(
        "/api/v1/questionnaires/import",
        files={"file": (name, content, XLSX_TYPE)},
        headers=headers,
    )


async def test_the_almaty_xlsform_imports_as_a_draft(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    response = await upload(client, coordinator, XLSFORM.read_bytes())
    assert response.status_code == 201, response.text
    imported = response.json()
    source = almaty_definition()
    assert imported["status"] == "draft"
    assert imported["slug"] == source["slug"]
    assert imported["default_language"] == source["default_language"]
    assert imported["title"] == source["title"]
    assert imported["respondent_groups"] == source["respondent_groups"]
    for got, want in zip(imported["questions"], source["questions"], strict=True):
        if want["type"] == "boolean":
            # XLSForm has no boolean: a yes/no list stays a single choice of 'true'/'false'.
            assert got["type"] == "single_choice"
            assert [o["value"] for o in got["options"]] == ["true", "false"]
            continue
        want = copy.deepcopy(want)
        if "relevant" in want:
            # kept as the XLSForm expression written in the workbook, evaluated by the server
            want["relevant"] = sheet_cell(got["key"], "relevant")
        got = {k: v for k, v in got.items() if v is not None}
        want.setdefault("required", False)
        if want["type"] == "text":
            want.pop("max_length")  # XLSForm has no length limit: the default applies
        got.pop("max_length", None)
        assert got == want


def sheet_cell(name: str, column: str) -> Any:
    """The cell of the example workbook's survey sheet in the row of `name`."""
    sheet = load_workbook(XLSFORM)["survey"]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    row = next(row for row in rows[1:] if row[header.index("name")] == name)
    return row[header.index(column)]


def workbook_with(rows: list[list[Any]]) -> bytes:
    book = load_workbook(XLSFORM)
    sheet = book["survey"]
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("row", "column"),
    [
        (["csv-external", "prices", "Цены", "Prices", "Бағалар"], "type"),
        (["osm", "building", "Здание", "Building", "Ғимарат"], "type"),
        (["integer", "n1", "Число", "Number", "Сан", None, None, None, None, "bogus(${aware}) > 1"], "relevant"),
        (["select_one nowhere", "s1", "Выбор", "Choice", "Таңдау"], None),  # pyxform's own check
        (["begin_group", "g1", "Группа", "Group", "Топ"], None),  # never ended: pyxform's
    ],
)  # fmt: skip
async def test_what_xlsform_cannot_map_is_422_naming_the_row(
    client: httpx.AsyncClient, coordinator: dict[str, str], row: list[Any], column: str | None
) -> None:
    response = await upload(client, coordinator, workbook_with([row]))
    row_number = len(almaty_definition()["questions"]) + 2
    locations = error_locations(response)
    if column is None:
        assert any(loc[:3] == ["file", "survey", row_number] for loc in locations), locations
    else:
        assert ["file", "survey", row_number, column] in locations


async def test_uploads_that_are_not_workbooks_are_refused(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    assert error_locations(await upload(client, coordinator, b"not a zip at all"))
    assert error_locations(await upload(client, coordinator, XLSFORM.read_bytes(), "form.csv"))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (60 * 1024 * 1024))
    assert len(bomb.getvalue()) < 1024 * 1024
    assert ["file"] in error_locations(await upload(client, coordinator, bomb.getvalue()))


async def test_an_upload_over_the_limit_is_413(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    limit = app.state.settings.max_upload_bytes
    response = await upload(client, coordinator, b"x" * (limit + 1))
    assert response.status_code == 413
    path_like = await upload(client, coordinator, XLSFORM.read_bytes(), "../../etc/form.xlsx")
    assert path_like.status_code == 201  # the name is never used as a path
    assert str(uuid.UUID(path_like.json()["id"]))


# --- XLSForms as authors write them -----------------------------------------------------------


HOUSEHOLD_SURVEY = [
    # upper-case headers, pyxform's `label::Language (code)` spelling, a bare `hint`
    ["Type", "Name", "Label::English (en)", "Label::Russian (ru)", "hint", "Required",
     "required_message::English (en)", "relevant", "constraint",
     "constraint_message::English (en)", "calculation", "appearance", "default",
     "parameters", "repeat_count", "guidance_hint::English (en)", "read_only"],
    [None, None, None, None, "Comment row: the roster follows the 2021 census"],
    ["note", "welcome", "Read the consent text", "Прочитайте согласие"],
    ["text", "Head.Name", "Name of the head", "Имя главы", "Full name", "yes"],
    ["int", "head_age", "Age", "Возраст", None, "true()", None, None, ". >= 18 and . <= 120",
     "Heads are adults", None, "numbers", "40"],
    ["select one yes_no", "has_phone", "Phone?", "Телефон?"],
    ["text", "phone", "Number", "Номер", None, None, None, "${has_phone} = 'yes'",
     "regex(., '^[+]7[0-9]{10}$')", "+7 and ten digits"],
    ["select all that apply services or_other", "services", "Services", "Услуги"],
    ["integer", "outage_days", "Days without power", "Дни без света", None,
     "${head_age} >= 60", "Ask older heads", "selected(${services}, 'power')"],
    ["range", "satisfaction", "Satisfaction", "Удовлетворённость"],
    ["begin_group", "housing", "Housing", "Жильё", None, None, None, "${head_age} > 20"],
    ["integer", "members", "Members", "Члены семьи", None, "yes", None, None, ". > 0"],
    ["begin repeat", "roster", "Roster", "Состав", None, None, None, None, None, None, None,
     None, None, None, "${members}"],
    ["text", "member_name", "Name", "Имя", None, "yes"],
    ["integer", "member_age", "Age", "Возраст", None, "yes", None, None, ". <= ${head_age}",
     "Not older than the head"],
    ["calculate", "is_child", None, None, None, None, None, None, None, None,
     "if(${member_age} < 18, 1, 0)"],
    ["end repeat"],
    ["end_group"],
    ["calculate", "children", None, None, None, None, None, None, None, None,
     "sum(${is_child})"],
    ["decimal", "income", "Income", "Доход", None, None, None, None, None, None, None, None,
     None, None, None, "Monthly, in tenge", "no"],
    ["start", "start"],
    ["deviceid", "deviceid"],
]  # fmt: skip
HOUSEHOLD_CHOICES = [
    ["list name", "name", "label::English (en)", "label::Russian (ru)"],
    ["yes_no", "yes", "Yes", "Да"],
    ["yes_no", "no", "No", "Нет"],
    ["services", "water", "Water", "Вода"],
    ["services", "power", "Electricity", "Электричество"],
]
HOUSEHOLD_SETTINGS = [["form_title", "default_language", "version"],
                      ["Household survey", "English (en)", "2026120701"]]  # fmt: skip


async def test_a_real_xlsform_imports_whole_and_its_rules_are_enforced(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    content = workbook(HOUSEHOLD_SURVEY, HOUSEHOLD_CHOICES, HOUSEHOLD_SETTINGS)
    imported = await upload(client, coordinator, content, "Household_Survey 2026.xlsx")
    assert imported.status_code == 201, imported.text
    form = imported.json()
    assert form["slug"] == "household-survey-2026"  # no form_id: from the file name
    assert form["title"] == {"en": "Household survey"}
    assert form["default_language"] == "en"
    assert form["respondent_groups"] == [
        {"key": "respondent", "category": "citizen", "label": {"en": "Respondent"}}
    ]
    questions = {q["key"]: q for q in walk_definition(form["questions"])}
    assert questions["welcome"]["type"] == "note"
    assert questions["Head.Name"]["help"] == {"en": "Full name"}
    assert questions["Head.Name"]["label"] == {"en": "Name of the head", "ru": "Имя главы"}
    age = questions["head_age"]
    assert (age["type"], age["required"], age["appearance"], age["default"]) == (
        "integer", True, "numbers", "40")  # fmt: skip
    assert age["constraint"] == ". >= 18 and . <= 120"
    assert age["constraint_message"] == {"en": "Heads are adults"}
    assert questions["outage_days"]["required"] == "${head_age} >= 60"
    assert questions["outage_days"]["required_message"] == {"en": "Ask older heads"}
    assert questions["outage_days"]["relevant"] == "selected(${services}, 'power')"
    assert [o["value"] for o in questions["services"]["options"]] == ["water", "power", "other"]
    assert questions["services_other"]["relevant"] == "selected(${services}, 'other')"
    assert (questions["satisfaction"]["min"], questions["satisfaction"]["max"]) == (1, 10)
    assert questions["housing"]["relevant"] == "${head_age} > 20"
    assert questions["roster"]["count"] == "${members}"
    assert questions["is_child"]["calculation"] == "if(${member_age} < 18, 1, 0)"
    assert questions["income"]["guidance_hint"] == {"en": "Monthly, in tenge"}
    assert questions["income"]["read_only"] is False
    # metadata rows: answered by the device, stored as sent
    assert {k: v for k, v in questions["start"].items() if v is not None} == {
        "key": "start", "type": "meta", "meta": "start"}  # fmt: skip
    assert (questions["deviceid"]["type"], questions["deviceid"]["meta"]) == ("meta", "deviceid")

    survey_id = form["id"]
    published = await client.post(
        f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    observer = await headers_for(app, Role.observer)
    target = f"/api/v1/questionnaires/{survey_id}/responses"
    good = {
        "Head.Name": "Aigerim",
        "head_age": 62,
        "has_phone": "yes",
        "phone": "+77011234567",
        "services": ["power"],
        "outage_days": 4,
        "satisfaction": 7,
        "members": 2,
        "roster": [{"member_name": "Nurlan", "member_age": 60},
                   {"member_name": "Dana", "member_age": 9}],
        "children": "5",  # a wrong client value: the server's sum replaces it
    }  # fmt: skip

    async def submit(answers: dict[str, Any]) -> httpx.Response:
        body = {"respondent": {"group": "respondent"}, "answers": answers}
        return await client.post(target, json=body, headers=observer)

    stored = await submit(good)
    assert stored.status_code == 201, stored.text
    assert stored.json()["answers"]["children"] == "1"  # one member under 18
    assert [m["is_child"] for m in stored.json()["answers"]["roster"]] == ["0", "1"]

    async def problems(**changes: Any) -> list[tuple[Any, str]]:
        answers = {k: v for k, v in {**good, **changes}.items() if v is not None}
        refused = await submit(answers)
        assert refused.status_code == 422, refused.text
        return [(e["loc"][2:], e["msg"]) for e in refused.json()["errors"]]

    # (the housing group needs a head over 20: its questions are then left out)
    assert await problems(head_age=16, members=None, roster=None) == [
        (["head_age"], "Heads are adults")
    ]
    assert await problems(head_age=19) == [
        (["members"], "this question is not relevant here"),
        (["roster"], "this question is not relevant here"),
    ]
    assert await problems(outage_days=None) == [(["outage_days"], "Ask older heads")]
    assert await problems(has_phone="no") == [(["phone"], "this question is not relevant here")]
    assert await problems(satisfaction=11) == [(["satisfaction"], "must be at most 10")]
    assert await problems(members=3) == [(["roster"], "expected 3 instances (its count)")]
    older = [{"member_name": "Old", "member_age": 70}, {"member_name": "Dana", "member_age": 9}]
    assert await problems(roster=older) == [
        (["roster", 0, "member_age"], "Not older than the head")
    ]
    assert await problems(welcome="read") == [(["welcome"], "no such question here")]


def walk_definition(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for question in questions:
        found.append(question)
        found += walk_definition(question.get("questions") or [])
    return found


@pytest.mark.parametrize(
    ("label_header", "language_setting"),
    [
        ("label::English", "English"),  # a language name without a code
        ("label:English", "English"),  # pyxform's single-colon spelling
        ("label::English (en)", "English (en)"),
        ("label", None),  # no language at all: the default
    ],
)
async def test_pyxform_spellings_of_labels_and_languages(
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    label_header: str,
    language_setting: str | None,
) -> None:
    survey = [
        ["type", "name", label_header],
        ["select_one respondent_group", "who", "Who are you?"],
        ["select one yn", "Q1.a", "Agree?"],
        ["select all that apply yn", "q2", "Which?"],
    ]
    choices = [
        ["list_name", "name", label_header, "category"],
        ["respondent_group", "farmer", "Farmer", "citizen"],
        ["respondent_group", "agronomist", "Agronomist", "expert"],
        ["yn", "yes", "Yes"],
        ["yn", "no", "No"],
    ]
    settings = [["form_id", "default_language"], ["farm_2026", language_setting]]
    if language_setting is None:
        settings = [["form_id"], ["farm_2026"]]
    imported = await upload(client, coordinator, workbook(survey, choices, settings))
    assert imported.status_code == 201, imported.text
    form = imported.json()
    assert (form["slug"], form["default_language"]) == ("farm-2026", "en")
    assert form["respondent_groups"] == [
        {"key": "farmer", "category": "citizen", "label": {"en": "Farmer"}},
        {"key": "agronomist", "category": "expert", "label": {"en": "Agronomist"}},
    ]
    assert [(q["key"], q["type"], q["label"]) for q in form["questions"]] == [
        ("who", "single_choice", {"en": "Who are you?"}),
        ("Q1.a", "single_choice", {"en": "Agree?"}),
        ("q2", "multiple_choice", {"en": "Which?"}),
    ]


async def test_every_problem_of_a_bad_xlsform_is_listed_by_row(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    survey = [
        ["type", "name", "label", "relevant", "constraint"],
        ["text", "a", "A"],
        ["csv-external", "prices", "Prices"],  # row 3
        ["integer", "b", "B", "bogus(${a})"],  # row 4
        ["osm", "building", "Building"],  # row 5
        ["integer", "c", "C", None, ". >"],  # row 6
        ["select_one_from_file towns.csv", "town", "Town"],  # row 7
        ["text", "d", "D", "${a} = 'x' and (" * 70 + "1" + ")" * 70],  # row 8
    ]
    refused = await upload(client, coordinator, workbook(survey))
    assert sorted(map(tuple, error_locations(refused))) == [
        ("file", "survey", 3, "type"),
        ("file", "survey", 4, "relevant"),
        ("file", "survey", 5, "type"),
        ("file", "survey", 6, "constraint"),
        ("file", "survey", 7, "type"),
        ("file", "survey", 8, "relevant"),
    ]


async def test_odd_header_cells_and_file_types_are_422_not_500(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "survey"
    sheet.append(["type", "name", "label", 2026, True, datetime(2026, 1, 1)])
    sheet.append(["text", "a", "A"])
    buffer = io.BytesIO()
    book.save(buffer)
    refused = await upload(client, coordinator, buffer.getvalue())
    assert error_locations(refused) == [["file", "survey", 1, "D"]]
    # a public key that is no key is refused, naming its cell
    encrypted = workbook([["type", "name", "label"], ["text", "a", "A"]],
                        settings=[["form_id", "public_key"], ["secret", "MIIBIjANBgkq"]])  # fmt: skip
    assert error_locations(await upload(client, coordinator, encrypted)) == [
        ["file", "settings", 2, "public_key"]
    ]
    # .xls is read (by pyxform's xlrd backend), not refused by its name
    not_xls = await upload(client, coordinator, b"\xd0\xcf\x11\xe0 not really", "form.xls")
    assert error_locations(not_xls) == [["file"]]
    assert "not a readable .xls workbook" in not_xls.json()["errors"][0]["msg"]


async def test_definition_rules_broken_by_an_xlsform_name_the_row_and_column(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    survey = [
        ["type", "name", "label::English (en)", "label::Russian (ru)", "parameters"],
        ["range", "score", "Score", "Оценка", "start=1 end=500"],  # row 2: over 100 steps
        ["text", "comment", None, "Комментарий"],  # row 3: no label in the default language
    ]
    settings = [["form_id", "default_language"], ["rules", "English (en)"]]
    refused = await upload(client, coordinator, workbook(survey, settings=settings))
    assert sorted(map(tuple, error_locations(refused))) == [
        ("file", "survey", 2, "parameters"),
        ("file", "survey", 3, "label"),
    ]


async def test_a_choice_breaking_a_rule_names_its_row_of_the_choices_sheet(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    survey = [
        ["type", "name", "label::English (en)", "label::Russian (ru)"],
        ["select_one yes_no", "agree", "Agree?", "Согласны?"],
        ["select_multiple services", "services", "Services", "Услуги"],
    ]
    choices = [
        ["list_name", "name", "label::English (en)", "label::Russian (ru)"],
        ["yes_no", "yes", "Yes", "Да"],
        ["yes_no", "no", None, "Нет"],  # row 3: no English label
        ["services", "water", "Water", "Вода"],
        ["services", "x" * 101, "Too long a value", "Слишком длинное"],  # row 5
    ]
    settings = [["form_id", "default_language"], ["choices", "English (en)"]]
    refused = await upload(client, coordinator, workbook(survey, choices, settings))
    # the value the schema refuses and the label the rules refuse, in one answer
    assert error_locations(refused) == [
        ["file", "choices", 5, "name"],
        ["file", "choices", 3, "label"],
    ]
    refused = await upload(client, coordinator, workbook(survey, choices[:-1], settings))
    assert error_locations(refused) == [["file", "choices", 3, "label"]]
