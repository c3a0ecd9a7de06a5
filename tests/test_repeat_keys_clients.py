"""Keys shared by repeats (issue #12) as clients meet them: an OpenRosa submission, the XLSForm
import and round trip, and ODK's XForms engine filling the XForm. The form and its answers:
tests/test_repeat_keys.py."""

import copy
import uuid
from pathlib import Path
from typing import Any

import httpx
from defusedxml.ElementTree import fromstring as parse_xml
from fastapi import FastAPI

from app.models.auth import Role
from tests.clients import odk_engine_fills
from tests.factories import headers_for
from tests.servers import running_server
from tests.test_openrosa import _collector, _post, instance_xml
from tests.test_repeat_keys import (
    coordinator,
    households,
    published_household,
    with_calculations,
)
from tests.test_xlsform import export as export_xlsform
from tests.test_xlsform import upload as upload_xlsform
from tests.test_xlsform import workbook

__all__ = ["coordinator"]  # the fixture, for pytest


async def test_an_openrosa_submission_fills_each_repeats_own_questions(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    form = await published_household(client, coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form["id"]))
    xform = (await client.get(f"/openrosa/key/{token}/forms/{form['id']}.xml")).content
    document = parse_xml(xform)
    binds = {
        b.get("nodeset"): b.attrib for b in document.iter("{http://www.w3.org/2002/xforms}bind")
    }
    # each reference stays in its repeat, as pyxform writes relative paths
    assert binds["/data/members/votes"]["relevant"].replace(" ", "") == "../age>=18"
    assert binds["/data/visits/oldest"]["calculate"].replace(" ", "") == "max(../visitors/age)"
    for answers in households(seed=5, count=3):
        instance_id = uuid.uuid4()
        xml = instance_xml(xform, answers, respondent={"group": "all"}, instance_id=instance_id)
        reply = await _post(client, token, xml)
        assert reply.status_code == 201, reply.text
        read = await client.get(f"/api/v1/responses/{instance_id}", headers=admin)
        assert read.json()["answers"] == with_calculations(answers)


XLSFORM_HEADER = ["type", "name", "label", "required", "relevant", "constraint", "calculation"]
HOUSEHOLD_XLSFORM = [
    XLSFORM_HEADER,
    ["text", "village", "Village"],
    ["begin_repeat", "members", "Household members"],
    ["text", "name", "Name", "yes"],
    ["integer", "age", "Age of ${name}", None, None, ". <= 120"],
    ["select_one yes_no", "votes", "Does ${name} vote?", None, "${age} >= 18"],
    ["end_repeat"],
    ["begin_repeat", "visits", "Visits"],
    ["date", "day", "Day"],
    ["begin_repeat", "visitors", "Visitors"],
    ["text", "name", "Visitor"],
    ["integer", "age", "Age of ${name}", None, None, ". < 130"],
    ["end_repeat"],
    ["calculate", "oldest", None, None, None, None, "max(${age})"],
    ["end_repeat"],
    ["calculate", "members_n", None, None, None, None, "count(${members})"],
]
YES_NO = [["list_name", "name", "label"], ["yes_no", "yes", "Yes"], ["yes_no", "no", "No"]]


def _names(questions: list[dict[str, Any]], scope: str = "") -> list[str]:
    found = []
    for question in questions:
        found.append(f"{scope}{question['key']}")
        if question["type"] in ("group", "repeat"):
            found += _names(question["questions"], f"{scope}{question['key']}/")
    return found


async def test_an_xlsform_with_shared_keys_imports_whole_and_round_trips(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    content = workbook(HOUSEHOLD_XLSFORM, YES_NO, [["form_id"], ["household_xls"]])
    imported = await upload_xlsform(client, coordinator, content, "household.xlsx")
    assert imported.status_code == 201, imported.text
    form = imported.json()
    assert _names(form["questions"]) == [
        "village",
        "members", "members/name", "members/age", "members/votes",
        "visits", "visits/day", "visits/visitors", "visits/visitors/name",
        "visits/visitors/age", "visits/oldest",
        "members_n",
    ]  # fmt: skip
    exported = await export_xlsform(client, coordinator, form["id"])
    published = await client.post(
        f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    again = await upload_xlsform(client, coordinator, exported, "again.xlsx")
    assert again.status_code == 201, again.text
    fields = ("title", "default_language", "respondent_groups", "questions", "choice_lists")
    assert {f: again.json().get(f) for f in fields} == {f: form.get(f) for f in fields}

    # what the rule refuses is refused with its row: twice in one repeat (pyxform's rule), a
    # reference from the top level that could mean either repeat's `age`
    twice = [*HOUSEHOLD_XLSFORM[:5], ["integer", "age", "Again"], *HOUSEHOLD_XLSFORM[5:]]
    ambiguous = [*HOUSEHOLD_XLSFORM, ["calculate", "total", *[None] * 4, "sum(${age})"]]
    for rows, row_number in ((twice, 6), (ambiguous, len(ambiguous))):
        content = workbook(rows, YES_NO, [["form_id"], ["household_xls"]])
        refused = await upload_xlsform(client, coordinator, content, "household.xlsx")
        assert refused.status_code == 422, refused.text
        assert [e["loc"][:3] for e in refused.json()["errors"]] == [["file", "survey", row_number]]


async def test_odks_engine_fills_a_form_whose_repeats_share_keys(
    app: FastAPI,
    client: httpx.AsyncClient,
    coordinator: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    form = await published_household(client, coordinator)
    admin = await headers_for(app, Role.admin)
    token = await _collector(client, admin, uuid.UUID(form["id"]))
    answers = {
        "village": "Aksu",
        "members": [{"name": "Aigul", "age": 40, "votes": True}, {"name": "Dana", "age": 9}],
        "visits": [
            {"day": "2026-11-02", "visitors": [{"name": "Erlan", "age": 70}]},
            {
                "day": "2026-11-09",
                "visitors": [{"name": "Bota", "age": 33}, {"name": "Ali", "age": 5}],
            },
        ],
    }
    filled = copy.deepcopy(answers)
    for member in filled["members"]:
        member["age"] = str(member["age"])
        if "votes" in member:
            member["votes"] = "true" if member["votes"] else "false"
    for visit in filled["visits"]:
        for visitor in visit["visitors"]:
            visitor["age"] = str(visitor["age"])
    with running_server(database_url, tmp_path / "server.log") as server:
        seen = odk_engine_fills(f"{server.base}/openrosa/key/{token}", form["slug"], filled)
    assert seen["payload_status"] == "ready" and seen["violations"] == []
    assert [s["status"] for s in seen["submissions"]] == [201, 202], seen["submissions"]
    instance = parse_xml(seen["instance"])
    instance_id = (instance.findtext("meta/instanceID") or "").removeprefix("uuid:")
    # the engine computed each visit's oldest visitor from that visit's own ages
    assert [v.findtext("oldest") for v in instance.findall("visits")] == ["70", "33"]
    read = await client.get(f"/api/v1/responses/{instance_id}", headers=admin)
    assert read.status_code == 200
    assert read.json()["answers"] == with_calculations(answers)
