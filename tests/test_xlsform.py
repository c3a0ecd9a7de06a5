"""XLSForm out and back: `GET /questionnaires/{id}/xlsform`, and the round trip an author makes
(their workbook -> import -> the exported workbook -> pyxform, and -> import again).

The workbooks are written here cell by cell with openpyxl, the way a form author types them;
"the same form" is judged by pyxform itself: both workbooks go through its `workbook_to_json`
and `convert`, and what they make is compared after the differences that carry no meaning
(list names, the form's title and id) are taken out.
"""

import io
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI
from openpyxl import Workbook, load_workbook
from pyxform.xls2json import workbook_to_json
from pyxform.xls2json_backends import get_xlsform
from pyxform.xls2xform import convert

from app.models.auth import Role
from tests.factories import almaty_definition, headers_for

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DEFINITION_FIELDS = (
    "title",
    "description",
    "default_language",
    "access",
    "respondent_groups",
    "questions",
    "choice_lists",
    "settings",
)


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


def workbook(
    survey: list[list[Any]],
    choices: list[list[Any]] | None = None,
    settings: list[list[Any]] | None = None,
) -> bytes:
    """A workbook built cell by cell, as an author types it in a spreadsheet."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "survey"
    for row in survey:
        sheet.append(row)
    for title, rows in (("choices", choices), ("settings", settings)):
        if rows is not None:
            extra = book.create_sheet(title)
            for row in rows:
                extra.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], content: bytes, name: str = "form.xlsx"
) -> httpx.Response:
    return await client.post(
        "/api/v1/questionnaires/import",
        files={"file": (name, content, XLSX_TYPE)},
        headers=headers,
    )


async def export(
    client: httpx.AsyncClient, headers: dict[str, str], questionnaire_id: str
) -> bytes:
    response = await client.get(
        f"/api/v1/questionnaires/{questionnaire_id}/xlsform", headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX_TYPE
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return response.content


def definition_of(form: dict[str, Any]) -> dict[str, Any]:
    return {field: form.get(field) for field in DEFINITION_FIELDS}


# --- a field form, as an author writes it -----------------------------------------------------

# A household water and sanitation visit: three languages, nested groups with relevance, a
# household roster repeat with a count, constraints with messages, bounds, a calculation, an
# or_other list, a range, notes and hints. (Written for these tests.)
HEADER = [
    "type", "name", "label::English (en)", "label::Russian (ru)", "label::Kazakh (kk)",
    "hint::English (en)", "hint::Russian (ru)", "required", "required_message::English (en)",
    "relevant", "constraint", "constraint_message::English (en)",
    "constraint_message::Russian (ru)", "calculation", "default", "appearance", "read_only",
    "parameters", "repeat_count", "guidance_hint::English (en)",
]  # fmt: skip
LANGUAGES = {"en": "English (en)", "ru": "Russian (ru)", "kk": "Kazakh (kk)"}


def row(kind: str, name: str | None = None, *labels: str, **cells: str) -> list[Any]:
    """A survey row: labels in English, Russian, Kazakh; other cells by column, with the
    language as a suffix (hint_en, constraint_message_ru)."""
    values: dict[str, Any] = {"type": kind, "name": name}
    for code, label in zip(LANGUAGES, labels, strict=False):
        values[f"label::{LANGUAGES[code]}"] = label
    for cell, value in cells.items():
        base, _, code = cell.rpartition("_")
        values[f"{base}::{LANGUAGES[code]}" if code in LANGUAGES else cell] = value
    return [values.get(column) for column in HEADER]


WASH_SURVEY = [
    HEADER,
    [None, None, None, None, None, "Comment: check the roster against the 2025 census"],
    row("note", "intro", "Read the consent text aloud", "Зачитайте согласие",
        "Келісімді оқыңыз"),
    row("begin group", "dwelling", "Dwelling", "Жилище", "Тұрғын үй"),
    row("text", "village", "Village", "Село", "Ауыл", hint_en="As on the road sign",
        hint_ru="Как на дорожном знаке", required="yes"),
    row("integer", "hh_size", "People in the household", "Членов семьи", "Отбасы мүшелері",
        required="yes", constraint=". >= 1 and . <= 30",
        constraint_message_en="Between 1 and 30 people",
        constraint_message_ru="От 1 до 30 человек"),
    row("select_one yes_no", "has_tap", "Tap water inside?", "Водопровод в доме?",
        "Үйде су құбыры бар ма?", required="yes", required_message_en="Ask about the tap"),
    row("begin group", "tap", "The tap", "Кран", "Кран", relevant="${has_tap} = 'yes'"),
    row("integer", "tap_hours", "Hours of water a day", "Часов воды в день",
        "Тәулігіне су сағаты", constraint=". >= 0 and . <= 24"),
    row("select_multiple problems or_other", "tap_problems", "Problems", "Проблемы",
        "Мәселелер", constraint="count-selected(.) <= 2"),
    row("end group"),
    row("select_one water_source", "source", "Main source otherwise", "Основной источник",
        "Негізгі көз", relevant="${has_tap} = 'no'",
        guidance_hint_en="Ask which source they used last week"),
    row("decimal", "walk_km", "Distance to the source (km)", "Расстояние (км)",
        "Қашықтық (км)", relevant="${source} = 'well' or ${source} = 'river'",
        constraint=". > 0 and . < 50", constraint_message_en="Under 50 km",
        appearance="numbers", default="1.5"),
    row("end group"),
    row("begin repeat", "member", "Household member", "Член семьи", "Отбасы мүшесі",
        repeat_count="${hh_size}"),
    row("text", "member_name", "Name", "Имя", "Аты", required="yes"),
    row("integer", "member_age", "Age", "Возраст", "Жасы", required="yes",
        constraint=". >= 0 and . <= 110"),
    row("select_one yes_no", "member_ill", "Diarrhoea in the last two weeks?",
        "Диарея за две недели?", "Екі аптада диарея болды ма?",
        relevant="${member_age} < 5"),
    row("calculate", "member_child", calculation="if(${member_age} < 5, 1, 0)"),
    row("end repeat"),
    row("calculate", "children", calculation="sum(${member_child})"),
    row("range", "satisfaction", "Satisfied with the water?", "Довольны водой?",
        "Судың сапасы ұнай ма?", parameters="start=1 end=5"),
    row("text", "remarks", "Remarks", "Замечания", "Ескертпелер", read_only="no",
        appearance="multiline"),
]  # fmt: skip
WASH_CHOICES = [
    ["list name", "name", "label::English (en)", "label::Russian (ru)", "label::Kazakh (kk)",
     "category"],
    ["respondent_group", "household", "Household", "Домохозяйство", "Үй шаруашылығы",
     "citizen"],
    ["respondent_group", "engineer", "Water engineer", "Инженер", "Инженер", "expert"],
    ["yes_no", "yes", "Yes", "Да", "Иә"],
    ["yes_no", "no", "No", "Нет", "Жоқ"],
    ["problems", "pressure", "Low pressure", "Слабый напор", "Қысым әлсіз"],
    ["problems", "colour", "Coloured water", "Цветная вода", "Түсті су"],
    ["problems", "cuts", "Cuts", "Отключения", "Өшірулер"],
    ["water_source", "well", "Well", "Колодец", "Құдық"],
    ["water_source", "river", "River", "Река", "Өзен"],
    ["water_source", "truck", "Water truck", "Водовоз", "Су тасушы"],
]  # fmt: skip
WASH_SETTINGS = [
    ["form_title", "form_id", "default_language", "version"],
    ["Household water visit", "wash_visit_2026", "English (en)", "2026120801"],
]


def wash_workbook() -> bytes:
    return workbook(WASH_SURVEY, WASH_CHOICES, WASH_SETTINGS)


# --- pyxform's reading of a workbook, with meaningless differences taken out -------------------

# pyxform's own aliases of a type (the same XForm either way)
ALIASES = {"gps": "geopoint", "trigger": "acknowledge", "dateTime": "datetime"}
_CODE = re.compile(r"\(([A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*)\)\s*$")
_RELATIVE = re.compile(r"\.\./([A-Za-z_][A-Za-z0-9_.\-]*)")


def _code(language: str) -> str:
    match = _CODE.search(language)
    return match.group(1) if match else language


def _normal(value: Any, default: str) -> Any:
    """pyxform's JSON with languages named by code, relative paths as ${} references, list
    names left out (each select keeps its resolved choices) and Kenes's own columns dropped."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            if key in ("itemset", "list_name", "__row") or key.startswith("kenes_"):
                continue
            if key in ("label", "hint", "guidance_hint", "jr:constraintMsg", "jr:requiredMsg"):
                if isinstance(inner, str):
                    inner = {default: inner}
                out[key] = {_code(lang): text for lang, text in inner.items()}
            elif key == "type" and isinstance(inner, str):
                out[key] = ALIASES.get(inner, inner)
            elif key == "media":
                out[key] = {
                    kind: {_code(lang): name for lang, name in files.items()}
                    for kind, files in inner.items()
                }
            elif key == "parameters" and isinstance(inner, dict) and inner.get("start"):
                out[key] = {"step": "1", **inner}
            else:
                out[key] = _normal(inner, default)
        return out
    if isinstance(value, list):
        return [_normal(item, default) for item in value]
    if isinstance(value, str):
        return _RELATIVE.sub(r"${\1}", value)
    return value


def pyxform_json(content: bytes) -> Any:
    book = get_xlsform(io.BytesIO(content), file_type=".xlsx")
    form = workbook_to_json(book, fallback_form_name="data", default_language="default")
    default = _code(str(form.get("default_language")))
    return _normal(form["children"], default)


def pyxform_xform(content: bytes) -> ET.Element:
    xform = convert(io.BytesIO(content), form_name="data", file_type=".xlsx").xform
    root: ET.Element = parse_xml(xform.encode())
    return root


_PATH = re.compile(r"\s*(?:/data(?:/[A-Za-z_][\w.\-]*)*/|(?:\.\./)+)([A-Za-z_][\w.\-]*)\s*")


def _expression(text: str) -> str:
    """An XPath with every path to a node (absolute, or relative as pyxform writes its own)
    as the node's name."""
    return _PATH.sub(r"\1", text)


def _tag(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def structure(xform: ET.Element, leave_out: set[str]) -> dict[str, Any]:
    """An XForm's instance tree, binds (by path) and body controls (tag, ref, appearance),
    without the elements named in `leave_out` (anywhere in a path)."""
    model = next(e for e in xform.iter() if _tag(e) == "model")
    primary = next(e for e in model if _tag(e) == "instance" and "id" not in e.attrib)

    def tree(node: ET.Element) -> list[Any]:
        return [
            (_tag(child), tree(child))
            for child in node
            if _tag(child) not in leave_out and _tag(child) != "meta"
        ]

    def kept(path: str) -> bool:
        parts = path.strip().split("/")
        return not any(part in leave_out or part == "meta" for part in parts)

    binds = {
        # a bind without a type is a string (pyxform's `trigger` writes none, `acknowledge` one)
        bind.attrib["nodeset"]: {"type": "string"}
        | {
            key.rsplit("}", 1)[-1]: _expression(value)
            for key, value in bind.attrib.items()
            if key != "nodeset"
        }
        for bind in model
        if _tag(bind) == "bind" and kept(bind.attrib["nodeset"])
    }
    body = next(e for e in xform.iter() if _tag(e) == "body")
    controls = [
        (_tag(node), node.attrib.get("ref") or node.attrib.get("nodeset"),
         node.attrib.get("appearance"))
        for node in body.iter()
        if (node.attrib.get("ref") or node.attrib.get("nodeset") or "").startswith("/data")
        and kept(node.attrib.get("ref") or node.attrib.get("nodeset") or "")
    ]  # fmt: skip
    return {"instance": tree(primary[0]), "binds": binds, "controls": controls}


# --- the round trip ---------------------------------------------------------------------------


async def test_an_authors_workbook_round_trips_through_kenes(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    original = wash_workbook()
    imported = await upload(client, coordinator, original, "wash.xlsx")
    assert imported.status_code == 201, imported.text
    form = imported.json()
    assert form["title"] == {"en": "Household water visit"}
    assert [g["key"] for g in form["respondent_groups"]] == ["household", "engineer"]
    exported = await export(client, coordinator, form["id"])

    # pyxform makes the same form of both workbooks
    assert pyxform_json(exported) == pyxform_json(original)
    assert structure(pyxform_xform(exported), set()) == structure(pyxform_xform(original), set())

    # the workbook reads as an author's: sheets, languages per column, the groups as a list
    book = load_workbook(io.BytesIO(exported))
    assert book.sheetnames == ["survey", "choices", "settings"]
    survey_header = [cell.value for cell in book["survey"][1]]
    assert survey_header[:5] == [
        "type", "name", "label::English (en)", "label::Қазақша (kk)", "label::Русский (ru)"
    ]  # fmt: skip
    choices = list(book["choices"].iter_rows(values_only=True))
    header = choices[0]
    groups = [
        dict(zip(header, values, strict=True))
        for values in choices[1:]
        if values[0] == "respondent_group"
    ]
    assert [(g["name"], g["category"], g["label::English (en)"]) for g in groups] == [
        ("household", "citizen", "Household"),
        ("engineer", "expert", "Water engineer"),
    ]
    settings = dict(zip(*book["settings"].iter_rows(values_only=True), strict=True))
    assert settings["form_id"] == "wash_visit_2026".replace("_", "-")
    assert settings["default_language"] == "English (en)"

    # importing the exported workbook gives the same definition (as the next version)
    published = await client.post(
        f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    again = await upload(client, coordinator, exported, "anything.xlsx")
    assert again.status_code == 201, again.text
    assert (again.json()["slug"], again.json()["version"]) == (form["slug"], 2)
    assert definition_of(again.json()) == definition_of(form)


async def test_the_xform_of_an_imported_form_is_pyxforms_xform_of_the_workbook(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    """Kenes's XForm adds its own elements (the respondent group, start and end times, a
    count node per repeat) and spells bounds out with its own messages; the rest, the
    author's form, is what pyxform makes of the author's workbook."""
    original = wash_workbook()
    imported = await upload(client, coordinator, original, "wash.xlsx")
    assert imported.status_code == 201, imported.text
    response = await client.get(
        f"/api/v1/questionnaires/{imported.json()['id']}/xform", headers=coordinator
    )
    assert response.status_code == 200, response.text
    own = {"_respondent", "_start", "_end", "_count_member", "member_count"}
    ours = structure(parse_xml(response.content), own)
    theirs = structure(pyxform_xform(original), own)
    assert ours["instance"] == theirs["instance"]
    assert ours["controls"] == [
        (tag, ref.replace("member_count", "_count_member"), appearance)
        for tag, ref, appearance in theirs["controls"]
    ]
    assert ours["binds"].keys() == theirs["binds"].keys()
    for path, want in theirs["binds"].items():
        got = ours["binds"][path]
        for attribute in ("type", "relevant", "required", "calculate", "readonly"):
            assert got.get(attribute) == want.get(attribute), (path, attribute)
        if "constraint" in want:
            # the same rule (bounds read as min/max are written back the same)
            assert got["constraint"] == want["constraint"], path
        elif got.get("constraint"):
            assert got["constraint"] == "string-length(.) <= 2000", path  # text's own limit


async def test_a_definition_made_in_kenes_comes_back_whole(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    """What XLSForm has no column for (a boolean, bounds next to a constraint, a text limit,
    a repeat's min and max count, the title in every language, the description) is carried in
    kenes_* columns; everything else in XLSForm's own."""
    body = almaty_definition(slug="kenes-made")
    body["description"] = {"ru": "Описание", "kk": "Сипаттама", "en": "About"}
    questions = body["questions"]
    by_key = {q["key"]: q for q in questions}
    number = next(q for q in questions if q["type"] == "integer")
    number.update(min=1, max=20, constraint=". != 13", constraint_message={"ru": "Не 13"})
    text = next(q for q in questions if q["type"] == "text")
    text["max_length"] = 300
    questions.append(
        {
            "key": "visits",
            "type": "repeat",
            "label": {"ru": "Визиты", "kk": "Сапарлар", "en": "Visits"},
            "min_count": 1,
            "max_count": 4,
            "questions": [
                {"key": "visit_date", "type": "date", "label": {"ru": "Дата"},
                 "required": True, "default": "2026-01-01"},
                {"key": "Visit.OK", "type": "boolean", "label": {"ru": "Успешно?"},
                 "read_only": True, "default": False},
            ],
        }
    )  # fmt: skip
    questions.append(
        {"key": "welcome_2", "type": "note", "label": {"ru": "=СУММ(A1:A2) — не формула"}}
    )
    created = await client.post("/api/v1/questionnaires", json=body, headers=coordinator)
    assert created.status_code == 201, created.text
    form = created.json()
    assert by_key  # the Almaty survey has keyed questions
    exported = await export(client, coordinator, form["id"])
    book = load_workbook(io.BytesIO(exported))
    note = next(r for r in book["survey"].iter_rows() if r[1].value == "welcome_2")
    assert note[2].data_type == "s"  # text, never a formula

    published = await client.post(
        f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    again = await upload(client, coordinator, exported)
    assert again.status_code == 201, again.text
    got, want = definition_of(again.json()), definition_of(form)
    # JSON conditions come back as the XLSForm expression that means the same
    for question in want["questions"]:
        if isinstance(question.get("relevant"), dict):
            question["relevant"] = next(
                q["relevant"] for q in got["questions"] if q["key"] == question["key"]
            )
            assert isinstance(question["relevant"], str)
    assert got == want


async def test_who_may_download_the_xlsform(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    imported = await upload(client, coordinator, wash_workbook())
    assert imported.status_code == 201, imported.text
    target = f"/api/v1/questionnaires/{imported.json()['id']}/xlsform"
    assert (await client.get(target)).status_code == 401
    observer = await headers_for(app, Role.observer)
    assert (await client.get(target, headers=observer)).status_code == 404  # a draft
    analyst = await headers_for(app, Role.analyst)
    assert (await client.get(target, headers=analyst)).status_code == 200
    unknown = f"/api/v1/questionnaires/{uuid.uuid4()}/xlsform"
    assert (await client.get(unknown, headers=coordinator)).status_code == 404


async def test_any_language_with_a_code_round_trips(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    """Languages beyond kk, ru, en (BCP 47 tags): named with their code, or a bare tag."""
    survey = [
        ["type", "name", "label::Français (fr)", "label::العربية (ar)", "label::zh-Hans",
         "hint::Français (fr)"],
        ["select_one oui_non", "eau", "Avez-vous l'eau courante ?", "هل لديك ماء جار؟",
         "你家有自来水吗？", "Au robinet"],
        ["integer", "foyer", "Personnes au foyer", "عدد أفراد الأسرة", "家庭人数"],
    ]  # fmt: skip
    choices = [
        ["list_name", "name", "label::Français (fr)", "label::العربية (ar)", "label::zh-Hans"],
        ["oui_non", "oui", "Oui", "نعم", "是"],
        ["oui_non", "non", "Non", "لا", "否"],
    ]
    settings = [["form_id", "form_title", "default_language"],
                ["eau_2026", "Eau potable", "Français (fr)"]]  # fmt: skip
    original = workbook(survey, choices, settings)
    imported = await upload(client, coordinator, original)
    assert imported.status_code == 201, imported.text
    form = imported.json()
    assert form["default_language"] == "fr"
    assert form["questions"][0]["label"] == {
        "fr": "Avez-vous l'eau courante ?", "ar": "هل لديك ماء جار؟", "zh-Hans": "你家有自来水吗？"
    }  # fmt: skip
    exported = await export(client, coordinator, form["id"])
    header = [cell.value for cell in load_workbook(io.BytesIO(exported))["survey"][1]]
    assert header[:5] == [
        "type", "name", "label::Français (fr)", "label::العربية (ar)", "label::简体中文 (zh-Hans)"
    ]  # fmt: skip
    assert pyxform_json(exported) == pyxform_json(original)
    published = await client.post(
        f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    again = await upload(client, coordinator, exported)
    assert again.status_code == 201, again.text
    assert definition_of(again.json()) == definition_of(form)
    # the XForm offers the form's languages (the service's own words in English there)
    xform = await client.get(f"/api/v1/questionnaires/{form['id']}/xform", headers=coordinator)
    assert xform.status_code == 200, xform.text
    languages = [
        node.attrib["lang"]
        for node in parse_xml(xform.content).iter("{http://www.w3.org/2002/xforms}translation")
    ]
    assert languages == ["Français (fr)"]  # the title's language only
