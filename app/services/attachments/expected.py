"""Which files a response expects (its answers name them), who may send them, and checking
the files that come with a response before anything is stored."""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import BadRequest, Invalid, NotFound
from app.models.attachments import MAX_NAME, attachment_chunk_table, attachment_table
from app.models.auth import Principal
from app.models.responses import ResponseIn, response_table
from app.services import questionnaires as questionnaire_service
from app.services.answers import (
    MEDIA_TYPES,
    CompiledQuestion,
    CompiledQuestionnaire,
    CompiledRepeat,
    media_names,
)
from app.services.attachments.received import Received, content_type, from_upload, run
from app.services.openrosa.envelope import ENVELOPE_FILE, named_files
from app.services.responses import build_row
from app.services.responses.reads import READ_ROLES, body_of, instances, read_select

r = response_table.c

# --- which files a response expects -----------------------------------------------------------


def expected_files(
    questionnaire: CompiledQuestionnaire, answers: Mapping[str, Any]
) -> dict[str, str]:
    """The file names the answers give (media_names: media questions, repeats too), in
    question order, each with the type of the question that names it (its files' type)."""
    kinds: dict[str, str] = {}
    _walk(questionnaire.members, answers, kinds)
    return {name: kinds[name] for name in media_names(questionnaire, answers) if name in kinds}


def _walk(
    members: Sequence[CompiledQuestion | CompiledRepeat],
    answers: Mapping[str, Any],
    found: dict[str, str],
) -> None:
    for member in members:
        value = answers.get(member.key)
        if isinstance(member, CompiledRepeat):
            for instance in value if isinstance(value, list) else ():
                if isinstance(instance, Mapping):
                    _walk(member.members, instance, found)
        elif member.type in MEDIA_TYPES and isinstance(value, str):
            found.setdefault(value, member.type)


@dataclass(frozen=True)
class ResponseFiles:
    """A stored response's expected files and who submitted it."""

    response_id: uuid.UUID
    questionnaire_id: uuid.UUID
    expected: dict[str, str]  # name -> question type
    submitted_by_user: uuid.UUID | None
    submitted_by_collector: uuid.UUID | None


async def response_files(session: AsyncSession, response_id: uuid.UUID) -> ResponseFiles:
    head = (
        await run(
            session,
            select(r.questionnaire_id, r.submitted_by_user, r.submitted_by_collector).where(
                r.id == response_id
            ),
        )
    ).first()
    if head is None:
        raise NotFound("No such response")
    questionnaire = await questionnaire_service.compiled(session, head.questionnaire_id)
    if questionnaire.encrypted:
        expected = await _envelope_files(session, response_id)
    else:
        row = (await run(session, read_select(questionnaire).where(r.id == response_id))).first()
        if row is None:
            raise NotFound("No such response")
        repeated = await instances(session, questionnaire, [response_id])
        answers = body_of(row, questionnaire, repeated)["answers"]
        expected = expected_files(questionnaire, answers)
    return ResponseFiles(
        response_id,
        head.questionnaire_id,
        expected,
        head.submitted_by_user,
        head.submitted_by_collector,
    )


async def file_bytes(session: AsyncSession, response_id: uuid.UUID, name: str) -> bytes | None:
    """A small stored file's bytes at once (an encrypted submission's envelope), or None."""
    statement = (
        select(attachment_table.c.id, attachment_chunk_table.c.data)
        .outerjoin(attachment_chunk_table)
        .where(attachment_table.c.response_id == response_id, attachment_table.c.name == name)
        .order_by(attachment_chunk_table.c.seq)
    )
    rows = list(await run(session, statement))
    return b"".join(bytes(row.data) for row in rows if row.data is not None) if rows else None


async def _envelope_files(session: AsyncSession, response_id: uuid.UUID) -> dict[str, str]:
    """An encrypted response's files: its envelope and the encrypted files it names (any
    bytes: a `file` question's type)."""
    xml = await file_bytes(session, response_id, ENVELOPE_FILE)
    names = named_files(xml) if xml is not None else (ENVELOPE_FILE,)
    return dict.fromkeys(names, "file")


def authorize_put(principal: Principal, files: ResponseFiles) -> None:
    """Readers of responses, and whoever submitted this one (its collector, its user), may
    send its files; anyone else is told nothing of it (404)."""
    if principal.kind == "user" and principal.has_any(*READ_ROLES):
        return
    if principal.kind == "collector" and principal.id == files.submitted_by_collector:
        return
    if principal.kind == "user" and principal.id == files.submitted_by_user:
        return
    raise NotFound("No such response")


def question_type_of(files: ResponseFiles, name: str) -> str:
    """The question type naming `name`; NotFound when the answers name no such file."""
    check_name(name)
    found = files.expected.get(name)
    if found is None:
        raise NotFound(f"The response's answers name no file {name!r}")
    return found


def check_name(name: str) -> None:
    if (
        not name
        or len(name) > MAX_NAME
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise BadRequest("A file name is 1 to 255 characters, without '/', '\\' or NUL")


# --- files sent with their response (multipart, OpenRosa) -------------------------------------


def answers_of(
    questionnaire: CompiledQuestionnaire, principal: Principal | None, item: ResponseIn
) -> dict[str, Any]:
    """The response's answers as they will be stored (checked as a submission is: Invalid
    otherwise), to know which files they name before anything is stored."""
    row = build_row(questionnaire, principal, item, utcnow())
    return questionnaire.answers_from(row.pages)


@dataclass
class Checked:
    """A file sent with its response, checked and ready to store."""

    name: str
    media_type: str
    received: Received


async def check_files(
    questionnaire: CompiledQuestionnaire,
    answers: Mapping[str, Any],
    uploads: Sequence[tuple[str, Any]],
    limit: int,
    *,
    strict: bool = True,
) -> list[Checked]:
    """Every file sent with a response, checked against what its answers name (the name,
    its size, its type by its bytes) before anything is stored; Invalid names each problem.

    Not `strict` (OpenRosa): a part the answers do not name is left aside, not refused, so a
    client that sends an extra file can still deliver the submission (it would retry forever).
    """
    expected = expected_files(questionnaire, answers)
    checked: list[Checked] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, upload in uploads:
        loc: list[str | int] = ["body", name]
        if name in seen:
            errors.append({"loc": loc, "msg": "sent twice", "type": "duplicate_file"})
            continue
        seen.add(name)
        if name not in expected:
            if not strict:
                continue
            message = "the answers name no such file"
            errors.append({"loc": loc, "msg": message, "type": "unknown_file"})
            continue
        received = await from_upload(upload, limit, name)
        try:
            media_type = await content_type(received, name, expected[name])
        except Invalid as error:
            errors.extend(error.errors or [])
            continue
        checked.append(Checked(name, media_type, received))
    if errors:
        raise Invalid("The files do not fit the response's answers", errors=errors)
    return checked
