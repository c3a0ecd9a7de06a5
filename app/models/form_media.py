"""Form media: the images, audio and video a questionnaire version shows (its `media` columns
name them), uploaded with its XLSForm and served to OpenRosa clients through the manifest.

Kept in the database on both engines as attachments are (app/models/attachments.py): one
`questionnaire_media` row with what the manifest lists (name, content type, size, MD5 for
OpenRosa, SHA-256) and the bytes in `questionnaire_media_chunk` rows of CHUNK_BYTES each, written
and streamed by the same code (services/attachments/chunks.py). Deleted with their version (a
draft), never changed once stored: a published version's media are as frozen as its definition.
"""

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)
from sqlmodel import SQLModel

from app.db import UTCDateTime
from app.models.attachments import MAX_NAME

questionnaire_media_table = Table(
    "questionnaire_media",
    SQLModel.metadata,
    Column("id", Uuid, primary_key=True),
    Column(
        "questionnaire_id",
        Uuid,
        ForeignKey("questionnaire.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(MAX_NAME), nullable=False),
    Column("kind", String(16), nullable=False),  # image, audio, video: what the form shows
    Column("content_type", String(127), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("md5", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "questionnaire_id", "name", name="uq_questionnaire_media_questionnaire_id_name"
    ),
)

questionnaire_media_chunk_table = Table(
    "questionnaire_media_chunk",
    SQLModel.metadata,
    Column(
        "media_id",
        Uuid,
        ForeignKey("questionnaire_media.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)


class FormMediaRead(BaseModel):
    """A media file the questionnaire's definition names; `received` false when it was not
    uploaded (clients then show the form without it)."""

    name: str
    kind: str
    content_type: str | None
    size: int | None
    md5: str | None
    sha256: str | None
    received: bool
