"""The OpenRosa server under a collector's URL: its forms, and submissions stored as responses.

A submission goes through the same rules and the same store as `POST .../responses`
(services/responses/rules.py `store`): every answer checked, exactly once by instanceID,
the collector re-checked by the storing statement itself (a revoked one is refused at once).
"""

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import anyio.to_thread
from anyio import CapacityLimiter
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import AppError, Conflict, Forbidden, Invalid, NotFound, Unauthorized
from app.models.auth import Principal
from app.models.questionnaires import Access, Questionnaire, Status
from app.models.responses import ResponseIn
from app.security import TokenService, is_collector_token
from app.services import responses as response_service
from app.services.answers import CompiledQuestionnaire
from app.services.auth import resolve_token
from app.services.openrosa import encrypted, submission
from app.services.openrosa.envelope import Envelope, is_envelope, read_envelope
from app.services.openrosa.submission import FormShape, ShapeCache
from app.services.responses import ResponseStore, Stored

# XML up to this size is parsed on the event loop: a 10-question instance (~1 KB) parses in
# ~20 µs, less than the hop to a worker thread; larger ones go to a thread.
INLINE_PARSE_BYTES = 32 * 1024

Sessions = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# Checks what came with an instance (its files) before the response is stored.
Check = Callable[[CompiledQuestionnaire, Principal | None, ResponseIn | Envelope], Awaitable[None]]


def _no_such_key() -> NotFound:
    return NotFound("No OpenRosa server at this URL")


async def collector(session: AsyncSession, tokens: TokenService, token: str) -> Principal:
    """The collector whose token is in the URL: 404 when it is no collector token at all, 401
    when unknown or revoked (checked against the database on every request)."""
    if not is_collector_token(token):
        raise _no_such_key()
    return await resolve_token(session, tokens, token)


async def published_forms(session: AsyncSession, principal: Principal) -> list[Questionnaire]:
    """The collector's published questionnaires, the newest version of each slug, by slug
    (not `staff` ones: collectors may not submit to those)."""
    rows = await session.exec(
        select(Questionnaire)
        .where(col(Questionnaire.id).in_(principal.questionnaire_ids))
        .where(col(Questionnaire.status) == Status.published)
        .where(col(Questionnaire.access) != Access.staff)
        .order_by(col(Questionnaire.slug), col(Questionnaire.version).desc())
    )
    newest: dict[str, Questionnaire] = {}
    for row in rows:
        newest.setdefault(row.slug, row)
    return list(newest.values())


async def bound_form(
    session: AsyncSession, principal: Principal, questionnaire_id: uuid.UUID
) -> Questionnaire:
    """A published or closed questionnaire of the collector, not `staff`; 404 for any other."""
    if questionnaire_id not in principal.questionnaire_ids:
        raise NotFound("No such form")
    questionnaire = await session.get(Questionnaire, questionnaire_id)
    if (
        questionnaire is None
        or questionnaire.status == Status.draft
        or questionnaire.access == Access.staff
    ):
        raise NotFound("No such form")
    return questionnaire


@dataclass(frozen=True)
class Submitted:
    stored: Stored
    shape: FormShape
    principal: Principal | None
    envelope: Envelope | None = None  # an encrypted submission's


class Refused(Exception):
    """A refused submission: the domain error, the form when known (its language and labels
    word the message), and which refusal it is."""

    def __init__(self, error: AppError, shape: FormShape | None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.shape = shape
        self.kind = _kind(error)


def _kind(error: AppError) -> str | None:
    if isinstance(error, Unauthorized):
        return "revoked"
    if isinstance(error, Invalid) and error.errors:
        return "invalid"
    if isinstance(error, Conflict):
        # rules.store raises Conflict for other content under a stored id, and for a
        # questionnaire that takes no responses; only the first names "different".
        return "conflict" if "different" in error.detail else "closed"
    return None


async def _shape(
    sessions: Sessions,
    shapes: ShapeCache,
    tokens: TokenService,
    token: str,
    slug: str,
    version: int,
) -> FormShape:
    """The form the instance names, once the token is known good (401 before 404)."""
    cached = shapes.get(slug, version)
    if cached is not None:
        return cached
    async with sessions() as session:
        principal = await collector(session, tokens, token)
        questionnaire = (
            await session.exec(
                select(Questionnaire).where(
                    col(Questionnaire.slug) == slug, col(Questionnaire.version) == version
                )
            )
        ).first()
        if questionnaire is None or questionnaire.id not in principal.questionnaire_ids:
            raise NotFound(f"No form {slug} version {version} at this URL")
        shape = submission.shape_of(questionnaire)
        if questionnaire.status != Status.draft:
            shapes.put(shape)
        return shape


async def submit(
    *,
    store: ResponseStore,
    tokens: TokenService,
    sessions: Sessions,
    shapes: ShapeCache,
    token: str,
    xml: bytes,
    limiter: CapacityLimiter,
    check: Check | None = None,
) -> Submitted:
    """Store the instance as a response, exactly once; Refused otherwise (the router words it
    for OpenRosa clients). `check` (the files sent with it) runs before anything is stored.
    An encrypted form's envelope is stored as received (services/openrosa/encrypted.py)."""
    shape: FormShape | None = None
    try:
        if not is_collector_token(token):
            raise _no_such_key()
        if len(xml) <= INLINE_PARSE_BYTES:
            root = submission.parse(xml)
        else:
            root = await anyio.to_thread.run_sync(submission.parse, xml, limiter=limiter)
        slug, version = submission.form_identity(root)
        shape = await _shape(sessions, shapes, tokens, token, slug, version)
        try:
            principal, questionnaire = await response_service.submission_access(
                store, tokens, token, shape.questionnaire_id
            )
        except Forbidden:
            # Bound no more (or to a staff-only questionnaire): its existence is not revealed.
            raise NotFound(f"No form {slug} version {version} at this URL") from None
        if shape.key_bytes or is_envelope(root):
            envelope = read_envelope(root, shape)
            if check is not None:
                await check(questionnaire, principal, envelope)
            stored = await encrypted.store_envelope(store, principal, questionnaire, envelope)
            return Submitted(stored, shape, principal, envelope)
        item = submission.to_response(root, shape)
        if check is not None:
            await check(questionnaire, principal, item)
        stored = await response_service.store(store, principal, questionnaire, item)
    except AppError as error:
        raise Refused(error, shape) from None
    return Submitted(stored, shape, principal)
