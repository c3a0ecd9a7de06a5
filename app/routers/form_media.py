"""A questionnaire version's media files (images, audio, video its definition names): listed
and downloaded by the questionnaire's readers. OpenRosa clients get the same files through
the form's manifest (app/routers/openrosa.py)."""

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse

from app.deps import (
    BEARER_SECURITY,
    OptionalPrincipal,
    PageDep,
    ReadUnitsDep,
    SessionDep,
    TokensDep,
    UnitsOfWorkDep,
    bearer_token,
)
from app.errors import Forbidden, NotFound, Unauthorized
from app.log import note_caller
from app.models.auth import Role
from app.models.form_media import FormMediaRead
from app.pagination import Page, position
from app.routers.attachments import RAW_BODY, Name, disposition
from app.routers.bodies import stored_answer
from app.routers.problems import responses
from app.services import form_media as service
from app.services import questionnaires
from app.services.attachments import receive
from app.services.auth import resolve_token

router = APIRouter(prefix="/api/v1/questionnaires", tags=["questionnaires"])
# For the body guard (app/main.py): a raw file body, with the form media bound.
PUT_PATH = r"^/api/v1/questionnaires/[^/]+/media/[^/]+$"


@router.get(
    "/{questionnaire_id}/media",
    response_model=Page[FormMediaRead],
    responses=responses(400, 401, 404, 422),
)
async def list_form_media(
    questionnaire_id: uuid.UUID, principal: OptionalPrincipal, session: SessionDep, page: PageDep
) -> Page[FormMediaRead]:
    """Every media file the definition names, in its order: `received` false for a file that
    was not uploaded (clients show the form without it). The questionnaire's readers."""
    questionnaire = await questionnaires.get_readable(session, principal, questionnaire_id)
    items = service.listing(questionnaire.definition, await service.stored(session, questionnaire))
    start = position(page.cursor, len(items))
    following = start + page.limit
    return Page(
        items=items[start:following],
        next_cursor=str(following) if following < len(items) else None,
    )


@router.get(
    "/{questionnaire_id}/media/{name}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The file, streamed; ETag is its MD5 (as OpenRosa manifests give it)",
        },
        304: {"description": "Not modified (If-None-Match holds the ETag)"},
        **responses(401, 404, 422),
    },
)
async def get_form_media(
    questionnaire_id: uuid.UUID,
    name: Name,
    principal: OptionalPrincipal,
    session: SessionDep,
    request: Request,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """One stored media file, streamed with the type read from its bytes."""
    questionnaire = await questionnaires.get_readable(session, principal, questionnaire_id)
    stored = await service.find(session, questionnaire, name)
    if stored is None:
        raise NotFound(f"The form has no stored media file {name!r}")
    etag = f'"{stored.md5}"'
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return StreamingResponse(
        service.open_chunks(request.app.state.sessionmaker, stored),
        media_type=stored.content_type,
        headers={
            "ETag": etag,
            "Content-Disposition": disposition(name),
            "Content-Length": str(stored.size),
        },
    )


@router.put(
    "/{questionnaire_id}/media/{name}",
    response_model=FormMediaRead,
    status_code=status.HTTP_200_OK,
    openapi_extra={"requestBody": RAW_BODY, **BEARER_SECURITY},
    responses={
        201: {"model": FormMediaRead, "description": "Stored (the name was new)"},
        **responses(401, 403, 404, 409, 413, 422),
    },
)
async def put_form_media(
    questionnaire_id: uuid.UUID,
    name: Name,
    request: Request,
    tokens: TokensDep,
    reads: ReadUnitsDep,
    units: UnitsOfWorkDep,
) -> Response:
    """Add or replace a media file of a draft (raw body), one its definition names; the
    import's rules (type by the bytes, size bounds). Coordinators. A published version's
    media never change (409)."""
    token = await bearer_token(request)
    if token is None:
        raise Unauthorized()
    # Who and what first, in a short read: no connection (nor SQLite's write lock) is held
    # while the body arrives.
    async with reads() as session:
        principal = await resolve_token(session, tokens, token)
        note_caller(request.scope.get("state"), principal.kind, principal.id)
        if principal.kind != "user" or not principal.has_any(Role.coordinator):
            raise Forbidden("Your roles do not allow this")
        await service.kind_to_put(session, questionnaire_id, name)
    settings = request.app.state.settings
    received = await receive(request.stream(), settings.form_media_max_file_bytes, name)
    try:
        async with units() as session:
            stored, created = await service.put_file(
                session, principal, questionnaire_id, name, received, settings
            )
    finally:
        received.close()
    location = f"/api/v1/questionnaires/{questionnaire_id}/media/{quote(name, safe='')}"
    return stored_answer(stored.model_dump_json(), created, location)
