"""The batch path's short cuts give what the general code gives: a question no expression
touches is checked by Checking.scope's short way, PostgreSQL array literals are built per
kind (numbers in one call, text escaped only when needed, a value every row shares written
once), and a batch body read in one pydantic-core call gives the items, results and rows that
decoding it member by member gives. Checked on generated inputs."""

import copy
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from app.errors import AppError
from app.models.responses import BatchIn, ReadBatch
from app.routers import responses as responses_router
from app.services.answer_codecs.basic import checker
from app.services.answers import CompiledQuestionnaire, compile_questionnaire
from app.services.responses import rules
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

    roll = rng.random()
    if roll < 0.15:  # one object every row shares (the questionnaire, the time received)
        return [one()] * count
    if roll < 0.2:
        return [None] * count
    nulls = roll < 0.6
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


def _mutated_item(rng: random.Random, valid: dict[str, Any], pool: list[Any]) -> Any:
    """A batch item: valid, or wrong in its answers, its respondent, its other fields, or not
    an object at all."""
    item: dict[str, Any] = {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "respondent": {"group": rng.choice(["student", "ngo", "sme"]), "gender": "female",
                       "age_band": "25-34", "territory_code": "750000000"},
        "answers": _mutated(rng, valid, pool) if rng.random() < 0.5 else copy.deepcopy(valid),
        "language": "ru",
        "channel": "web",
        "submitted_at": "2026-10-05T15:17:30.889Z",
    }  # fmt: skip
    roll = rng.random()
    odd = rng.choice(ODD_VALUES + [None, "not-a-uuid", "2026-10-05T15:17:30", "2026-10-05"])
    if roll < 0.05:
        return rng.choice([7, "x", None, [], [item]])
    if roll < 0.12:
        item[rng.choice(["id", "language", "channel", "submitted_at", "started_at"])] = odd
    elif roll < 0.18:
        item["respondent"][rng.choice(["group", "gender", "age_band", "territory_code"])] = odd
    elif roll < 0.22:
        # not the id: one would be drawn for it
        del item[rng.choice(["respondent", "answers", "language", "submitted_at"])]
    elif roll < 0.25:
        item["extra"] = 1
    elif roll < 0.3:
        item["started_at"] = "2026-10-05T20:17:30.889+05:00"  # converted to UTC
    elif roll < 0.33:
        item["answers"] = odd
    return item


def _outcome(form: CompiledQuestionnaire, batch: BatchIn | ReadBatch) -> Any:
    results, pending, rows = rules._prepare_batch(form, None, batch.responses)
    return (
        [result.model_dump() for result in results],
        {key: (index, row.head, row.pages) for key, (index, row) in pending.items()},
        [row.id for row in rows],
    )


def test_a_batch_read_whole_gives_what_reading_it_member_by_member_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(14)
    received = datetime(2026, 10, 6, 8, 0, tzinfo=UTC)
    monkeypatch.setattr(rules, "utcnow", lambda: received)
    monkeypatch.setattr(rules, "record_keys", lambda count: list(range(count)))
    valid = almaty_answers()
    pool = ODD_VALUES + [v for v in valid.values() if v is not None]
    statuses: set[str] = set()
    form = _compiled(almaty_definition(), plain=True)
    for _ in range(40):
        items = [_mutated_item(rng, valid, pool) for _ in range(rng.randint(1, 40))]
        if rng.random() < 0.5 and isinstance(items[0], dict):  # an id twice: same, or not
            items.append({**items[0], "language": rng.choice(["ru", "kk"])})
        body = json.dumps({"responses": items}, ensure_ascii=rng.random() < 0.5).encode()
        whole = responses_router._decode_batch(body)
        assert type(whole) is ReadBatch
        with monkeypatch.context() as patched:
            patched.setattr(responses_router, "WHOLE_BATCH_BYTES", 0)
            pieces = responses_router._decode_batch(body)
        assert type(pieces) is BatchIn
        outcome = _outcome(form, whole)
        assert outcome == _outcome(form, pieces)
        statuses.update(result["status"] for result in outcome[0])
    assert statuses == {"created", "invalid", "duplicate", "conflict"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"{}",
        b'{"responses": []}',
        b'{"responses": [1], "other": 2}',
        b'{"responses": [1,]}',
        b'{"responses": [{"answers": {"a": "x\\u0000"}}]}',
        b'{"responses": [{"answers": {"a": "\\ud800"}}]}',
        '{"responses": [{"answers": {"a": "é"}}]}'.encode("utf-16"),
        b'\xef\xbb\xbf{"responses": [1]}',
        b'{"responses": [' + b"1," * 1000 + b"1]}",
    ],
)
def test_a_body_the_whole_read_refuses_is_answered_as_before(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a batch, not JSON, not UTF-8, or text that may not be storable: the same answer
    (or the same items) whichever way the body is read."""

    def outcome() -> Any:
        try:
            batch = responses_router._decode_batch(body)
        except RequestValidationError as error:
            return "422", error.errors()
        except AppError as error:
            return type(error).__name__, str(error), error.errors
        return "ok", type(batch), batch.responses  # the same type: read member by member

    whole = outcome()
    with monkeypatch.context() as patched:
        patched.setattr(responses_router, "WHOLE_BATCH_BYTES", 0)
        assert outcome() == whole
