"""Published aggregates (aggregate views): who may make and read them, the cell-key protection
against differencing, consistency across queries, and closeness to the exact figures.

Exact figures are computed here from the responses the tests submit; published ones are
checked against them within the bounds of the perturbation table, which the tests read as the
public document it is (an attacker knows it too)."""

import csv
import io
import random
import statistics
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.models.auth import Role
from app.models.questionnaires import Questionnaire
from app.services.aggregates.perturbation import (
    DECIMALS,
    KEY_VALUES,
    MAX_NOISE,
    NOISE_VARIANCE,
    PERTURBATION_TABLE,
    STATISTIC_NOISE,
    TABLE_CAP,
    noise,
)
from tests.factories import create_questionnaire, headers_for
from tests.test_aggregates import (
    QUESTIONS,
    expected_cells,
    random_response,
    submit,
    wilson_interval,
    world,  # noqa: F401 - the Almaty survey fixture
)

MIN_CELL = 5  # KENES_MIN_CELL of the test settings

# --- the perturbation table, read as published --------------------------------------------------


def test_the_perturbation_table_is_bounded_unbiased_and_keeps_zeros() -> None:
    assert PERTURBATION_TABLE[0] == {0: KEY_VALUES}
    for count, row in PERTURBATION_TABLE.items():
        assert sum(row.values()) == KEY_VALUES, count
        assert sum(noise * times for noise, times in row.items()) == 0, count  # mean zero
        assert all(abs(noise) <= MAX_NOISE for noise in row), count
        assert all(count + noise >= 0 for noise in row), count  # never negative
        variance = sum(noise * noise * times for noise, times in row.items()) / KEY_VALUES
        assert variance <= NOISE_VARIANCE <= 1.5, count
    assert max(PERTURBATION_TABLE) == TABLE_CAP
    # A small count can be published as 0, so a published zero proves nothing.
    assert all(-count in PERTURBATION_TABLE[count] for count in range(1, TABLE_CAP + 1))
    # The lookup over every cell key gives each row's distribution, and larger counts the last
    # row's; an exact zero stays zero whatever the key.
    for count in (0, 1, 2, 3, 17, 10_000):
        seen: dict[int, int] = {}
        for key in range(KEY_VALUES):
            seen[noise(key, count)] = seen.get(noise(key, count), 0) + 1
        assert seen == PERTURBATION_TABLE[min(count, TABLE_CAP)]
    big = 2**31 * 7 + 12345  # only the sum's low KEY_BITS bits count
    assert noise(big, 9) == noise(12345, 9)


# --- the attacker's world -------------------------------------------------------------------------

REGION, D1, D1_RURAL, D2 = "190000000", "193000000", "193200000", "194000000"
ATTACK_TREE = {
    REGION: (None, "region"),
    D1: (REGION, "district"),
    D1_RURAL: (D1, "rural_district"),
    D2: (REGION, "district"),
}
ATTACK_DEFINITION: dict[str, Any] = {
    "title": {"ru": "Опрос"},
    "default_language": "ru",
    "access": "token",
    "respondent_groups": [{"key": "resident", "category": "citizen", "label": {"ru": "Житель"}}],
    "questions": [
        {
            "key": "q1",
            "type": "single_choice",
            "required": True,
            "label": {"ru": "Вопрос"},
            "options": [
                {"value": "yes", "label": {"ru": "Да"}},
                {"value": "no", "label": {"ru": "Нет"}},
            ],
        },
        {"key": "sens", "type": "boolean", "required": True, "label": {"ru": "Чувствительный"}},
        {"key": "inc", "type": "integer", "min": 0, "max": 100000, "label": {"ru": "Доход"}},
    ],
}
TARGET = {"q1": "no", "sens": True, "inc": 937}
MONTHS = ["2026-09", "2026-10", "2026-11"]


def _moment(month: str, day: int) -> str:
    return f"{month}-{day:02d}T10:00:00+00:00"


def attack_population() -> list[dict[str, Any]]:
    """39 ordinary respondents (women and men in district D1, answering `yes`, not sensitive,
    incomes 40-60) and the target: no gender given, alone in district D2, `no`, sensitive,
    income 937, the last to answer."""
    rng = random.Random(14)
    items = []
    for index in range(39):
        respondent: dict[str, Any] = {
            "group": "resident",
            "gender": "female" if index < 20 else "male",
            "territory_code": D1_RURAL if index % 3 == 0 else D1,
        }
        items.append(
            {
                "id": str(uuid.uuid4()),
                "respondent": respondent,
                "answers": {"q1": "yes", "sens": False, "inc": rng.randint(40, 60)},
                "submitted_at": _moment(MONTHS[index % 3], 1 + index % 25),
            }
        )
    items.append(
        {
            "id": str(uuid.uuid4()),
            "respondent": {"group": "resident", "territory_code": D2},
            "answers": dict(TARGET),
            "submitted_at": _moment("2026-11", 28),
        }
    )
    return items


async def make_tree(
    client: httpx.AsyncClient, headers: dict[str, str], tree: dict[str, Any]
) -> None:
    for code, (parent, level) in tree.items():
        created = await client.post(
            "/api/v1/territories",
            json={"code": code, "parent_code": parent, "level": level, "name": {"ru": code}},
            headers=headers,
        )
        assert created.status_code == 201, created.text


async def create_view(
    client: httpx.AsyncClient, survey: Questionnaire, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    body = {"name": "published", "access": "public", **body}
    reply = await client.post(
        f"/api/v1/questionnaires/{survey.id}/aggregate-views", json=body, headers=headers
    )
    assert reply.status_code == 201, reply.text
    assert reply.headers["location"] == f"/api/v1/aggregate-views/{reply.json()['id']}"
    created: dict[str, Any] = reply.json()
    return created


@pytest.fixture
async def attack(
    app: FastAPI, client: httpx.AsyncClient
) -> tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]]:
    coordinator = await headers_for(app, Role.coordinator)
    await make_tree(client, coordinator, ATTACK_TREE)
    survey = await create_questionnaire(
        app, publish=True, definition={**ATTACK_DEFINITION, "slug": f"a-{uuid.uuid4().hex[:8]}"}
    )
    items = attack_population()
    await submit(client, survey, await headers_for(app, Role.observer), items)
    view = await create_view(
        client,
        survey,
        coordinator,
        dimensions=["gender", "region", "district"],
        filters=["gender", "territory_code", "submitted_from", "submitted_to"],
    )
    return survey, view, items


def public_path(view: dict[str, Any]) -> str:
    return f"/api/v1/public/aggregates/{view['id']}"


@pytest.fixture
async def unlimited(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app without a practical rate limit, for tests that send many queries."""
    application = create_app(settings.model_copy(update={"public_aggregates_limit": 100_000}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://testserver"
    ) as http:
        yield http
    await application.state.engine.dispose()


# --- the attacker -------------------------------------------------------------------------------

EXACT_SUPPORT: dict[int, dict[int, int]] = {0: {0: 1}}  # what exact figures would be


def feasible(published: int | None, table: dict[int, dict[int, int]]) -> set[int]:
    """The true counts the attacker cannot rule out, given a published count (None: a cell left
    out, which the API does for a count published as 0) and the public perturbation table."""
    shown = 0 if published is None else published
    cap = max(table)
    return {
        true
        for true in range(max(0, shown - MAX_NOISE), shown + MAX_NOISE + 1)
        if shown - true in table[min(true, cap)]
    }


def differences(
    whole: int | None, parts: Iterable[int | None], table: dict[int, dict[int, int]]
) -> set[int]:
    """What `whole - sum(parts)` may be, the target's share of a count (0 or 1) included."""
    values = feasible(whole, table)
    for part in parts:
        values = {v - p for v in values for p in feasible(part, table)}
    return values & {0, 1}


def recovered(values: set[int]) -> bool:
    return len(values) == 1


def figure(result: dict[str, Any], key: str, group: dict[str, Any] | None = None) -> Any:
    """The cell of `key` for `group` (None: the one cell without a breakdown); None if absent."""
    cells = next(q for q in result["questions"] if q["key"] == key)["cells"]
    for cell in cells:
        if group is None or cell["group"] == group:
            return cell
    return None


def count_of(cell: Any, option: str) -> int | None:
    """The published count (None when left out); a suppressed cell ends the attack (raises)."""
    if cell is None:
        return None
    if cell["suppressed"]:
        raise Suppressed
    return int(cell["counts"][option])


class Suppressed(Exception):
    pass


class Attacker:
    """Sends queries and derives the target's answers by subtraction, as the issue's review did."""

    def __init__(
        self, http: httpx.AsyncClient, path: str, headers: dict[str, str], table: dict[int, Any]
    ) -> None:
        self.http, self.path, self.headers, self.table = http, path, headers, table
        self.seen: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (query, answer)
        self.refused: list[dict[str, Any]] = []

    async def ask(self, **params: Any) -> dict[str, Any] | None:
        reply = await self.http.get(self.path, params=params, headers=self.headers)
        if reply.status_code == 422:
            self.refused.append(params)
            return None
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        self.seen.append((params, body))
        return body

    async def by_subtraction(
        self, whole: dict[str, Any], parts: list[dict[str, Any]]
    ) -> dict[str, set[int]]:
        """Whole minus parts, for the target's `no` to q1 and `true` to sens, and its n."""
        wholes = [await self.ask(**whole)]
        pieces = [await self.ask(**part) for part in parts]
        if any(result is None for result in [*wholes, *pieces]):
            return {}  # refused: nothing to subtract
        found = {}
        for key, option in (("q1", "no"), ("sens", "true")):
            try:
                found[f"{key}={option}"] = differences(
                    count_of(figure(wholes[0], key), option),  # type: ignore[arg-type]
                    [count_of(figure(p, key), option) for p in pieces],  # type: ignore[arg-type]
                    self.table,
                )
            except Suppressed:
                continue
        found["n"] = differences(
            wholes[0]["n_responses"],  # type: ignore[index]
            [p["n_responses"] for p in pieces],  # type: ignore[index]
            self.table,
        )
        return found

    def income(self, whole: dict[str, Any], parts: list[dict[str, Any]]) -> set[int]:
        """Incomes consistent with mean * n sums over whole and parts for some true n's: the
        sums of integers are integers, which with exact means singles out the true n's."""
        cells = [figure(result, "inc") for result in [whole, *parts]]
        if any(c is None or c["suppressed"] or c["mean"] is None for c in cells):
            return set()
        found = set()
        options = [sorted(feasible(c["n"], self.table)) for c in cells]

        def walk(index: int, chosen: list[int]) -> None:
            if index == len(cells):
                if chosen[0] - sum(chosen[1:]) != 1:
                    return
                sums = [c["mean"] * n for c, n in zip(cells, chosen, strict=True)]
                if all(abs(s - round(s)) < 1e-6 for s in sums):
                    found.add(round(sums[0] - sum(sums[1:])))
                return
            for n in options[index]:
                walk(index + 1, [*chosen, n])

        walk(0, [])
        return found


ROUTES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("gender complement", {}, [{"gender": "female"}, {"gender": "male"}]),
    ("region minus district", {"territory_code": REGION}, [{"territory_code": D1}]),
    ("the district alone", {"territory_code": D2}, []),
    (
        "months before the target",
        {},
        [{"submitted_to": "2026-11-01T00:00:00Z"}],
    ),
    (
        "the target's month minus the women and men in it",
        {"submitted_from": "2026-11-01T00:00:00Z"},
        [
            {"submitted_from": "2026-11-01T00:00:00Z", "gender": "female"},
            {"submitted_from": "2026-11-01T00:00:00Z", "gender": "male"},
        ],
    ),
]


async def run_routes(attacker: Attacker) -> dict[str, dict[str, set[int]]]:
    return {name: await attacker.by_subtraction(whole, parts) for name, whole, parts in ROUTES}


async def test_the_staff_figures_give_the_target_away_to_this_attacker(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    """The control: exact figures (the staff endpoint) let the same attack succeed, so the
    attack below is a real one."""
    survey, _, _ = attack
    analyst = await headers_for(app, Role.analyst)
    attacker = Attacker(
        client, f"/api/v1/questionnaires/{survey.id}/aggregates", analyst, EXACT_SUPPORT
    )
    found = await run_routes(attacker)
    gender = found["gender complement"]
    assert gender["q1=no"] == {1} and gender["sens=true"] == {1} and gender["n"] == {1}
    assert found["region minus district"]["q1=no"] == {1}
    whole = await attacker.ask()
    women, men = await attacker.ask(gender="female"), await attacker.ask(gender="male")
    assert attacker.income(whole, [women, men]) == {TARGET["inc"]}  # type: ignore[list-item,arg-type]
    assert figure(whole, "inc")["max"] == TARGET["inc"]  # type: ignore[arg-type]


async def test_an_attacker_recovers_no_answer_of_the_target_exactly(
    unlimited: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, view, items = attack
    attacker = Attacker(unlimited, public_path(view), {}, PERTURBATION_TABLE)
    found = await run_routes(attacker)
    # The answers: nobody else gave them, so every other cell's count is an exact zero, shown
    # as 0, which the table also gives counts of 1 and 2: the subtraction always leaves 0 and 1
    # open. (The number of responses is not an answer: it can, rarely, be pinned when the
    # noise hits its bounds on every cell at once, as with any bounded noise.)
    for route, derived in found.items():
        for what, values in derived.items():
            if what != "n":
                assert not recovered(values), (route, what, values)
    assert any(derived for derived in found.values())  # some routes were answered
    # The routes that isolate the target are refused outright (query-set size).
    refused = attacker.refused
    assert {"territory_code": D1} in refused  # leaves out only the target
    assert {"territory_code": D2} in refused  # the target alone

    # Finer slices are refused: days instead of months, a rural district under a district.
    for params in (
        {"submitted_to": "2026-11-28T00:00:00Z"},
        {"submitted_from": "2026-11-01T00:00:01Z"},
        {"territory_code": D1_RURAL},
    ):
        assert await attacker.ask(**params) is None, params

    # Breakdowns: the target's cells are suppressed, and one more so the total does not give
    # them back.
    for by in ("gender", "district", "gender,district", "region,district"):
        result = await attacker.ask(by=by)
        assert result is not None
        for key in ("q1", "sens", "inc"):
            cells = next(q for q in result["questions"] if q["key"] == key)["cells"]
            target_cells = [
                c for c in cells if c["group"].get("gender", "x") is None
                or c["group"].get("district") == D2
            ]  # fmt: skip
            assert all(c["suppressed"] for c in target_cells), (by, key, target_cells)
            assert sum(c["suppressed"] for c in cells) != 1, (by, key)

    # Repeating and re-slicing: the same cell, the same figure, so nothing averages out.
    again = await attacker.ask()
    assert again == await attacker.ask()
    assert again == await attacker.ask(territory_code=REGION)  # a filter leaving nobody out

    # Numbers: no min/max, statistics only for large cells and with noise; the integer-sum
    # trick that recovers the income from exact means finds nothing.
    whole = await attacker.ask()
    women, men = await attacker.ask(gender="female"), await attacker.ask(gender="male")
    assert whole is not None and women is not None and men is not None
    assert attacker.income(whole, [women, men]) != {TARGET["inc"]}
    for _, result in attacker.seen:
        for cell in next(q for q in result["questions"] if q["key"] == "inc")["cells"]:
            assert cell["min"] is None and cell["max"] is None
            if not cell["suppressed"] and cell["n"] < 2 * MIN_CELL:
                assert cell["mean"] is None and cell["median"] is None

    # CSV: the same protected figures, nothing more.
    reply = await unlimited.get(public_path(view), params={"format": "csv", "by": "gender"})
    assert reply.status_code == 200
    rows = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8-sig"))))
    as_json = await attacker.ask(by="gender")
    assert as_json is not None
    for row in rows:
        cell = figure(as_json, row["question"], {"gender": row["gender"] or None})
        assert (row["suppressed"] == "true") == cell["suppressed"]
        assert row["min"] == "" and row["max"] == ""
        if row["option"]:
            assert int(row["count"]) == cell["counts"][row["option"]]
    assert not any(row["gender"] == "" and row["suppressed"] == "false" for row in rows)

    # Every published count lies within the table's bound of the exact one, and the figures are
    # really perturbed (with dozens of counts, all of them exact would mean no protection).
    exact_by_query = _exact_counts(items)
    differing = 0
    for params, result in attacker.seen:
        if "by" in params:
            continue
        exact = exact_by_query(params)
        for key in ("q1", "sens"):
            cell = figure(result, key)
            if cell is None or cell["suppressed"]:
                continue
            for option, shown in cell["counts"].items():
                assert abs(shown - exact[key][option]) <= MAX_NOISE
                differing += shown != exact[key][option]
    assert differing > 0


def _exact_counts(items: list[dict[str, Any]]) -> Any:
    """Exact option counts of q1 and sens for a query's filters (no breakdown)."""
    district = {D1: D1, D1_RURAL: D1, D2: D2}

    def matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
        respondent = item["respondent"]
        moment = datetime.fromisoformat(item["submitted_at"])
        for name, value in params.items():
            if name == "gender" and respondent.get("gender") != value:
                return False
            if name == "territory_code" and value not in (
                REGION,
                district[respondent["territory_code"]],
                respondent["territory_code"],
            ):
                return False
            if name in ("submitted_from", "submitted_to"):
                limit = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                if (moment < limit) if name == "submitted_from" else (moment >= limit):
                    return False
        return True

    def counts(params: dict[str, Any]) -> dict[str, dict[str, int]]:
        chosen = [i for i in items if matches(i, params)]
        return {
            "q1": {o: sum(i["answers"]["q1"] == o for i in chosen) for o in ("yes", "no")},
            "sens": {
                o: sum(str(i["answers"]["sens"]).lower() == o for i in chosen)
                for o in ("true", "false")
            },
        }

    return counts


# --- consistency and utility on the Almaty survey -----------------------------------------------

ALMATY_DIMENSIONS = [
    "gender",
    "region",
    "district",
    "category",
    "answer:aware",
    "answer:channels_known",
]
ALL_FILTERS = ["group", "gender", "territory_code", "submitted_from", "submitted_to"]


@pytest.fixture
async def almaty(
    app: FastAPI,
    client: httpx.AsyncClient,
    world: tuple[Questionnaire, dict[str, str]],  # noqa: F811 - the fixture imported above
) -> tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]]:
    survey, observer = world
    items = [random_response(random.Random(7000 + seed)) for seed in range(400)]
    await submit(client, survey, observer, items)
    coordinator = await headers_for(app, Role.coordinator)
    view = await create_view(
        client, survey, coordinator, dimensions=ALMATY_DIMENSIONS, filters=ALL_FILTERS
    )
    return survey, view, items


def _cells(result: dict[str, Any], key: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    cells = next(q for q in result["questions"] if q["key"] == key)["cells"]
    return {tuple(c["group"][name] for name in result["by"]): c for c in cells}


async def test_published_figures_stay_within_the_tables_bound_of_the_exact_ones(
    unlimited: httpx.AsyncClient,
    almaty: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, view, items = almaty
    signed: list[int] = []
    for by in ([], ["gender"], ["region", "district"], ["answer:aware", "gender"], ["category"],
               ["answer:channels_known"]):  # fmt: skip
        reply = await unlimited.get(public_path(view), params={"by": ",".join(by)})
        assert reply.status_code == 200, reply.text
        result = reply.json()
        assert result["min_cell"] == MIN_CELL
        assert abs(result["n_responses"] - len(items)) <= MAX_NOISE
        for key, question in QUESTIONS.items():
            exact = expected_cells(items, by, key)
            published = _cells(result, key)
            assert set(published) <= set(exact), (by, key)  # nobody is invented
            suppressed = {g for g, c in published.items() if c["suppressed"]}
            assert len(suppressed) != 1, (by, key)  # secondary suppression
            # Cells far enough above min_cell are shown, but for one secondary suppression;
            # cells far below it never are.
            sure = {g for g in suppressed if exact[g]["n"] >= MIN_CELL + MAX_NOISE}
            assert len(sure) <= 1, (by, key, sure)
            for group, cell in exact.items():
                if cell["n"] < MIN_CELL - MAX_NOISE:
                    assert group not in published or published[group]["suppressed"]
            for group, cell in published.items():
                if cell["suppressed"]:
                    assert all(
                        v is None for f, v in cell.items() if f not in ("group", "suppressed")
                    )
                    continue
                want = exact[group]
                n = cell["n"]
                assert n >= MIN_CELL and abs(n - want["n"]) <= MAX_NOISE, (by, key, group)
                signed.append(n - want["n"])
                if "counts" in want:
                    for option, count in cell["counts"].items():
                        assert abs(count - want["counts"][option]) <= MAX_NOISE
                        assert 0 <= count <= n
                        signed.append(count - want["counts"][option])
                        assert cell["shares"][option] == pytest.approx(count / n)
                        assert cell["ci95"][option] == pytest.approx(wilson_interval(count, n))
                if question["type"] in ("integer", "scale", "decimal"):
                    assert cell["min"] is None and cell["max"] is None
                    if n < 2 * MIN_CELL:
                        assert cell["mean"] is None and cell["median"] is None
                        continue
                    error = (want["stddev"] or 0.0) / want["n"] ** 0.5
                    rounding = 0.5 * 10**-DECIMALS + 1e-9
                    assert abs(cell["mean"] - want["mean"]) <= STATISTIC_NOISE * error + rounding
                    bound = STATISTIC_NOISE * 1.2533 * error + rounding
                    assert abs(cell["median"] - want["median"]) <= bound
                    relative = STATISTIC_NOISE / (2 * (want["n"] - 1)) ** 0.5
                    assert (
                        abs(cell["stddev"] - want["stddev"]) <= relative * want["stddev"] + rounding
                    )
    # Mean zero: over hundreds of figures the noise averages out (its variance is about 1.2,
    # so the average of 300 is within 0.5 of zero but with a chance far below one in a million).
    assert len(signed) > 300
    assert abs(statistics.fmean(signed)) < 0.5
    assert any(signed)  # really perturbed


async def test_the_same_cell_shows_the_same_figure_in_every_query(
    app: FastAPI,
    unlimited: httpx.AsyncClient,
    almaty: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, view, _ = almaty
    path = public_path(view)

    async def ask(**params: Any) -> dict[str, Any]:
        reply = await unlimited.get(path, params=params)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    by_gender = await ask(by="gender")
    women = await ask(gender="female")
    # `aware` is required: its female cell holds the same records as the filtered population.
    assert women["n_responses"] == _cells(by_gender, "aware")[("female",)]["n"]
    for key in QUESTIONS:
        cell = _cells(by_gender, key).get(("female",))
        alone = _cells(women, key).get(())
        assert (cell is None) == (alone is None), key  # the same records: both shown or not
        if cell is not None and not cell["suppressed"] and not alone["suppressed"]:  # type: ignore[index]
            assert {**cell, "group": {}} == alone, key
    crossed = await ask(by="gender,region")
    women_by_region = await ask(by="region", gender="female")
    for (gender, region), cell in _cells(crossed, "aware").items():
        if gender == "female" and not cell["suppressed"]:
            other = _cells(women_by_region, "aware")[(region,)]
            assert other["suppressed"] or {**other, "group": cell["group"]} == cell
    # A territory filter holds the same records as that territory's cell of a breakdown.
    by_region = await ask(by="region")
    in_region = await ask(territory_code="190000000")
    assert in_region["n_responses"] == _cells(by_region, "aware")[("190000000",)]["n"]
    # Repeated: the very same answer.
    assert await ask(by="gender") == by_gender
    # The staff preview of this view shows exactly what it publishes.
    analyst = await headers_for(app, Role.analyst)
    preview = await unlimited.get(
        f"/api/v1/questionnaires/{survey.id}/aggregates",
        params={"by": "gender", "protected": "true", "view": view["id"]},
        headers=analyst,
    )
    assert preview.status_code == 200, preview.text
    assert preview.json() == by_gender


# --- who may do what ------------------------------------------------------------------------------


async def test_every_endpoint_refuses_the_wrong_roles(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, view, _ = attack
    callers = {role: await headers_for(app, role) for role in Role}
    body = {"name": "v", "dimensions": ["gender"], "access": "public"}
    create = f"/api/v1/questionnaires/{survey.id}/aggregate-views"
    one = f"/api/v1/aggregate-views/{view['id']}"
    for role in (Role.analyst, Role.observer):
        assert (await client.post(create, json=body, headers=callers[role])).status_code == 403
        assert (await client.delete(one, headers=callers[role])).status_code == 403
    assert (await client.post(create, json=body)).status_code == 401
    for role in (Role.coordinator, Role.admin):
        assert (await client.post(create, json=body, headers=callers[role])).status_code == 201
    for path in ("/api/v1/aggregate-views", one):
        assert (await client.get(path, headers=callers[Role.observer])).status_code == 403
        assert (await client.get(path)).status_code == 401
        for role in (Role.analyst, Role.coordinator, Role.admin):
            assert (await client.get(path, headers=callers[role])).status_code == 200
    # The staff preview stays with the readers of aggregates.
    staff = f"/api/v1/questionnaires/{survey.id}/aggregates"
    preview = {"protected": "true", "view": view["id"]}
    assert (
        await client.get(staff, params=preview, headers=callers[Role.observer])
    ).status_code == 403
    assert (await client.get(staff, params=preview)).status_code == 401
    # The published view needs no credentials, and a stray token does not matter for it.
    assert (await client.get(public_path(view))).status_code == 200
    stray = {"Authorization": "Bearer kv_not-this-views"}
    assert (await client.get(public_path(view), headers=stray)).status_code == 200


async def test_a_token_view_answers_only_with_its_key(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, _, _ = attack
    coordinator = await headers_for(app, Role.coordinator)
    view = await create_view(client, survey, coordinator, dimensions=["gender"], access="token")
    token = view["token"]
    assert token.startswith("kv_")
    path = public_path(view)
    missing = await client.get(path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert (await client.get(path, params={"key": token + "x"})).status_code == 401
    analyst = await headers_for(app, Role.analyst)  # a staff token is not the view's key
    assert (await client.get(path, headers=analyst)).status_code == 401
    by_key = await client.get(path, params={"key": token})
    by_bearer = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert by_key.status_code == by_bearer.status_code == 200
    assert by_key.json() == by_bearer.json()
    # Shown once: never in reads, and stored only as a hash.
    read = await client.get(f"/api/v1/aggregate-views/{view['id']}", headers=analyst)
    assert "token" not in read.json() and token not in read.text
    listed = await client.get("/api/v1/aggregate-views", headers=analyst)
    assert token not in listed.text
    async with app.state.engine.connect() as connection:
        from sqlalchemy import text  # noqa: PLC0415

        stored = (await connection.execute(text("SELECT token_hash FROM aggregate_view"))).all()
    assert all(token not in str(row) for row in stored)


async def test_withdrawing_a_view_stops_it_at_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, view, _ = attack
    coordinator = await headers_for(app, Role.coordinator)
    token_view = await create_view(client, survey, coordinator, dimensions=[], access="token")
    assert (await client.get(public_path(view))).status_code == 200
    for withdrawn in (view, token_view):
        reply = await client.delete(
            f"/api/v1/aggregate-views/{withdrawn['id']}", headers=coordinator
        )
        assert reply.status_code == 204
        gone = await client.get(public_path(withdrawn), params={"key": withdrawn.get("token")})
        assert gone.status_code == 404
        assert gone.headers["content-type"] == "application/problem+json"
        one = await client.get(f"/api/v1/aggregate-views/{withdrawn['id']}", headers=coordinator)
        assert one.status_code == 404
    again = await client.delete(f"/api/v1/aggregate-views/{view['id']}", headers=coordinator)
    assert again.status_code == 404
    admin = await headers_for(app, Role.admin)
    audit = (await client.get("/api/v1/audit", headers=admin)).json()["items"]
    assert {"aggregate_view.create", "aggregate_view.delete"} <= {e["action"] for e in audit}


async def test_views_are_listed_a_page_at_a_time(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, first, _ = attack
    coordinator = await headers_for(app, Role.coordinator)
    made = [first["id"]] + [
        (await create_view(client, survey, coordinator, name=f"v{n}", dimensions=[]))["id"]
        for n in range(4)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "questionnaire_id": str(survey.id)}
        if cursor:
            params["cursor"] = cursor
        page = (
            await client.get("/api/v1/aggregate-views", params=params, headers=coordinator)
        ).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    item = page["items"][-1]
    assert item["url"].endswith(f"/api/v1/public/aggregates/{item['id']}")
    assert item["min_cell"] == MIN_CELL and item["access"] == "public"
    bad = await client.get("/api/v1/aggregate-views", params={"limit": 501}, headers=coordinator)
    assert bad.status_code == 422


async def test_a_view_is_rate_limited_per_address(
    settings: Settings,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, view, _ = attack
    application = create_app(settings.model_copy(update={"public_aggregates_limit": 3}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application, client=("198.51.100.7", 1234)),
        base_url="http://testserver",
    ) as http:
        codes = [(await http.get(public_path(view))).status_code for _ in range(4)]
        refused = await http.get(public_path(view))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application, client=("198.51.100.8", 1234)),
        base_url="http://testserver",
    ) as other:
        elsewhere = await other.get(public_path(view))
    await application.state.engine.dispose()
    assert codes == [200, 200, 200, 429]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert elsewhere.status_code == 200  # another address has its own budget


# --- what a view refuses ------------------------------------------------------------------------


async def test_a_view_publishes_only_what_it_allows(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, _, _ = attack
    coordinator = await headers_for(app, Role.coordinator)
    view = await create_view(
        client,
        survey,
        coordinator,
        questions=["q1", "sens"],
        dimensions=["gender", "region"],
        filters=["submitted_from"],
    )
    path = public_path(view)
    shown = await client.get(path)
    assert [q["key"] for q in shown.json()["questions"]] == ["q1", "sens"]
    for params, loc in (
        ({"by": "district"}, "by"),
        ({"by": "gender,answer:q1"}, "by"),
        ({"questions": "inc"}, "questions"),
        ({"gender": "female"}, "gender"),
        ({"submitted_to": "2026-11-01T00:00:00Z"}, "submitted_to"),
        ({"submitted_from": "2026-10-15T00:00:00Z"}, "submitted_from"),
        ({"submitted_from": "2026-10-01T00:00:00+05:00"}, "submitted_from"),  # not a UTC month
    ):
        reply = await client.get(path, params=params)
        assert reply.status_code == 422, (params, reply.text)
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["errors"][0]["loc"] == ["query", loc], params
    # Territory filters only at the view's levels (here regions).
    territorial = await create_view(
        client, survey, coordinator, dimensions=["region"], filters=["territory_code"]
    )
    assert (
        await client.get(public_path(territorial), params={"territory_code": REGION})
    ).status_code == 200
    for code in (D1, D1_RURAL, "999999999"):
        reply = await client.get(public_path(territorial), params={"territory_code": code})
        assert reply.status_code == 422, code
    month = await client.get(path, params={"submitted_from": "2026-10-01T00:00:00Z"})
    assert month.status_code == 200


async def test_bad_view_definitions_are_refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, _, _ = attack
    coordinator = await headers_for(app, Role.coordinator)
    path = f"/api/v1/questionnaires/{survey.id}/aggregate-views"
    good = {"name": "v", "dimensions": ["gender"], "access": "public"}
    for change in (
        {"questions": ["nope"]},
        {"dimensions": ["shoe_size"]},
        {"dimensions": ["gender", "gender"]},
        {"questions": ["q1"], "dimensions": ["answer:sens"]},  # a question the view leaves out
        {"filters": ["age"]},
        {"access": "everyone"},
        {"min_cell": -1},
        {"name": ""},
        {"extra": 1},
    ):
        reply = await client.post(path, json={**good, **change}, headers=coordinator)
        assert reply.status_code == 422, (change, reply.text)
    raised = await client.post(path, json={**good, "min_cell": 2}, headers=coordinator)
    assert raised.json()["min_cell"] == MIN_CELL  # never below the floor
    draft = await create_questionnaire(app)
    reply = await client.post(
        f"/api/v1/questionnaires/{draft.id}/aggregate-views", json=good, headers=coordinator
    )
    assert reply.status_code == 409
    unknown = await client.post(
        f"/api/v1/questionnaires/{uuid.uuid4()}/aggregate-views", json=good, headers=coordinator
    )
    assert unknown.status_code == 404


async def test_the_staff_preview_without_a_view_applies_the_protection(
    app: FastAPI,
    client: httpx.AsyncClient,
    attack: tuple[Questionnaire, dict[str, Any], list[dict[str, Any]]],
) -> None:
    survey, view, items = attack
    analyst = await headers_for(app, Role.analyst)
    staff = f"/api/v1/questionnaires/{survey.id}/aggregates"
    exact = (await client.get(staff, headers=analyst)).json()
    protected = (await client.get(staff, params={"protected": "true"}, headers=analyst)).json()
    assert exact["n_responses"] == len(items)
    assert abs(protected["n_responses"] - len(items)) <= MAX_NOISE
    assert figure(exact, "inc")["max"] == TARGET["inc"]
    assert figure(protected, "inc")["max"] is None
    # The same protected figures as a view that allows everything.
    assert protected == (await client.get(public_path(view))).json()
    # Small groups are refused as they would be in public, and `view` needs `protected`.
    small = await client.get(
        staff, params={"protected": "true", "territory_code": D2}, headers=analyst
    )
    assert small.status_code == 422
    lone = await client.get(staff, params={"view": view["id"]}, headers=analyst)
    assert lone.status_code == 422
    other = await client.get(
        staff, params={"protected": "true", "view": str(uuid.uuid4())}, headers=analyst
    )
    assert other.status_code == 422


async def test_a_long_list_of_options_is_perturbed_the_same_way(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Single choices of more than 64 options are counted by a grouped query, not the pivot
    (services/aggregates/queries.py): their published counts obey the same table."""
    definition = {
        **ATTACK_DEFINITION,
        "slug": f"long-{uuid.uuid4().hex[:8]}",
        "questions": [
            {
                "key": "village",
                "type": "single_choice",
                "label": {"ru": "Село"},
                "options": [{"value": f"s{n}", "label": {"ru": f"s{n}"}} for n in range(70)],
            },
            {"key": "inc", "type": "integer", "min": 0, "max": 100000, "label": {"ru": "Доход"}},
        ],
    }
    survey = await create_questionnaire(app, publish=True, definition=definition)
    chosen = ["s0"] * 15 + ["s1"] * 10 + ["s2"] * 5 + ["s69"] * 2
    items = [
        {
            "id": str(uuid.uuid4()),
            "respondent": {"group": "resident", "gender": "female" if n % 2 else "male"},
            "answers": {"village": value, "inc": 10 * n},
        }
        for n, value in enumerate(chosen)
    ]
    await submit(client, survey, await headers_for(app, Role.observer), items)
    coordinator = await headers_for(app, Role.coordinator)
    view = await create_view(client, survey, coordinator, dimensions=["gender"])
    for by in ("", "gender"):
        result = (await client.get(public_path(view), params={"by": by})).json()
        assert abs(result["n_responses"] - len(items)) <= MAX_NOISE
        for group, cell in _cells(result, "village").items():
            mine = [i for i in items if not by or i["respondent"]["gender"] == group[0]]
            if cell["suppressed"]:
                continue
            assert abs(cell["n"] - len(mine)) <= MAX_NOISE
            for option, count in cell["counts"].items():
                exact = sum(i["answers"]["village"] == option for i in mine)
                assert abs(count - exact) <= MAX_NOISE, option
                if exact == 0:
                    assert count == 0, option  # an exact zero stays zero
        for cell in _cells(result, "inc").values():
            assert cell["min"] is None and cell["max"] is None
