"""Survey aggregates, every figure checked against an independent computation in plain Python."""

import csv
import io
import math
import random
import statistics
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.models.aggregates import SurveyAggregates
from app.models.auth import Role
from app.models.questionnaires import Questionnaire
from tests.conftest import postgres_only
from tests.factories import almaty_definition, create_questionnaire, headers_for

DEFINITION = almaty_definition()
QUESTIONS = {q["key"]: q for q in DEFINITION["questions"]}
CATEGORY = {g["key"]: g["category"] for g in DEFINITION["respondent_groups"]}
# code: (parent, level); region and district of each place follow from it.
TREE = {
    "190000000": (None, "region"),
    "193000000": ("190000000", "district"),
    "193200000": ("193000000", "rural_district"),
    "193230100": ("193200000", "settlement"),
    "193400000": ("193000000", "rural_district"),
    "750000000": (None, "city"),
    "751110000": ("750000000", "district"),
}
PLACES = ["193230100", "193400000", "193000000", "750000000", "751110000", "190000000", None]


def ancestors(code: str) -> list[str]:
    chain = [code]
    while TREE[chain[-1]][0] is not None:
        chain.append(TREE[chain[-1]][0])  # type: ignore[arg-type]
    return chain


def region_of(code: str | None) -> str | None:
    return None if code is None else ancestors(code)[-1]


def district_of(code: str | None) -> str | None:
    if code is None:
        return None
    return next((c for c in ancestors(code) if TREE[c][1] == "district"), None)


# --- the data ---------------------------------------------------------------------------------


def random_response(rng: random.Random) -> dict[str, Any]:
    participated = rng.random() < 0.4
    aware = rng.choice(["yes", "partly", "no"])
    answers: dict[str, Any] = {
        "aware": aware,
        "participated": participated,
        "trust_akimat": rng.randint(1, 5),
    }
    if aware != "no" and rng.random() < 0.9:
        answers["channels_known"] = rng.sample(
            ["hearings", "reception", "maslikhat", "petitions"], rng.randint(1, 3)
        )
    if participated:
        answers["times_participated"] = rng.randint(1, 12)
    if rng.random() < 0.7:
        answers["info_sources"] = rng.sample(["tv", "social", "press", "ngos"], rng.randint(1, 3))
    if rng.random() < 0.8:
        answers["influence"] = rng.randint(1, 5)
    if rng.random() < 0.6:
        answers["information_access"] = rng.choice(["easy", "difficult", "never_tried"])
    if rng.random() < 0.2:
        answers["suggestions"] = "больше слушаний"
    respondent: dict[str, Any] = {"group": rng.choice(list(CATEGORY))}
    if rng.random() < 0.85:
        respondent["gender"] = rng.choice(["female", "male", "other"])
    place = rng.choice(PLACES)
    if place:
        respondent["territory_code"] = place
    return {
        "id": str(uuid.uuid4()),
        "respondent": respondent,
        "answers": answers,
        "language": rng.choice(["kk", "ru"]),
        "channel": rng.choice(["web", "interview"]),
    }


# --- the independent computation --------------------------------------------------------------


def dimension_values(item: dict[str, Any], name: str) -> list[str | None]:
    """The value(s) a response has for a dimension (several for a multiple-choice answer)."""
    respondent = item["respondent"]
    if name.startswith("answer:"):
        key = name.removeprefix("answer:")
        value = item["answers"].get(key)
        if value is None:
            return [None]
        if isinstance(value, list):
            return list(value)
        if isinstance(value, bool):
            return ["true" if value else "false"]
        return [str(value)]
    if name == "category":
        return [CATEGORY[respondent["group"]]]
    if name == "region":
        return [region_of(respondent.get("territory_code"))]
    if name == "district":
        return [district_of(respondent.get("territory_code"))]
    if name == "territory":
        return [respondent.get("territory_code")]
    if name in ("language", "channel"):
        return [item.get(name)]
    return [respondent.get(name)]


def wilson_interval(successes: int, total: int) -> list[float]:
    z = 1.959964
    phat = successes / total
    spread = z * math.sqrt(phat * (1 - phat) / total + (z / (2 * total)) ** 2)
    low = (phat + z * z / (2 * total) - spread) / (1 + z * z / total)
    high = (phat + z * z / (2 * total) + spread) / (1 + z * z / total)
    return [max(low, 0.0), min(high, 1.0)]


def expected_cells(
    items: list[dict[str, Any]],
    by: list[str],
    key: str,
    questions: dict[str, dict[str, Any]] = QUESTIONS,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    question = questions[key]
    answered: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for item in items:
        value = item["answers"].get(key)
        if value is None:
            continue
        groups: list[tuple[Any, ...]] = [()]
        for name in by:
            groups = [g + (v,) for g in groups for v in dimension_values(item, name)]
        for group in groups:
            answered[group].append(value)
    cells = {}
    for group, values in answered.items():
        n = len(values)
        cell: dict[str, Any] = {"n": n}
        kind = question["type"]
        if kind in ("single_choice", "multiple_choice", "boolean"):
            options = (
                ["true", "false"]
                if kind == "boolean"
                else [o["value"] for o in question["options"]]
            )
            chosen = [
                [("true" if v else "false")]
                if kind == "boolean"
                else (v if isinstance(v, list) else [v])
                for v in values
            ]
            counts = {o: sum(o in c for c in chosen) for o in options}
            cell.update(
                counts=counts,
                shares={o: counts[o] / n for o in options},
                ci95={o: wilson_interval(counts[o], n) for o in options},
            )
        elif kind in ("integer", "scale", "decimal"):
            cell.update(
                mean=statistics.fmean(values),
                median=float(statistics.median(values)),
                stddev=statistics.stdev(values) if n > 1 else None,
                min=float(min(values)),
                max=float(max(values)),
            )
        cells[group] = cell
    return cells


def expected_suppressed(cells: dict[tuple[Any, ...], dict[str, Any]], min_cell: int) -> set[Any]:
    hidden = {group for group, cell in cells.items() if cell["n"] < min_cell}
    if len(hidden) == 1:
        rest = sorted((cell["n"], group) for group, cell in cells.items() if group not in hidden)
        if rest:
            smallest = rest[0][0]
            hidden.add(next(g for n, g in rest if n == smallest))
    return hidden


def assert_matches(
    result: dict[str, Any],
    items: list[dict[str, Any]],
    by: list[str],
    min_cell: int,
    questions: dict[str, dict[str, Any]] = QUESTIONS,
) -> None:
    assert result["by"] == by
    assert result["min_cell"] == min_cell
    assert result["n_responses"] == len(items)
    assert [q["key"] for q in result["questions"]] == list(questions)
    for question in result["questions"]:
        expected = expected_cells(items, by, question["key"], questions)
        got = {tuple(cell["group"][name] for name in by): cell for cell in question["cells"]}
        assert set(got) == set(expected), question["key"]
        hidden = expected_suppressed(expected, min_cell)
        suppressed = {group for group, cell in got.items() if cell["suppressed"]}
        if len(hidden) != len(suppressed) or not hidden <= suppressed:
            # a tie for the secondary cell may be broken either way
            assert len(suppressed) == len(hidden), (question["key"], suppressed, hidden)
            primary = {g for g, c in expected.items() if c["n"] < min_cell}
            assert primary <= suppressed
            second = (suppressed - primary).pop()
            smallest = min(c["n"] for g, c in expected.items() if g not in primary)
            assert expected[second]["n"] == smallest
        for group, cell in got.items():
            if cell["suppressed"]:
                assert all(cell[f] is None for f in cell if f not in ("group", "suppressed"))
                continue
            want = expected[group]
            assert cell["n"] == want["n"]
            for name, value in want.items():
                if name in ("counts",):
                    assert cell[name] == value
                elif name == "shares":
                    assert cell[name] == pytest.approx(value, rel=1e-9, abs=1e-12)
                elif name == "ci95":
                    assert set(cell[name]) == set(value)
                    for option, bounds in value.items():
                        assert cell[name][option] == pytest.approx(bounds, rel=1e-9, abs=1e-12)
                elif value is None:
                    assert cell[name] is None, name
                elif name != "n":
                    assert cell[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient) -> tuple[Questionnaire, dict[str, str]]:
    coordinator = await headers_for(app, Role.coordinator)
    for code, (parent, level) in TREE.items():
        created = await client.post(
            "/api/v1/territories",
            json={"code": code, "parent_code": parent, "level": level, "name": {"ru": code}},
            headers=coordinator,
        )
        assert created.status_code == 201, created.text
    survey = await create_questionnaire(app, publish=True)
    return survey, await headers_for(app, Role.observer)


async def submit(
    client: httpx.AsyncClient, survey: Questionnaire, headers: dict[str, str], items: list[Any]
) -> None:
    for start in range(0, len(items), 1000):
        reply = await client.post(
            f"/api/v1/questionnaires/{survey.id}/responses/batch",
            json={"responses": items[start : start + 1000]},
            headers=headers,
        )
        assert {r["status"] for r in reply.json()["results"]} == {"created"}, reply.text


@pytest.fixture
async def floor_one(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with KENES_MIN_CELL=1, to check every figure unsuppressed."""
    application = create_app(settings.model_copy(update={"min_cell": 1}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://t"
    ) as http:
        yield http
    await application.state.engine.dispose()


async def aggregates(
    http: httpx.AsyncClient, survey: Questionnaire, headers: dict[str, str], **params: Any
) -> httpx.Response:
    return await http.get(
        f"/api/v1/questionnaires/{survey.id}/aggregates", params=params, headers=headers
    )


# --- tests ------------------------------------------------------------------------------------

DIMENSION_SETS = [
    [],
    ["gender"],
    ["category", "group"],
    ["gender", "region"],
    ["region", "district", "territory"],
    ["answer:aware"],
    ["answer:channels_known", "gender"],
    ["district", "answer:channels_known"],
    ["answer:participated", "answer:trust_akimat"],
    ["language", "channel", "age_band"],
]


async def test_every_figure_matches_an_independent_computation(
    app: FastAPI,
    client: httpx.AsyncClient,
    floor_one: httpx.AsyncClient,
    world: tuple[Questionnaire, dict[str, str]],
) -> None:
    survey, observer = world
    items = [random_response(random.Random(seed)) for seed in range(240)]
    await submit(client, survey, observer, items)
    analyst = await headers_for(app, Role.analyst)
    for by in DIMENSION_SETS:
        reply = await aggregates(floor_one, survey, analyst, by=",".join(by))
        assert reply.status_code == 200, reply.text
        assert_matches(reply.json(), items, by, min_cell=1)


async def test_small_cells_are_suppressed_and_min_cell_only_rises(
    app: FastAPI, client: httpx.AsyncClient, world: tuple[Questionnaire, dict[str, str]]
) -> None:
    survey, observer = world
    items = [random_response(random.Random(1000 + seed)) for seed in range(150)]
    await submit(client, survey, observer, items)
    analyst = await headers_for(app, Role.analyst)
    for by, asked, applied in [
        (["gender", "region"], None, 5),
        (["group"], 2, 5),  # a lower value is raised to the floor
        (["answer:aware", "gender"], 20, 20),
        (["territory"], 40, 40),
    ]:
        params = {"by": ",".join(by)} | ({"min_cell": asked} if asked is not None else {})
        reply = await aggregates(client, survey, analyst, **params)
        assert reply.status_code == 200
        assert_matches(reply.json(), items, by, min_cell=applied)
        # The answer is exactly the documented schema: every field of every cell, suppressed
        # ones included (the figures are built as plain data, not as these models).
        documented = SurveyAggregates.model_validate_json(reply.content)
        assert documented.model_dump(mode="json") == reply.json()
        assert any(c["suppressed"] for q in reply.json()["questions"] for c in q["cells"])


async def test_exactly_one_small_cell_pulls_the_next_smallest_down_with_it(
    app: FastAPI, client: httpx.AsyncClient, world: tuple[Questionnaire, dict[str, str]]
) -> None:
    survey, observer = world
    rng = random.Random(5)
    items = []
    for gender, count in (("female", 12), ("male", 7), ("other", 2)):
        for _ in range(count):
            item = random_response(rng)
            item["respondent"]["gender"] = gender
            items.append(item)
    await submit(client, survey, observer, items)
    reply = await aggregates(client, survey, await headers_for(app, Role.analyst), by="gender")
    aware = next(q for q in reply.json()["questions"] if q["key"] == "aware")
    hidden = {cell["group"]["gender"] for cell in aware["cells"] if cell["suppressed"]}
    assert hidden == {"other", "male"}
    shown = [cell for cell in aware["cells"] if not cell["suppressed"]]
    assert [cell["n"] for cell in shown] == [12]


async def test_filters_narrow_what_is_counted(
    app: FastAPI,
    client: httpx.AsyncClient,
    floor_one: httpx.AsyncClient,
    world: tuple[Questionnaire, dict[str, str]],
) -> None:
    survey, observer = world
    items = [random_response(random.Random(2000 + seed)) for seed in range(120)]
    await submit(client, survey, observer, items)
    analyst = await headers_for(app, Role.analyst)
    women = [i for i in items if i["respondent"].get("gender") == "female"]
    reply = await aggregates(floor_one, survey, analyst, by="group", gender="female")
    assert_matches(reply.json(), women, ["group"], 1)
    in_district = [
        i
        for i in items
        if "193000000" in ancestors(i["respondent"].get("territory_code") or "190000000")
    ]
    reply = await aggregates(floor_one, survey, analyst, by="territory", territory_code="193000000")
    assert_matches(reply.json(), in_district, ["territory"], 1)


async def test_csv_carries_the_same_figures(
    app: FastAPI,
    client: httpx.AsyncClient,
    floor_one: httpx.AsyncClient,
    world: tuple[Questionnaire, dict[str, str]],
) -> None:
    survey, observer = world
    items = [random_response(random.Random(3000 + seed)) for seed in range(60)]
    await submit(client, survey, observer, items)
    analyst = await headers_for(app, Role.analyst)
    as_json = (await aggregates(floor_one, survey, analyst, by="gender")).json()
    reply = await aggregates(floor_one, survey, analyst, by="gender", format="csv")
    assert reply.headers["content-type"].startswith("text/csv")
    assert reply.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8-sig"))))
    for question in as_json["questions"]:
        for cell in question["cells"]:
            lines = [
                r for r in rows
                if r["question"] == question["key"] and r["gender"] == (cell["group"]["gender"] or "")
            ]  # fmt: skip
            if cell["counts"] is not None:
                assert {r["option"]: int(r["count"]) for r in lines} == cell["counts"]
                for r in lines:
                    assert float(r["share"]) == pytest.approx(cell["shares"][r["option"]])
            else:
                assert len(lines) == 1 and int(lines[0]["n"]) == cell["n"]
                if cell["mean"] is not None:
                    assert float(lines[0]["mean"]) == pytest.approx(cell["mean"])


async def test_no_responses_and_bad_dimensions(
    app: FastAPI, client: httpx.AsyncClient, world: tuple[Questionnaire, dict[str, str]]
) -> None:
    survey, _ = world
    analyst = await headers_for(app, Role.analyst)
    empty = (await aggregates(client, survey, analyst, by="gender")).json()
    assert empty["n_responses"] == 0
    assert all(q["cells"] == [] for q in empty["questions"])
    for by in (
        "planet",
        "gender,gender",
        "gender,group,region,age_band",
        "answer:suggestions",
        "answer:nothing",
    ):
        reply = await aggregates(client, survey, analyst, by=by)
        assert reply.status_code == 422, by
        assert reply.json()["errors"][0]["loc"] == ["query", "by"]
    assert (await aggregates(client, survey, analyst, min_cell=-1)).status_code == 422
    missing = await client.get(f"/api/v1/questionnaires/{uuid.uuid4()}/aggregates", headers=analyst)
    assert missing.status_code == 404


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(
    seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=40),
    by=st.sampled_from(DIMENSION_SETS),
    min_cell=st.integers(1, 8),
)
async def test_random_response_sets_agree_with_the_independent_computation(
    app: FastAPI, seeds: list[int], by: list[str], min_cell: int
) -> None:
    application = create_app(app.state.settings.model_copy(update={"min_cell": 1}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://t"
    ) as http:
        survey = await create_questionnaire(app, publish=True)
        observer = await headers_for(app, Role.observer)
        items = [random_response(random.Random(seed)) for seed in seeds]
        for item in items:  # territories are not set up here
            item["respondent"].pop("territory_code", None)
        await submit(http, survey, observer, items)
        analyst = await headers_for(app, Role.analyst)
        plain_by = [name for name in by if name not in ("region", "district", "territory")]
        reply = await aggregates(http, survey, analyst, by=",".join(plain_by), min_cell=min_cell)
        assert reply.status_code == 200, reply.text
        assert_matches(reply.json(), items, plain_by, min_cell)
    await application.state.engine.dispose()


async def test_questions_can_be_chosen(
    app: FastAPI, client: httpx.AsyncClient, world: tuple[Questionnaire, dict[str, str]]
) -> None:
    survey, observer = world
    items = [random_response(random.Random(4000 + seed)) for seed in range(30)]
    await submit(client, survey, observer, items)
    analyst = await headers_for(app, Role.analyst)
    reply = await aggregates(client, survey, analyst, by="gender", questions="trust_akimat,aware")
    assert [q["key"] for q in reply.json()["questions"]] == ["aware", "trust_akimat"]
    unknown = await aggregates(client, survey, analyst, questions="aware,nope")
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["query", "questions"]


async def test_a_number_asked_alone_is_counted_in_its_own_pass(
    app: FastAPI,
    client: httpx.AsyncClient,
    floor_one: httpx.AsyncClient,
    world: tuple[Questionnaire, dict[str, str]],
) -> None:
    """An integer of 100 possible values (a median by ordered aggregate on PostgreSQL) asked
    alone: the responses are counted in its statement, not in a pass of their own; the count and
    the figures agree with the independent computation, with and without filters."""
    survey, observer = world
    items = [random_response(random.Random(5000 + seed)) for seed in range(150)]
    await submit(client, survey, observer, items)
    analyst = await headers_for(app, Role.analyst)
    only = {"times_participated": QUESTIONS["times_participated"]}
    women = [item for item in items if item["respondent"].get("gender") == "female"]
    for by in (["gender", "region"], [], ["answer:aware"]):
        for extra, subset in (({}, items), ({"gender": "female"}, women)):
            reply = await aggregates(
                floor_one,
                survey,
                analyst,
                by=",".join(by),
                questions="times_participated",
                **extra,
            )
            assert reply.status_code == 200, reply.text
            assert_matches(reply.json(), subset, by, min_cell=1, questions=only)


# --- wide forms -------------------------------------------------------------------------------


def wide_definition() -> dict[str, Any]:
    """A form past one answer table: 820 decimals (8 bytes each: more than a page holds), single
    choices of 4, 100 (counted by value) and 5,000 options (a settlements list), multiple choices
    of 300 and 1,000 options (several bit masks each), a scale, a boolean, texts and a date."""

    def label(text: str) -> dict[str, str]:
        return {"ru": text, "en": text}

    def options(count: int, prefix: str) -> list[dict[str, Any]]:
        return [{"value": f"{prefix}{n}", "label": label(f"{prefix} {n}")} for n in range(count)]

    questions: list[dict[str, Any]] = [
        {
            "key": "mood",
            "type": "single_choice",
            "label": label("Mood"),
            "options": options(4, "m"),
        },
        {
            "key": "village",
            "type": "single_choice",
            "label": label("Village"),
            "options": options(5000, "v"),
        },
        {
            "key": "district",
            "type": "single_choice",
            "label": label("District"),
            "options": options(100, "d"),
        },
        {
            "key": "skills",
            "type": "multiple_choice",
            "label": label("Skills"),
            "options": options(300, "s"),
        },
        {
            "key": "crops",
            "type": "multiple_choice",
            "label": label("Crops"),
            "options": options(1000, "c"),
        },
        {"key": "trust", "type": "scale", "min": 1, "max": 7, "label": label("Trust")},
        {"key": "voted", "type": "boolean", "label": label("Voted")},
        {"key": "note", "type": "text", "label": label("Note")},
        {"key": "visited", "type": "date", "label": label("Visited")},
    ]
    questions += [
        {"key": f"x{n:03d}", "type": "decimal", "label": label(f"Amount {n}")} for n in range(820)
    ]
    questions.append(
        {"key": "late_choice", "type": "single_choice", "label": label("Late"),
         "options": options(3, "l")}
    )  # fmt: skip
    return {
        "slug": f"wide-{uuid.uuid4().hex[:8]}",
        "title": label("Wide"),
        "default_language": "ru",
        "respondent_groups": [
            {"key": "resident", "category": "citizen", "label": label("Resident")},
            {"key": "expert", "category": "expert", "label": label("Expert")},
        ],
        "questions": questions,
    }  # fmt: skip


def wide_response(rng: random.Random, questions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    answers: dict[str, Any] = {
        "mood": f"m{rng.randrange(4)}",
        "village": f"v{rng.choice([0, 1, 4999, rng.randrange(5000)])}",
        "district": f"d{rng.randrange(100)}",
        "skills": [f"s{n}" for n in rng.sample(range(300), rng.randint(1, 5))],
        "crops": [f"c{n}" for n in rng.sample([0, 62, 63, 126, 999, *range(500, 520)], 4)],
        "trust": rng.randint(1, 7),
        "voted": rng.random() < 0.5,
        "late_choice": f"l{rng.randrange(3)}",
    }
    if rng.random() < 0.5:
        answers["note"] = "тест"
    if rng.random() < 0.5:
        answers["visited"] = f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    for key in questions:
        if key.startswith("x") and rng.random() < 0.3:
            answers[key] = round(rng.uniform(-50, 5000), 2)
    respondent: dict[str, Any] = {"group": rng.choice(["resident", "expert"])}
    if rng.random() < 0.9:
        respondent["gender"] = rng.choice(["female", "male"])
    return {"id": str(uuid.uuid4()), "respondent": respondent, "answers": answers}


async def test_a_form_wider_than_one_answer_table_aggregates_and_reads_back_exactly(
    app: FastAPI, client: httpx.AsyncClient, floor_one: httpx.AsyncClient
) -> None:
    definition = wide_definition()
    questions = {q["key"]: q for q in definition["questions"]}
    coordinator = await headers_for(app, Role.coordinator)
    created = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    assert created.status_code == 201, created.text[:500]
    survey_id = created.json()["id"]
    published = await client.post(
        f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator
    )
    assert published.status_code == 200
    rng = random.Random(11)
    items = [wide_response(rng, questions) for _ in range(60)]
    observer = await headers_for(app, Role.observer)
    reply = await client.post(
        f"/api/v1/questionnaires/{survey_id}/responses/batch",
        json={"responses": items},
        headers=observer,
    )
    assert {r["status"] for r in reply.json()["results"]} == {"created"}, reply.text[:500]

    # Every answer reads back as sent (a multiple choice as a set, in option order).
    analyst = await headers_for(app, Role.analyst)
    for item in items[:5]:
        stored = (await client.get(f"/api/v1/responses/{item['id']}", headers=analyst)).json()
        assert set(stored["answers"]) == set(item["answers"])
        for key, value in item["answers"].items():
            if isinstance(value, list):
                assert sorted(stored["answers"][key]) == sorted(value), key
            else:
                assert stored["answers"][key] == value, key

    # Every figure, across both answer tables, with a dimension on the other table.
    for by in ([], ["gender"], ["answer:late_choice"], ["answer:mood", "group"]):
        result = await floor_one.get(
            f"/api/v1/questionnaires/{survey_id}/aggregates",
            params={"by": ",".join(by)},
            headers=analyst,
        )
        assert result.status_code == 200, result.text[:500]
        assert_matches(result.json(), items, by, min_cell=1, questions=questions)


async def test_questions_inside_repeats_are_aggregated_over_their_instances(
    app: FastAPI, client: httpx.AsyncClient, floor_one: httpx.AsyncClient
) -> None:
    from tests.test_responses import roster_definition

    definition = roster_definition()
    coordinator = await headers_for(app, Role.coordinator)
    created = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    survey_id = created.json()["id"]
    await client.post(f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator)
    rng = random.Random(5)
    items = []
    for _ in range(40):
        members = []
        for _ in range(rng.randint(1, 6)):
            member: dict[str, Any] = {"age": rng.randint(0, 90)}
            if rng.random() < 0.8:
                member["works"] = rng.random() < 0.6
            if member.get("works") and rng.random() < 0.9:
                sectors = ["farm", "trade", "state"]
                member["jobs"] = [{"sector": rng.choice(sectors)} for _ in range(rng.randint(1, 3))]
            members.append(member)
        respondent = {"group": "household", "gender": rng.choice(["female", "male"])}
        answers = {"has_land": rng.choice(["yes", "no"]), "members": members}
        if answers["has_land"] == "yes":
            answers["hectares"] = round(rng.uniform(0.1, 30), 1)
        items.append({"respondent": respondent, "answers": answers})
    observer = await headers_for(app, Role.observer)
    reply = await client.post(
        f"/api/v1/questionnaires/{survey_id}/responses/batch",
        json={"responses": items},
        headers=observer,
    )
    assert {r["status"] for r in reply.json()["results"]} == {"created"}, reply.text[:300]

    # Each instance stands as its own record, with its respondent's dimensions.
    members = [
        {"respondent": item["respondent"], "answers": member}
        for item in items
        for member in item["answers"]["members"]
    ]
    jobs = [
        {"respondent": member["respondent"], "answers": job}
        for member in members
        for job in member["answers"].get("jobs", [])
    ]
    questions = {
        q["key"]: q
        for q in [
            definition["questions"][0],
            definition["questions"][1]["questions"][0],
            *definition["questions"][2]["questions"][:2],
            definition["questions"][2]["questions"][2]["questions"][0],
        ]
    }
    analyst = await headers_for(app, Role.analyst)
    for by in ([], ["gender"], ["gender", "answer:has_land"]):
        result = await floor_one.get(
            f"/api/v1/questionnaires/{survey_id}/aggregates",
            params={"by": ",".join(by)},
            headers=analyst,
        )
        assert result.status_code == 200, result.text
        body = result.json()
        assert body["n_responses"] == len(items)
        got = {q["key"]: q for q in body["questions"]}
        assert list(got) == list(questions)
        for key, records in (
            ("has_land", items),
            ("hectares", items),
            ("age", members),
            ("works", members),
            ("sector", jobs),
        ):
            expected = expected_cells(_with_top(records, items), by, key, questions)
            cells = {tuple(c["group"][name] for name in by): c for c in got[key]["cells"]}
            assert set(cells) == set(expected), key
            for group, want in expected.items():
                assert cells[group]["n"] == want["n"], (key, group)
                for name in ("counts", "mean", "median", "min", "max"):
                    if name in want:
                        assert cells[group][name] == pytest.approx(want[name]), (key, name)
    refused = await floor_one.get(
        f"/api/v1/questionnaires/{survey_id}/aggregates",
        params={"by": "answer:works"},
        headers=analyst,
    )
    assert refused.status_code == 422


def _with_top(records: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records carrying their response's top-level answer `has_land` (a dimension)."""
    by_respondent = {id(item["respondent"]): item for item in items}
    return [
        {
            **record,
            "answers": {
                **record["answers"],
                "has_land": by_respondent[id(record["respondent"])]["answers"]["has_land"],
            },
        }
        for record in records
    ]


@postgres_only  # parallel plans and their column limit are PostgreSQL's
async def test_a_pass_of_more_aggregates_than_a_parallel_plan_can_carry_is_cut(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """A parallel aggregate passes each partial aggregate from the workers as a column, and
    PostgreSQL refuses more than 1,664: 40 single choices of 50 options are 2,000 counts."""
    choices = [
        {
            "key": f"q{number}",
            "type": "single_choice",
            "label": {"ru": f"q{number}"},
            "options": [{"value": f"o{n}", "label": {"ru": f"{n}"}} for n in range(50)],
        }
        for number in range(40)
    ]
    definition = {**wide_definition(), "questions": choices}
    questions = {q["key"]: q for q in definition["questions"]}
    coordinator = await headers_for(app, Role.coordinator)
    created = await client.post("/api/v1/questionnaires", json=definition, headers=coordinator)
    assert created.status_code == 201, created.text[:500]
    survey_id = created.json()["id"]
    await client.post(f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator)
    rng = random.Random(5)
    items = [
        {
            "id": str(uuid.uuid4()),
            "respondent": {"group": "resident", "gender": rng.choice(["female", "male"])},
            "answers": {key: f"o{rng.randrange(50)}" for key in questions},
        }
        for _ in range(400)
    ]
    observer = await headers_for(app, Role.observer)
    reply = await client.post(
        f"/api/v1/questionnaires/{survey_id}/responses/batch",
        json={"responses": items},
        headers=observer,
    )
    assert {r["status"] for r in reply.json()["results"]} == {"created"}, reply.text[:500]

    # Parallel plans even for this small table, the workers doing all of the scan (the leader
    # could read the few rows before a worker starts), on the connections of a new app.
    eager = {
        "parallel_setup_cost": "0",
        "parallel_tuple_cost": "0",
        "min_parallel_table_scan_size": "0",
        "parallel_leader_participation": "off",
    }
    async with app.state.engine.begin() as connection:
        for name, value in eager.items():
            await connection.execute(
                text(f"ALTER DATABASE {_database(settings)} SET {name} = {value}")
            )
    application = create_app(settings.model_copy(update={"min_cell": 1}))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as http:
            analyst = await headers_for(app, Role.analyst)
            result = await http.get(
                f"/api/v1/questionnaires/{survey_id}/aggregates",
                params={"by": "gender"},
                headers=analyst,
            )
    finally:
        await application.state.engine.dispose()
        async with app.state.engine.begin() as connection:
            for name in eager:
                await connection.execute(text(f"ALTER DATABASE {_database(settings)} RESET {name}"))
    assert result.status_code == 200, result.text[:500]
    assert_matches(result.json(), items, ["gender"], min_cell=1, questions=questions)


def _database(settings: Settings) -> str:
    return settings.database_url.rsplit("/", 1)[1]
