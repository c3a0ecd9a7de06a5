"""Every problem of a bad definition in one answer: what its schema refuses and what the
definition rules refuse, each at its place (an XLSForm's by sheet, row and column; a CSV
list's by file, line and column; JSON by its path), and nothing that only follows from a part
already refused (a reference to a question the schema refused is not "unknown")."""

import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.models.auth import Role
from tests.factories import almaty_definition, headers_for
from tests.test_xlsform import XLSX_TYPE, workbook

LONG_LABEL = "A" * 2001  # the schema's limit is 2000 characters
LONG_VALUE = "x" * 101  # an option value: at most 100


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


def problems(response: httpx.Response) -> list[tuple[Any, ...]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return sorted(tuple(error["loc"]) for error in response.json()["errors"])


async def test_an_xlsform_with_schema_and_rule_problems_is_refused_with_all_of_them(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    survey = [
        ["type", "name", "label::English (en)", "label::Russian (ru)", "relevant",
         "constraint", "choice_filter"],
        ["text", "name", "Name", "Имя"],
        ["integer", "age", LONG_LABEL, "Возраст"],  # row 3: schema
            # row 4: names `age` (refused by the schema: no problem of this row) and a later question
        ["text", "comment", "Comment", "Комментарий", "${age} > 18", "${agree} = 'yes'"],
        # row 5: a property the CSV list does not have
        ["select_one_from_file districts.csv", "district", "District", "Район", None, None,
         "zone = 'north'"],
        ["select_one yes_no", "agree", None, "Согласны?"],  # row 6: no English label
    ]  # fmt: skip
    choices = [
        ["list_name", "name", "label::English (en)", "label::Russian (ru)"],
        ["yes_no", "yes", "Yes", "Да"],
        ["yes_no", "no", None, "Нет"],  # row 3: no English label
        ["yes_no", LONG_VALUE, "Long", "Длинный"],  # row 4: schema
    ]
    settings = [["form_id", "default_language"], ["together", "English (en)"]]
    districts = (
        "name,label::English (en),label::Russian (ru),region\n"
        "talgar,Talgar,Талгарский,almaty_reg\n"
        "karasay,,Карасайский,almaty_reg\n"  # line 3: no English label
    )
    refused = await client.post(
        "/api/v1/questionnaires/import",
        files=[
            ("file", ("together.xlsx", workbook(survey, choices, settings), XLSX_TYPE)),
            ("media", ("districts.csv", districts.encode(), "text/csv")),
        ],
        headers=coordinator,
    )
    assert problems(refused) == [
        ("file", "choices", 3, "label"),
        ("file", "choices", 4, "name"),
        ("file", "survey", 3, "label"),
        ("file", "survey", 4, "constraint"),
        ("file", "survey", 5, "choice_filter"),
        ("file", "survey", 6, "label"),
        ("media", "districts.csv", 3, "label"),
    ]
    messages = {tuple(e["loc"]): e["msg"] for e in refused.json()["errors"]}
    assert "later question" in messages[("file", "survey", 4, "constraint")]
    assert "zone" in messages[("file", "survey", 5, "choice_filter")]

    # with the problems mended, the same workbook imports
    survey[2][2] = "Age"
    survey[3][5] = "${name} != ''"
    survey[4][6] = "region = 'almaty_reg'"
    survey[5][2] = "Agree?"
    choices[2][2] = "No"
    mended = await client.post(
        "/api/v1/questionnaires/import",
        files=[
            ("file", ("together.xlsx", workbook(survey, choices[:3], settings), XLSX_TYPE)),
            ("media", ("districts.csv", districts.replace(",,", ",Karasay,").encode(), "text/csv")),
        ],
        headers=coordinator,
    )
    assert mended.status_code == 201, mended.text


def broken_definition() -> dict[str, Any]:
    """The Almaty survey with two parts its schema refuses and four rules broken elsewhere."""
    definition = almaty_definition(slug=f"together-{uuid.uuid4().hex[:8]}")
    questions = definition["questions"]
    # schema: a type that does not exist; `times_participated` and `last_hearing` compare with
    # this question in their conditions, which is not reported again
    questions[2]["type"] = "yes_no"
    questions[0]["options"][1]["value"] = LONG_VALUE  # schema: an option value over 100
    questions[5]["max"] = 500  # rule: a scale of at most 100 steps
    questions[6]["label"] = {"en": "Influence"}  # rule: no label in the default language (ru)
    questions[9]["constraint"] = "${nowhere} != ''"  # rule: names no question
    # rule: `ghost` is no question (`participated`, refused by the schema, is one)
    definition["settings"] = {"instance_name": "concat(${participated}, ${ghost})"}
    return definition


EXPECTED_JSON = [
    ("body", "questions", 0, "single_choice", "options", 1, "value"),
    ("body", "questions", 2),
    ("body", "questions", 5, "max"),
    ("body", "questions", 6, "label"),
    ("body", "questions", 9, "constraint"),
    ("body", "settings", "instance_name"),
]


async def test_a_json_definition_with_schema_and_rule_problems_is_refused_with_all_of_them(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    definition = broken_definition()
    refused = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    assert problems(refused) == sorted(EXPECTED_JSON)
    messages = {tuple(e["loc"]): e["msg"] for e in refused.json()["errors"]}
    assert "ghost" in messages[("body", "settings", "instance_name")]
    assert "nowhere" in messages[("body", "questions", 9, "constraint")]

    # the same problems made by a PATCH of a valid draft
    valid = almaty_definition(slug=definition["slug"])
    created = await client.post("/api/v1/questionnaires", json=valid, headers=coordinator)
    assert created.status_code == 201, created.text
    changes = {key: definition[key] for key in ("questions", "settings")}
    target = f"/api/v1/questionnaires/{created.json()['id']}"
    refused = await client.patch(target, json=changes, headers=coordinator)
    assert problems(refused) == sorted(EXPECTED_JSON)
    assert (await client.get(target, headers=coordinator)).json()["questions"] == (
        created.json()["questions"]
    )


async def test_a_refused_key_or_list_is_not_reported_again_where_it_is_named(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    """A question whose key the schema refuses, and a choice list whose name it refuses: the
    questions naming them are not reported; their own other problems are."""
    definition = almaty_definition(slug=f"named-{uuid.uuid4().hex[:8]}")
    questions = definition["questions"]
    questions[2]["key"] = "has space"  # schema: not a key
    questions[3]["relevant"] = "${has space} = 'true'"
    questions[4].pop("options")
    questions[4]["choices"] = "bad list"  # its list's name is refused below
    questions[4]["max_selected"] = 3
    definition["choice_lists"] = {"bad list": [{"value": "tv", "label": {"ru": "ТВ"}}]}
    questions[7]["relevant"] = "${aware} = 'yes' and ${missing} = 1"  # rule: names no question
    refused = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    found = problems(refused)
    assert ("body", "questions", 7, "relevant") in found
    assert not [loc for loc in found if loc[:3] in (("body", "questions", 3),)]
    # the list's name, in the question (schema), and nothing about its options missing
    assert [loc for loc in found if loc[:3] == ("body", "questions", 4)] == [
        ("body", "questions", 4, "multiple_choice", "choices")
    ]
    assert [loc[:2] for loc in found if loc[1] == "choice_lists"] == [("body", "choice_lists")]
    assert sorted({loc[:3] for loc in found if loc[1] == "questions"}) == [
        ("body", "questions", 2),
        ("body", "questions", 4),
        ("body", "questions", 7),
        ("body", "questions", 8),  # names `participated`, which no question is called now
    ]


@pytest.mark.parametrize("field", ["questions", "settings"])
async def test_a_deeply_nested_definition_is_refused_not_a_server_error(
    client: httpx.AsyncClient, coordinator: dict[str, str], field: str
) -> None:
    # JSON the parser still reads (600 levels) but too deep to copy recursively: the schema's
    # problems are answered as such (422), for a new draft and for an edit
    depth = 600
    nested = "[" * depth + "]" * depth
    body = json.dumps({**almaty_definition(slug="deep"), field: "X"}).replace('"X"', nested)
    headers = {**coordinator, "content-type": "application/json"}
    created = await client.post("/api/v1/questionnaires", content=body, headers=headers)
    assert created.status_code == 422, created.text
    assert ["body", field] in [error["loc"][:2] for error in created.json()["errors"]]
    draft = await client.post(
        "/api/v1/questionnaires", json=almaty_definition(slug="deep"), headers=coordinator
    )
    assert draft.status_code == 201, draft.text
    edited = await client.patch(
        f"/api/v1/questionnaires/{draft.json()['id']}", content=body, headers=headers
    )
    assert edited.status_code == 422, edited.text
