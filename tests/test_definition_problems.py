"""Every problem of a bad definition in one answer: what its schema refuses and what the
definition rules refuse, each at its place (an XLSForm's by sheet, row and column; a CSV
list's by file, line and column; JSON by its path), and nothing that only follows from a part
already refused (a reference to a question the schema refused is not "unknown")."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.models.auth import Role
from tests.factories import headers_for
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
