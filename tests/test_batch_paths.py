"""The batch path's short cuts give what the general code gives: a question no expression
touches is checked by Checking.scope's short way, and PostgreSQL array literals are built per
kind (numbers in one call, text escaped only when needed). Checked on generated inputs."""

import copy
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from app.services.answer_codecs.basic import checker
from app.services.answers import CompiledQuestionnaire, compile_questionnaire
from app.services.responses.pg_store import KIND_TYPES, _literal
from tests.conftest import postgres_only
from tests.factories import almaty_answers, almaty_definition, household_definition
from tests.test_question_types import FIELD_QUESTIONS, VALID, definition

ODD_VALUES: list[Any] = [
    "x", "", " ", 1, 0, -3, 1.5, 2.0, 10**20, True, False, [], ["a"], ["a", "a"], {}, {"a": 1},
    "2026-13-01", "2026-02-03", "10:15", ["hearings", "hearings"], float("inf"),
]  # fmt: skip


HOUSEHOLD = {
    "village": "Talgar",
    "members": [{"name": "Ainur", "age": 34, "votes": True}, {"name": "Dana", "age": 9}],
    "visits": [
        {"day": "2026-10-02", "visitors": [{"name": "Erlan", "age": 51}, {"name": "Ali"}]},
        {"day": "2026-10-09"},
    ],
}


def _compiled(data: dict[str, Any], plain: bool) -> CompiledQuestionnaire:
    compiled = compile_questionnaire(
        id=uuid.uuid4(), version=1, status="published", access="token", definition=data
    )
    if not plain:  # every question the general way
        for question in compiled.questions:
            object.__setattr__(question, "plain", False)
    return compiled


def _mutated(rng: random.Random, valid: dict[str, Any], pool: list[Any]) -> dict[str, Any]:
    answers = copy.deepcopy(valid)
    for key in list(answers):
        roll = rng.random()
        value = answers[key]
        if isinstance(value, list) and value and isinstance(value[0], dict) and roll < 0.6:
            answers[key] = [_mutated(rng, instance, pool) for instance in value]  # a repeat's
        elif roll < 0.15:
            del answers[key]
        elif roll < 0.2:
            answers[key] = None
        elif roll < 0.4:
            answers[key] = copy.deepcopy(rng.choice(pool))
    if rng.random() < 0.1:
        answers["no_such_question"] = 1
    return answers


def test_plain_questions_are_checked_as_by_the_general_path() -> None:
    rng = random.Random(11)
    forms = [
        (almaty_definition(), almaty_answers()),
        (definition(copy.deepcopy(FIELD_QUESTIONS)), VALID),
        (household_definition(), HOUSEHOLD),
    ]
    for data, valid in forms:
        short, general = _compiled(data, plain=True), _compiled(data, plain=False)
        assert any(question.plain for question in short.questions)
        assert not any(question.plain for question in general.questions)
        pool = ODD_VALUES + [v for v in valid.values() if v is not None]
        for _ in range(400):
            answers = _mutated(rng, valid, pool)
            assert short.check(copy.deepcopy(answers)) == general.check(copy.deepcopy(answers))


def _values(rng: random.Random, kind: str, count: int) -> list[Any]:
    def one() -> Any:
        if kind in ("smallint", "bigint"):
            return rng.randint(-(2**15), 2**15 - 1) if kind == "smallint" else rng.getrandbits(62)
        if kind == "float":
            return rng.choice([rng.uniform(-1e9, 1e9), float(rng.randint(-99, 99)), 1e300, 5e-324])
        if kind == "date":
            return date(2026, 1, 1) + timedelta(days=rng.randint(-9000, 9000))
        if kind == "timestamptz":
            return datetime(2026, 9, 1, tzinfo=UTC) + timedelta(microseconds=rng.getrandbits(40))
        if kind == "uuid":
            return uuid.uuid4()
        alphabet = ['"', "\\", ",", "{", "}", " ", "NULL", "null", "a", "Ж", "'", "\n", "\t", "€"]
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    nulls = rng.random() < 0.5
    return [None if nulls and rng.random() < 0.3 else one() for _ in range(count)]


@postgres_only
async def test_array_literals_read_back_as_the_values(app: FastAPI) -> None:
    rng = random.Random(12)
    kinds = {**KIND_TYPES, "varchar": "varchar", "uuid": "uuid", "timestamptz": "timestamptz"}
    async with app.state.raw_pool.acquire() as connection:
        for kind, sql_type in kinds.items():
            for count in (0, 1, 2, 7, 60):
                for _ in range(6):
                    values = _values(rng, kind, count)
                    got = await connection.fetchval(
                        f"SELECT $1::text::{sql_type}[]", _literal(sql_type, values)
                    )
                    assert list(got) == values, (kind, values)


def _expected_multiple(
    value: Any, options: list[str], least: int, most: int | None
) -> tuple[str | None, tuple[int, ...]]:
    """A multiple choice's check, written from its rules (one bit per option, 63 a column)."""
    if type(value) is not list or not all(isinstance(v, str) for v in value):
        return "expected a list of option values", ()
    unknown = [v for v in value if v not in options]
    if unknown:
        return f"not options: {', '.join(unknown[:10])}", ()
    if len(set(value)) != len(value):
        return "an option is chosen twice", ()
    if len(value) < least:
        return f"choose at least {least}", ()
    if most is not None and len(value) > most:
        return f"choose at most {most}", ()
    masks = [0] * -(-len(options) // 63)
    for v in value:
        n = options.index(v)
        masks[n // 63] |= 1 << (n % 63)
    return None, tuple(masks)


def test_multiple_choice_checks_follow_the_rules_with_one_column_or_several() -> None:
    rng = random.Random(13)
    for count in (1, 5, 40, 63, 64, 130):
        options = [f"o{n}" for n in range(count)]
        least, most = rng.choice([(None, None), (2, None), (1, 3)])
        question = {"key": "m", "type": "multiple_choice", "min_selected": least,
                    "max_selected": most, "options": [{"value": v} for v in options]}  # fmt: skip
        check = checker(question)
        for _ in range(300):
            value: Any = rng.choices(options + ["zz", 7, ["o0"]], k=rng.randint(0, 6))
            if rng.random() < 0.05:
                value = rng.choice(["o1", None, {"o1": 1}, 3])
            assert check(value) == _expected_multiple(value, options, least or 1, most)
