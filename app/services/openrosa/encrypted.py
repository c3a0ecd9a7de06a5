"""Encrypted submissions stored as received: the response row (no answers) and the envelope
with its encrypted files as the response's attachments (the envelope as `submission.xml`).

The row's respondent is unknown (it is inside the encrypted instance): gender, age band,
territory and language are null; `group` must name one of the questionnaire's groups (the
column is not null), so it is the first. Exactly once by instanceID, as plaintext: the same
envelope again (or a further part of a split submission) is a replay, another envelope under
the same instanceID a conflict.
"""

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import Invalid
from app.models.auth import Principal
from app.models.responses import CATEGORIES, CHANNELS
from app.services.answers import CompiledQuestionnaire
from app.services.attachments import Checked, from_upload, receive, store, store_checked
from app.services.attachments.expected import file_bytes
from app.services.openrosa.envelope import ENVELOPE_FILE, Envelope
from app.services.responses import ResponseStore, Row, Stored, record_keys, store_row
from app.services.responses.rules import submitter_columns

ENCRYPTED_TYPE = "application/octet-stream"
ENVELOPE_TYPE = "application/xml"


def envelope_row(
    questionnaire: CompiledQuestionnaire, principal: Principal | None, envelope: Envelope
) -> Row:
    received_at = utcnow()
    index, category = questionnaire.groups[questionnaire.group_keys[0]]
    head: dict[str, Any] = {
        "id": envelope.response_id,
        "questionnaire_id": questionnaire.id,
        "questionnaire_version": questionnaire.version,
        "group_index": index,
        "category": CATEGORIES.index(category),
        "gender": None,
        "age_band": None,
        "language": None,
        "channel": CHANNELS.index("mobile"),
        "territory_code": None,
        "submitted_at": received_at,
        "received_at": received_at,
        "record_key": record_keys(1)[0],
        "content_hash": envelope.content_hash,
        "started_at": None,
        **submitter_columns(principal),
        "instance_name": None,  # its answers are not known to the server
    }
    return Row(head, questionnaire.empty_pages())


async def store_envelope(
    responses: ResponseStore,
    principal: Principal | None,
    questionnaire: CompiledQuestionnaire,
    envelope: Envelope,
) -> Stored:
    """The response of an encrypted submission, stored exactly once."""
    return await store_row(
        responses, principal, questionnaire, envelope_row(questionnaire, principal, envelope)
    )


async def check_files(
    envelope: Envelope, uploads: Sequence[tuple[str, Any]], limit: int
) -> list[Checked]:
    """The encrypted files of this POST (those the envelope names; others are set aside, as
    for plaintext submissions), each at most `limit` bytes; Invalid for a name sent twice."""
    named = set(envelope.files)
    checked: list[Checked] = []
    seen: set[str] = set()
    for name, upload in uploads:
        if name in seen:
            raise Invalid(
                "A file was sent twice",
                errors=[{"loc": ["body", name], "msg": "sent twice", "type": "duplicate_file"}],
            )
        seen.add(name)
        if name in named:
            checked.append(Checked(name, ENCRYPTED_TYPE, await from_upload(upload, limit, name)))
    return checked


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def store_files(
    session: AsyncSession,
    response_id: uuid.UUID,
    xml: bytes,
    files: Sequence[Checked],
) -> None:
    """The envelope (unless one is stored: a replay may spell the same envelope otherwise) and
    the encrypted files of this POST (other bytes under a stored name: Conflict)."""
    if await file_bytes(session, response_id, ENVELOPE_FILE) is None:
        received = await receive(_once(xml), len(xml), ENVELOPE_FILE)
        try:
            await store(session, response_id, ENVELOPE_FILE, ENVELOPE_TYPE, received)
        finally:
            received.close()
    await store_checked(session, response_id, files)
