"""Keys shared by questions of different repeats (issue #12): `name` and `age` of household
members and of visitors (a repeat nested in visits). Submitted as JSON, read back, exported,
aggregated and published; the definitions that break the rule (a key twice in one repeat, at
the top level and in a repeat, in a repeat and one nested in it, a repeat's key used again) and
the references that cannot tell which question they mean are 422s naming their place.
OpenRosa, the XLSForm round trip and ODK's engine: tests/test_repeat_keys_clients.py."""

import copy
import csv
import io
import random
import statistics
import zipfile
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.models.auth import Role
from app.services.answers import compile_questionnaire
from tests.factories import headers_for, household_definition


def households(seed: int = 12, count: int = 10) -> list[dict[str, Any]]:
    """Answers of `count` households: members and visits with visitors, at random."""
    rng = random.Random(seed)  # noqa: S311 - test data
    made = []
    for number in range(count):
        members = []
        for place in range(rng.randint(1, 4)):
            member: dict[str, Any] = {"name": f"m{number}-{place}", "age": rng.randint(0, 90)}
            if member["age"] >= 18:
                member["votes"] = rng.random() < 0.7
            members.append(member)
        visits = []
        for day in range(rng.randint(1, 2)):
            visitors = [
                {"name": f"v{number}-{day}-{place}", "age": rng.randint(1, 100)}
                for place in range(rng.randint(1, 3))
            ]
            visits.append({"day": f"2026-11-{day + 10:02d}", "visitors": visitors})
        made.append({"village": f"village {number}", "members": members, "visits": visits})
    return made


def with_calculations(answers: dict[str, Any]) -> dict[str, Any]:
    """The answers as stored: the service's calculations added (each visit's oldest visitor,
    the number of members), worked out here from the answers."""
    stored = copy.deepcopy(answers)
    for visit in stored["visits"]:
        visit["oldest"] = str(max(visitor["age"] for visitor in visit["visitors"]))
    stored["members_n"] = str(len(stored["members"]))
    return stored


async def published_household(
    client: httpx.AsyncClient, coordinator: dict[str, str], **changes: Any
) -> dict[str, Any]:
    created = await client.post(
        "/api/v1/questionnaires", json=household_definition(**changes), headers=coordinator
    )
    assert created.status_code == 201, created.text
    form: dict[str, Any] = created.json()
    published = await client.post(
        f"/api/v1/questionnaires/{form['id']}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    return form


@pytest.fixture
async def coordinator(app: FastAPI) -> dict[str, str]:
    return await headers_for(app, Role.coordinator)


def zipped(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8-sig"))))


def numbers_of(cells: list[dict[str, Any]]) -> dict[str, Any]:
    (cell,) = cells
    return {k: cell[k] for k in ("n", "mean", "median", "stddev", "min", "max")}


def expected_numbers(values: list[int]) -> dict[str, Any]:
    return {
        "n": len(values),
        "mean": pytest.approx(statistics.fmean(values)),
        "median": pytest.approx(statistics.median(values)),
        "stddev": pytest.approx(statistics.stdev(values)),
        "min": min(values),
        "max": max(values),
    }


class Household:
    """The household form, published, with the households() submitted as JSON."""

    def __init__(self, form: dict[str, Any], items: list[dict[str, Any]]) -> None:
        self.form, self.items = form, items
        self.stored: list[dict[str, Any]] = []
        self.observer: dict[str, str] = {}
        self.analyst: dict[str, str] = {}


@pytest.fixture
async def household(
    app: FastAPI, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> Household:
    made = Household(await published_household(client, coordinator), households())
    made.observer = await headers_for(app, Role.observer)
    made.analyst = await headers_for(app, Role.analyst)
    for answers in made.items:
        body = {"respondent": {"group": "all"}, "answers": answers}
        reply = await client.post(
            f"/api/v1/questionnaires/{made.form['id']}/responses",
            json=body,
            headers=made.observer,
        )
        assert reply.status_code == 201, reply.text
        assert reply.json()["answers"] == with_calculations(answers)
        made.stored.append(reply.json())
    return made


async def test_each_repeats_answers_are_checked_stored_and_read_as_its_own(
    client: httpx.AsyncClient, household: Household
) -> None:
    form, items, stored = household.form, household.items, household.stored
    observer, analyst = household.observer, household.analyst
    for response, answers in zip(stored, items, strict=True):
        read = await client.get(f"/api/v1/responses/{response['id']}", headers=analyst)
        assert read.json()["answers"] == with_calculations(answers)

    # a member's answer where the visitor's `age` rule holds, and the other way round
    bad = copy.deepcopy(items[0])
    bad["members"][0]["age"] = 125  # members: 0..120; visitors: < 130
    bad["visits"][0]["visitors"][0]["age"] = 135
    refused = await client.post(
        f"/api/v1/questionnaires/{form['id']}/responses",
        json={"respondent": {"group": "all"}, "answers": bad},
        headers=observer,
    )
    assert refused.status_code == 422
    assert sorted(e["loc"] for e in refused.json()["errors"]) == [
        ["body", "answers", "members", 0, "age"],
        ["body", "answers", "visits", 0, "visitors", 0, "age"],
    ]


async def test_each_repeat_has_its_csv_with_its_own_columns(
    client: httpx.AsyncClient, household: Household
) -> None:
    form, items, stored = household.form, household.items, household.stored
    reply = await client.get(
        f"/api/v1/questionnaires/{form['id']}/responses/export",
        params={"format": "zip"},
        headers=household.analyst,
    )
    assert reply.status_code == 200, reply.text
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    assert archive.namelist() == [
        "responses.csv",
        "responses-members.csv",
        "responses-visits.csv",
        "responses-visitors.csv",
    ]
    top = zipped(archive, "responses.csv")
    assert "name" not in top[0] and "age" not in top[0]
    members = zipped(archive, "responses-members.csv")
    assert list(members[0]) == ["parent_id", "index", "name", "age", "votes", "id"]
    assert sorted(
        (r["parent_id"], int(r["index"]), r["name"], int(r["age"])) for r in members
    ) == sorted(
        (response["id"], index, member["name"], member["age"])
        for response, answers in zip(stored, items, strict=True)
        for index, member in enumerate(answers["members"], start=1)
    )
    visits = {
        row["id"]: (row["parent_id"], int(row["index"]))
        for row in zipped(archive, "responses-visits.csv")
    }
    visitors = zipped(archive, "responses-visitors.csv")
    assert list(visitors[0]) == ["parent_id", "index", "name", "age", "id"]
    assert sorted(
        (visits[r["parent_id"]], int(r["index"]), r["name"], int(r["age"])) for r in visitors
    ) == sorted(
        ((response["id"], day), index, visitor["name"], visitor["age"])
        for response, answers in zip(stored, items, strict=True)
        for day, visit in enumerate(answers["visits"], start=1)
        for index, visitor in enumerate(visit["visitors"], start=1)
    )


async def test_aggregates_and_views_list_each_repeats_question_with_its_repeat(
    client: httpx.AsyncClient, coordinator: dict[str, str], household: Household
) -> None:
    form, items, analyst = household.form, household.items, household.analyst
    ages = {
        "members": [m["age"] for answers in items for m in answers["members"]],
        "visitors": [v["age"] for a in items for visit in a["visits"] for v in visit["visitors"]],
    }
    path = f"/api/v1/questionnaires/{form['id']}/aggregates"
    reply = await client.get(path, headers=analyst)
    assert reply.status_code == 200, reply.text
    listed = [(q["key"], q["repeat"]) for q in reply.json()["questions"]]
    assert listed == [
        ("village", None),
        ("name", "members"),
        ("age", "members"),
        ("votes", "members"),
        ("day", "visits"),
        ("name", "visitors"),
        ("age", "visitors"),
        ("oldest", "visits"),
        ("members_n", None),
    ]
    asked = await client.get(path, params={"questions": "age"}, headers=analyst)
    figures = {q["repeat"]: q for q in asked.json()["questions"]}
    assert list(figures) == ["members", "visitors"]
    for repeat, values in ages.items():
        assert numbers_of(figures[repeat]["cells"]) == expected_numbers(values)
    voters = [m["votes"] for answers in items for m in answers["members"] if "votes" in m]
    (votes,) = (q for q in reply.json()["questions"] if q["key"] == "votes")
    assert votes["cells"][0]["counts"] == {
        "true": voters.count(True),
        "false": voters.count(False),
    }
    table = await client.get(path, params={"questions": "age", "format": "csv"}, headers=analyst)
    lines = list(csv.DictReader(io.StringIO(table.content.decode("utf-8-sig"))))
    assert [(line["question"], line["repeat"], int(line["n"])) for line in lines] == [
        ("age", "members", len(ages["members"])),
        ("age", "visitors", len(ages["visitors"])),
    ]
    ambiguous = await client.get(path, params={"by": "answer:age"}, headers=analyst)
    assert ambiguous.status_code == 422
    assert ambiguous.json()["errors"][0]["loc"] == ["query", "by"]
    assert "'answer:age' is ambiguous" in ambiguous.json()["errors"][0]["msg"]

    # a published view of `age` publishes both (perturbed, so only their shape is checked)
    created = await client.post(
        f"/api/v1/questionnaires/{form['id']}/aggregate-views",
        json={"name": "ages", "access": "public", "questions": ["age"], "dimensions": []},
        headers=coordinator,
    )
    assert created.status_code == 201, created.text
    public = await client.get(f"/api/v1/public/aggregates/{created.json()['id']}")
    assert public.status_code == 200, public.text
    assert [(q["key"], q["repeat"]) for q in public.json()["questions"]] == [
        ("age", "members"),
        ("age", "visitors"),
    ]


def _place(response: httpx.Response) -> dict[tuple[Any, ...], str]:
    assert response.status_code == 422, response.text
    return {tuple(error["loc"]): error["msg"] for error in response.json()["errors"]}


async def test_keys_in_view_of_each_other_and_ambiguous_references_are_refused(
    client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    def changed(change: Any) -> dict[str, Any]:
        definition = household_definition()
        change(definition["questions"])
        return definition

    text = {"type": "text", "label": {"en": "Again"}}
    cases = [
        # twice in one repeat
        (
            lambda q: q[1]["questions"].append({"key": "age", **text}),
            ("body", "questions", 1, "questions", 3, "key"),
            "'age' is used twice",
        ),
        # at the top level and in a repeat
        (
            lambda q: q.insert(0, {"key": "name", **text}),
            ("body", "questions", 2, "questions", 0, "key"),
            "also at questions.0",
        ),
        # in a repeat and in a repeat nested in it
        (
            lambda q: q[2]["questions"][1]["questions"].append({"key": "day", **text}),
            ("body", "questions", 2, "questions", 1, "questions", 2, "key"),
            "also at questions.2.questions.0",
        ),
        # a repeat's key anywhere else
        (
            lambda q: q[2]["questions"][1]["questions"].append({"key": "members", **text}),
            ("body", "questions", 2, "questions", 1, "questions", 2, "key"),
            "a repeat's key",
        ),
        # `${age}` from the top level: members' or visitors'?
        (
            lambda q: q.append({"key": "total", "type": "calculate", "calculation": "sum(${age})"}),
            ("body", "questions", 4, "calculation"),
            "'${age}' is asked in more than one repeat (members, visitors)",
        ),
        # the same as a JSON condition
        (
            lambda q: q.append(
                {**text, "key": "why", "relevant": {"question": "age", "op": "gt", "value": 3}}
            ),
            ("body", "questions", 4, "relevant", "question"),
            "'${age}' is asked in more than one repeat",
        ),
    ]
    for change, place, message in cases:
        reply = await client.post(
            "/api/v1/questionnaires", json=changed(change), headers=coordinator
        )
        found = _place(reply)
        assert place in found, (place, found)
        assert message in found[place]
    # instance_name is evaluated at the top level too
    reply = await client.post(
        "/api/v1/questionnaires",
        json=household_definition(settings={"instance_name": "concat(${village}, ${name})"}),
        headers=coordinator,
    )
    assert "more than one repeat" in _place(reply)[("body", "settings", "instance_name")]


def test_each_repeats_questions_have_columns_of_their_own() -> None:
    """The layout rules are those of every form (columns numbered in document order, a page per
    repeat): a shared key is two questions, each in its repeat's table."""
    compiled = compile_questionnaire(
        id="x", version=1, status="draft", access="token", definition=household_definition()
    )
    assert [(page.repeat, page.columns) for page in compiled.pages] == [
        (None, (("a1", "text"), ("a9", "text"))),  # village, members_n
        ("members", (("a2", "text"), ("a3", "float"), ("a4", "smallint"))),
        ("visits", (("a5", "date"), ("a8", "text"))),  # day, oldest
        ("visitors", (("a6", "text"), ("a7", "float"))),
    ]
    assert [(q.repeat, q.columns) for q in compiled.by_key["age"]] == [
        ("members", ("a3",)),
        ("visitors", ("a7",)),
    ]
