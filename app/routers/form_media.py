"""A questionnaire version's media files (images, audio, video its definition names): listed
and downloaded by the questionnaire's readers. OpenRosa clients get the same files through
the form's manifest (app/routers/openrosa.py)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.responses import StreamingResponse

from app.deps import OptionalPrincipal, PageDep, SessionDep
from app.errors import NotFound
from app.models.attachments import MAX_NAME
from app.models.form_media import FormMediaRead
from app.pagination import Page, position
from app.routers.attachments import disposition
from app.routers.problems import responses
from app.services import form_media as service
from app.services import questionnaires

router = APIRouter(prefix="/api/v1/questionnaires", tags=["questionnaires"])
Name = Annotated[str, Path(min_length=1, max_length=MAX_NAME)]


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
    items = service.listing(
        questionnaire.definition, await service.stored(session, questionnaire.id)
    )
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
    stored = await service.find(session, questionnaire.id, name)
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
