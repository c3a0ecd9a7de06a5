"""Files of responses: sent once each (PUT, raw body), listed and streamed back."""

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.responses import StreamingResponse

from app.deps import (
    BEARER_SECURITY,
    PageDep,
    ReadUnitsDep,
    ResponseReader,
    SessionDep,
    TokensDep,
    UnitsOfWorkDep,
    bearer_token,
)
from app.errors import NotFound, Unauthorized
from app.log import note_caller
from app.models.attachments import MAX_NAME, AttachmentRead, AttachmentStored
from app.pagination import Page
from app.routers.bodies import stored_answer
from app.routers.problems import responses
from app.services import attachments as service
from app.services.auth import resolve_token

router = APIRouter(prefix="/api/v1", tags=["attachments"])

# For the body guard (app/middleware.py): a raw body of any media type, up to
# KENES_MAX_ATTACHMENT_BYTES, streamed to the route.
PUT_PATH = r"^/api/v1/responses/[^/]+/attachments/[^/]+$"
RAW_BODY: dict[str, Any] = {
    "required": True,
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
}
Name = Annotated[str, Path(min_length=1, max_length=MAX_NAME)]


@router.put(
    "/responses/{response_id}/attachments/{name}",
    response_model=AttachmentStored,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={**BEARER_SECURITY, "requestBody": RAW_BODY},
    responses={
        200: {"model": AttachmentStored, "description": "A replay: the same bytes, stored before"},
        **responses(400, 401, 403, 404, 409, 413, 422),
    },
)
async def put_attachment(
    response_id: uuid.UUID,
    name: Name,
    request: Request,
    tokens: TokensDep,
    reads: ReadUnitsDep,
    units: UnitsOfWorkDep,
) -> Response:
    """A file the response's answers name, exactly once: the same bytes again 200, other
    bytes 409. Its type is read from its bytes and must suit the question. Readers of
    responses, and the response's own submitter (collector or user), may send it."""
    token = await bearer_token(request)
    if token is None:
        raise Unauthorized()
    # Who and what first, in a short read: no connection (nor SQLite's write lock) is held
    # while the body arrives.
    async with reads() as session:
        principal = await resolve_token(session, tokens, token)
        note_caller(request.scope.get("state"), principal.kind, principal.id)
        files = await service.response_files(session, response_id)
    service.authorize_put(principal, files)
    question_type = service.question_type_of(files, name)
    limit = request.app.state.settings.max_attachment_bytes
    received = await service.receive(request.stream(), limit, name)
    try:
        media_type = await service.content_type(received, name, question_type)
        async with units() as session:
            stored, created = await service.store(session, response_id, name, media_type, received)
    finally:
        received.close()
    location = f"/api/v1/responses/{response_id}/attachments/{quote(name)}"
    return stored_answer(stored.model_dump_json(), created, location)


@router.get(
    "/responses/{response_id}/attachments",
    response_model=Page[AttachmentRead],
    responses=responses(400, 401, 403, 404, 422),
)
async def list_attachments(
    response_id: uuid.UUID, _: ResponseReader, session: SessionDep, page: PageDep
) -> Page[AttachmentRead]:
    """Every file the response's answers name, in answer order; `received` false while it
    has not arrived."""
    files = await service.response_files(session, response_id)
    items, next_cursor = await service.list_files(
        session, files, limit=page.limit, cursor=page.cursor
    )
    return Page(items=items, next_cursor=next_cursor)


def disposition(name: str) -> str:
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get(
    "/responses/{response_id}/attachments/{name}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The file, streamed; ETag is its SHA-256",
        },
        304: {"description": "Not modified (If-None-Match holds the ETag)"},
        **responses(400, 401, 403, 404),
    },
)
async def get_attachment(
    response_id: uuid.UUID,
    name: Name,
    request: Request,
    _: ResponseReader,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """The file as received, streamed in chunks, with its media type (read from its bytes)."""
    files = await service.response_files(session, response_id)
    stored = await service.stored_file(session, files, name)
    if stored is None:
        raise NotFound(f"The file {name!r} has not been received yet")
    etag = f'"{stored.sha256}"'
    headers = {
        "ETag": etag,
        "Content-Disposition": disposition(name),
        "Content-Length": str(stored.size),
    }
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return StreamingResponse(
        service.open_chunks(request.app.state.sessionmaker, response_id, name),
        media_type=stored.content_type,
        headers=headers,
    )
