"""OpenRosa 1.0 under a collector's server URL: ODK Collect, KoboCollect and Enketo list the
collector's forms, download them and submit to Kenes without a Kenes app.

The collector token is the URL's `{token}` segment (the access log masks it). Answers are XML;
refusals are OpenRosa responses whose `<message>` names the problem in the form's default
language. Every answer carries `X-OpenRosa-Version` and `Date` (app/middleware.py).
"""

import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db import session_scope
from app.deps import ReadUnitsDep, SessionDep, TokensDep
from app.errors import AppError, BadRequest, Conflict, Invalid, NotFound, TooLarge
from app.log import note_caller
from app.models.attachments import MAX_NAME
from app.models.auth import Principal
from app.models.questionnaires import Questionnaire
from app.models.responses import ResponseIn
from app.services import attachments, form_media
from app.services.answers import CompiledQuestionnaire
from app.services.openrosa import encrypted, media, messages
from app.services.openrosa import forms as service
from app.services.openrosa.envelope import Envelope
from app.services.openrosa.xform import XForm, xform_of

PREFIX = "/openrosa/key/{token}"
# For the body guard (app/middleware.py): submissions are multipart, with a limit of their own.
SUBMISSION_PATH = r"^/openrosa/key/[^/]+/submission$"
XML = "text/xml; charset=utf-8"
SUBMISSION_FILE = "xml_submission_file"
# Parts of one submission: the instance and its attachments (Collect sends at most ~10 MB
# of attachments per POST, splitting the rest over further POSTs).
MAX_PARTS = 100

router = APIRouter(prefix=PREFIX, tags=["openrosa"], include_in_schema=False)


def _xml(body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status_code, media_type=XML, headers=headers)


def _refusal(error: AppError) -> Response:
    """An OpenRosa response for a refused request: the domain error's status, its problem in
    words for the person holding the phone (no form known yet: in English)."""
    message = messages.say("revoked", None) if error.status == 401 else error.detail
    return _xml(messages.response_xml(message), error.status)


async def _collector(
    request: Request, session: SessionDep, tokens: TokensDep, token: str
) -> Principal:
    principal = await service.collector(session, tokens, token)
    note_caller(request.scope.get("state"), principal.kind, principal.id)
    return principal


def _base(request: Request, token: str) -> str:
    return str(request.base_url).rstrip("/") + PREFIX.format(token=token)


def _form_entry(base: str, questionnaire: Questionnaire, xform: XForm) -> str:
    title = questionnaire.definition["title"][questionnaire.default_language]
    url = f"{base}/forms/{questionnaire.id}"
    return (
        "<xform>"
        f"<formID>{escape(questionnaire.slug)}</formID>"
        f"<name>{escape(title)}</name>"
        f"<version>{questionnaire.version}</version>"
        f"<hash>md5:{xform.md5}</hash>"
        f"<downloadUrl>{escape(url)}.xml</downloadUrl>"
        f"<manifestUrl>{escape(url)}/manifest</manifestUrl>"
        "</xform>"
    )


@router.get("/formList")
async def form_list(
    token: str,
    request: Request,
    session: SessionDep,
    tokens: TokensDep,
    form_id: Annotated[str | None, Query(alias="formID", max_length=63)] = None,
) -> Response:
    """OpenRosa Form List API: the collector's published forms (newest version of each)."""
    try:
        principal = await _collector(request, session, tokens, token)
        found = await service.published_forms(session, principal)
    except AppError as error:
        return _refusal(error)
    state = request.app.state
    base = _base(request, token)
    territories = media.offers_territories(await media.fingerprint(session))
    entries = []
    for questionnaire in found:
        if form_id is not None and questionnaire.slug != form_id:
            continue
        try:
            xform = await xform_of(questionnaire, state.xforms, state.upload_work, territories)
        except Invalid:
            continue  # not writable as an XForm (a key `meta`): left out, the others listed
        entries.append(_form_entry(base, questionnaire, xform))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<xforms xmlns="http://openrosa.org/xforms/xformsList">' + "".join(entries) + "</xforms>"
    )
    return _xml(body.encode())


async def _bound(
    request: Request, session: SessionDep, tokens: TokensDep, token: str, form: uuid.UUID
) -> Questionnaire:
    principal = await _collector(request, session, tokens, token)
    return await service.bound_form(session, principal, form)


@router.get("/forms/{questionnaire_id}.xml")
async def form_download(
    token: str,
    questionnaire_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    tokens: TokensDep,
) -> Response:
    """The XForm (generated from the stored definition by pyxform; cached per version)."""
    try:
        questionnaire = await _bound(request, session, tokens, token, questionnaire_id)
        state = request.app.state
        territories = media.offers_territories(await media.fingerprint(session))
        xform = await xform_of(questionnaire, state.xforms, state.upload_work, territories)
    except AppError as error:
        return _refusal(error)
    return _xml(xform.xml)


async def _territories_csv(
    request: Request, session: SessionDep, questionnaire: Questionnaire
) -> media.MediaFile | None:
    state = request.app.state
    return await media.territories_csv(
        session, state.openrosa_media, state.upload_work, questionnaire.default_language
    )


@router.get("/forms/{questionnaire_id}/manifest")
async def form_manifest(
    token: str,
    questionnaire_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    tokens: TokensDep,
) -> Response:
    """The form's media files: territories.csv when the server has territories (the cascade's
    list; its md5 changes with the table), and the images, audio and video stored with the
    version (services/form_media.py)."""
    try:
        questionnaire = await _bound(request, session, tokens, token, questionnaire_id)
        territories = await _territories_csv(request, session, questionnaire)
        stored = await form_media.stored(session, questionnaire)
    except AppError as error:
        return _refusal(error)
    base = f"{_base(request, token)}/forms/{questionnaire.id}/media/"
    listed = [(file.name, file.md5) for file in stored]
    if territories is not None:
        listed.insert(0, (territories.name, territories.md5))
    files = [
        "<mediaFile>"
        f"<filename>{escape(name)}</filename>"
        f"<hash>md5:{md5}</hash>"
        f"<downloadUrl>{escape(base + quote(name, safe=''))}</downloadUrl>"
        "</mediaFile>"
        for name, md5 in listed
    ]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<manifest xmlns="http://openrosa.org/xforms/xformsManifest">'
        + "".join(files)
        + "</manifest>"
    )
    return _xml(body.encode())


@router.get("/forms/{questionnaire_id}/media/{filename}")
async def form_media_file(
    token: str,
    questionnaire_id: uuid.UUID,
    filename: Annotated[str, Path(max_length=MAX_NAME)],
    request: Request,
    session: SessionDep,
    tokens: TokensDep,
) -> Response:
    """A media file the manifest lists (territories.csv, or a file stored with the version,
    streamed); 404 for any other name."""
    try:
        questionnaire = await _bound(request, session, tokens, token, questionnaire_id)
        if filename == media.TERRITORIES_FILE:
            territories = await _territories_csv(request, session, questionnaire)
            if territories is None:
                raise NotFound("No such media file")
            return Response(
                territories.content,
                media_type="text/csv; charset=utf-8",
                headers={"ETag": f'"{territories.md5}"'},
            )
        stored = await form_media.find(session, questionnaire, filename)
        if stored is None:
            raise NotFound("No such media file")
    except AppError as error:
        return _refusal(error)
    return StreamingResponse(
        form_media.open_chunks(request.app.state.sessionmaker, stored),
        media_type=stored.content_type,
        headers={"ETag": f'"{stored.md5}"', "Content-Length": str(stored.size)},
    )


def _accept_length(request: Request) -> dict[str, str]:
    limit = request.app.state.settings.openrosa_max_submission_bytes
    return {"X-OpenRosa-Accept-Content-Length": str(limit)}


@router.head("/submission", status_code=204)
async def submission_probe(
    token: str, request: Request, session: SessionDep, tokens: TokensDep
) -> Response:
    """Before a POST, clients ask here whether the URL works and how much it accepts."""
    try:
        await _collector(request, session, tokens, token)
    except AppError as error:
        return Response(status_code=error.status, headers=_accept_length(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_accept_length(request))


async def _read_submission(request: Request) -> tuple[bytes, FormData, list[tuple[str, Any]]]:
    """The `xml_submission_file` part and the attachment parts (files, named as the instance
    names them; spooled to disk past 1 MiB). Plain fields (Collect's `*isIncomplete*`) are
    left aside. The form is the caller's to close."""
    settings = request.app.state.settings
    try:
        form = await request.form(
            max_files=MAX_PARTS,
            max_fields=MAX_PARTS,
            max_part_size=settings.openrosa_max_xml_bytes,
        )
    except StarletteHTTPException as error:  # what Starlette makes of a malformed multipart
        raise BadRequest(
            f"The submission is not a readable multipart body ({error.detail})"
        ) from None
    try:
        part = form.get(SUBMISSION_FILE)
        if part is None:
            raise BadRequest(f"The submission has no '{SUBMISSION_FILE}' part")
        if isinstance(part, UploadFile) and (part.size or 0) > settings.openrosa_max_xml_bytes:
            raise TooLarge(f"The instance is larger than {settings.openrosa_max_xml_bytes} bytes")
        xml = await part.read() if isinstance(part, UploadFile) else part.encode()
        if len(xml) > settings.openrosa_max_xml_bytes:
            raise TooLarge(f"The instance is larger than {settings.openrosa_max_xml_bytes} bytes")
        files = [
            (name, value)
            for name, value in form.multi_items()
            if name != SUBMISSION_FILE and isinstance(value, UploadFile)
        ]
    except BaseException:
        await form.close()
        raise
    return xml, form, files


@router.post("/submission")
async def submit(
    token: str, request: Request, tokens: TokensDep, sessions: ReadUnitsDep
) -> Response:
    """OpenRosa Form Submission API: 201 stored, 202 stored before (the same instanceID and
    content: also each further part of a split submission, whose files are added), 409 other
    content. The files of each POST are checked against what the instance names (name, size,
    type by their bytes) before anything is stored."""
    state = request.app.state
    headers = _accept_length(request)
    checked: list[attachments.Checked] = []

    async def check_files(
        questionnaire: CompiledQuestionnaire,
        principal: Principal | None,
        item: ResponseIn | Envelope,
    ) -> None:
        limit = state.settings.max_attachment_bytes
        if isinstance(item, Envelope):
            checked.extend(await encrypted.check_files(item, uploads, limit))
            return
        answers = attachments.answers_of(questionnaire, principal, item)
        checked.extend(
            await attachments.check_files(questionnaire, answers, uploads, limit, strict=False)
        )

    form: FormData | None = None
    try:
        xml, form, uploads = await _read_submission(request)
        submitted = await service.submit(
            store=state.response_store,
            tokens=tokens,
            sessions=sessions,
            shapes=state.openrosa_shapes,
            token=token,
            xml=xml,
            limiter=state.upload_work,
            check=check_files if uploads else None,
        )
        if checked or submitted.envelope is not None:
            # The response is stored: should this fail, Collect sends it all again, and the
            # response is then a replay while the files are stored.
            async with asynccontextmanager(session_scope)(state.sessionmaker) as session:
                response_id = submitted.stored.body["id"]
                if submitted.envelope is not None:
                    await encrypted.store_files(session, response_id, xml, checked)
                else:
                    await attachments.store_checked(session, response_id, checked)
    except (BadRequest, TooLarge) as error:
        return _submission_refusal(service.Refused(error, None), headers)
    except Conflict as error:  # other bytes under a file name received before
        return _xml(messages.response_xml(error.detail, "submit_error"), error.status, headers)
    except service.Refused as refused:
        return _submission_refusal(refused, headers)
    finally:
        if form is not None:
            await form.close()
    shape = submitted.shape
    if submitted.principal is not None:
        note_caller(request.scope.get("state"), submitted.principal.kind, submitted.principal.id)
    if submitted.stored.created:
        text, code = messages.say("stored", shape.default_language), status.HTTP_201_CREATED
    else:
        text, code = messages.say("duplicate", shape.default_language), status.HTTP_202_ACCEPTED
    return _xml(messages.response_xml(text, "submit_success"), code, headers)


def _submission_refusal(refused: service.Refused, headers: dict[str, str]) -> Response:
    shape, error = refused.shape, refused.error
    language = shape.default_language if shape else None
    if refused.kind == "invalid":
        details = messages.problems(error.errors or [], language, shape.labels if shape else {})
        text = f"{messages.say('invalid', language)}: {details}"
    elif refused.kind is not None:
        text = messages.say(refused.kind, language)
    else:
        text = error.detail
    return _xml(messages.response_xml(text, "submit_error"), error.status, headers)
