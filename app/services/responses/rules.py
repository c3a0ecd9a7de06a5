"""The rules of submitting responses (single and batch), written once for every store.

Who may submit, what a response must hold, exactly-once by id ("same content" compares values),
and what each outcome a store reports means for the caller.
"""

import hashlib
import os
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from pydantic import ValidationError

from app.db import utcnow
from app.errors import Conflict, Forbidden, Invalid, Unauthorized
from app.models.auth import Principal, Role
from app.models.questionnaires import Access, Status
from app.models.responses import (
    AGE_BANDS,
    CATEGORIES,
    CHANNELS,
    GENDERS,
    LANGUAGE_CODES,
    BatchResult,
    ItemError,
    ResponseIn,
)
from app.security import TokenService
from app.services.answers import CompiledQuestionnaire
from app.services.openrosa.envelope import refuse_plaintext
from app.services.responses.stores import Inserted, ResponseStore, Row

SUBMIT_ROLES = (Role.observer, Role.coordinator)
RECORD_KEY_BITS = 31


@dataclass(frozen=True)
class Stored:
    """A stored response as the API shows it, and whether this call created it."""

    body: dict[str, Any]
    created: bool


# --- who may submit ---------------------------------------------------------------------------


def may_submit(principal: Principal | None, questionnaire: CompiledQuestionnaire) -> bool:
    try:
        authorize_submit(principal, questionnaire)
    except (Unauthorized, Forbidden):
        return False
    return True


def authorize_submit(principal: Principal | None, questionnaire: CompiledQuestionnaire) -> None:
    if questionnaire.access == Access.public:
        return
    if principal is None:
        raise Unauthorized()
    if principal.kind == "collector":
        if questionnaire.access == Access.token and questionnaire.id in principal.questionnaire_ids:
            return
        raise Forbidden("This collector is not bound to the questionnaire")
    if not principal.has_any(*SUBMIT_ROLES):
        raise Forbidden("Your roles do not allow submitting responses")


async def submission_access(
    store: ResponseStore, tokens: TokenService, token: str | None, questionnaire_id: uuid.UUID
) -> tuple[Principal | None, CompiledQuestionnaire]:
    """The caller and the questionnaire they submit to, once they may submit to it."""
    principal, questionnaire = await store.submitter(tokens, token, questionnaire_id, may_submit)
    authorize_submit(principal, questionnaire)
    return principal, questionnaire


# --- building rows ----------------------------------------------------------------------------


def content_hash(item: ResponseIn, pages: list[list[Any]]) -> str:
    """A fingerprint of what was submitted (not of what the server added), for exactly-once.

    Taken over the answers as stored (typed column values), so it compares values, not
    spelling: 1 and 1.0 are one integer, a multiple choice is a set (a bit mask), key order and
    null answers do not count; answers stored as spelled (time, datetime) are given in one
    spelling (CompiledQuestionnaire.canonical_pages).
    """
    respondent = item.respondent
    content = [
        respondent.group,
        respondent.gender,
        respondent.age_band,
        respondent.territory_code,
        item.language,
        item.channel,
        _utc(item.started_at),
        _utc(item.submitted_at),
        pages,
    ]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()


def record_keys(count: int) -> list[int]:
    """Random record keys of RECORD_KEY_BITS bits, from one read of the system's random source
    (a read per key took an eighth of a batch's time)."""
    words = struct.unpack(f"<{count}I", os.urandom(4 * count))
    return [word >> (32 - RECORD_KEY_BITS) for word in words]


def build_row(
    questionnaire: CompiledQuestionnaire,
    principal: Principal | None,
    item: ResponseIn,
    received_at: datetime,
    record_key: int | None = None,
) -> Row:
    """The row to store, or Invalid listing every problem with the item."""
    if questionnaire.encrypted:
        refuse_plaintext()
    errors, pages, name = questionnaire.check(item.answers)
    group = questionnaire.groups.get(item.respondent.group)
    if group is None:
        errors.insert(
            0,
            {
                "loc": ["body", "respondent", "group"],
                "msg": f"unknown group; one of {', '.join(questionnaire.group_keys)}",
                "type": "unknown",
            },
        )
    if errors:
        raise Invalid("The response does not fit the questionnaire", errors=errors)
    assert group is not None  # noqa: S101 - checked just above
    respondent = item.respondent
    started_at, submitted_at = _utc(item.started_at), _utc(item.submitted_at)
    head: dict[str, Any] = {
        "id": item.id or uuid.uuid4(),
        "questionnaire_id": questionnaire.id,
        "questionnaire_version": questionnaire.version,
        "group_index": group[0],
        "category": CATEGORIES.index(group[1]),
        "gender": _code(GENDERS, respondent.gender),
        "age_band": _code(AGE_BANDS, respondent.age_band),
        "language": _code(LANGUAGE_CODES, item.language),
        "channel": _code(CHANNELS, item.channel),
        "territory_code": respondent.territory_code,
        "submitted_at": submitted_at or received_at,
        "received_at": received_at,
        "record_key": record_keys(1)[0] if record_key is None else record_key,
        "content_hash": content_hash(item, questionnaire.canonical_pages(pages)),
        "started_at": started_at,
        **submitter_columns(principal),
        "instance_name": name,
    }
    return Row(head, pages)


def submitter_columns(principal: Principal | None) -> dict[str, Any]:
    """Who submitted a response, as the `response` row records it."""
    return {
        "submitted_by_user": principal.id if principal and principal.kind == "user" else None,
        "submitted_by_collector": (
            principal.id if principal and principal.kind == "collector" else None
        ),
    }


def _utc(value: datetime | None) -> datetime | None:
    # ResponseIn's times are in UTC already (UtcDatetime); converting again made a copy.
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def _code(values: Sequence[str], value: str | None) -> int | None:
    return None if value is None else values.index(value)


def _value(values: Sequence[str], code: int | None) -> str | None:
    return None if code is None else values[code]


def to_body(
    head: Mapping[str, Any], answers: dict[str, Any], questionnaire: CompiledQuestionnaire
) -> dict[str, Any]:
    """A stored response as the API shows it."""
    return {
        "id": head["id"],
        "questionnaire_id": head["questionnaire_id"],
        "questionnaire_version": head["questionnaire_version"],
        "respondent": {
            "group": questionnaire.group_keys[head["group_index"]],
            "category": CATEGORIES[head["category"]],
            "gender": _value(GENDERS, head["gender"]),
            "age_band": _value(AGE_BANDS, head["age_band"]),
            "territory_code": head["territory_code"],
        },
        "answers": answers,
        "language": _value(LANGUAGE_CODES, head["language"]),
        "channel": _value(CHANNELS, head["channel"]),
        "started_at": _aware(head["started_at"]),
        "submitted_at": _aware(head["submitted_at"]),
        "received_at": _aware(head["received_at"]),
        "instance_name": head.get("instance_name"),
    }


def _aware(value: datetime | None) -> datetime | None:
    # Core RETURNING/SELECT on SQLite hands back naive UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# --- outcomes ---------------------------------------------------------------------------------


def _unknown_territory(code: str | None) -> Invalid:
    loc = ["body", "respondent", "territory_code"]
    return Invalid(
        f"Unknown territory {code}",
        errors=[{"loc": loc, "msg": f"unknown territory {code}", "type": "unknown"}],
    )


def _no_longer_allowed(principal: Principal | None) -> Unauthorized:
    """The principal was revoked, deactivated or given other roles since it was checked (the
    store forgot it, if it remembered it: the next request resolves the token afresh)."""
    if principal is not None and principal.kind == "collector":
        return Unauthorized("Unknown or revoked collector token")
    return Unauthorized("This account changed since the token was checked; try again")


def _closed(status: str | None) -> Conflict:
    return Conflict(f"The questionnaire is {status or 'gone'}; it takes no responses")


def _refuse_draft(questionnaire: CompiledQuestionnaire) -> None:
    """A draft has no answer tables yet, and nothing stored to replay."""
    if questionnaire.status == Status.draft:
        raise _closed(questionnaire.status)


def _same(existing: Mapping[str, Any] | None, row: Row) -> bool:
    return (
        existing is not None
        and existing["questionnaire_id"] == row.head["questionnaire_id"]
        and existing["content_hash"] == row.head["content_hash"]
    )


# --- storing ----------------------------------------------------------------------------------


async def store(
    responses: ResponseStore,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    item: ResponseIn,
) -> Stored:
    """Store one response exactly once: a replay answers the stored one (also after the
    questionnaire closed), changed content 409."""
    _refuse_draft(questionnaire)
    try:
        row = build_row(questionnaire, principal, item, utcnow())
    except Invalid:
        # A remembered principal may have been revoked since: 401 comes before 422.
        if principal is not None and not await responses.still_allowed(principal):
            raise _no_longer_allowed(principal) from None
        raise
    return await store_row(responses, principal, questionnaire, row)


async def store_row(
    responses: ResponseStore,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    row: Row,
) -> Stored:
    """Store a checked row exactly once (the rest of `store`; encrypted envelopes too)."""
    _refuse_draft(questionnaire)
    inserted = await responses.insert(questionnaire, principal, [row])
    if not inserted.authorized:
        raise _no_longer_allowed(principal)
    if inserted.territory_refused:
        raise _unknown_territory(row.head["territory_code"])
    answers = questionnaire.answers_from(row.pages)
    if row.id in inserted.ids:
        return Stored(to_body(row.head, answers, questionnaire), created=True)
    existing = (await responses.heads([row.id])).get(row.id)
    if _same(existing, row):
        assert existing is not None  # noqa: S101 - _same checked it
        if questionnaire.canonical_columns:  # the same values, maybe spelled otherwise
            answers = questionnaire.answers_from(
                await responses.answer_pages(questionnaire, row.id)
            )
        return Stored(to_body(existing, answers, questionnaire), created=False)
    if existing is not None:
        raise Conflict("A different response was already stored under this id")
    raise _closed(inserted.status)


async def store_batch(
    responses: ResponseStore,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    items: list[Any],
    checking: anyio.CapacityLimiter,
) -> list[BatchResult]:
    """Each item stands or falls alone, in order; one statement stores all the new ones.

    The items are checked in a worker thread (at most `checking`'s number at once): a batch of
    1,000 responses to a 300-question form is most of a second of CPU, which would stall every
    other request on the event loop."""
    _refuse_draft(questionnaire)
    results, pending, rows = await anyio.to_thread.run_sync(
        _prepare_batch, questionnaire, principal, items, limiter=checking
    )
    inserted = await _insert_batch(responses, principal, questionnaire, rows, results)
    # Usually every row is new: then there is nothing left to look up (1000 UUID hashes,
    # each a Python method, on the event loop).
    leftover = [] if len(inserted.ids) == len(rows) else rows
    leftover = [row for row in leftover if row.id not in inserted.ids]
    leftover = [row for row in leftover if results[pending[row.id][0]].status != "invalid"]
    existing = await responses.heads([row.id for row in leftover]) if leftover else {}
    for row in leftover:
        stored = existing.get(row.id)
        if stored is None and inserted.status != Status.published:
            # Nothing was stored: a closed questionnaire only answers replays.
            raise _closed(inserted.status)
        index = pending[row.id][0]
        status = "duplicate" if _same(stored, row) else "conflict"
        results[index] = BatchResult(index=index, id=row.id, status=status)
    return results


async def _insert_batch(
    responses: ResponseStore,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    rows: list[Row],
    results: list[BatchResult],
) -> Inserted:
    """One statement for the lot; if the store refuses it for an unknown territory (the only
    reference a valid row can break), those rows are marked invalid and the rest stored."""
    inserted = await responses.insert(questionnaire, principal, rows, many=True)
    if inserted.territory_refused:
        codes = {row.head["territory_code"] for row in rows if row.head["territory_code"]}
        unknown = await responses.unknown_territories(codes)
        index_of = {result.id: result.index for result in results}
        for row in rows:
            if row.head["territory_code"] in unknown:
                index = index_of[row.id]
                problem = _unknown_territory(row.head["territory_code"])
                results[index] = BatchResult(
                    index=index,
                    id=row.id,
                    status="invalid",
                    errors=[ItemError(**error) for error in problem.errors or []],
                )
        rows = [row for row in rows if row.head["territory_code"] not in unknown]
        inserted = await responses.insert(questionnaire, principal, rows, many=True)
    if not inserted.authorized:
        raise _no_longer_allowed(principal)
    return inserted


def _prepare_batch(
    questionnaire: CompiledQuestionnaire,
    principal: Principal | None,
    items: list[Any],
) -> tuple[list[BatchResult], dict[uuid.UUID, tuple[int, Row]], list[Row]]:
    """Results so far (created, invalid, repeated within the batch), the rows to store by id
    (with their item's index) and the same rows sorted by id.

    Sorted by id: concurrent batches with overlapping ids then take their row locks in the
    same order and wait for each other instead of deadlocking. (By the id's integer: UUID's
    own comparison is a Python method, called ~10,000 times.)"""
    received_at = utcnow()
    results: list[BatchResult] = []
    pending: dict[uuid.UUID, tuple[int, Row]] = {}
    keys = record_keys(len(items))
    for index, raw in enumerate(items):
        result, row = _prepare_item(questionnaire, principal, index, raw, received_at, keys[index])
        if row is not None:
            earlier = pending.get(row.id)
            if earlier is not None:
                same = earlier[1].head["content_hash"] == row.head["content_hash"]
                result = BatchResult(
                    index=index, id=row.id, status="duplicate" if same else "conflict"
                )
            else:
                pending[row.id] = (index, row)
        results.append(result)
    rows = sorted((row for _, row in pending.values()), key=lambda row: row.head["id"].int)
    return results, pending, rows


def _prepare_item(
    questionnaire: CompiledQuestionnaire,
    principal: Principal | None,
    index: int,
    raw: Any,
    received_at: datetime,
    record_key: int,
) -> tuple[BatchResult, Row | None]:
    if type(raw) is ResponseIn:  # read as one already (routers/responses.py)
        item = raw
    elif not isinstance(raw, dict):
        error = ItemError(loc=["body", "responses", index], msg="expected an object", type="type")
        return BatchResult(index=index, id=None, status="invalid", errors=[error]), None
    else:
        try:
            item = ResponseIn.model_validate(raw)
        except ValidationError as error:
            errors = [
                ItemError(loc=["body", *e["loc"]], msg=e["msg"], type=e["type"])
                for e in error.errors()
            ]
            return BatchResult(index=index, id=_raw_id(raw), status="invalid", errors=errors), None
    try:
        row = build_row(questionnaire, principal, item, received_at, record_key)
    except Invalid as error:
        errors = [ItemError(**e) for e in error.errors or []]
        return BatchResult(index=index, id=item.id, status="invalid", errors=errors), None
    return BatchResult(index=index, id=row.id, status="created"), row


def _raw_id(raw: Mapping[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw.get("id")))
    except ValueError:
        return None
