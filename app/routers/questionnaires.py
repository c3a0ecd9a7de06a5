"""Questionnaire definitions: create, edit, version, publish, close, import from XLSForm."""

import hashlib
import json
import uuid
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Query, Request, Response, UploadFile, status
from fastapi.responses import JSONResponse

from app.deps import (
    CoordinatorUser,
    CurrentPrincipal,
    OptionalPrincipal,
    PageDep,
    SessionDep,
    UploadWork,
)
from app.models.questionnaires import (
    QuestionnaireRead,
    Status,
)
from app.pagination import Page
from app.routers.bodies import decode
from app.routers.problems import responses
from app.services import form_media, xlsform
from app.services import questionnaires as service
from app.services.openrosa import media
from app.services.openrosa.xform import xform_of

router = APIRouter(prefix="/api/v1/questionnaires", tags=["questionnaires"])
# For the body guard (app/main.py): the workbook plus its media files.
IMPORT_PATH = r"^/api/v1/questionnaires/import$"


def _json_body(model: str) -> dict[str, Any]:
    """A definition body read by the route itself, so that the service checks its schema and
    its rules together (one 422 with every problem); documented as FastAPI would."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _etag(body: QuestionnaireRead) -> str:
    # Sorted keys: PostgreSQL's JSONB does not keep the key order of what was stored.
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def _created(body: QuestionnaireRead, response: Response) -> QuestionnaireRead:
    response.headers["Location"] = f"/api/v1/questionnaires/{body.id}"
    response.headers["ETag"] = _etag(body)
    return body


@router.post(
    "",
    response_model=QuestionnaireRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 422),
    openapi_extra=_json_body("QuestionnaireCreate"),
)
async def create_questionnaire(
    actor: CoordinatorUser, session: SessionDep, request: Request, response: Response
) -> QuestionnaireRead:
    """A new draft: version 1, or the next version of an existing slug. Every problem of the
    definition (its schema and its rules) is listed in one 422."""
    data = decode(await request.body())
    return _created(service.to_read(await service.create_from(session, actor, data)), response)


@router.post(
    "/import",
    response_model=QuestionnaireRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 413, 415, 422),
)
async def import_xlsform(
    file: Annotated[UploadFile, File(description="An XLSForm workbook (.xlsx or .xls)")],
    actor: CoordinatorUser,
    session: SessionDep,
    response: Response,
    uploads: UploadWork,
    request: Request,
    media: Annotated[
        list[UploadFile] | None,
        File(
            description=(
                "Files of the form: the CSV, XML or GeoJSON files of select_one_from_file "
                "lists, and the images, audio and video its media columns name"
            )
        ),
    ] = None,
) -> QuestionnaireRead:
    """An XLSForm becomes a draft with its media files; what cannot be mapped is refused with
    422 naming the row (or the media part)."""
    parts = [(PurePosixPath(part.filename or "").name, part) for part in media or ()]
    questionnaire = await form_media.import_xlsform(
        session,
        actor,
        file,
        filename=file.filename or "form.xlsx",
        parts=parts,
        limiter=uploads,
        settings=request.app.state.settings,
    )
    return _created(service.to_read(questionnaire), response)


@router.get("", response_model=Page[QuestionnaireRead], responses=responses(400, 401, 403, 422))
async def list_questionnaires(
    principal: CurrentPrincipal,
    session: SessionDep,
    page: PageDep,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    slug: Annotated[str | None, Query(max_length=63)] = None,
) -> Page[QuestionnaireRead]:
    """Questionnaires the caller may read, in creation order; filter by `status` and `slug`."""
    rows, next_cursor = await service.list_questionnaires(
        session, principal, status=status_, slug=slug, limit=page.limit, cursor=page.cursor
    )
    return Page(items=[service.to_read(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{questionnaire_id}",
    response_model=QuestionnaireRead,
    responses={**responses(401, 404, 422), 304: {"description": "Not Modified"}},
)
async def get_questionnaire(
    questionnaire_id: uuid.UUID,
    principal: OptionalPrincipal,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Anyone may read a published `public` questionnaire; `If-None-Match` answers 304."""
    body = service.to_read(await service.get_readable(session, principal, questionnaire_id))
    etag = _etag(body)
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return JSONResponse(body.model_dump(mode="json"), headers={"ETag": etag})


@router.get(
    "/{questionnaire_id}/xform",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}, "description": "An ODK XForm (XML)"},
        **responses(401, 404, 422),
    },
)
async def get_xform(
    questionnaire_id: uuid.UUID, principal: OptionalPrincipal, session: SessionDep, request: Request
) -> Response:
    """The questionnaire as an ODK XForm, built by pyxform from the stored definition (the
    form OpenRosa clients download); the same readers as the questionnaire itself."""
    questionnaire = await service.get_readable(session, principal, questionnaire_id)
    state = request.app.state
    territories = media.offers_territories(await media.fingerprint(session))
    xform = await xform_of(questionnaire, state.xforms, state.upload_work, territories)
    return Response(
        xform.xml,
        media_type="application/xml",
        headers={
            "ETag": f'"{xform.md5}"',
            "Content-Disposition": (
                f'attachment; filename="{questionnaire.slug}-v{questionnaire.version}.xml"'
            ),
        },
    )


@router.get(
    "/{questionnaire_id}/xlsform",
    response_class=Response,
    responses={
        200: {"content": {xlsform.MEDIA_TYPE: {}}, "description": "An XLSForm workbook (.xlsx)"},
        **responses(401, 404, 422),
    },
)
async def get_xlsform(
    questionnaire_id: uuid.UUID, principal: OptionalPrincipal, session: SessionDep, request: Request
) -> Response:
    """The questionnaire as an XLSForm workbook (survey, choices, settings) that imports back
    as the same definition; the same readers as the questionnaire itself."""
    questionnaire = await service.get_readable(session, principal, questionnaire_id)
    content = await xlsform.xlsform_of(questionnaire, request.app.state.upload_work)
    return Response(
        content,
        media_type=xlsform.MEDIA_TYPE,
        headers={
            "Content-Disposition": (
                f'attachment; filename="{questionnaire.slug}-v{questionnaire.version}.xlsx"'
            ),
        },
    )


@router.patch(
    "/{questionnaire_id}",
    response_model=QuestionnaireRead,
    responses=responses(401, 403, 404, 409, 422),
    openapi_extra=_json_body("QuestionnaireUpdate"),
)
async def update_questionnaire(
    questionnaire_id: uuid.UUID,
    actor: CoordinatorUser,
    session: SessionDep,
    request: Request,
    response: Response,
) -> QuestionnaireRead:
    """Edits a draft; a published or closed questionnaire answers 409. Every problem of the
    definition the edit makes is listed in one 422."""
    data = decode(await request.body())
    body = service.to_read(await service.update(session, actor, questionnaire_id, data))
    response.headers["ETag"] = _etag(body)
    return body


@router.delete(
    "/{questionnaire_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 409),
)
async def delete_questionnaire(
    questionnaire_id: uuid.UUID, actor: CoordinatorUser, session: SessionDep
) -> None:
    """Deletes a draft only."""
    await service.delete(session, actor, questionnaire_id)


@router.post(
    "/{questionnaire_id}/publish",
    response_model=QuestionnaireRead,
    responses=responses(401, 403, 404, 409),
)
async def publish_questionnaire(
    questionnaire_id: uuid.UUID, actor: CoordinatorUser, session: SessionDep
) -> QuestionnaireRead:
    """Draft to published; the definition never changes again."""
    return service.to_read(
        await service.change_status(session, actor, questionnaire_id, Status.published)
    )


@router.post(
    "/{questionnaire_id}/close",
    response_model=QuestionnaireRead,
    responses=responses(401, 403, 404, 409),
)
async def close_questionnaire(
    questionnaire_id: uuid.UUID, actor: CoordinatorUser, session: SessionDep
) -> QuestionnaireRead:
    """Published to closed; no more responses are accepted."""
    return service.to_read(
        await service.change_status(session, actor, questionnaire_id, Status.closed)
    )
