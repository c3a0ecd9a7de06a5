"""Submitting responses (single and batch), listing, reading, deleting and exporting them."""

import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from app.db import session_scope
from app.deps import (
    BEARER_SECURITY,
    AdminUser,
    PageDep,
    ResponseReader,
    SessionDep,
    bearer_token,
)
from app.errors import BadRequest, Invalid, TooLarge, TooManyRequests
from app.json_pieces import (
    JsonBodyError,
    decode_object,
    has_encoded_surrogate,
    may_hold_unstorable_text,
    unstorable_text_at,
)
from app.log import note_caller
from app.models.auth import Principal
from app.models.common import UtcDatetime
from app.models.responses import (
    MAX_BATCH,
    MAX_KEY_LENGTH,
    BatchIn,
    BatchOut,
    ExportFormat,
    Gender,
    ReadBatch,
    ResponseFilters,
    ResponseRead,
)
from app.pagination import Page
from app.routers import bodies
from app.routers.bodies import decode, is_multipart, read_multipart, response_in
from app.routers.problems import responses
from app.services import attachments as attachment_service
from app.services import exports, ratelimit
from app.services import responses as service
from app.services.answers import CompiledQuestionnaire
from app.streaming import IdleLimitedStreamingResponse

router = APIRouter(prefix="/api/v1", tags=["responses"])

# The batch route reads its body itself (see _read_batch); this documents it as FastAPI would.
BATCH_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}}},
}


async def _limit_anonymous(request: Request, *, responses: int) -> None:
    """Submissions by a caller without a valid token (public questionnaires, whatever
    `Authorization` header was sent) are rate limited per address, counting responses.

    The hits are committed in a transaction of their own (they stick even if the request
    fails; on SQLite a second writer would wait on the first).
    """
    settings = request.app.state.settings
    address = request.client.host if request.client else "unknown"
    await ratelimit.enforce_in_own_transaction(
        request.app.state.sessionmaker,
        f"submit:{address}",
        limit=settings.public_submit_limit,
        window_seconds=settings.public_submit_window_seconds,
        hits=responses,
    )


@dataclass(frozen=True)
class Submission:
    principal: Principal | None
    questionnaire: CompiledQuestionnaire


async def submission_access(questionnaire_id: uuid.UUID, request: Request) -> Submission:
    """Who may submit to this questionnaire, by its access level (the submission hot path).

    One dependency, without sub-dependencies, for the rate limit, the token, the caller and the
    questionnaire: each dependency FastAPI solves costs time on every submission.
    """
    token = await bearer_token(request)
    state = request.app.state
    principal, questionnaire = await service.submission_access(
        state.response_store, state.tokens, token, questionnaire_id
    )
    if principal is not None:
        note_caller(request.scope.get("state"), principal.kind, principal.id)
    return Submission(principal, questionnaire)


Submitter = Annotated[Submission, Depends(submission_access)]


async def _filters(
    group: Annotated[str | None, Query(max_length=63)] = None,
    gender: Annotated[Gender | None, Query()] = None,
    territory_code: Annotated[str | None, Query(max_length=16)] = None,
    submitted_from: Annotated[UtcDatetime | None, Query()] = None,
    submitted_to: Annotated[UtcDatetime | None, Query()] = None,
) -> ResponseFilters:
    return ResponseFilters(
        group=group,
        gender=gender,
        territory_code=territory_code,
        submitted_from=submitted_from,
        submitted_to=submitted_to,
    )


Filters = Annotated[ResponseFilters, Depends(_filters)]


def _stored_answer(stored: service.Stored) -> Response:
    body = bodies.response_read_json(stored.body)
    return bodies.stored_answer(body, stored.created, f"/api/v1/responses/{stored.body['id']}")


@router.post(
    "/questionnaires/{questionnaire_id}/responses",
    response_model=ResponseRead,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={**BEARER_SECURITY, "requestBody": bodies.SUBMIT_BODY},
    responses={
        200: {"model": ResponseRead, "description": "A replay: the response stored earlier"},
        **responses(400, 401, 403, 404, 409, 413, 415, 422, 429),
    },
)
async def submit_response(questionnaire_id: uuid.UUID, request: Request) -> Response:
    """Exactly once by `id`: a replay answers 200 with what was stored, changed content 409.

    As `multipart/form-data`, part `response` holds the JSON and each further part a file the
    answers name (by that name): every file is checked (name, size, type by its bytes) before
    anything is stored; a retry of the same request is a replay (200) for all of it.
    """
    # Submitter's work, called here rather than declared as a dependency: FastAPI's solving of
    # a sub-dependency (its own parameters, its cache key) was 4% of a submission's time.
    submission = await submission_access(questionnaire_id, request)
    if submission.principal is None:
        await _limit_anonymous(request, responses=1)
    if is_multipart(request):
        return await _submit_multipart(submission, request)
    # The body is read here (FastAPI would read it the same way for a body parameter), so
    # that the same route can also take multipart bodies without reading them whole.
    item = response_in(decode(await request.body()))
    stored = await service.store(
        request.app.state.response_store, submission.principal, submission.questionnaire, item
    )
    return _stored_answer(stored)


async def _submit_multipart(submission: Submitter, request: Request) -> Response:
    state = request.app.state
    principal, questionnaire = submission.principal, submission.questionnaire
    item, form, uploads = await read_multipart(request, anonymous=principal is None)
    try:
        try:
            answers = attachment_service.answers_of(questionnaire, principal, item)
        except Invalid:
            # Refused as the JSON path refuses it (a revoked caller 401 before 422); nothing
            # is stored, as the same check fails there.
            await service.store(state.response_store, principal, questionnaire, item)
            raise
        files = await attachment_service.check_files(
            questionnaire, answers, uploads, state.settings.max_attachment_bytes
        )
        stored = await service.store(state.response_store, principal, questionnaire, item)
        if files:
            # The response is stored; should this fail, the error is the answer, and the same
            # request again stores the files (the response a replay).
            async with asynccontextmanager(session_scope)(state.sessionmaker) as session:
                await attachment_service.store_checked(session, stored.body["id"], files)
    finally:
        await form.close()
    return _stored_answer(stored)


# Bodies up to this size are read and checked in one pydantic-core call, which holds the GIL
# throughout (about 5 ms for 1000 responses to the 10-question survey, 470 KB); larger ones
# are decoded a member at a time (app/json_pieces.py) so that the event loop keeps running.
WHOLE_BATCH_BYTES = 1024 * 1024


def _decode_batch(body: bytes) -> BatchIn | ReadBatch:
    """The batch in `body` (run in a worker thread: see app/json_pieces.py).

    A body up to WHOLE_BATCH_BYTES goes straight from its bytes to ResponseIn items (items
    that are not valid responses stay as sent, for the rules to report): half the CPU of
    decoding it to Python values and checking those. Whatever that path refuses (not JSON,
    not UTF-8, not a batch), and text that may not be storable, takes the path below, which
    words every problem as before."""
    if has_encoded_surrogate(body):
        raise BadRequest("The body is not valid UTF-8")
    if len(body) <= WHOLE_BATCH_BYTES and not may_hold_unstorable_text(body):
        try:
            return ReadBatch.model_validate_json(body)
        except ValidationError:
            pass
    try:
        document = decode_object(body, MAX_BATCH)
    except JsonBodyError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.position),
                    "msg": "JSON decode error",
                    "ctx": {"error": str(error)},
                }
            ]
        ) from None
    if may_hold_unstorable_text(body) and (place := unstorable_text_at(document)) is not None:
        raise Invalid(
            "Text may not contain NUL characters or unpaired UTF-16 surrogates",
            errors=[{"loc": place, "msg": "NUL or unpaired surrogate in text", "type": "text"}],
        )
    try:
        return BatchIn.model_validate(document)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors()]
        ) from None


async def _read_batch(request: Request, anonymous: bool) -> BatchIn | ReadBatch:
    """Read and decode the body here, after the caller is known, rather than as FastAPI does
    (whole, on the event loop, before any check): a batch of 1000 responses to a form of 300
    questions is 8 MB, which `json.loads` took 0.44 s to decode while nothing else ran.
    Callers without a token stay under the ordinary body limit."""
    settings = request.app.state.settings
    limit = settings.max_body_bytes if anonymous else settings.max_batch_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"Request body exceeds {limit} bytes")
        chunks.append(chunk)
    return await anyio.to_thread.run_sync(
        _decode_batch, b"".join(chunks), limiter=request.app.state.batch_work
    )


@router.post(
    "/questionnaires/{questionnaire_id}/responses/batch",
    response_model=BatchOut,
    openapi_extra={**BEARER_SECURITY, "requestBody": BATCH_BODY},
    responses=responses(401, 403, 404, 409, 413, 415, 422, 429),
)
async def submit_batch(submission: Submitter, request: Request) -> Response:
    """Up to 1000 responses; each stands or falls alone, in order."""
    batch = await _read_batch(request, anonymous=submission.principal is None)
    if submission.principal is None:
        await _limit_anonymous(request, responses=len(batch.responses))
    results = await service.store_batch(
        request.app.state.response_store,
        submission.principal,
        submission.questionnaire,
        batch.responses,
        request.app.state.batch_work,
    )
    # Serialised here: returned as a model, FastAPI would validate the 1000 results again.
    return Response(BatchOut(results=results).model_dump_json(), media_type="application/json")


@router.get(
    "/questionnaires/{questionnaire_id}/responses",
    response_model=Page[ResponseRead],
    responses=responses(400, 401, 403, 404, 422),
)
async def list_responses(
    questionnaire_id: uuid.UUID,
    _: ResponseReader,
    session: SessionDep,
    page: PageDep,
    filters: Filters,
) -> Page[Any]:
    """The questionnaire's responses in the order they were received, filtered."""
    items, next_cursor = await service.list_responses(
        session, questionnaire_id, filters, limit=page.limit, cursor=page.cursor
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get(
    "/questionnaires/{questionnaire_id}/responses/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {media: {} for media in exports.MEDIA_TYPES.values()}},
        **responses(401, 403, 404, 422, 429),
    },
)
async def export_responses(
    request: Request,
    questionnaire_id: uuid.UUID,
    _: ResponseReader,
    session: SessionDep,
    filters: Filters,
    format: Annotated[ExportFormat, Query()] = "csv",
    geo: Annotated[str | None, Query(max_length=MAX_KEY_LENGTH)] = None,
) -> StreamingResponse:
    """All matching responses, streamed; memory does not grow with their number.

    Exports read through a pool of their own (KENES_EXPORT_CONCURRENCY connections), so they
    never take the connections other requests need; one more is 429. A client that stops
    reading for KENES_EXPORT_IDLE_SECONDS has its export ended and its connection freed.
    `format=geojson` places the responses by the geopoint question `geo` (default: the first).
    """
    statement, questionnaire = await service.filtered(session, questionnaire_id, filters)
    geo = exports.check(questionnaire, format, geo)
    state = request.app.state
    if not state.export_slots.try_take():
        raise TooManyRequests("Too many exports are running; retry shortly", retry_after=10)
    return IdleLimitedStreamingResponse(
        exports.export(state.export_sessionmaker, statement, questionnaire, format, geo),
        idle_seconds=state.settings.export_idle_seconds,
        on_close=state.export_slots.give_back,
        media_type=exports.MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="responses-{questionnaire_id}.{format}"'
        },
    )


@router.get(
    "/responses/{response_id}", response_model=ResponseRead, responses=responses(401, 403, 404)
)
async def get_response(
    response_id: uuid.UUID, _: ResponseReader, session: SessionDep
) -> dict[str, Any]:
    """One stored response, as submitted plus what the service recorded."""
    return await service.get_response(session, response_id)


@router.delete(
    "/responses/{response_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404),
)
async def delete_response(
    response_id: uuid.UUID, admin: AdminUser, session: SessionDep
) -> Response:
    """Admin only; recorded in the audit log."""
    await service.delete_response(session, admin, response_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
