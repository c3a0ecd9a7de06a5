"""Form media: the image, audio and video files a questionnaire version's definition names
(`media` of questions and options, per language), uploaded with its XLSForm as `media` parts,
checked, stored with the version (app/models/form_media.py) and served to OpenRosa clients.

Rules (ODK Central's, where it has one):
- a part that the form neither names as media nor reads as a select_one_from_file list is
  refused (422 naming the part): a typo in a name would otherwise leave the form without the
  file and keep bytes nobody reads;
- a named file that is not uploaded is no error: ODK clients show the form without it; the
  media listing says `received: false` and the manifest lists only what is stored;
- each file's type is read from its bytes and must suit how the form shows it (an image
  column takes image/*, audio audio/* (or an audio container), video video/*); the file
  `<name>.xml` of a secondary instance (settings.external_instances, XLSForm's xml-external)
  must be well-formed XML without a DTD, and is served as text/xml;
- at most `form_media_max_files` files, each at most `form_media_max_file_bytes`, together at
  most `form_media_max_bytes` (413 naming the part).
"""

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

import anyio.to_thread
from anyio import CapacityLimiter
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound, TooLarge
from app.models.auth import Principal
from app.models.form_media import (
    FormMediaRead,
    questionnaire_media_chunk_table,
    questionnaire_media_table,
)
from app.models.questionnaires import Questionnaire, Status
from app.services import audit, questionnaires, xlsform
from app.services.attachments import Received, content_type, from_upload
from app.services.attachments.chunks import count_chunks, stream_chunks, write_chunks
from app.services.attachments.received import run
from app.services.openrosa.media import TERRITORIES_FILE
from app.services.xlsform.files import list_suffix

KINDS = ("image", "audio", "video")
XML = "xml"  # the kind of a secondary instance's file
m = questionnaire_media_table.c
chunk_owner = questionnaire_media_chunk_table.c.media_id


def referenced(definition: Mapping[str, Any]) -> dict[str, str]:
    """Every file the definition shows, in order: name -> kind (image, audio, video); a name
    shown as two kinds keeps the first."""
    found: dict[str, str] = {}
    for media in _media_of(definition):
        for kind in KINDS:
            for name in (media.get(kind) or {}).values():
                found.setdefault(str(name), kind)
    for name in (definition.get("settings") or {}).get("external_instances") or ():
        found.setdefault(f"{name}.xml", XML)
    return found


async def media_type(received: Received, name: str, kind: str) -> str:
    """The type of a form media file read from its bytes, Invalid unless it suits `kind`."""
    if kind != XML:
        return await content_type(received, name, kind)
    problem = await anyio.to_thread.run_sync(_xml_problem, received)
    if problem:
        raise Invalid(
            f"The file {name!r} is not usable XML",
            errors=[{"loc": ["body", name], "msg": problem, "type": "content_type"}],
        )
    return "text/xml"


def _xml_problem(received: Received) -> str | None:
    """Why a secondary instance's file is not one clients can read (None: it is)."""
    received.spool.seek(0)
    try:
        fromstring(received.spool.read(), forbid_dtd=True)
    except DefusedXmlException:
        return "a secondary instance may not declare a DTD or entities"
    except ParseError as error:
        return f"not well-formed XML ({error})"
    return None


def _media_of(definition: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    def walk(questions: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for question in questions:
            yield question.get("media") or {}
            for option in question.get("options") or ():
                yield option.get("media") or {}
            yield from walk(question.get("questions") or ())

    yield from walk(definition.get("questions") or ())
    for items in (definition.get("choice_lists") or {}).values():
        for item in items:
            yield item.get("media") or {}


@dataclass
class FormFile:
    """A checked media file, ready to store."""

    name: str
    kind: str
    media_type: str
    received: Received


async def check_files(
    definition: Mapping[str, Any],
    parts: Sequence[tuple[str, Any]],
    lists: set[str],
    settings: Settings,
) -> list[FormFile]:
    """The uploaded parts (name, upload) that are form media, checked: Invalid listing every
    part the form does not use or whose bytes do not suit it; TooLarge past a size bound.
    `lists`: the parts the import read as select_one_from_file lists (not stored)."""
    wanted = referenced(definition)
    errors: list[dict[str, Any]] = []
    files: list[FormFile] = []
    total = 0
    seen: set[str] = set()
    for name, upload in parts:
        place: list[str | int] = ["media", name]
        if name in seen:  # a list file too: the reader took the first
            errors.append(_error(place, "a file of this name was sent twice", "duplicate"))
            continue
        seen.add(name)
        if name in lists and name not in wanted:  # (an xml-external's file is stored too)
            continue
        if name not in wanted:
            message = (
                "the form does not use this file: no media::image, media::audio or "
                "media::video cell names it, no select_one_from_file reads it, and no "
                "xml-external row is named after it"
            )
            errors.append(_error(place, message, "unused_media"))
            continue
        if name == TERRITORIES_FILE:
            errors.append(_error(place, f"{TERRITORIES_FILE} is the server's own", "reserved"))
            continue
        if len(files) >= settings.form_media_max_files:
            errors.append(
                _error(place, f"at most {settings.form_media_max_files} media files", "too_many")
            )
            continue
        received = await from_upload(upload, settings.form_media_max_file_bytes, name)
        total += received.size
        if total > settings.form_media_max_bytes:
            raise TooLarge(
                f"The form's media files are larger than {settings.form_media_max_bytes} bytes "
                f"together (at {name!r})"
            )
        try:
            found = await media_type(received, name, wanted[name])
        except Invalid as error:
            errors += [{**e, "loc": place} for e in error.errors or []]
            continue
        files.append(FormFile(name, wanted[name], found, received))
    if errors:
        raise Invalid("The form's media files cannot be taken", errors=errors)
    return files


async def import_xlsform(
    session: AsyncSession,
    actor: Principal,
    workbook: Any,
    *,
    filename: str,
    parts: Sequence[tuple[str, Any]],
    limiter: CapacityLimiter,
    settings: Settings,
) -> Questionnaire:
    """An XLSForm (an upload: `.size`, `.read()`) and its `media` parts (name, upload) as a
    new draft with its media files stored, in the caller's unit of work; the list files go to
    the reader, the others are checked as form media."""
    if (workbook.size or 0) > settings.max_upload_bytes:
        raise TooLarge(f"The workbook is larger than {settings.max_upload_bytes} bytes")
    lists: dict[str, bytes] = {}
    for name, part in parts:
        if list_suffix(name) and name not in lists:  # one sent twice is refused below
            lists[name] = await part.read()
    used: set[str] = set()
    mapped: dict[str, Any] = {}
    try:
        data = await xlsform.read_definition(
            await workbook.read(),
            filename=filename,
            limiter=limiter,
            media=lists,
            used=used,
            mapped=mapped,
        )
    except Invalid as error:
        # one 422 for everything: the files are checked against what the workbook names
        if mapped:
            try:
                await check_files(mapped, parts, used, settings)
            except Invalid as more:
                error.errors = [*(error.errors or []), *(more.errors or [])]
        raise
    definition = data.model_dump(mode="json", by_alias=True, exclude_none=True)
    files = await check_files(definition, parts, used, settings)
    questionnaire = await questionnaires.create(session, actor, data)
    await store(session, questionnaire.id, files)
    return questionnaire


def _error(loc: list[str | int], message: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": message, "type": kind}


async def store(
    session: AsyncSession, questionnaire_id: uuid.UUID, files: Sequence[FormFile]
) -> None:
    """Store the checked files with the (new) version, in the caller's unit of work."""
    for file in files:
        media_id = uuid.uuid4()
        await run(
            session,
            questionnaire_media_table.insert().values(
                id=media_id,
                questionnaire_id=questionnaire_id,
                name=file.name,
                kind=file.kind,
                content_type=file.media_type,
                size=file.received.size,
                md5=file.received.md5,
                sha256=file.received.sha256,
                created_at=utcnow(),
            ),
        )
        await write_chunks(session, chunk_owner, media_id, file.received.chunks())


@dataclass(frozen=True)
class StoredMedia:
    id: uuid.UUID
    name: str
    kind: str
    content_type: str
    size: int
    md5: str
    sha256: str


def _stored(row: Any) -> StoredMedia:
    return StoredMedia(row.id, row.name, row.kind, row.content_type, row.size, row.md5, row.sha256)


async def stored(session: AsyncSession, questionnaire: Questionnaire) -> list[StoredMedia]:
    """The version's stored media files that its definition names, in the definition's order
    (a draft's edit may have dropped a name: that file is then kept but not served)."""
    statement = select(questionnaire_media_table).where(m.questionnaire_id == questionnaire.id)
    found = {row.name: _stored(row) for row in await run(session, statement)}
    return [found[name] for name in referenced(questionnaire.definition) if name in found]


async def find(
    session: AsyncSession, questionnaire: Questionnaire, name: str
) -> StoredMedia | None:
    """One stored media file of the version, if its definition names it."""
    if name not in referenced(questionnaire.definition):
        return None
    statement = select(questionnaire_media_table).where(
        m.questionnaire_id == questionnaire.id, m.name == name
    )
    row = (await run(session, statement)).first()
    return _stored(row) if row is not None else None


def listing(definition: Mapping[str, Any], files: Sequence[StoredMedia]) -> list[FormMediaRead]:
    """Every file the definition names, in its order, stored or not."""
    by_name = {file.name: file for file in files}
    return [
        FormMediaRead(
            name=name,
            kind=kind,
            content_type=by_name[name].content_type if name in by_name else None,
            size=by_name[name].size if name in by_name else None,
            md5=by_name[name].md5 if name in by_name else None,
            sha256=by_name[name].sha256 if name in by_name else None,
            received=name in by_name,
        )
        for name, kind in referenced(definition).items()
    ]


async def open_chunks(
    sessionmaker: async_sessionmaker[AsyncSession], media: StoredMedia
) -> AsyncIterator[bytes]:
    """The file's bytes, a few chunks per short read (services/attachments/chunks.py)."""
    async with sessionmaker() as session:
        count = await count_chunks(session, chunk_owner, media.id)
    async for piece in stream_chunks(sessionmaker, chunk_owner, media.id, count):
        yield piece


# --- a draft's media, sent later --------------------------------------------------------------


async def kind_to_put(
    session: AsyncSession, questionnaire_id: uuid.UUID, name: str, *, lock: bool = False
) -> str:
    """The kind of file `name` must be to be put into the questionnaire: NotFound for no
    questionnaire, Conflict unless it is a draft, Invalid when its definition names no such
    file. `lock`: the questionnaire's row stays locked to the end of the transaction, so that
    a publish waits for the put (PostgreSQL; SQLite's writers wait anyway)."""
    questionnaire = await session.get(Questionnaire, questionnaire_id, with_for_update=lock)
    if questionnaire is None:
        raise NotFound("No such questionnaire")
    if questionnaire.status != Status.draft:
        raise Conflict(f"The questionnaire is {questionnaire.status}; only a draft's media change")
    wanted = referenced(questionnaire.definition)
    if name not in wanted or name == TERRITORIES_FILE:
        message = (
            "the definition names no such media file (media::image, audio or video, or an "
            "xml-external's <name>.xml)"
        )
        raise Invalid(
            f"The questionnaire does not use {name!r}",
            errors=[_error(["path", "name"], message, "unused_media")],
        )
    return wanted[name]


async def put_file(
    session: AsyncSession,
    actor: Principal,
    questionnaire_id: uuid.UUID,
    name: str,
    received: Received,
    settings: Settings,
) -> tuple[FormMediaRead, bool]:
    """Add or replace one media file of a draft (the rules of the import): what is stored, and
    whether the name was new."""
    kind = await kind_to_put(session, questionnaire_id, name, lock=True)
    found = await media_type(received, name, kind)
    others = (
        await run(
            session,
            select(func.count(), func.coalesce(func.sum(m.size), 0)).where(
                m.questionnaire_id == questionnaire_id, m.name != name
            ),
        )
    ).one()
    if others[0] >= settings.form_media_max_files:
        raise Invalid(
            f"At most {settings.form_media_max_files} media files",
            errors=[_error(["path", "name"], "too many media files", "too_many")],
        )
    if int(others[1]) + received.size > settings.form_media_max_bytes:
        raise TooLarge(
            f"The form's media files would be larger than {settings.form_media_max_bytes} "
            "bytes together"
        )
    replaced = await run(
        session,
        questionnaire_media_table.delete().where(
            m.questionnaire_id == questionnaire_id, m.name == name
        ),
    )
    await store(session, questionnaire_id, [FormFile(name, kind, found, received)])
    audit.record(
        session,
        actor,
        "questionnaire.media",
        "questionnaire",
        questionnaire_id,
        name=name,
        size=received.size,
        sha256=received.sha256,
    )
    read = FormMediaRead(
        name=name,
        kind=kind,
        content_type=found,
        size=received.size,
        md5=received.md5,
        sha256=received.sha256,
        received=True,
    )
    return read, replaced.rowcount == 0
